//! `fwsim serve`: the firmware core on a TUN interface, on the wall clock, against real
//! clients, until Ctrl-C or SIGTERM; then the per-connection report so far.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use sim::link::Preset;
use sim::live::{Live, LiveAddr, LiveEvent, ServeOptions};
use sim::report;
use sim::scenario::{AppName, PolicyName, Set, SetFlag};

use crate::fail;

/// Arguments of `fwsim serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The firmware app (tcp-server: Device OS's TCP server test app, driven by --control).
    #[arg(long, default_value = "forum", value_parser = APP_NAMES)]
    app: String,
    /// The stack preset: its socket rules, pool and server limits (legacy: Device OS 0.5.3;
    /// fixed; the field reports' stacks).
    #[arg(long, visible_alias = "preset", default_value = "legacy", value_parser = policy_names())]
    policy: String,
    /// The link model applied to packets in both directions, in real time.
    #[arg(long, default_value = "ideal",
          value_parser = ["ideal", "wlan-good", "wlan-busy", "wlan-bad"])]
    link: String,
    /// The TUN interface to create (it must not exist; it is gone when serve ends).
    #[arg(long, value_name = "NAME", default_value = "fwsim0")]
    tun: String,
    /// The device's address and the prefix length; the host side takes the first other
    /// address of the network.
    #[arg(long, value_name = "A/PREFIX", default_value = "10.77.0.2/24",
          value_parser = parse_addr)]
    addr: LiveAddr,
    /// The port the app's server listens on.
    #[arg(long, default_value_t = 6000, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Seeds the Wi-Fi worker's delays, the loop's jitter and the link model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write every packet the device sent or received to this pcap file (raw IP).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Print every event (application, device, and the host's side as the wire shows it) as
    /// one JSON object per line, and the final report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Answer the vendor test app's control requests (JSON, HTTP POST) on this loopback
    /// address, e.g. 127.0.0.1:7070.
    #[arg(long, value_name = "ADDR:PORT")]
    control: Option<SocketAddr>,
    /// Change a device field as `fwsim run --set` does, e.g. device.loop_period_us=3000 or
    /// device.worker_delay_max_us=500 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn parse_addr(v: &str) -> Result<LiveAddr, String> {
    // The message repeats the flag; clap names it again, so drop the prefix.
    LiveAddr::parse(v).map_err(|e| {
        let text = e.to_string();
        text.split_once(": ")
            .map_or(text.clone(), |(_, m)| m.to_string())
    })
}

/// The apps `--app` names (the scenario files' `device.app` values).
const APP_NAMES: [&str; 7] = [
    "forum",
    "multi-client",
    "server-closes",
    "echo",
    "connected-reader",
    "http-server",
    "tcp-server",
];

/// The names `--policy` accepts: every stack preset.
fn policy_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(PolicyName::ALL.map(|p| p.name()))
}

/// The app called `name` (one of [`APP_NAMES`], as a scenario file names it).
fn app_name(name: &str) -> Result<AppName, String> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|e| format!("--app {name}: {e}"))
}

/// One application event as a line for people.
fn human_line(e: &LiveEvent) -> Option<String> {
    if e.source != "app" {
        return None;
    }
    let mut line = format!(
        "{:>12.3} ms  app  port {:>5}  {}",
        e.t_us as f64 / 1000.0,
        e.port,
        e.event
    );
    if let Some(bytes) = e.bytes {
        line += &format!(" {bytes} bytes");
    }
    if let Some(hex) = &e.data_hex {
        line += &format!(": {hex}");
    }
    Some(line)
}

/// The options `args` stand for.
fn options(args: &ServeArgs) -> Result<ServeOptions, String> {
    let mut sets = Vec::new();
    for s in &args.sets {
        sets.push(Set::parse(SetFlag::Set, s).map_err(|e| e.to_string())?);
    }
    Ok(ServeOptions {
        app: app_name(&args.app)?,
        policy: PolicyName::from_name(&args.policy).unwrap_or_default(),
        link: Preset::from_name(&args.link).unwrap_or_default(),
        port: args.port,
        tun: args.tun.clone(),
        addr: args.addr,
        seed: args.seed,
        pcap: args.pcap.clone(),
        control: args.control,
        sets,
    })
}

/// Says something to the person running serve; a closed stderr is no reason to fail.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// Serve's standard output: every event as it happens, then the report. Once a write fails
/// (`serve | head` closed the pipe, a full disk), serve stops as on Ctrl-C, and the report
/// goes to stderr.
struct Output {
    json: bool,
    stop: Arc<AtomicBool>,
    failed: bool,
}

impl Output {
    fn line(&mut self, line: &str) {
        if self.failed {
            return;
        }
        if let Err(e) = writeln!(io::stdout(), "{line}") {
            self.failed = true;
            self.stop.store(true, Ordering::Relaxed);
            say(format_args!(
                "fwsim serve: stdout: {e}; stopping (the report goes to stderr)"
            ));
        }
    }

    fn event(&mut self, e: &LiveEvent) {
        let line = if self.json {
            serde_json::to_string(e).ok()
        } else {
            human_line(e)
        };
        if let Some(line) = line {
            self.line(&line);
        }
    }

    /// The report: to stdout if it still takes it, else to stderr for people.
    fn report(&mut self, report_: &sim::RunReport) {
        if self.json {
            let line = serde_json::json!({ "report": report::json(report_) }).to_string();
            self.line(&line);
        } else {
            self.line(report::human(report_, true).trim_end());
        }
        if self.failed {
            let _ = write!(io::stderr(), "{}", report::human(report_, true));
        }
    }
}

pub(crate) fn serve(args: ServeArgs) -> ExitCode {
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
        return fail(format!("cannot handle Ctrl-C and SIGTERM: {e}"));
    }
    let live = match Live::start(&options) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    say(format_args!(
        "fwsim serve: {} under {} on port {} at {} (interface {}, host {}), link {}{}; \
         Ctrl-C or SIGTERM ends it with the report",
        args.app,
        args.policy,
        args.port,
        args.addr.device,
        live.tun_name(),
        args.addr.host,
        args.link,
        live.control_addr()
            .map_or(String::new(), |a| format!(", control on http://{a}/"))
    ));
    let mut output = Output {
        json: args.json,
        stop: stop.clone(),
        failed: false,
    };
    let served = live.run(&stop, &mut |e| output.event(e));
    output.report(&served.report);
    // A run ended by an error (the interface deleted from outside): the report, then the
    // error. Otherwise the report's outcome, as `fwsim run` gives it.
    match served.stopped_by {
        Some(e) => fail(e),
        None => ExitCode::from(served.report.outcome().exit_code()),
    }
}
