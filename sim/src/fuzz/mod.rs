//! Bodies of the cargo-fuzz targets in `fuzz/`, kept here so `cargo test` on stable replays the
//! committed corpora and crash files through exactly the same code.
//!
//! - [`scenario()`]: an arbitrary scenario under the fixed rules; silent loss is a failure.
//! - [`scenario_legacy`]: the same under the legacy rules; silent loss is the bug the fuzzer
//!   must find (it proves the search reaches FIN-before-drain).
//! - [`scenario_rule`]: the same under the fixed rules with one legacy rule switched on
//!   ([`RuleChoice`]); silent loss is that rule's bug (the time-to-bug benchmark).
//! - `ingress`: raw and mutated packets into the device; it must not panic.
//! - `wiring_ops`: arbitrary Wiring API call sequences against a live peer; the application
//!   may only ever read a prefix of what the peer sent.
//! - [`scenario_file`]: arbitrary text into the scenario parser; errors, never panics.

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};

use serde::Deserialize;

use crate::link::Preset;
use crate::oracle::Summary;
use crate::peer::{ProgramKind, Workload};
use crate::scenario::{
    self, AppName, DeviceSpec, Injector, LinkSpec, PolicyName, Scenario, Set, SetFlag,
};
use crate::{RunOptions, Sim};
use firmware_core::Policy;

#[cfg(feature = "testkit")]
mod bench;
mod rule;
#[cfg(feature = "testkit")]
pub use bench::{ingress, wiring_ops};
pub use rule::{scenario_rule, LegacyRule, RuleChoice, RULE_ENV};

/// One peer workload of a fuzzed scenario (small, so a run takes well under a millisecond).
#[derive(Debug, Clone, Arbitrary)]
pub struct FuzzWorkload {
    /// Program kind, modulo 4: `nc`, `hold`, `stream`, `reset`.
    pub kind: u8,
    /// Payload length minus one, modulo 48.
    pub(crate) payload_len: u8,
    /// Connections minus one, modulo 4.
    pub(crate) count: u8,
    /// Connections per burst minus one, modulo 3.
    pub(crate) burst: u8,
    /// Interval between bursts minus 20, modulo 200.
    pub(crate) interval_ms: u16,
    /// Delay before the peer closes, modulo 2000.
    pub(crate) close_delay_us: u16,
    /// How long a `hold` program keeps the connection, modulo 800.
    pub(crate) hold_ms: u16,
    /// Stream length in KiB minus one, modulo 16.
    pub(crate) stream_kib: u8,
}

/// A fuzzed scenario: every field maps onto a scenario-file field.
#[derive(Debug, Clone, Arbitrary)]
pub struct FuzzScenario {
    /// The run's seed.
    pub(crate) seed: u64,
    /// The app, modulo 4: forum, multi-client, server-closes, echo.
    pub app: u8,
    /// Link preset index into `Preset::ALL`, modulo 4.
    pub(crate) preset: u8,
    /// Application loop period minus 500, modulo 5000.
    pub(crate) loop_period_us: u16,
    /// Every how many loops one is slow, modulo 100.
    pub(crate) slow_loop_every: u8,
    /// The stack worker's largest delay minus 50, modulo 3000.
    pub(crate) worker_delay_max_us: u16,
    /// Loss probability of both directions in per mille, modulo 50.
    pub(crate) loss_per_mille: u8,
    /// Jitter of both directions, modulo 5000.
    pub(crate) jitter_us: u16,
    /// Reorder probability of both directions in per mille, modulo 20.
    pub(crate) reorder_per_mille: u8,
    /// Bit i applies `Injector::ALL[i]`.
    pub injectors: u8,
    /// Peer workloads; the first three are used, none means one default workload.
    pub workloads: Vec<FuzzWorkload>,
}

