//! `fwsim sweep` and `fwsim merge`.

use std::process::ExitCode;

use sim::output::OutputFile;
use sim::Outcome;

use crate::{fail, output, write_drawing, MergeArgs, SweepArgs};

/// The sweep `args` describe.
fn sweep_spec(args: &SweepArgs) -> Result<sim::sweep::SweepSpec, String> {
    let seeds = sim::sweep::parse_seeds(&args.seeds).map_err(|e| e.to_string())?;
    let sets = args.changes.sets()?;
    let policies: Vec<String> = match args.policy.as_str() {
        // The scenario's own rules (a stack's buggy preset) against the fixed ones.
        "both" => {
            let own = sim::scenario::load(&args.scenario, &sets).map_err(|e| e.to_string())?;
            let own = own.device.policy.name().to_string();
            if own == "fixed" {
                vec!["legacy".into(), own]
            } else {
                vec![own, "fixed".into()]
            }
        }
        p => vec![p.into()],
    };
    let presets: Vec<String> = match args.preset.as_deref() {
        Some("all") => sim::link::LinkParams::PRESETS.map(String::from).to_vec(),
        Some(p) => vec![p.into()],
        None => Vec::new(),
    };
    let vary = match args.vary.as_deref().map(|v| (v, v.split_once('='))) {
        Some((_, Some((k, vs)))) if !vs.is_empty() && !k.trim().is_empty() => Some((
            k.trim().to_string(),
            vs.split(',').map(|x| x.trim().to_string()).collect(),
        )),
        Some((v, _)) => return Err(format!("--vary {v:?}: expected KEY=V1,V2,...")),
        None => None,
    };
    Ok(sim::sweep::SweepSpec {
        scenario: args.scenario.clone(),
        seeds,
        policies,
        presets,
        vary,
        sets,
    })
}

