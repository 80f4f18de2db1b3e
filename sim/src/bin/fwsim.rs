//! `fwsim`: run firmware TCP scenarios in simulated time and report silent loss.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sim::{report, scenario, RunOptions};
use tracing_subscriber::EnvFilter;

/// Deterministic network simulator for embedded firmware TCP code.
///
/// fwsim runs a firmware TCP server (smoltcp plus a model of the vendor socket layer) against
/// simulated peers over a seeded WLAN link model, and reports every connection whose
/// acknowledged bytes never reached the application ("silent loss").
///
/// Exit status: 0 no silent loss, 1 silent loss found, 2 usage or input error.
/// Set RUST_LOG=fwsim=debug for a trace of every event.
#[derive(Parser)]
#[command(name = "fwsim", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    #[command(verbatim_doc_comment)]
    Run {
        /// Scenario file (TOML), e.g. scenarios/forum.toml.
        scenario: PathBuf,
        /// Seed of every random draw in the run (link, peers, device timing). Default: the file's.
        #[arg(long)]
        seed: Option<u64>,
        /// Socket rules of the device: legacy (Device OS 0.5.3) or fixed.
        #[arg(long, value_parser = ["legacy", "fixed"])]
        policy: Option<String>,
        /// Link preset: ideal, wlan-good, wlan-busy, wlan-bad.
        #[arg(long)]
        preset: Option<String>,
        /// loopback (both stacks in one event loop) or turmoil (each host a turmoil host;
        /// needed for [[fault]] actions). Default: the scenario's.
        #[arg(long, value_parser = ["loopback", "turmoil"])]
        backend: Option<String>,
        /// Override any scenario field, e.g. link.loss_p=0.01 or peer.0.count=50 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Add an injector, a named timing situation (repeatable; the README's "Injectors"
        /// table says what each arranges).
        #[arg(long = "inject", value_name = "NAME", value_parser = injector_names())]
        injectors: Vec<String>,
        /// Write every packet the device sent or received to this pcap file (raw IP).
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// Write the event trace (one line per event; its hash is `trace`) to this file.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Show every connection, not only losses and the first ten.
        #[arg(long)]
        all: bool,
    },
    /// Run one scenario over many seeds (and presets, policies, values of one parameter) and
    /// report how often connections are silently lost.
    ///
    /// Runs are sequential and seeded, so a sweep is as reproducible as a run. Every failing
    /// seed is listed with the command that replays it.
    ///
    /// Examples:
    ///   fwsim sweep scenarios/forum.toml --seeds 100 --policy both --preset all
    ///   fwsim sweep scenarios/forum.toml --seeds 50 --plot loss.svg \
    ///       --vary device.loop_period_us=250,500,1000,2000,5000
    #[command(verbatim_doc_comment)]
    Sweep(SweepArgs),
    /// Turn a crash of the `scenario` or `scenario_legacy` fuzz target into a scenario file and
    /// a regression: writes the scenario (TOML), copies the input into
    /// fuzz/regressions/TARGET/ (replayed by `cargo test`), runs it and prints the report.
    ///
    /// Example:
    ///   fwsim from-crash fuzz/artifacts/scenario/crash-1a2b... --out scenarios/regressions/r1.toml
    #[command(verbatim_doc_comment)]
    FromCrash {
        /// The input file libFuzzer wrote (crash-*, or any corpus file).
        input: PathBuf,
        /// The target that crashed: scenario (fixed rules) or scenario_legacy.
        #[arg(long, default_value = "scenario", value_parser = ["scenario", "scenario_legacy"])]
        target: String,
        /// Where to write the scenario file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Do not copy the input into fuzz/regressions/TARGET/.
        #[arg(long)]
        no_regression: bool,
    },
}

