//! `fwsim`: run firmware TCP scenarios in simulated time and report silent loss.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sim::fuzz::CrashTarget;
use sim::output::OutputFile;
use sim::scenario::{Set, SetFlag};
use sim::Sim;
use tracing_subscriber::EnvFilter;

mod crash;
mod fit;
mod progress;
mod run;
mod serve;
mod sweep;

/// Deterministic network simulator for embedded firmware TCP code.
///
/// fwsim runs a firmware TCP server (smoltcp plus a model of the vendor socket layer) against
/// simulated peers over a seeded WLAN link model, and reports every connection whose
/// acknowledged bytes never reached the application ("silent loss").
///
/// Exit status (run, sweep, merge, serve; fit and from-crash as their help says):
///   0  connections were tested; each was delivered or failed visibly to the peer (refused,
///      reset), and every one finished
///   1  silent loss: acknowledged bytes or a completed handshake never reached the app
///   2  usage or input error, or nothing tested: no connection reached a verdict
///   3  liveness failure only: a connection stalled (no progress for liveness_ms while it
///      waited on the device) or was unfinished when the run stopped
/// Safety beats liveness: a run with both exits 1.
///
/// Output files other than the captures (--pcap, --pcap-air) are written whole or not at all:
/// a failed command leaves
/// none half-written. Set RUST_LOG=fwsim=debug for a trace of every event.
#[derive(Parser)]
#[command(
    verbatim_doc_comment,
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
    /// Each shard carries the scenario it ran, resolved (every default and change applied):
    /// shards of different scenarios (a file edited between them) are refused with exit 2,
    /// naming both files and the first field that differs. The path may differ between
    /// machines.
    ///
    /// Example (two machines, then one merge):
    ///   fwsim sweep scenarios/forum.toml --seeds 1000 --shard 1/2 --out shard-1.json
    ///   fwsim sweep scenarios/forum.toml --seeds 1000 --shard 2/2 --out shard-2.json
    ///   fwsim merge shard-1.json shard-2.json
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// Fit one or two timing parameters no source pins down to a field figure: a grid of runs
    /// over the parameters' ranges (every seed at each point), refined where the loss crosses
    /// the target; prints the region whose 95% interval overlaps the target and the point
    /// nearest its middle, with the command that reproduces it.
    ///
    /// A point where no connection reached a verdict shows "nothing tested", is never in the
    /// region nor chosen, and makes the fit exit 2; a point where a connection stalled or was
    /// unfinished shows "liveness failure", is never chosen either, and makes it exit 3.
    ///
    /// Example:
    ///   fwsim fit scenarios/forum.toml --policy legacy --target loss_fraction=0.40..0.50 \
    ///       --free device.worker_delay_max_us=100..10000 --seeds 50 --plot fit.svg
    #[command(verbatim_doc_comment)]
    Fit(FitArgs),
    /// Shrink a failing run: the smallest scenario (fewer workloads, connections, bytes,
    /// faults, injectors) in which a connection still fails the same way, with the same seed.
    ///
    /// --out is written only when a smaller failing scenario is found; a run that loses
    /// nothing exits 2 and leaves --out as it was.
    ///
    /// Example:
    ///   fwsim shrink scenarios/forum.toml --policy legacy --out forum-min.toml
    #[command(verbatim_doc_comment)]
    Shrink(ShrinkArgs),
    /// Run the firmware core live on a TUN interface, on the wall clock, against real
    /// clients, until Ctrl-C or SIGTERM; then report each connection (judged from the device's
    /// events and the host's packets as they crossed the interface). Needs root (or
    /// CAP_NET_ADMIN) and /dev/net/tun.
    ///
    /// Each connection is judged once its verdict is final (the host finished it and the
    /// device let it go) and then forgotten, so memory does not grow with the connections
    /// served: the report counts every connection and lists the first 1,000 failed ones
    /// (lost, stalled, unfinished) and the first ten others.
    /// When serve ends, connections still open are judged as they stand and the host's side
    /// of each is reset, so no client hangs. A closed stdout (serve --json | head) ends serve
    /// as Ctrl-C does, with the report on stderr; --pcap is written through every half second,
    /// so a killed serve leaves a readable capture.
    ///
    /// Exit status: as `fwsim run`, from the report's outcome (see `fwsim --help`: 1 silent
    /// loss, 2 nothing tested, ...); 2 also for an error, such as the interface deleted while
    /// serving.
    ///
    /// Examples:
    ///   sudo fwsim serve --app forum --policy legacy --tun fwsim0 --addr 10.77.0.2/24
    ///   echo -e "\xaa\x05\xfe\x93\x00\x00\x01\x41" | nc -N 10.77.0.2 6000
    ///   sudo fwsim serve --app tcp-server --policy fixed --control 127.0.0.1:7070
    ///   curl -d '{"cmd":"startServer","id":"e1","type":"EchoServer","port":1234}' \
    ///       http://127.0.0.1:7070/
    #[command(verbatim_doc_comment)]
    Serve(serve::ServeArgs),
    /// Keep a fuzz crash: the input becomes a regression that `cargo test` replays (it passes
    /// once the bug is fixed); for the scenario targets, also a scenario file, which is run.
    ///
    /// The input is first run through its target as the fuzzer did: one that does not fail it
    /// (or that the target skips: an empty file, a scenario input under 16 bytes, text that is
    /// not UTF-8 for scenario_file) is refused with exit 2, and nothing is written.
    ///
    /// scenario: copied to fuzz/regressions/scenario/; scenario_legacy (a crash there is the
    /// field bug, found): copied to fuzz/bug-examples/scenario_legacy/, replayed as an example
    /// that must lose under legacy and not under fixed; ingress, wiring_ops, scenario_file:
    /// copied to fuzz/regressions/TARGET/. Those folders are in the repository fwsim was built
    /// from (or --repo DIR), wherever it runs; the copy's absolute path is printed.
    ///
    /// Exit status: the scenario's run for the scenario targets (1: it still loses), else 0;
    /// 2 if the input is no crash of the target or a file cannot be written.
    ///
    /// Example:
    ///   fwsim from-crash fuzz/artifacts/scenario/crash-1a2b... --out scenarios/regressions/r1.toml
    #[command(verbatim_doc_comment)]
    FromCrash(FromCrashArgs),
}

