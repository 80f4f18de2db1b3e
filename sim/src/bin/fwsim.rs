//! `fwsim`: run firmware TCP scenarios in simulated time and report silent loss.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sim::fuzz::CrashTarget;
use sim::scenario::{Set, SetFlag};
use sim::{report, Outcome, RunOptions, Sim};
use tracing_subscriber::EnvFilter;

/// Deterministic network simulator for embedded firmware TCP code.
///
/// fwsim runs a firmware TCP server (smoltcp plus a model of the vendor socket layer) against
/// simulated peers over a seeded WLAN link model, and reports every connection whose
/// acknowledged bytes never reached the application ("silent loss").
///
/// Exit status: 0 connections were tested and none was lost silently; 1 silent loss found;
/// 2 usage or input error, or the run (or sweep) tested nothing: no connection reached a
/// verdict. Set RUST_LOG=fwsim=debug for a trace of every event.
#[derive(Parser)]
#[command(
    name = "fwsim",
    version,
    about = "Deterministic network simulator for embedded firmware TCP code.",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Changes to the scenario, shared by `run` and `sweep`.
#[derive(Args)]
struct Changes {
    /// loopback (both stacks in one event loop) or turmoil (each host a turmoil host;
    /// needed for `[[fault]]` actions). Default: the scenario's.
    #[arg(long, value_parser = ["loopback", "turmoil"])]
    backend: Option<String>,
    /// Override any scenario field, e.g. link.loss_p=0.01 or peer.0.count=50; KEY+=VALUE
    /// appends to a list (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Add an injector, a named timing situation (repeatable; the README's "Injectors"
    /// table says what each arranges).
    #[arg(long = "inject", value_name = "NAME", value_parser = injector_names())]
    injectors: Vec<String>,
}

impl Changes {
    fn sets(&self) -> Result<Vec<Set>, String> {
        let mut sets = Vec::new();
        for s in &self.sets {
            sets.push(Set::parse(SetFlag::Set, s).map_err(|e| e.to_string())?);
        }
        sets.extend(self.injectors.iter().map(|i| Set::flag(SetFlag::Inject, i)));
        if let Some(b) = &self.backend {
            sets.push(Set::flag(SetFlag::Backend, b));
        }
        Ok(sets)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario with one seed and report each connection.
    ///
    /// Examples:
    ///   fwsim run scenarios/forum.toml
    ///   fwsim run scenarios/forum.toml --policy fixed --preset wlan-bad --seed 7
    ///   fwsim run scenarios/multi-client.toml --set device.worker_delay_max_us=2000 --json
    ///   fwsim run scenarios/device-restart.toml --backend turmoil
    ///   fwsim run scenarios/forum.toml --seed 3 --save-scenario forum-3.toml
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
    /// Run one scenario over many seeds (and presets, policies, values of one parameter) and
    /// report how often connections are silently lost.
    ///
    /// Runs are seeded, so a sweep is as reproducible as a run. Every failing seed is listed
    /// with the command that replays it.
    ///
    /// Examples:
    ///   fwsim sweep scenarios/forum.toml --seeds 100 --policy both --preset all
    ///   fwsim sweep scenarios/forum.toml --seeds 50 --plot loss.svg \
    ///       --vary device.loop_period_us=250,500,1000,2000,5000
    #[command(verbatim_doc_comment)]
    Sweep(SweepArgs),
    /// Merge the shard files of one sweep into the table (or JSON) the whole sweep gives.
    ///
    /// Example (two machines, then one merge):
    ///   fwsim sweep scenarios/forum.toml --seeds 1000 --shard 1/2 --out shard-1.json
    ///   fwsim sweep scenarios/forum.toml --seeds 1000 --shard 2/2 --out shard-2.json
    ///   fwsim merge shard-1.json shard-2.json
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// Shrink a failing run: the smallest scenario (fewer workloads, connections, bytes,
    /// faults, injectors) in which a connection still fails the same way, with the same seed.
    ///
    /// Example:
    ///   fwsim shrink scenarios/forum.toml --policy legacy --out forum-min.toml
    #[command(verbatim_doc_comment)]
    Shrink(ShrinkArgs),
    /// Keep a fuzz crash: the input becomes a regression that `cargo test` replays (it passes
    /// once the bug is fixed); for the scenario targets, also a scenario file, which is run.
    ///
    /// scenario: copied to fuzz/regressions/scenario/; scenario_legacy (a crash there is the
    /// field bug, found): copied to fuzz/bug-examples/scenario_legacy/, replayed as an example
    /// that must lose under legacy and not under fixed; ingress, wiring_ops, scenario_file:
    /// copied to fuzz/regressions/TARGET/.
    ///
    /// Example:
    ///   fwsim from-crash fuzz/artifacts/scenario/crash-1a2b... --out scenarios/regressions/r1.toml
    #[command(verbatim_doc_comment)]
    FromCrash {
        /// The input file libFuzzer wrote (crash-*, or any corpus file).
        input: PathBuf,
        /// The target that crashed.
        #[arg(long, default_value = "scenario", value_parser = CrashTarget::NAMES)]
        target: String,
        /// Where to write the scenario file (scenario targets).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Do not copy the input into the repository.
        #[arg(long)]
        no_regression: bool,
    },
}

/// Which run: the scenario, its seed and changes (`run` and `shrink`).
#[derive(Args)]
struct Which {
    /// Scenario file (TOML), e.g. scenarios/forum.toml.
    scenario: PathBuf,
    /// Seed of every random draw in the run (link, peers, device timing). Default: the file's.
    #[arg(long)]
    seed: Option<u64>,
    /// Socket rules of the device: legacy (Device OS 0.5.3) or fixed.
    #[arg(long, value_parser = ["legacy", "fixed"])]
    policy: Option<String>,
    /// Link preset (ideal, wlan-good, wlan-busy, wlan-bad): the link starts over from it.
    #[arg(long, value_parser = sim::link::LinkParams::PRESETS)]
    preset: Option<String>,
    #[command(flatten)]
    changes: Changes,
}

impl Which {
    /// The simulation these arguments name.
    fn sim(&self) -> Result<Sim, String> {
        let mut sets = self.changes.sets()?;
        sets.extend(self.policy.iter().map(|p| Set::flag(SetFlag::Policy, p)));
        sets.extend(self.preset.iter().map(|p| Set::flag(SetFlag::Preset, p)));
        let sim = Sim::from_file_with(&self.scenario, &sets).map_err(|e| e.to_string())?;
        Ok(match self.seed {
            Some(seed) => sim.seed(seed),
            None => sim,
        })
    }
}

/// Arguments of `fwsim shrink`.
#[derive(Args)]
struct ShrinkArgs {
    #[command(flatten)]
    which: Which,
    /// Where to write the smallest scenario that still fails.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Give up after this many runs.
    #[arg(long, default_value = "500")]
    max_runs: u64,
}

/// Arguments of `fwsim run`.
#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    which: Which,
    /// Write every packet the device sent or received to this pcap file (raw IP).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Write the event trace (one line per event; its hash is `trace`) to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Draw the run as a timeline to this SVG file: a row per connection (losses first), a mark
    /// for SYN, handshake, data and FIN reaching the device, worker notices, accept, reads,
    /// stop/close, RST and bytes freed unread.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
    /// Write the scenario as it ran (every default and change filled in) to this file:
    /// `fwsim run FILE` reruns it bit for bit, `--seed N` with another seed.
    #[arg(long, value_name = "FILE")]
    save_scenario: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Show every connection, not only losses and the first ten.
    #[arg(long)]
    all: bool,
}

