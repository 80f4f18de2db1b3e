//! `fwsim fit`.

use std::fmt::Write as _;
use std::process::ExitCode;

use sim::fit::{parse_target, Fit, Free};
use sim::scenario::SetFlag;
use sim::sweep::SweepSpec;

use crate::{fail, write_drawing, FitArgs};

pub(crate) fn fit(args: FitArgs) -> ExitCode {
    let target = match parse_target(&args.target) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let free: Vec<Free> = match args.free.iter().map(|f| Free::parse(f)).collect() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    if free.len() > 2 {
        return fail(sim::fit::FitError::Count(free.len()));
    }
    let spec = match base_spec(&args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let plot = match crate::output(args.plot.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let threads = crate::threads(args.jobs);
    let result = sim::fit::fit(
        &spec,
        &free,
        target,
        args.points.max(2),
        args.refine,
        threads,
    );
    let result = match result {
        Ok(r) => r,
        Err(e) => return fail(format!("--free: {e}")),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "free": free, "target": target, "fit": result })
        );
    } else {
        print!("{}", table(&result, &free, target, &spec));
    }
    let untested: Vec<String> = result
        .nothing_tested()
        .map(|p| p.values.join(" x "))
        .collect();
    if !untested.is_empty() {
        return fail(format!(
            "{} of {} points tested nothing (no connection reached a verdict): {}; a fit \
             needs a measurement at every point: narrow the ranges, or raise max_duration_ms",
            untested.len(),
            result.points.len(),
            untested.join(", ")
        ));
    }
    let hung: Vec<&sim::fit::Point> = result.liveness_failures().collect();
    if let Some(first) = hung.first() {
        let values: Vec<String> = hung.iter().map(|p| p.values.join(" x ")).collect();
        eprintln!(
            "fwsim: liveness failure at {} of {} points ({}): a connection stalled or was \
             unfinished; such points are never chosen\n  replay: {}",
            hung.len(),
            result.points.len(),
            values.join(", "),
            first.hung_replay.as_deref().unwrap_or("(none)")
        );
        return ExitCode::from(sim::Outcome::LivenessFailure.exit_code());
    }
    if result.chosen.is_none() {
        return fail(format!(
            "no point's 95% interval reaches loss_fraction {:.2}..{:.2} in the ranges given",
            target.0, target.1
        ));
    }
    if let Some(plot) = plot {
        if let Err(e) = write_drawing(plot, sim::fit::plot_svg(&result, &free, target), "plot") {
            return fail(e);
        }
    }
    ExitCode::SUCCESS
}

/// The sweep every point runs: the scenario, seeds and changes, one policy and preset.
fn base_spec(args: &FitArgs) -> Result<SweepSpec, String> {
    let sets = args.knobs.sets()?;
    Ok(SweepSpec {
        scenario: args.scenario.clone(),
        seeds: sim::sweep::parse_seeds(&args.seeds).map_err(|e| e.to_string())?,
        policies: Vec::new(),
        presets: Vec::new(),
        vary: None,
        sets,
    })
}

/// The points, the region and the chosen point with the command that reproduces it.
fn table(fit: &Fit, free: &[Free], target: (f64, f64), spec: &SweepSpec) -> String {
    let mut out = String::new();
    let keys: Vec<&str> = free.iter().map(|f| f.key.as_str()).collect();
    let _ = writeln!(
        out,
        "{:>28} {:>7} {:>7} {:>8} {:>15}  target {:.2}..{:.2}",
        keys.join(" x "),
        "conns",
        "lost",
        "loss",
        "95% CI (Wilson)",
        target.0,
        target.1
    );
    for p in &fit.points {
        let _ = writeln!(
            out,
            "{:>28} {:>7} {:>7} {:>8.3} {:>15}  {}",
            p.values.join(" x "),
            p.connections,
            p.violations,
            p.loss,
            format!("{:.3}-{:.3}", p.interval.0, p.interval.1),
            match p.ineligible() {
                Some(why) => why.to_string(),
                None if p.in_region => "in region".into(),
                None => String::new(),
            }
        );
    }
    let region: Vec<String> = fit
        .points
        .iter()
        .filter(|p| p.in_region)
        .map(|p| p.values.join(" x "))
        .collect();
    let _ = writeln!(
        out,
        "region: {}",
        if region.is_empty() {
            "none".into()
        } else {
            region.join(", ")
        }
    );
    if let Some(c) = &fit.chosen {
        let mut cmd = format!(
            "cargo run --release -p sim --bin fwsim -- sweep {} --seeds {}..{} --policy {}",
            spec.scenario.display(),
            spec.seeds.first().copied().unwrap_or(1),
            spec.seeds.last().copied().unwrap_or(1),
            policy_of(spec)
        );
        for set in spec.sets.iter().filter(|s| s.flag != SetFlag::Policy) {
            let _ = write!(cmd, " {set}");
        }
        for (f, v) in free.iter().zip(&c.values) {
            let _ = write!(cmd, " --set '{}={v}'", f.key);
        }
        let _ = writeln!(
            out,
            "chosen: {} (loss {:.3}, 95% CI {:.3}-{:.3})\nreproduce: {cmd}",
            c.values.join(" x "),
            c.loss,
            c.interval.0,
            c.interval.1
        );
    }
    out
}

/// The policy the fit ran under (the changes', else the scenario's).
fn policy_of(spec: &SweepSpec) -> String {
    sim::Sim::from_file_with(&spec.scenario, &spec.sets)
        .map_or("both".into(), |s| s.scenario().device.policy.name().into())
}