/// Arguments of `fwsim from-crash`.
#[derive(Args)]
struct FromCrashArgs {
    /// The input file libFuzzer wrote (crash-*, or any corpus file).
    input: PathBuf,
    /// The target that crashed.
    #[arg(long, default_value = "scenario", value_parser = CrashTarget::NAMES)]
    target: String,
    /// Where to write the scenario file (scenario targets only).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The repository to keep the input in (it holds fuzz/). Default: the one this fwsim was
    /// built from.
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// Do not copy the input into the repository.
    #[arg(long, conflicts_with = "repo")]
    no_regression: bool,
}

/// Which run: the scenario, its seed and changes (`run` and `shrink`).
#[derive(Args)]
struct Which {
    /// Scenario file (TOML), e.g. scenarios/forum.toml.
    scenario: PathBuf,
    /// Seed of every random draw in the run (link, peers, device timing). Default: the file's.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    knobs: Knobs,
}

/// The values of `fwsim sweep --policy`: every stack preset, and `both`.
fn sweep_policies() -> clap::builder::PossibleValuesParser {
    let mut names: Vec<&'static str> = firmware_core::Policy::NAMES.to_vec();
    names.push("both");
    clap::builder::PossibleValuesParser::new(names)
}

/// One policy and preset, and the other changes (`run`, `shrink` and `fit`).
#[derive(Args)]
struct Knobs {
    /// Socket rules and device defaults of a stack preset: legacy (Device OS 0.5.3), fixed,
    /// esp8266-arduino-2.6, esp8266-arduino-2.7, esp32-arduino-2.0, electron-0.5, photon-0.4,
    /// bk72xx-backlog0, smoltcp-0.4. Default: the scenario's.
    #[arg(long, value_parser = firmware_core::Policy::NAMES)]
    policy: Option<String>,
    /// Link preset (ideal, wlan-good, wlan-busy, wlan-bad): the link starts over from it.
    /// Default: the scenario's link.
    #[arg(long, value_parser = sim::link::LinkParams::PRESETS)]
    preset: Option<String>,
    #[command(flatten)]
    changes: Changes,
}

impl Knobs {
    /// The changes these flags stand for.
    fn sets(&self) -> Result<Vec<Set>, String> {
        let mut sets = self.changes.sets()?;
        sets.extend(self.policy.iter().map(|p| Set::flag(SetFlag::Policy, p)));
        sets.extend(self.preset.iter().map(|p| Set::flag(SetFlag::Preset, p)));
        Ok(sets)
    }
}

