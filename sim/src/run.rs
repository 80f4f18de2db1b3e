//! The run core: what a run is, whatever backend moves its packets. `RunCore` owns the
//! observer (oracle and trace), the capture, the safety and liveness phases, the time limit and
//! the report; a backend only moves packets and time between the device and peer nodes and asks
//! the core when to heal the links and when to stop.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use firmware_core::app::App;
use firmware_core::smoltcp::time::{Duration, Instant};
use firmware_core::Policy;

use crate::air::AirCapture;
use crate::capture::Capture;
use crate::link::LinkStats;
use crate::observer::{Observed, Observer};
use crate::oracle::{ConnReport, Oracle, Summary, Verdict};
use crate::peer::{workload_payloads, PayloadError, PeerHost};
use crate::scenario::{Scenario, ScenarioError, Set, TurmoilTick};
use crate::trace::Trace;

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Which run: scenario, policy, link preset, backend.
    pub label: RunLabel,
    /// The one command that replays this run.
    pub replay: String,
    /// The seed the run used.
    pub seed: u64,
    /// One row per connection the peer opened, in opening order.
    pub rows: Vec<ConnReport>,
    /// Totals over the rows.
    pub summary: Summary,
    /// xxHash3-128 of the event trace (hex): equal for equal scenario and seed.
    pub trace_hash: String,
    /// Events in the trace.
    pub trace_events: u64,
    /// The trace lines, when [`RunOptions::keep_trace`] asked for them.
    pub trace_lines: Option<Vec<String>>,
    /// The observed events, when [`RunOptions::keep_events`] asked for them: enough to
    /// recompute the verdicts ([`crate::oracle::Oracle::replay`]).
    pub events: Option<Vec<Observed>>,
    /// Simulated time the run covered.
    pub sim_time_us: i64,
    /// Statistics of the link from the device to the peer.
    pub uplink: LinkStats,
    /// Statistics of the link from the peer to the device.
    pub downlink: LinkStats,
    /// The run hit its time limit before every peer program finished.
    pub timed_out: bool,
    /// The turmoil backend's step and whether it keeps every link-model time (`None` on the
    /// loopback backend, exact by construction). Packets it delivered late are counted in
    /// `uplink.late` and `downlink.late`.
    pub turmoil_tick: Option<TurmoilTick>,
}

/// Which run a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLabel {
    /// The scenario's name.
    pub scenario: String,
    /// The device's socket rules.
    pub policy: String,
    /// The link preset.
    pub preset: String,
    /// The backend.
    pub backend: String,
}

/// What a run's report (a sweep's, a merge's) says in one word, and the exit status every
/// `fwsim` command gives it. Safety beats liveness, and both beat "nothing tested".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Connections were tested, and every one was delivered or failed visibly to the peer
    /// (refused, reset, aborted): no silent loss, every connection finished (exit 0).
    NoSilentLoss,
    /// At least one connection was lost silently: a safety violation (exit 1).
    SilentLoss,
    /// No connection reached a verdict (none opened, or all still running when the run
    /// stopped, none stalled): the run tested nothing and proves nothing (exit 2).
    NothingTested,
    /// No silent loss, but a connection stalled (no progress for `liveness_ms` while it
    /// waited on the device) or was still unfinished when the run stopped: a liveness failure
    /// (exit 3).
    LivenessFailure,
}

impl Outcome {
    /// The outcome of `violations` silently lost connections and `liveness_failures` stalled
    /// or unfinished ones, of which `tested` reached a verdict (one run, a sweep, a merge).
    pub fn of(violations: u64, liveness_failures: u64, tested: u64) -> Outcome {
        if violations > 0 {
            Outcome::SilentLoss
        } else if tested == 0 {
            Outcome::NothingTested
        } else if liveness_failures > 0 {
            Outcome::LivenessFailure
        } else {
            Outcome::NoSilentLoss
        }
    }

    /// The exit status of `fwsim run`, `sweep`, `merge`, `serve` and the other commands that
    /// judge runs: 0 pass, 1 silent loss, 2 nothing tested (or an input error), 3 liveness
    /// failure only.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::NoSilentLoss => 0,
            Outcome::SilentLoss => 1,
            Outcome::NothingTested => 2,
            Outcome::LivenessFailure => 3,
        }
    }

    /// The outcome's name in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::NoSilentLoss => "no_silent_loss",
            Outcome::SilentLoss => "silent_loss",
            Outcome::NothingTested => "nothing_tested",
            Outcome::LivenessFailure => "liveness_failure",
        }
    }
}

