//! `fwsim from-crash`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sim::fuzz::CrashTarget;
use sim::{report, Sim};

use crate::fail;

pub(crate) fn from_crash(
    input: PathBuf,
    target: &str,
    out: Option<PathBuf>,
    no_regression: bool,
) -> ExitCode {
    let Some(target) = CrashTarget::from_name(target) else {
        return fail(format!("unknown target {target}"));
    };
    let data = match std::fs::read(&input) {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot read {}: {e}", input.display())),
    };
    let scenario_out = match (target.policy(), out) {
        (Some(policy), Some(out)) => {
            match sim::fuzz::write_crash_scenario(&data, policy, target, &input, &out) {
                Ok(()) => Some(out),
                Err(e) => return fail(format!("{}: {e}", input.display())),
            }
        }
        (Some(_), None) => return fail("--out FILE: where to write the scenario"),
        (None, _) => None,
    };
    if !no_regression {
        match target.keep(&input, Path::new(".")) {
            Ok(kept) => eprintln!(
                "{} copied to {} ({})",
                input.display(),
                kept.display(),
                target.kept_as()
            ),
            Err(e) => return fail(e),
        }
    }
    let Some(out) = scenario_out else {
        eprintln!("replay: cargo test -p fwsim-tests --test fuzz_corpus");
        return ExitCode::SUCCESS;
    };
    eprintln!("scenario written to {}", out.display());
    let report_ = match Sim::from_file(&out).and_then(|s| s.run()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    print!("{}", report::human(&report_, false));
    ExitCode::from(report_.outcome().exit_code())
}