fn from_crash(input: PathBuf, target: String, out: PathBuf, no_regression: bool) -> ExitCode {
    let fail = |m: String| {
        eprintln!("fwsim: {m}");
        ExitCode::from(2)
    };
    let data = match std::fs::read(&input) {
        Ok(d) => d,
        Err(e) => return fail(format!("cannot read {}: {e}", input.display())),
    };
    let policy = if target == "scenario" {
        "fixed"
    } else {
        "legacy"
    };
    let toml = match sim::fuzz::input_to_toml(&data, policy) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", input.display())),
    };
    let header = format!(
        "# From fuzz target `{target}`, input {}.\n# Replay: fwsim run {}\n",
        input.display(),
        out.display()
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("cannot create {}: {e}", dir.display()));
        }
    }
    if let Err(e) = std::fs::write(&out, header + &toml) {
        return fail(format!("cannot write {}: {e}", out.display()));
    }
    eprintln!("scenario written to {}", out.display());
    if !no_regression {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let dir = PathBuf::from("fuzz/regressions").join(&target);
        let copied =
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(&input, dir.join(&name)));
        match copied {
            Ok(_) => eprintln!("regression input copied to {}", dir.join(&name).display()),
            Err(e) => return fail(format!("cannot copy into {}: {e}", dir.display())),
        }
    }
    let config = match scenario::load(&out, &[]) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let report_ = match sim::run(&config, RunOptions::default()) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let replay = report::replay_command(&out.display().to_string(), &config, &[]);
    print!("{}", report::human(&config, &report_, &replay, false));
    if report_.summary.violations() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
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
    /// Default: the scenario's own.
    #[arg(long)]
    preset: Option<String>,
    /// loopback or turmoil. Default: the scenario's.
    #[arg(long, value_parser = ["loopback", "turmoil"])]
    backend: Option<String>,
    /// Vary one scenario field over values, e.g. device.loop_period_us=250,1000,5000.
    #[arg(long, value_name = "KEY=V1,V2,...")]
    vary: Option<String>,
    /// Override any scenario field in every run (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Add an injector to every run (repeatable); names as for `fwsim run --inject`.
    #[arg(long = "inject", value_name = "NAME", value_parser = injector_names())]
    injectors: Vec<String>,
    /// Draw loss against the --vary values to this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