impl RunReport {
    /// Connections that reached a verdict (every one but those still running at the end).
    pub fn tested(&self) -> u64 {
        self.summary.tested()
    }

    /// The report in one word.
    pub fn outcome(&self) -> Outcome {
        let s = &self.summary;
        Outcome::of(s.violations(), s.liveness_failures(), s.tested())
    }

    /// The verdict line of the human report.
    pub fn verdict_line(&self) -> String {
        let s = &self.summary;
        let limit = match self.timed_out {
            true => " before max_duration_ms",
            false => "",
        };
        match self.outcome() {
            Outcome::SilentLoss => "SILENT LOSS".into(),
            Outcome::NoSilentLoss => "no silent loss, every connection finished".into(),
            Outcome::NothingTested => format!(
                "NOTHING TESTED: {} connections opened, none reached a verdict{limit}",
                s.connections
            ),
            Outcome::LivenessFailure => {
                let mut line = format!(
                    "LIVENESS FAILURE: {} stalled, {} unfinished{limit}",
                    s.stalled, s.unfinished
                );
                if let Some(r) = self.rows.iter().find(|r| r.verdict == Verdict::Stalled) {
                    let _ = write!(
                        line,
                        "; first: port {} made no progress from {:.3} s",
                        r.peer_port,
                        r.stalled_at_us.unwrap_or(0) as f64 / 1e6
                    );
                }
                line
            }
        }
    }

    /// The rows with a violation.
    pub fn violations(&self) -> impl Iterator<Item = &ConnReport> {
        self.rows.iter().filter(|r| r.verdict.is_violation())
    }
}

/// Options that do not change what is simulated.
#[derive(Default)]
pub struct RunOptions {
    /// Write every packet the device sent or received here, as pcap (raw IP).
    pub pcap: Option<Box<dyn Write>>,
    /// Write what reached each side here, as pcapng: interfaces `device` and `peer`, each
    /// packet the link dropped on its sender's side with a comment saying why.
    pub pcap_air: Option<Box<dyn Write>>,
    /// Keep the trace lines in the report.
    pub keep_trace: bool,
    /// Keep the observed events in the report.
    pub keep_events: bool,
    /// Run every application loop iteration, also those an idle application would skip (for
    /// the test that skipping changes nothing).
    pub step_every_loop: bool,
    /// Told how far the run got, every [`PROGRESS_EVERY_MS`] of simulated time (a progress
    /// bar); it sees the run, it cannot change it.
    pub progress: Option<ProgressFn>,
}

/// What [`RunOptions::progress`] calls.
pub type ProgressFn = Box<dyn FnMut(&RunProgress)>;

/// Simulated time between two [`RunOptions::progress`] reports.
pub const PROGRESS_EVERY_MS: u64 = 250;

/// How far a run got: what a progress bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunProgress {
    /// Simulated time so far.
    pub sim_time_us: i64,
    /// The run stops at this simulated time at the latest (`max_duration_ms`).
    pub max_time_us: i64,
    /// Connections the peer opened so far.
    pub opened: u64,
    /// Of those, connections whose peer program finished.
    pub finished: u64,
}