impl FuzzScenario {
    /// The scenario this input stands for (what `fwsim from-crash` writes), under `policy`
    /// (`legacy` or `fixed`).
    pub fn to_scenario(&self, policy: &str) -> Scenario {
        let app = match self.app % 4 {
            0 => AppName::Forum,
            1 => AppName::MultiClient,
            2 => AppName::ServerCloses,
            _ => AppName::Echo,
        };
        let mut peer: Vec<Workload> = self
            .workloads
            .iter()
            .take(3)
            .map(|w| {
                let kind = match w.kind % 4 {
                    0 => ProgramKind::Nc,
                    1 => ProgramKind::Hold,
                    2 => ProgramKind::Stream,
                    _ => ProgramKind::Reset,
                };
                let payload: String = (0..(w.payload_len % 48) + 1)
                    .map(|i| format!("{:02x}", i.wrapping_mul(37).wrapping_add(w.payload_len)))
                    .collect();
                Workload {
                    kind,
                    payload_hex: payload,
                    stream_bytes: 1024 * (u64::from(w.stream_kib % 16) + 1),
                    count: u32::from(w.count % 4) + 1,
                    burst: u32::from(w.burst % 3) + 1,
                    start_ms: 100,
                    interval_ms: u64::from(w.interval_ms % 200) + 20,
                    close_delay_us: u64::from(w.close_delay_us % 2000),
                    hold_ms: u64::from(w.hold_ms % 800),
                    // Short tails keep an execution well under a millisecond.
                    linger_ms: 500,
                    connect_timeout_ms: 5_000,
                    ..Workload::default()
                }
            })
            .collect();
        if peer.is_empty() {
            peer.push(Workload::default());
        }
        let policy = PolicyName::deserialize(toml::Value::String(policy.into()))
            .unwrap_or(PolicyName::Fixed);
        let mut device = DeviceSpec::new(app, policy);
        device.loop_period_us = u64::from(self.loop_period_us % 5000) + 500;
        device.slow_loop_every = u64::from(self.slow_loop_every % 100);
        device.stack.worker_delay_min_us = 50;
        device.stack.worker_delay_max_us = u64::from(self.worker_delay_max_us % 3000) + 50;
        let mut link = LinkSpec::preset(Preset::ALL[usize::from(self.preset) % 4]);
        for params in [&mut link.uplink, &mut link.downlink] {
            params.loss_p = f64::from(self.loss_per_mille % 50) / 1000.0;
            params.jitter_us = u64::from(self.jitter_us % 5000);
            params.reorder = f64::from(self.reorder_per_mille % 20) / 1000.0;
        }
        Scenario {
            max_duration_ms: 30_000,
            drain_ms: 500,
            // Short enough to see a hang inside the 30 s budget, long enough that only five
            // losses in a row of one segment (1+2+4+8+16 s of backoff) could fake one.
            liveness_ms: 20_000,
            seed: self.seed,
            device,
            link,
            peer,
            inject: Injector::from_mask(self.injectors),
            ..Scenario::new("fuzz", app, policy)
        }
    }
}

/// Inputs shorter than this are not scenarios.
pub const MIN_SCENARIO_INPUT: usize = 16;

/// What one fuzzed scenario did.
#[derive(Debug)]
pub enum ScenarioOutcome {
    /// The input was too short to describe a scenario.
    Rejected,
    /// The oracle found nothing.
    Clean(Summary),
    /// Silent loss; `toml` is the scenario that reproduces it.
    SilentLoss {
        /// The run's totals.
        summary: Summary,
        /// The scenario file that reproduces it.
        toml: String,
    },
    /// No silent loss, but a connection stalled (a liveness failure); `toml` reproduces it.
    Stalled {
        /// The run's totals.
        summary: Summary,
        /// The scenario file that reproduces it.
        toml: String,
    },
}

/// Runs the scenario `data` stands for under `policy` (`"legacy"` or `"fixed"`).
pub fn run_scenario(data: &[u8], policy: &str) -> ScenarioOutcome {
    run_scenario_with(data, policy, None)
}

/// [`run_scenario`] with the device under `rules` instead of the policy's rules (the scenario,
/// and so the device's knobs, still come from `policy`): what [`scenario_rule`] runs.
pub(crate) fn run_scenario_with(
    data: &[u8],
    policy: &str,
    rules: Option<Policy>,
) -> ScenarioOutcome {
    let Some((report, sim)) = run_input(data, policy, rules, RunOptions::default()) else {
        return ScenarioOutcome::Rejected;
    };
    // A connection the fuzz's time budget cut short (unfinished) is the harness's limit, not
    // the device's: only a stall, which needs `liveness_ms` without progress, is a finding.
    let summary = report.summary;
    if summary.violations() > 0 {
        let toml = sim.scenario().to_toml();
        ScenarioOutcome::SilentLoss { summary, toml }
    } else if summary.stalled > 0 {
        let toml = sim.scenario().to_toml();
        ScenarioOutcome::Stalled { summary, toml }
    } else {
        ScenarioOutcome::Clean(summary)
    }
}

