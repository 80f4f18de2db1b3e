//! `fwsim`: run firmware TCP scenarios in simulated time and report silent loss.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
        /// Override any scenario field, e.g. link.loss_p=0.01 or peer.0.count=50 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Write every packet the device sent or received to this pcap file (raw IP).
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Show every connection, not only losses and the first ten.
        #[arg(long)]
        all: bool,
    },
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
        Command::Run {
            scenario: path,
            seed,
            policy,
            preset,
            mut sets,
            pcap,
            json,
            all,
        } => {
            if let Some(p) = policy {
                sets.push(format!("device.policy={p}"));
            }
            if let Some(p) = preset {
                sets.push(format!("link.preset={p}"));
            }
            let mut options = RunOptions::default();
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