/// Why a run could not be carried out (a run that finds silent loss is not an error).
#[derive(Debug)]
pub enum RunError {
    /// The scenario has `[[fault]]` actions, which only the turmoil backend applies.
    FaultsNeedTurmoil,
    /// The capture could not be written.
    Capture(io::Error),
    /// The air capture ([`RunOptions::pcap_air`]) could not be written.
    AirCapture(io::Error),
    /// turmoil stopped the simulation.
    Turmoil(String),
    /// The peer's workloads are invalid.
    Peer(PayloadError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::FaultsNeedTurmoil => {
                f.write_str("[[fault]] actions need backend = \"turmoil\" (or --backend turmoil)")
            }
            RunError::Capture(e) => write!(f, "cannot write the pcap capture: {e}"),
            RunError::AirCapture(e) => write!(f, "cannot write the air capture: {e}"),
            RunError::Turmoil(e) => write!(f, "turmoil: {e}"),
            RunError::Peer(e) => write!(f, "peer workload: {e}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Capture(e) | RunError::AirCapture(e) => Some(e),
            RunError::Peer(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The peer went quiet in the liveness phase and the drain time passed.
    Done,
    /// The time limit passed first.
    TimedOut,
}

/// A run's phase: safety while the workload runs, then liveness with healed links until the
/// peer is quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness { quiet_since: Option<Instant> },
}

/// Builds the firmware app for the server port: a run's app, and a rebooted device's new one.
pub type AppFactory = Arc<dyn Fn(u16) -> Box<dyn App> + Send + Sync>;

/// How a run is replayed: from a scenario file with its changes, or by its test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The scenario file, when the scenario came from one.
    pub file: Option<PathBuf>,
    /// The changes made to it, in order.
    pub sets: Vec<Set>,
    /// The app or the socket rules are not ones a scenario file can name: only the test or
    /// program that made them can replay the run.
    pub custom_app: bool,
}

impl Replay {
    /// The one command that replays the run with `seed`.
    pub fn command(&self, seed: u64) -> String {
        let test = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .map(str::to_string);
        match (&self.file, self.custom_app, test) {
            (Some(file), false, _) => {
                let mut cmd = format!(
                    "cargo run --release -p sim --bin fwsim -- run {} --seed {seed}",
                    file.display()
                );
                for set in self.sets.iter().filter(|s| s.key != "seed") {
                    cmd.push(' ');
                    cmd.push_str(&set.to_string());
                }
                cmd
            }
            (_, _, Some(test)) => format!("FWSIM_SEED={seed} cargo test {test}"),
            _ => format!("FWSIM_SEED={seed} (rerun the program that built this scenario)"),
        }
    }
}

/// A scenario made ready to run: checked, its injectors applied, with the app it runs.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) scenario: Scenario,
    pub(crate) policy: Policy,
    /// The rules came from [`crate::Sim::rules`], not from the scenario.
    pub(crate) rules_override: bool,
    pub(crate) app: AppFactory,
    pub(crate) replay: Replay,
}

impl Prepared {
    /// Checks `scenario` and applies its injectors; `app` replaces the app the scenario names,
    /// `rules` its policy's socket rules.
    pub(crate) fn new(
        scenario: &Scenario,
        app: Option<AppFactory>,
        rules: Option<Policy>,
        replay: Replay,
    ) -> Result<Prepared, ScenarioError> {
        if let Some(invalid) = scenario.invalid() {
            return Err(ScenarioError {
                origin: format!("scenario {}", scenario.name),
                position: None,
                message: format!("{}: {}", invalid.path, invalid.message),
            });
        }
        let mut s = scenario.clone();
        let mut injectors = s.inject.clone();
        injectors.sort();
        injectors.dedup();
        for injector in injectors {
            injector.apply(&mut s);
        }
        let app = app.unwrap_or_else(|| {
            let device = s.device.clone();
            Arc::new(move |port| device.build_app(port))
        });
        Ok(Prepared {
            policy: rules.unwrap_or_else(|| s.policy()),
            rules_override: rules.is_some(),
            scenario: s,
            app,
            replay,
        })
    }
}

/// Milliseconds as an instant, saturating (a limit beyond simulated time means "never").
pub(crate) fn instant_ms(ms: u64) -> Instant {
    Instant::from_micros(ms.saturating_mul(1000).min(i64::MAX as u64 / 2) as i64)
}

/// Everything of a run but the moving of packets.
pub(crate) struct RunCore {
    label: RunLabel,
    replay: String,
    pub(crate) observer: Observer,
    pub(crate) capture: Option<Capture>,
    pub(crate) air: Option<AirCapture>,
    /// Skip an idle application's loop iterations (off: [`RunOptions::step_every_loop`]).
    pub(crate) skip_idle: bool,
    seed: u64,
    end: Instant,
    drain: Duration,
    phase: Phase,
    progress: Option<ProgressFn>,
    next_progress: Instant,
}