/// Decodes `data` as the scenario targets do and runs it under `policy`'s scenario, with
/// `rules` replacing its socket rules when given: the whole report (for tests that look past
/// the verdict) and the simulation that made it. `None`: not a scenario input.
pub fn run_input(
    data: &[u8],
    policy: &str,
    rules: Option<Policy>,
    options: RunOptions,
) -> Option<(crate::RunReport, Sim)> {
    // `arbitrary` turns short inputs into all-zero fields, which already describe the forum
    // scenario: an input has to say something before it counts as a scenario.
    if data.len() < MIN_SCENARIO_INPUT {
        return None;
    }
    let input = FuzzScenario::arbitrary(&mut Unstructured::new(data)).ok()?;
    let sim = Sim::new(input.to_scenario(policy));
    let sim = match rules {
        Some(rules) => sim.rules(rules),
        None => sim,
    };
    // A fuzzed scenario is always valid; an error here is a harness bug.
    match sim.run_with(options) {
        Ok(report) => Some((report, sim)),
        Err(e) => panic!("fuzz scenario does not run: {e}"),
    }
}

/// Why a fuzz input is no crash of its target, or could not be kept.
#[derive(Debug)]
pub enum CrashError {
    /// The input is empty: every target does nothing with it.
    Empty,
    /// Shorter than [`MIN_SCENARIO_INPUT`].
    TooShort(usize),
    /// `arbitrary` could not decode it.
    Undecodable(arbitrary::Error),
    /// Not UTF-8 text, which `scenario_file` skips.
    NotText,
    /// The input goes through the target without failing: it is no crash.
    Passes(CrashTarget),
    /// This build lacks the target (sim's `testkit` feature is off).
    Unavailable(CrashTarget),
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Writing an output file failed.
    Output(crate::output::OutputError),
}

impl std::fmt::Display for CrashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashError::TooShort(n) => {
                write!(
                    f,
                    "input has {n} bytes; scenarios need {MIN_SCENARIO_INPUT}"
                )
            }
            CrashError::Undecodable(e) => write!(f, "input does not decode: {e}"),
            CrashError::Empty => f.write_str("input is empty: no target does anything with it"),
            CrashError::NotText => f.write_str("input is not UTF-8 text: scenario_file skips it"),
            CrashError::Passes(t) => write!(
                f,
                "input does not fail the `{}` target ({}): nothing to keep",
                t.name(),
                t.failure()
            ),
            CrashError::Unavailable(t) => write!(
                f,
                "this fwsim was built without the testkit feature, so it cannot run the `{}` \
                 target: build it with `--features testkit`",
                t.name()
            ),
            CrashError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            CrashError::Output(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CrashError {}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CrashError + '_ {
    move |error| CrashError::Io {
        path: path.into(),
        error,
    }
}

/// The scenario file a `scenario`/`scenario_legacy` input stands for, as TOML, or why not.
pub fn input_to_toml(data: &[u8], policy: &str) -> Result<String, CrashError> {
    if data.len() < MIN_SCENARIO_INPUT {
        return Err(CrashError::TooShort(data.len()));
    }
    let input =
        FuzzScenario::arbitrary(&mut Unstructured::new(data)).map_err(CrashError::Undecodable)?;
    Ok(input.to_scenario(policy).to_toml())
}

/// The `scenario` target: the fixed rules never lose silently and never stall.
pub fn scenario(data: &[u8]) {
    match run_scenario(data, "fixed") {
        ScenarioOutcome::SilentLoss { summary, toml } => panic!(
            "silent loss under the fixed rules: {summary:?}\nscenario (save it and run `fwsim run FILE`):\n{toml}"
        ),
        ScenarioOutcome::Stalled { summary, toml } => panic!(
            "a connection stalled under the fixed rules: {summary:?}\nscenario (save it and run `fwsim run FILE`):\n{toml}"
        ),
        ScenarioOutcome::Rejected | ScenarioOutcome::Clean(_) => {}
    }
}

/// The `scenario_legacy` target: a silent loss under the legacy rules is the finding.
pub fn scenario_legacy(data: &[u8]) {
    if let ScenarioOutcome::SilentLoss { summary, toml } = run_scenario(data, "legacy") {
        panic!(
            "silent loss under the legacy rules (expected: the field bug): {summary:?}\nscenario:\n{toml}"
        );
    }
}

