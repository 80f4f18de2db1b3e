//! `fwsim run` and `fwsim shrink`.

use std::io::BufWriter;
use std::process::ExitCode;

use sim::{report, RunError, RunOptions, Sim};

use crate::{create, fail, RunArgs, ShrinkArgs};

pub(crate) fn run(args: RunArgs) -> ExitCode {
    let sim = match args.which.sim() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut options = RunOptions {
        keep_trace: args.trace.is_some(),
        keep_events: args.timeline.is_some(),
        ..RunOptions::default()
    };
    if let Some(file) = &args.timeline {
        if let Err(e) = create(file) {
            return fail(e);
        }
    }
    for (file, out) in [
        (&args.pcap, &mut options.pcap),
        (&args.pcap_air, &mut options.pcap_air),
    ] {
        if let Some(file) = file {
            match create(file) {
                Ok(f) => *out = Some(Box::new(BufWriter::new(f))),
                Err(e) => return fail(e),
            }
        }
    }
    if let Some(file) = &args.save_scenario {
        let header = format!(
            "# Resolved from {} ({}); rerun: fwsim run {}\n",
            args.which.scenario.display(),
            sim.replay(sim.scenario().seed),
            file.display()
        );
        if let Err(e) = create(file).and_then(|_| {
            std::fs::write(file, header + &sim.scenario().to_toml())
                .map_err(|e| format!("cannot write {}: {e}", file.display()))
        }) {
            return fail(e);
        }
    }
    let report_ = match sim.run_with(options) {
        Ok(r) => r,
        Err(e) => return fail(capture_error(&args, e)),
    };
    if let (Some(file), Some(lines)) = (&args.trace, &report_.trace_lines) {
        if let Err(e) = std::fs::write(file, lines.join("\n") + "\n") {
            return fail(format!("cannot write {}: {e}", file.display()));
        }
    }
    if let (Some(file), Some(events)) = (&args.timeline, &report_.events) {
        if let Err(e) = sim::timeline::timeline_svg(&report_, events, file) {
            return fail(format!("timeline: {e}"));
        }
        eprintln!("timeline written to {}", file.display());
    }
    if args.json {
        println!("{}", report::json(&report_));
    } else {
        print!("{}", report::human(&report_, args.all));
    }
    ExitCode::from(report_.outcome().exit_code())
}

/// A capture that could not be written names its file.
fn capture_error(args: &RunArgs, e: sim::Error) -> String {
    let file = match &e {
        sim::Error::Run(RunError::Capture(_)) => args.pcap.as_ref(),
        sim::Error::Run(RunError::AirCapture(_)) => args.pcap_air.as_ref(),
        _ => None,
    };
    match file {
        Some(file) => format!("{}: {e}", file.display()),
        None => e.to_string(),
    }
}

pub(crate) fn shrink(args: ShrinkArgs) -> ExitCode {
    let sim = match args.which.sim() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = create(&args.out) {
        return fail(e);
    }
    let shrunk = match sim::shrink::shrink(&sim, args.max_runs) {
        Ok(Some(s)) => s,
        Ok(None) => return fail("nothing to shrink: the run lost nothing silently"),
        Err(e) => return fail(e),
    };
    let header =
        format!(
        "# Shrunk from {} ({} runs): still a connection {}.\n# Kept: {}.\n# Replay: fwsim run {}\n",
        sim.replay(sim.scenario().seed),
        shrunk.runs,
        shrunk.verdict.label(),
        if shrunk.steps.is_empty() { "nothing smaller".into() } else { shrunk.steps.join("; ") },
        args.out.display()
    );
    if let Err(e) = std::fs::write(&args.out, header + &shrunk.scenario.to_toml()) {
        return fail(format!("cannot write {}: {e}", args.out.display()));
    }
    eprintln!(
        "shrunk in {} runs: {}",
        shrunk.runs,
        shrunk.steps.join("; ")
    );
    eprintln!("scenario written to {}", args.out.display());
    let report_ = match Sim::from_file(&args.out).and_then(|s| s.run()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    print!("{}", report::human(&report_, true));
    ExitCode::from(report_.outcome().exit_code())
}
