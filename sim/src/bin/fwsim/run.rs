//! `fwsim run` and `fwsim shrink`.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use sim::output::OutputFile;
use sim::{report, RunError, RunOptions, Sim};

use crate::{fail, output, write_drawing, RunArgs, ShrinkArgs};

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
    // Every path checked before the run; each file is written whole when its content is.
    let (timeline, trace, saved) = match (
        output(args.timeline.as_deref()),
        output(args.trace.as_deref()),
        output(args.save_scenario.as_deref()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return fail(e),
    };
    // The captures stream as the run goes, so they are written in place.
    for (file, out) in [
        (&args.pcap, &mut options.pcap),
        (&args.pcap_air, &mut options.pcap_air),
    ] {
        if let Some(file) = file {
            match File::create(file) {
                Ok(f) => *out = Some(Box::new(BufWriter::new(f))),
                Err(e) => return fail(format!("cannot create {}: {e}", file.display())),
            }
        }
    }
    if let (Some(saved), Some(path)) = (saved, &args.save_scenario) {
        let header = format!(
            "# Resolved from {} ({}); rerun: fwsim run {}\n",
            args.which.scenario.display(),
            sim.replay(sim.scenario().seed),
            path.display()
        );
        if let Err(e) = saved.write((header + &sim.scenario().to_toml()).as_bytes()) {
            return fail(e);
        }
    }
    let (bar, report_progress) = crate::progress::run_bar();
    options.progress = Some(report_progress);
    let report_ = sim.run_with(options);
    bar.finish_and_clear();
    let report_ = match report_ {
        Ok(r) => r,
        Err(e) => return fail(capture_error(&args, e)),
    };
    if let (Some(file), Some(lines)) = (trace, &report_.trace_lines) {
        if let Err(e) = file.write((lines.join("\n") + "\n").as_bytes()) {
            return fail(e);
        }
    }
    if let (Some(file), Some(events)) = (timeline, &report_.events) {
        let svg = sim::timeline::timeline_svg(&report_, events);
        if let Err(e) = write_drawing(file, svg, "timeline") {
            return fail(e);
        }
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
    // Checked now, written only once a smaller failing scenario is found.
    let out = match OutputFile::create(&args.out) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
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
    if let Err(e) = out.write((header + &shrunk.scenario.to_toml()).as_bytes()) {
        return fail(e);
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