/// Arguments of `fwsim sweep`.
#[derive(Args)]
struct SweepArgs {
    /// Scenario file (TOML).
    scenario: PathBuf,
    /// Seeds: N (1..=N), A..B, or a,b,c.
    #[arg(long, default_value = "100")]
    seeds: String,
    /// legacy, fixed, or both.
    #[arg(long, default_value = "both", value_parser = ["legacy", "fixed", "both"])]
    policy: String,
    /// A preset name, or `all` for ideal, wlan-good, wlan-busy and wlan-bad.
    /// Default: the scenario's own link.
    #[arg(long)]
    preset: Option<String>,
    /// Vary one scenario field over values, e.g. device.loop_period_us=250,1000,5000.
    #[arg(long, value_name = "KEY=V1,V2,...")]
    vary: Option<String>,
    #[command(flatten)]
    changes: Changes,
    /// Draw loss against the --vary values to this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Threads that run the seeds. Default: every core. The output is the same for any count.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(usize))]
    jobs: Option<usize>,
    /// Run only shard K of N (runs K-1, K-1+N, ...) and write its results to --out, for
    /// `fwsim merge`: split one sweep across machines.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Where a shard writes its results (with --shard).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `fwsim merge`.
#[derive(Args)]
struct MergeArgs {
    /// The shard files of one sweep (`fwsim sweep ... --shard K/N --out FILE`), all N of them.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Draw loss against the --vary values to this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// A usage or input error: printed, exit 2.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("fwsim: {message}");
    ExitCode::from(2)
}

/// Creates (truncates) an output file now, so a bad path fails before any work.
fn create(path: &Path) -> Result<File, String> {
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn run(args: RunArgs) -> ExitCode {
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
    if let Some(file) = &args.pcap {
        match create(file) {
            Ok(f) => options.pcap = Some(Box::new(BufWriter::new(f))),
            Err(e) => return fail(e),
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
        Err(e) => return fail(e),
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

fn shrink(args: ShrinkArgs) -> ExitCode {
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

/// The sweep `args` describe.
fn sweep_spec(args: &SweepArgs) -> Result<sim::sweep::SweepSpec, String> {
    let seeds = sim::sweep::parse_seeds(&args.seeds).map_err(|e| e.to_string())?;
    let sets = args.changes.sets()?;
    let policies: Vec<String> = match args.policy.as_str() {
        "both" => vec!["legacy".into(), "fixed".into()],
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
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn sweep(args: SweepArgs) -> ExitCode {
    let spec = match sweep_spec(&args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if args.plot.is_some() && spec.vary.is_none() {
        return fail("--plot draws loss against --vary values: give --vary too");
    }
    for out in [&args.plot, &args.out].into_iter().flatten() {
        if let Err(e) = create(out) {
            return fail(e);
        }
    }
    let shard = match args.shard.as_deref().map(sim::sweep::Shard::parse) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return fail(e),
        None => None,
    };
    if shard.is_some() != args.out.is_some() {
        return fail("--shard K/N and --out FILE go together");
    }
    let threads = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let sweep = match sim::sweep::Sweep::plan(spec.clone()) {
        Ok(s) => s,
        Err(e) => return fail(e),
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
    if let (Some(shard), Some(out)) = (shard, &args.out) {
        let file = sim::sweep::ShardFile {
            spec,
            jobs: sweep.jobs(),
            shard,
            results,
        };
        return write_shard(&file, out);
    }
    let cells = sim::sweep::fold(&spec, results);
    report_cells(&cells, &spec, args.json, args.plot.as_deref())
}

/// Writes a shard's results for `fwsim merge`.
fn write_shard(file: &sim::sweep::ShardFile, out: &Path) -> ExitCode {
    let text = match serde_json::to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if let Err(e) = std::fs::write(out, text) {
        return fail(format!("cannot write {}: {e}", out.display()));
    }
    eprintln!(
        "shard {}/{}: {} runs written to {}; merge all shards with `fwsim merge`",
        file.shard.index,
        file.shard.of,
        file.results.len(),
        out.display()
    );
    ExitCode::SUCCESS
}

fn merge(args: MergeArgs) -> ExitCode {
    let mut files = Vec::new();
    for path in &args.files {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(f) => files.push(f),
            Err(e) => return fail(format!("{}: {e}", path.display())),
        }
    }
    let (spec, cells) = match sim::sweep::merge(files) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    if let Some(plot) = &args.plot {
        if let Err(e) = create(plot) {
            return fail(e);
        }
    }
    report_cells(&cells, &spec, args.json, args.plot.as_deref())
}

/// Prints a sweep's cells (table or JSON), draws the plot, and gives the exit status.
fn report_cells(
    cells: &[sim::sweep::Cell],
    spec: &sim::sweep::SweepSpec,
    json: bool,
    plot: Option<&Path>,
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
        if let Err(e) = sim::sweep::plot_svg(cells, key, out) {
            return fail(format!("plot: {e}"));
        }
        eprintln!("plot written to {}", out.display());
    }
    let outcome = if cells.iter().any(|c| c.violations > 0) {
        Outcome::SilentLoss
    } else if cells.iter().all(|c| c.tested == 0) {
        eprintln!("fwsim: the sweep tested nothing: no connection reached a verdict");
        Outcome::NothingTested
    } else {
        Outcome::NoSilentLoss
    };
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
        " {:>6} {:>10} {:>7} {:>10} {:>8} {:>17}",
        "runs", "runs lost", "conns", "lost conns", "loss %", "95% CI (Wilson)"
    );
    for c in cells {
        let _ = write!(out, "{:>7} {:>10}", name(&c.policy), name(&c.preset));
        if key.is_some() {
            let _ = write!(out, " {:>key_width$}", name(&c.value));
        }
        let (lo, hi) = c.loss_interval();
        let _ = writeln!(
            out,
            " {:>6} {:>10} {:>7} {:>10} {:>8.2} {:>17}",
            c.runs,
            c.runs_with_loss,
            c.connections,
            c.violations,
            c.loss_fraction() * 100.0,
            format!("{:.1}-{:.1}", lo * 100.0, hi * 100.0)
        );
    }
    for c in cells.iter().filter(|c| !c.failing_seeds.is_empty()) {
        let shown: Vec<String> = c.failing_seeds.iter().take(5).map(u64::to_string).collect();
        let more = if c.runs_with_loss > 5 { ", ..." } else { "" };
        let _ = writeln!(
            out,
            "silent loss: {} / {}{}: {} of {} runs (seeds {}{more})\n  replay: {}",
            name(&c.policy),
            name(&c.preset),
            c.value
                .as_ref()
                .map(|v| format!(" / {v}"))
                .unwrap_or_default(),
            c.runs_with_loss,
            c.runs,
            shown.join(", "),
            c.replay.as_deref().unwrap_or_default()
        );
    }
    out
}

fn from_crash(input: PathBuf, target: &str, out: Option<PathBuf>, no_regression: bool) -> ExitCode {
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

/// The names `--inject` accepts.
fn injector_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(sim::scenario::Injector::ALL.map(|i| i.name()))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Sweep(args) => sweep(args),
        Command::Merge(args) => merge(args),
        Command::Shrink(args) => shrink(args),
        Command::FromCrash {
            input,
            target,
            out,
            no_regression,
        } => from_crash(input, &target, out, no_regression),
    }
}