impl RunCore {
    /// The core of a run of `prep` on `backend` (named in the `tracing` span).
    pub(crate) fn new(
        prep: &Prepared,
        backend: &str,
        options: RunOptions,
    ) -> Result<RunCore, RunError> {
        let config = &prep.scenario;
        let label = RunLabel {
            scenario: config.name.clone(),
            policy: match prep.rules_override {
                true => prep.policy.name().into(),
                false => config.policy_label(),
            },
            preset: config.link.preset.name().into(),
            backend: backend.into(),
        };
        let span = tracing::info_span!(
            target: "fwsim::trace",
            "run",
            scenario = %label.scenario,
            seed = config.seed,
            backend,
            policy = %label.policy,
            preset = %label.preset
        );
        let payloads = workload_payloads(&config.peer).map_err(RunError::Peer)?;
        Ok(RunCore {
            label,
            replay: prep.replay.command(config.seed),
            observer: Observer {
                oracle: Oracle::new(payloads, config.liveness_ms),
                trace: Trace::new(options.keep_trace, span),
                kept: options.keep_events.then(Vec::new),
            },
            capture: options.pcap.map(Capture::new),
            air: options.pcap_air.map(AirCapture::new),
            skip_idle: !options.step_every_loop,
            seed: config.seed,
            end: instant_ms(config.max_duration_ms),
            drain: Duration::from_millis(config.drain_ms),
            phase: Phase::Safety,
            progress: options.progress,
            next_progress: Instant::ZERO,
        })
    }

    /// When the run may end at the earliest: the drain after the peer went quiet.
    pub(crate) fn done_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Liveness {
                quiet_since: Some(q),
            } => Some(q + self.drain),
            _ => None,
        }
    }

    /// Whether the run stops at `t` (checked before anything runs at `t`); reports progress.
    pub(crate) fn stop_at(&mut self, t: Instant) -> Option<Stop> {
        if let Some(report) = self.progress.as_mut().filter(|_| t >= self.next_progress) {
            let (opened, finished) = self.observer.oracle.connections();
            report(&RunProgress {
                sim_time_us: t.total_micros(),
                max_time_us: self.end.total_micros(),
                opened,
                finished,
            });
            self.next_progress = t + Duration::from_millis(PROGRESS_EVERY_MS);
        }
        if t > self.end {
            Some(Stop::TimedOut)
        } else if self.done_at().is_some_and(|d| t >= d) {
            Some(Stop::Done)
        } else {
            None
        }
    }

    /// The first instant at which the run stops unless something happens: nothing is worth
    /// simulating at or after it.
    pub(crate) fn horizon(&self) -> Instant {
        let past_end = self.end + Duration::from_micros(1);
        self.done_at().map_or(past_end, |d| d.min(past_end))
    }

    /// After the peer ran at `t`: starts the liveness phase when the workload is over (then
    /// returns true: the backend heals its links, so every retransmission gets through before
    /// the verdict), and notes when the peer went quiet (nothing more can come from it; what
    /// is still on the links arrives well inside the drain). Only the peer's own state counts,
    /// so every backend sees the same instant.
    pub(crate) fn after_peer(&mut self, t: Instant, peer: &PeerHost) -> bool {
        let mut heal = false;
        if self.phase == Phase::Safety && peer.finished() {
            self.phase = Phase::Liveness { quiet_since: None };
            self.observer
                .note(t, "sim", None, format_args!("liveness phase: links healed"));
            heal = true;
        }
        if let Phase::Liveness { quiet_since: None } = self.phase {
            if peer.quiet() {
                self.phase = Phase::Liveness {
                    quiet_since: Some(t),
                };
            }
        }
        heal
    }

    /// Judges the run and writes the report.
    pub(crate) fn finish(
        &mut self,
        now: Instant,
        stop: Stop,
        uplink: LinkStats,
        downlink: LinkStats,
    ) -> Result<RunReport, RunError> {
        if let Some(capture) = self.capture.as_mut() {
            capture.finish().map_err(RunError::Capture)?;
        }
        if let Some(air) = self.air.as_mut() {
            air.finish().map_err(RunError::AirCapture)?;
        }
        // A finished run ends when its drain ends, whenever its backend noticed.
        let now = match (stop, self.done_at()) {
            (Stop::Done, Some(done)) => done,
            _ => now,
        };
        // A timed-out run noticed the limit at its next event, which may lie far beyond it.
        let end = match stop {
            Stop::TimedOut => now.min(self.end),
            Stop::Done => now,
        };
        let rows = self.observer.oracle.judge(end);
        let trace = &mut self.observer.trace;
        Ok(RunReport {
            label: self.label.clone(),
            replay: self.replay.clone(),
            seed: self.seed,
            summary: Summary::of(&rows),
            rows,
            trace_hash: trace.hash(),
            trace_events: trace.events(),
            trace_lines: trace.kept_lines(),
            events: self.observer.kept.take(),
            sim_time_us: end.total_micros(),
            uplink,
            downlink,
            timed_out: stop == Stop::TimedOut,
            turmoil_tick: None,
        })
    }
}