/// The `scenario_file` target: any text into the scenario loader gives an error, or a scenario
/// that runs (under a small budget) to a report that agrees with itself: never a panic, an
/// abort, or "no silent loss" for a run that tested nothing.
pub fn scenario_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let changed = [
        Set::flag(SetFlag::Policy, "fixed"),
        Set::parse(SetFlag::Set, "peer.0.count=2").unwrap_or_else(|e| panic!("{e}")),
    ];
    for sets in [&[][..], &changed[..]] {
        let Ok(mut scenario) = scenario::parse("fuzz.toml", text, sets) else {
            continue;
        };
        within_budget(&mut scenario);
        if let Ok(report) = crate::run(&scenario, RunOptions::default()) {
            assert_report_agrees(&report);
        }
    }
}

/// Shrinks a parsed scenario to a small budget: a short loopback run with few connections.
fn within_budget(s: &mut Scenario) {
    s.backend = scenario::Backend::Loopback;
    s.fault.clear();
    s.max_duration_ms = s.max_duration_ms.min(2_000);
    s.drain_ms = s.drain_ms.min(500);
    s.device.loop_period_us = s.device.loop_period_us.max(100);
    s.peer.truncate(4);
    for w in &mut s.peer {
        w.count = w.count.min(6);
        w.burst = w.burst.min(6);
        w.stream_bytes = w.stream_bytes.min(64 * 1024);
        w.hold_ms = w.hold_ms.min(500);
        w.linger_ms = w.linger_ms.min(500);
    }
}

/// The verdict, the counts and the rows of a report say the same thing.
fn assert_report_agrees(r: &crate::RunReport) {
    let s = &r.summary;
    assert_eq!(s.connections, r.rows.len() as u64);
    let violations = r.rows.iter().filter(|x| x.verdict.is_violation()).count() as u64;
    let tested = r
        .rows
        .iter()
        .filter(|x| x.verdict != crate::Verdict::Unfinished)
        .count() as u64;
    let hung = r
        .rows
        .iter()
        .filter(|x| x.verdict.is_liveness_failure())
        .count() as u64;
    assert_eq!(violations, s.violations());
    assert_eq!(hung, s.liveness_failures());
    match r.outcome() {
        crate::Outcome::NoSilentLoss => assert!(tested > 0 && violations + hung == 0, "{r:?}"),
        crate::Outcome::SilentLoss => assert!(violations > 0),
        crate::Outcome::NothingTested => assert!(tested == 0 && violations == 0, "{r:?}"),
        crate::Outcome::LivenessFailure => assert!(tested > 0 && violations == 0 && hung > 0),
    }
}

/// A cargo-fuzz target whose crash `fwsim from-crash` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashTarget {
    /// [`scenario()`]: silent loss under the fixed rules.
    Scenario,
    /// [`scenario_legacy`]: silent loss under the legacy rules (the field bug, found).
    ScenarioLegacy,
    /// `ingress`: a device panic on packets.
    Ingress,
    /// `wiring_ops`: the application read bytes out of order.
    WiringOps,
    /// [`scenario_file`]: the loader or a run misbehaved on a file.
    ScenarioFile,
}

impl CrashTarget {
    /// Every target's name.
    pub const NAMES: [&'static str; 5] = [
        "scenario",
        "scenario_legacy",
        "ingress",
        "wiring_ops",
        "scenario_file",
    ];
    const ALL: [CrashTarget; 5] = [
        CrashTarget::Scenario,
        CrashTarget::ScenarioLegacy,
        CrashTarget::Ingress,
        CrashTarget::WiringOps,
        CrashTarget::ScenarioFile,
    ];

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<CrashTarget> {
        let i = CrashTarget::NAMES.iter().position(|n| *n == name)?;
        Some(CrashTarget::ALL[i])
    }