/// A progress bar for `fwsim sweep`.
pub(crate) fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub(crate) fn sweep(args: SweepArgs) -> ExitCode {
    let spec = match sweep_spec(&args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if args.plot.is_some() && spec.vary.is_none() {
        return fail("--plot draws loss against --vary values: give --vary too");
    }
    let shard = match args.shard.as_deref().map(sim::sweep::Shard::parse) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return fail(e),
        None => None,
    };
    if shard.is_some() != args.out.is_some() {
        return fail("--shard K/N and --out FILE go together");
    }
    let threads = crate::threads(args.jobs);
    let sweep = match sim::sweep::Sweep::plan(spec.clone()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Every input checked first, then the paths; the files are written when complete.
    let (plot, out) = match (output(args.plot.as_deref()), output(args.out.as_deref())) {
        (Ok(p), Ok(o)) => (p, o),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let bar = progress_bar();
    let results = sweep.run(shard, threads, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let results = match results {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let (Some(shard), Some(out)) = (shard, out) {
        return write_shard(&sweep.shard_file(shard, results), out);
    }
    let cells = sim::sweep::fold(&spec, results);
    report_cells(&cells, &spec, args.json, plot)
}

/// Writes a shard's results for `fwsim merge`.
fn write_shard(file: &sim::sweep::ShardFile, out: OutputFile) -> ExitCode {
    let text = match serde_json::to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let path = out.path().to_path_buf();
    if let Err(e) = out.write(text.as_bytes()) {
        return fail(e);
    }
    eprintln!(
        "shard {}/{}: {} runs written to {}; merge all shards with `fwsim merge`",
        file.shard.index,
        file.shard.of,
        file.results.len(),
        path.display()
    );
    ExitCode::SUCCESS
}

pub(crate) fn merge(args: MergeArgs) -> ExitCode {
    let mut files = Vec::new();
    for path in &args.files {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(f) => files.push((path.clone(), f)),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        }
    }
    let (spec, cells) = match sim::sweep::merge(files) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let plot = match output(args.plot.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    report_cells(&cells, &spec, args.json, plot)
}

/// Prints a sweep's cells (table or JSON), draws the plot, and gives the exit status.
pub(crate) fn report_cells(
    cells: &[sim::sweep::Cell],
    spec: &sim::sweep::SweepSpec,
    json: bool,
    plot: Option<OutputFile>,
) -> ExitCode {
    if json {
        let rows: Vec<serde_json::Value> = cells
            .iter()
            .map(|c| {
                serde_json::json!({
                    "cell": c,
                    "loss_fraction": c.loss_fraction(),
                    "loss_ci95_wilson": c.loss_interval(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        print!("{}", sweep_table(cells, spec));
    }
    if let (Some(out), Some((key, _))) = (plot, &spec.vary) {
        if let Err(e) = write_drawing(out, sim::sweep::plot_svg(cells, key), "plot") {
            return fail(e);
        }
    }
    let sum = |f: fn(&sim::sweep::Cell) -> u64| cells.iter().map(f).sum::<u64>();
    let mut outcome = Outcome::of(
        sum(|c| c.violations),
        sum(|c| c.stalled + c.unfinished),
        sum(|c| c.tested),
    );
    // A cell that tested nothing proves nothing for its policy, preset or value: the sweep
    // cannot pass (silent loss or a hang elsewhere still says so first).
    let untested: Vec<&sim::sweep::Cell> = cells.iter().filter(|c| c.tested == 0).collect();
    if outcome == Outcome::NoSilentLoss && !untested.is_empty() {
        outcome = Outcome::NothingTested;
    }
    match outcome {
        Outcome::NothingTested if untested.len() < cells.len() => {
            for c in &untested {
                eprintln!(
                    "fwsim: cell {} tested nothing: no connection reached a verdict",
                    c.label()
                );
            }
        }
        Outcome::NothingTested => {
            eprintln!("fwsim: the sweep tested nothing: no connection reached a verdict")
        }
        Outcome::LivenessFailure => eprintln!(
            "fwsim: liveness failure: {} connections stalled, {} unfinished (no silent loss)",
            sum(|c| c.stalled),
            sum(|c| c.unfinished)
        ),
        _ => {}
    }
    ExitCode::from(outcome.exit_code())
}

/// The sweep's table: a row per cell, then each cell's failing seeds with a replay.
fn sweep_table(cells: &[sim::sweep::Cell], spec: &sim::sweep::SweepSpec) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let key = spec.vary.as_ref().map(|(k, _)| k.as_str());
    let key_width = key.map_or(0, |k| k.len().max(8));
    let name = |v: &Option<String>| v.clone().unwrap_or_else(|| "(file)".into());
    let _ = write!(out, "{:>7} {:>10}", "policy", "preset");
    if let Some(k) = key {
        let _ = write!(out, " {k:>key_width$}");
    }
    let _ = writeln!(
        out,
        " {:>6} {:>10} {:>7} {:>10} {:>8} {:>17} {:>8}",
        "runs", "runs lost", "conns", "lost conns", "loss %", "95% CI (Wilson)", "stalled"
    );
    for c in cells {
        let _ = write!(out, "{:>7} {:>10}", name(&c.policy), name(&c.preset));
        if key.is_some() {
            let _ = write!(out, " {:>key_width$}", name(&c.value));
        }
        let (lo, hi) = c.loss_interval();
        let _ = writeln!(
            out,
            " {:>6} {:>10} {:>7} {:>10} {:>8.2} {:>17} {:>8}",
            c.runs,
            c.runs_with_loss,
            c.connections,
            c.violations,
            c.loss_fraction() * 100.0,
            format!("{:.1}-{:.1}", lo * 100.0, hi * 100.0),
            // Unfinished connections are liveness failures too: counted with the stalls.
            c.stalled + c.unfinished
        );
    }
    for c in cells {
        let what = [
            ("silent loss", c.runs_with_loss, &c.failing_seeds, &c.replay),
            (
                "liveness failure (stalled or unfinished)",
                c.runs_hung,
                &c.hung_seeds,
                &c.hung_replay,
            ),
        ];
        for (label, runs, seeds, replay) in what.into_iter().filter(|w| w.1 > 0) {
            let shown: Vec<String> = seeds.iter().take(5).map(u64::to_string).collect();
            let more = if runs > 5 { ", ..." } else { "" };
            let _ = writeln!(
                out,
                "{label}: {}: {} of {} runs (seeds {}{more})\n  replay: {}",
                c.label(),
                runs,
                c.runs,
                shown.join(", "),
                replay.as_deref().unwrap_or_default()
            );
        }
    }
    out
}