impl Which {
    /// The simulation these arguments name.
    fn sim(&self) -> Result<Sim, String> {
        let sets = self.knobs.sets()?;
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
    /// Where to write the smallest scenario that still fails (only if one is found).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Give up after this many runs (1..=100000).
    #[arg(long, default_value = "500", value_parser = clap::value_parser!(u64).range(1..=100_000))]
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
    /// Write what reached each side to this pcapng file: interfaces `device` and `peer`; a
    /// packet the link dropped is on its sender's side only, commented "dropped by the link:
    /// CAUSE" (tshark: `-Y frame.comment`).
    #[arg(long, value_name = "FILE.pcapng")]
    pcap_air: Option<PathBuf>,
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
    /// A stack preset (see `fwsim run --help`), or both: the scenario's own rules and fixed
    /// (legacy and fixed when the scenario runs fixed).
    #[arg(long, default_value = "both", value_parser = sweep_policies())]
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
    /// Threads that run the seeds (1..=1024). Default: every core. The output is the same for
    /// any count.
    #[arg(long, value_name = "N", value_parser = jobs_in_range)]
    jobs: Option<usize>,
    /// Run only shard K of N (runs K-1, K-1+N, ...) and write its results to --out, for
    /// `fwsim merge`: split one sweep across machines.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// Where a shard writes its results and the resolved scenario (with --shard).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Arguments of `fwsim fit`.
#[derive(Args)]
struct FitArgs {
    /// Scenario file (TOML).
    scenario: PathBuf,
    /// The figure to reach: loss_fraction=LO..HI (the share of connections silently lost).
    #[arg(long, value_name = "loss_fraction=LO..HI")]
    target: String,
    /// A free parameter and its range, KEY=LO..HI (once or twice).
    #[arg(long = "free", value_name = "KEY=LO..HI", required = true)]
    free: Vec<String>,
    /// Seeds at each point: N (1..=N), A..B, or a,b,c.
    #[arg(long, default_value = "50")]
    seeds: String,
    #[command(flatten)]
    knobs: Knobs,
    /// Grid points per parameter (2..=101).
    #[arg(long, default_value = "9", value_parser = |v: &str| usize_in(v, 2, 101))]
    points: usize,
    /// Rounds of refinement around where the loss crosses the target, one parameter (0..=10).
    #[arg(long, default_value = "3", value_parser = |v: &str| usize_in(v, 0, 10))]
    refine: usize,
    /// Threads (1..=1024; default: every core).
    #[arg(long, value_name = "N", value_parser = jobs_in_range)]
    jobs: Option<usize>,
    /// Draw the response with the target band to this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// A whole number in `lo..=hi` (clap turns the error into exit 2, naming the flag).
fn usize_in(v: &str, lo: usize, hi: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number in {lo}..={hi}")),
    }
}

/// `--jobs`: 1..=1024 threads.
fn jobs_in_range(v: &str) -> Result<usize, String> {
    usize_in(v, 1, 1024)
}

/// Threads to use: `jobs`, or every core.
fn threads(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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
    // A closed stderr is no reason to panic.
    let _ = writeln!(std::io::stderr(), "fwsim: {message}");
    ExitCode::from(2)
}

/// Prepares an output file now, so a bad path fails before any work; `path` itself changes
/// only when the content is complete (`OutputFile::write`), never to an empty or partial file.
fn output(path: Option<&Path>) -> Result<Option<OutputFile>, String> {
    path.map(OutputFile::create)
        .transpose()
        .map_err(|e| e.to_string())
}

/// Writes a drawing (`what`: "plot", "timeline") to its prepared file and says so.
fn write_drawing(
    file: OutputFile,
    svg: Result<String, sim::sweep::PlotError>,
    what: &str,
) -> Result<(), String> {
    let path = file.path().to_path_buf();
    let svg = svg.map_err(|e| format!("{what} {}: {e}", path.display()))?;
    file.write(svg.as_bytes()).map_err(|e| e.to_string())?;
    eprintln!("{what} written to {}", path.display());
    Ok(())
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
        Command::Run(args) => run::run(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Merge(args) => sweep::merge(args),
        Command::Shrink(args) => run::shrink(args),
        Command::Fit(args) => fit::fit(args),
        Command::Serve(args) => serve::serve(args),
        Command::FromCrash(args) => crash::from_crash(args),
    }
}