    /// The target's name.
    pub fn name(self) -> &'static str {
        CrashTarget::NAMES[CrashTarget::ALL
            .iter()
            .position(|t| *t == self)
            .unwrap_or(0)]
    }

    /// The policy a scenario target's input runs under; `None` for the other targets.
    pub fn policy(self) -> Option<&'static str> {
        match self {
            CrashTarget::Scenario => Some("fixed"),
            CrashTarget::ScenarioLegacy => Some("legacy"),
            _ => None,
        }
    }

    /// Where the repository keeps this target's crashes, from its root. `cargo test` replays
    /// each folder: regressions must pass once fixed; legacy examples must lose under legacy.
    pub fn folder(self) -> PathBuf {
        match self {
            CrashTarget::ScenarioLegacy => PathBuf::from("fuzz/bug-examples/scenario_legacy"),
            t => Path::new("fuzz/regressions").join(t.name()),
        }
    }

    /// What a kept input is to the test suite.
    pub fn kept_as(self) -> &'static str {
        match self {
            CrashTarget::ScenarioLegacy => {
                "an example of the field bug: cargo test checks it loses under legacy, not under fixed"
            }
            _ => "a regression: cargo test replays it and passes once the bug is fixed",
        }
    }

    /// What makes the target fail, for messages.
    pub fn failure(self) -> &'static str {
        match self {
            CrashTarget::Scenario => "a silent loss under the fixed rules",
            CrashTarget::ScenarioLegacy => "a silent loss under the legacy rules",
            CrashTarget::Ingress => "a device panic",
            CrashTarget::WiringOps => "bytes read out of order, or a panic",
            CrashTarget::ScenarioFile => "a panic of the loader or a run",
        }
    }

    /// The target's body, as the fuzzer calls it; `None` if this build lacks it.
    fn body(self) -> Option<fn(&[u8])> {
        match self {
            CrashTarget::Scenario => Some(scenario),
            CrashTarget::ScenarioLegacy => Some(scenario_legacy),
            CrashTarget::ScenarioFile => Some(scenario_file),
            #[cfg(feature = "testkit")]
            CrashTarget::Ingress => Some(ingress),
            #[cfg(feature = "testkit")]
            CrashTarget::WiringOps => Some(wiring_ops),
            #[cfg(not(feature = "testkit"))]
            CrashTarget::Ingress | CrashTarget::WiringOps => None,
        }
    }

    /// Checks that `data` is an input the target acts on (it skips the others unseen).
    fn accepts(self, data: &[u8]) -> Result<(), CrashError> {
        if data.is_empty() {
            return Err(CrashError::Empty);
        }
        match self {
            CrashTarget::Scenario | CrashTarget::ScenarioLegacy => {
                input_to_toml(data, self.policy().unwrap_or("fixed")).map(drop)
            }
            CrashTarget::ScenarioFile => std::str::from_utf8(data)
                .map(drop)
                .map_err(|_| CrashError::NotText),
            CrashTarget::Ingress | CrashTarget::WiringOps => Ok(()),
        }
    }

    /// Runs `data` through the target as the fuzzer did: the first line of its failure (the
    /// panic message), or why `data` is no crash of it. The panic still reaches the panic
    /// hook, which prints it unless the caller quietened it.
    pub fn reproduce(self, data: &[u8]) -> Result<String, CrashError> {
        self.accepts(data)?;
        let body = self.body().ok_or(CrashError::Unavailable(self))?;
        let payload = match std::panic::catch_unwind(|| body(data)) {
            Ok(()) => return Err(CrashError::Passes(self)),
            Err(payload) => payload,
        };
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        Ok(message.lines().next().unwrap_or_default().to_string())
    }

    /// Writes `data` (the input called `name`) into this target's folder under `root`, whole
    /// or not at all; returns where it went.
    pub fn keep(
        self,
        name: &std::ffi::OsStr,
        data: &[u8],
        root: &Path,
    ) -> Result<PathBuf, CrashError> {
        let dir = root.join(self.folder());
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let to = dir.join(name);
        crate::output::write_file(&to, data).map_err(CrashError::Output)?;
        Ok(to)
    }
}

/// The scenario file a scenario target's input stands for, with a header naming the target,
/// the input and the command that replays `out` (where it will be written).
pub fn crash_scenario(
    data: &[u8],
    target: CrashTarget,
    input: &Path,
    out: &Path,
) -> Result<String, CrashError> {
    let toml = input_to_toml(data, target.policy().unwrap_or("fixed"))?;
    let header = format!(
        "# From fuzz target `{}`, input {}.\n# Replay: fwsim run {}\n",
        target.name(),
        input.display(),
        out.display()
    );
    Ok(header + &toml)
}