fn sweep(args: SweepArgs) -> ExitCode {
    let SweepArgs {
        scenario: path,
        seeds,
        policy,
        preset,
        backend,
        vary,
        mut sets,
        injectors,
        plot,
        json,
    } = args;
    if let Some(b) = backend {
        sets.push(format!("backend={b}"));
    }
    sets.extend(injectors.iter().map(|i| inject_set(i)));
    let usage = |m: String| {
        eprintln!("fwsim: {m}");
        ExitCode::from(2)
    };
    let seeds = match sim::sweep::parse_seeds(&seeds) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    let base = match scenario::load(&path, &sets) {
        Ok(c) => c,
        Err(e) => return usage(e.to_string()),
    };
    let policies: Vec<String> = match policy.as_str() {
        "both" => vec!["legacy".into(), "fixed".into()],
        p => vec![p.into()],
    };
    let presets: Vec<String> = match preset.as_deref() {
        Some("all") => sim::link::LinkParams::PRESETS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(p) => vec![p.into()],
        None => vec![base.preset.clone()],
    };
    let vary = match vary {
        Some(v) => match v.split_once('=') {
            Some((k, vs)) if !vs.is_empty() => Some((
                k.trim().to_string(),
                vs.split(',').map(|x| x.trim().to_string()).collect(),
            )),
            _ => return usage(format!("--vary {v:?}: expected KEY=V1,V2,...")),
        },
        None => None,
    };
    if plot.is_some() && vary.is_none() {
        return usage("--plot draws loss against --vary values: give --vary too".into());
    }
    let spec = sim::sweep::SweepSpec {
        seeds,
        policies,
        presets,
        vary,
        sets,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let cells = match sim::sweep::run_sweep(&path, &spec, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }) {
        Ok(c) => c,
        Err(e) => {
            bar.finish_and_clear();
            return usage(e.to_string());
        }
    };
    bar.finish_and_clear();
    let scenario_arg = path.display().to_string();
    if json {
        let rows: Vec<serde_json::Value> = cells
            .iter()
            .map(|c| {
                serde_json::json!({
                    "cell": c,
                    "loss_fraction": c.loss_fraction(),
                    "replay": c.failing_seeds.first().map(|s| replay(&scenario_arg, *s, &c.sets(&spec))),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        // The varied parameter gets a column only when there is one.
        let key = spec
            .vary
            .as_ref()
            .map(|(k, _)| format!(" {k:>12}"))
            .unwrap_or_default();
        println!(
            "{:>7} {:>10}{key} {:>6} {:>10} {:>7} {:>10} {:>8}",
            "policy", "preset", "runs", "runs lost", "conns", "lost conns", "loss %"
        );
        for c in &cells {
            let value = match (&spec.vary, &c.value) {
                (Some(_), Some(v)) => format!(" {v:>12}"),
                _ => String::new(),
            };
            println!(
                "{:>7} {:>10}{value} {:>6} {:>10} {:>7} {:>10} {:>8.2}",
                c.policy,
                c.preset,
                c.runs,
                c.runs_with_loss,
                c.connections,
                c.violations,
                c.loss_fraction() * 100.0
            );
        }
        for c in cells.iter().filter(|c| !c.failing_seeds.is_empty()) {
            let shown: Vec<String> = c.failing_seeds.iter().take(5).map(u64::to_string).collect();
            let more = if c.runs_with_loss > 5 { ", ..." } else { "" };
            println!(
                "silent loss: {} / {}{}: {} of {} runs (seeds {}{more})\n  replay: {}",
                c.policy,
                c.preset,
                c.value
                    .as_ref()
                    .map(|v| format!(" / {v}"))
                    .unwrap_or_default(),
                c.runs_with_loss,
                c.runs,
                shown.join(", "),
                replay(&scenario_arg, c.failing_seeds[0], &c.sets(&spec))
            );
        }
    }
    if let (Some(out), Some((key, _))) = (&plot, &spec.vary) {
        if let Err(e) = sim::sweep::plot_svg(&cells, key, out) {
            eprintln!("fwsim: plot: {e}");
            return ExitCode::from(2);
        }
        eprintln!("plot written to {}", out.display());
    }
    if cells.iter().any(|c| c.violations > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The names `--inject` accepts.
fn injector_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(sim::inject::Injector::ALL.map(|i| i.name()))
}

/// `--inject NAME` is `--set inject+="NAME"`.
fn inject_set(name: &str) -> String {
    format!("inject+=\"{name}\"")
}

fn replay(scenario: &str, seed: u64, sets: &[String]) -> String {
    let mut cmd = format!("cargo run --release -p sim --bin fwsim -- run {scenario} --seed {seed}");
    for s in sets {
        cmd.push_str(&format!(" --set '{s}'"));
    }
    cmd
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Sweep(args) => sweep(args),
        Command::FromCrash {
            input,
            target,
            out,
            no_regression,
        } => from_crash(input, target, out, no_regression),
        Command::Run {
            scenario: path,
            seed,
            policy,
            preset,
            backend,
            mut sets,
            injectors,
            pcap,
            trace,
            json,
            all,
        } => {
            sets.extend(injectors.iter().map(|i| inject_set(i)));
            if let Some(p) = policy {
                sets.push(format!("device.policy={p}"));
            }
            if let Some(p) = preset {
                sets.push(format!("link.preset={p}"));
            }
            if let Some(b) = backend {
                sets.push(format!("backend={b}"));
            }
            let mut options = RunOptions {
                keep_trace: trace.is_some(),
                ..RunOptions::default()
            };
            if let Some(file) = &pcap {
                match File::create(file) {
                    Ok(f) => options.pcap = Some(Box::new(BufWriter::new(f))),
                    Err(e) => {
                        eprintln!("fwsim: cannot create {}: {e}", file.display());
                        return ExitCode::from(2);
                    }
                }
            }
            let mut config = match scenario::load(&path, &sets) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("fwsim: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(seed) = seed {
                config.seed = seed;
            }
            let report_ = match sim::run(&config, options) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("fwsim: {e}");
                    return ExitCode::from(2);
                }
            };
            if let (Some(file), Some(lines)) = (&trace, &report_.trace_lines) {
                if let Err(e) = std::fs::write(file, lines.join("\n") + "\n") {
                    eprintln!("fwsim: cannot write {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            }
            let replay = report::replay_command(&path.display().to_string(), &config, &sets);
            if json {
                println!("{}", report::json(&config, &report_, &replay));
            } else {
                print!("{}", report::human(&config, &report_, &replay, all));
            }
            if report_.summary.violations() > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
