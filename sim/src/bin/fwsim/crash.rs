//! `fwsim from-crash`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sim::fuzz::CrashTarget;
use sim::output::OutputFile;
use sim::{report, Sim};

use crate::{fail, FromCrashArgs};

pub(crate) fn from_crash(args: FromCrashArgs) -> ExitCode {
    let Some(target) = CrashTarget::from_name(&args.target) else {
        return fail(format!("unknown target {}", args.target));
    };
    match (target.policy(), &args.out) {
        (Some(_), None) => return fail("--out FILE: where to write the scenario"),
        (None, Some(_)) => {
            return fail(format!(
                "--out writes a scenario file: the `{}` target has none",
                target.name()
            ))
        }
        _ => {}
    }
    let repo = match args.no_regression {
        true => None,
        false => match repository(args.repo.as_deref()) {
            Ok(r) => Some(r),
            Err(e) => return fail(e),
        },
    };
    let input = &args.input;
    let data = match std::fs::read(input) {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot read {}: {e}", input.display())),
    };
    // Only what fails the target is kept: a regression that passes today guards nothing.
    let failure = match quietly(|| target.reproduce(&data)) {
        Ok(f) => f,
        Err(e) => return fail(format!("{}: {e}", input.display())),
    };
    eprintln!(
        "{} fails the `{}` target: {failure}",
        input.display(),
        target.name()
    );
    if let Some(out) = &args.out {
        if let Err(e) = write_scenario(&data, target, input, out) {
            return fail(e);
        }
        eprintln!("scenario written to {}", out.display());
    }
    if let Some(root) = repo {
        if let Err(e) = keep(target, input, &data, &root) {
            return fail(e);
        }
    }
    let Some(out) = args.out else {
        return ExitCode::SUCCESS;
    };
    let report_ = match Sim::from_file(&out).and_then(|s| s.run()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    print!("{}", report::human(&report_, false));
    ExitCode::from(report_.outcome().exit_code())
}

/// The repository the input goes to: `--repo DIR`, else the workspace this fwsim was built
/// from (not the current folder: `cargo test` replays only what is in the repository). It
/// must hold `fuzz/`.
fn repository(flag: Option<&Path>) -> Result<PathBuf, String> {
    let (dir, from) = match flag {
        Some(dir) => (dir.to_path_buf(), "--repo"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
            "the repository fwsim was built from",
        ),
    };
    let missing = || {
        format!(
            "{} ({from}) is no fwsim repository: it has no fuzz/ folder; name one with --repo \
             DIR, or keep nothing with --no-regression",
            dir.display()
        )
    };
    let root = dir.canonicalize().map_err(|_| missing())?;
    if !root.join("fuzz").is_dir() {
        return Err(missing());
    }
    Ok(root)
}

/// Runs `f` with the panic hook silenced: a target's failure is a panic, reported by the
/// caller in one line rather than as a crash of fwsim.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(hook);
    out
}

/// Writes the scenario file the input stands for (its folder made if need be).
fn write_scenario(
    data: &[u8],
    target: CrashTarget,
    input: &Path,
    out: &Path,
) -> Result<(), String> {
    let text = sim::fuzz::crash_scenario(data, target, input, out).map_err(|e| e.to_string())?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    OutputFile::create(out)
        .and_then(|f| f.write(text.as_bytes()))
        .map_err(|e| e.to_string())
}

/// Copies the input into its target's folder under `root` and says where and what for.
fn keep(target: CrashTarget, input: &Path, data: &[u8], root: &Path) -> Result<(), String> {
    let name = input
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", input.display()))?;
    let kept = target.keep(name, data, root).map_err(|e| e.to_string())?;
    eprintln!(
        "{} copied to {} ({})\nreplay: cd {} && cargo test -p fwsim-tests --test fuzz_corpus",
        input.display(),
        kept.display(),
        target.kept_as(),
        root.display()
    );
    Ok(())
}
