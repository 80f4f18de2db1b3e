//! Scenario files (TOML): firmware app, policy, link, peer workloads, seed.
//!
//! Errors name the file, line, column and field; unknown fields are errors. `--set key=value`
//! overrides are applied to the parsed document before it is checked, so they are checked the
//! same way.

use std::fmt;
use std::path::Path;

use firmware_core::app::{App, Echo, ForumSketch, MultiClientReceiver, ServerCloses};
use firmware_core::smoltcp::time::Duration;
use firmware_core::{DeviceConfig, Policy};
use serde::{Deserialize, Serialize};

use crate::inject::Injector;
use crate::link::{JitterDist, LinkParams};
use crate::peer::{parse_hex, Workload};

/// A scenario or override error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// File name, or `--set` for command-line overrides.
    pub origin: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{}:{}: {}", self.origin, line, col, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

/// Which backend runs the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Both stacks in one event loop (fast, microsecond timing).
    #[default]
    Loopback,
    /// Every host a turmoil host; packets as turmoil UDP datagrams; faults as turmoil actions.
    Turmoil,
}

/// A network fault applied at a time (turmoil backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultAction {
    /// Drop everything between device and peer.
    Partition,
    /// Undo a partition.
    Repair,
    /// Hold messages between device and peer (delivered at release).
    Hold,
    /// Release held messages.
    Release,
    /// Crash the device: firmware state is lost.
    Crash,
    /// Restart a crashed device (boots the firmware anew).
    Bounce,
}

/// `[[fault]]`: one action at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub at_ms: u64,
    pub action: FaultAction,
}

/// The firmware app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppName {
    Forum,
    MultiClient,
    ServerCloses,
    Echo,
}

/// A segment whose arrival at the device stalls the application loop (`device.loop_stall_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StallTrigger {
    /// A connection request (SYN without ACK).
    Syn,
    /// The peer's FIN.
    Fin,
    /// The peer's RST.
    Rst,
}

/// Injected system stalls of the application loop (the `device.loop_stall_*` fields).
#[derive(Debug, Clone, PartialEq)]
pub struct LoopStall {
    /// Segments whose arrival stalls the loop; empty: no stalls.
    pub on: Vec<StallTrigger>,
    pub stall: Duration,
    /// Hold the loop until the connection's FIN or RST (at most `max`), then `stall` more.
    pub until_close: bool,
    pub max: Duration,
}

/// `[device]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTable {
    pub app: AppName,
    #[serde(default = "default_port")]
    pub port: u16,
    /// `legacy` or `fixed`.
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default = "default_loop_period")]
    pub loop_period_us: u64,
    #[serde(default = "default_loop_jitter")]
    pub loop_jitter_us: u64,
    /// One loop iteration in `slow_loop_every` (on average) takes `slow_loop_us` longer
    /// (cloud or serial servicing); 0 disables.
    #[serde(default = "default_slow_every")]
    pub slow_loop_every: u64,
    #[serde(default = "default_slow_us")]
    pub slow_loop_us: u64,
    /// When one of these segments reaches the device, the application loop's next iteration
    /// waits at least `loop_stall_us` (the system thread busy at that moment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loop_stall_on: Vec<StallTrigger>,
    #[serde(default)]
    pub loop_stall_us: u64,
    /// With this set, a `loop_stall_on` segment holds the loop until the same connection's FIN
    /// or RST arrives (then `loop_stall_us` more), at most `loop_stall_max_ms`.
    #[serde(default)]
    pub loop_stall_until_close: bool,
    #[serde(default = "default_stall_max")]
    pub loop_stall_max_ms: u64,
    pub pool_size: Option<usize>,
    pub pool_reserved: Option<usize>,
    pub backlog: Option<usize>,
    pub wiring_buffer_size: Option<usize>,
    pub rx_buffer_size: Option<usize>,
    pub tx_buffer_size: Option<usize>,
    pub worker_delay_min_us: Option<u64>,
    pub worker_delay_max_us: Option<u64>,
    pub ack_delay_ms: Option<u64>,
    /// multi-client: client slots.
    #[serde(default = "default_slots")]
    pub slots: usize,
    /// multi-client: inactivity timeout.
    #[serde(default = "default_inactivity")]
    pub inactivity_timeout_ms: u64,
    /// multi-client: the message every connection repeats, hex (empty: no check).
    #[serde(default)]
    pub pattern_hex: String,
    /// server-closes: close after this many bytes.
    #[serde(default = "default_close_after")]
    pub close_after: usize,
}

fn default_stall_max() -> u64 {
    1000
}
fn default_port() -> u16 {
    6000
}
fn default_policy() -> String {
    "legacy".into()
}
fn default_loop_period() -> u64 {
    1000
}
fn default_loop_jitter() -> u64 {
    6
}
fn default_slow_every() -> u64 {
    50
}
fn default_slow_us() -> u64 {
    3000
}
fn default_slots() -> usize {
    5
}
fn default_inactivity() -> u64 {
    30_000
}
fn default_close_after() -> usize {
    10
}

/// Per-field link overrides (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverrides {
    pub delay_us: Option<u64>,
    pub jitter_us: Option<u64>,
    pub jitter_dist: Option<JitterDist>,
    pub loss_p: Option<f64>,
    pub loss_r: Option<f64>,
    pub loss_in_bad: Option<f64>,
    pub loss_in_good: Option<f64>,
    pub reorder: Option<f64>,
    pub duplicate: Option<f64>,
    pub rate_bps: Option<u64>,
    pub overhead_bytes: Option<u64>,
    pub slot_min_us: Option<u64>,
    pub slot_max_us: Option<u64>,
    pub slot_packets: Option<u32>,
    pub power_save_interval_us: Option<u64>,
    pub power_save_awake_us: Option<u64>,
    pub stall_every_ms: Option<u64>,
    pub stall_ms: Option<u64>,
}

impl LinkOverrides {
    fn apply(&self, p: &mut LinkParams) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { p.$f = v; } )* };
        }
        set!(
            delay_us,
            jitter_us,
            jitter_dist,
            loss_p,
            loss_r,
            loss_in_bad,
            loss_in_good,
            reorder,
            duplicate,
            rate_bps,
            overhead_bytes,
            slot_min_us,
            slot_max_us,
            slot_packets,
            power_save_interval_us,
            power_save_awake_us,
            stall_every_ms,
            stall_ms
        );
    }

    fn check(&self, origin: &str) -> Result<(), String> {
        for (name, v) in [
            ("loss_p", self.loss_p),
            ("loss_r", self.loss_r),
            ("loss_in_bad", self.loss_in_bad),
            ("loss_in_good", self.loss_in_good),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
        ] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!(
                        "{origin}.{name} = {v}: a probability must be in 0..=1"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `[link]`: a preset plus overrides for both directions, then per direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTable {
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(flatten)]
    pub both: LinkOverrides,
    #[serde(default)]
    pub uplink: LinkOverrides,
    #[serde(default)]
    pub downlink: LinkOverrides,
}

fn default_preset() -> String {
    "ideal".into()
}

impl Default for LinkTable {
    // A scenario without `[link]` runs on the ideal link, like `preset` left out.
    fn default() -> Self {
        LinkTable {
            preset: default_preset(),
            both: LinkOverrides::default(),
            uplink: LinkOverrides::default(),
            downlink: LinkOverrides::default(),
        }
    }
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub backend: Backend,
    /// The run stops here at the latest.
    #[serde(default = "default_duration")]
    pub max_duration_ms: u64,
    /// Time after the last peer program ends for the application to finish.
    #[serde(default = "default_drain")]
    pub drain_ms: u64,
    pub device: DeviceTable,
    #[serde(default)]
    pub link: LinkTable,
    #[serde(default)]
    pub peer: Vec<Workload>,
    /// Time step of the turmoil backend.
    #[serde(default = "default_turmoil_tick")]
    pub turmoil_tick_us: u64,
    /// Timed network faults (turmoil backend).
    #[serde(default)]
    pub fault: Vec<Fault>,
    /// Injectors applied on top of the file (see [`crate::inject`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inject: Vec<Injector>,
}

pub(crate) fn default_turmoil_tick() -> u64 {
    // The peer runs first in each step, so what reaches the device is exact at any tick; the
    // tick only delays the device's packets to the peer (Wi-Fi power save alone adds 100 ms).
    // 50 ms keeps the backend within 5x of the loopback's wall time (turmoil costs about
    // 4 us per step whatever happens); 1000 makes the peer's view exact to 1 ms.
    50_000
}

fn default_seed() -> u64 {
    1
}
fn default_duration() -> u64 {
    600_000
}
fn default_drain() -> u64 {
    3_000
}

/// The firmware app with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSpec {
    Forum,
    MultiClient {
        slots: usize,
        inactivity_timeout_ms: u64,
        pattern: Vec<u8>,
    },
    ServerCloses {
        close_after: usize,
    },
    Echo,
}

impl AppSpec {
    /// A fresh app instance.
    pub fn build(&self, port: u16) -> Box<dyn App> {
        match self {
            AppSpec::Forum => Box::new(ForumSketch::new(port)),
            AppSpec::MultiClient {
                slots,
                inactivity_timeout_ms,
                pattern,
            } => Box::new(MultiClientReceiver::new(
                port,
                *slots,
                Duration::from_millis(*inactivity_timeout_ms),
                pattern.clone(),
            )),
            AppSpec::ServerCloses { close_after } => {
                Box::new(ServerCloses::new(port, *close_after))
            }
            AppSpec::Echo => Box::new(Echo::new(port)),
        }
    }
}

/// Everything a run needs, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub name: String,
    pub seed: u64,
    pub backend: Backend,
    pub app: AppSpec,
    pub port: u16,
    pub policy: Policy,
    pub device: DeviceConfig,
    pub loop_period_us: u64,
    pub loop_jitter_us: u64,
    pub slow_loop_every: u64,
    pub slow_loop_us: u64,
    pub loop_stall: LoopStall,
    pub preset: String,
    pub uplink: LinkParams,
    pub downlink: LinkParams,
    pub workloads: Vec<Workload>,
    pub max_duration_ms: u64,
    pub drain_ms: u64,
    pub turmoil_tick_us: u64,
    pub faults: Vec<Fault>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

fn toml_error(origin: &str, text: Option<&str>, e: &toml::de::Error) -> ScenarioError {
    ScenarioError {
        origin: origin.to_string(),
        position: match (text, e.span()) {
            (Some(t), Some(span)) => Some(line_col(t, span.start)),
            _ => None,
        },
        message: e.message().trim().to_string(),
    }
}

/// Applies one `key.path=value` override to a document. The value is read as TOML
/// (`3`, `0.5`, `"x"`, `true`); anything else is taken as a string. `key+=value` appends to a
/// list (`inject+=fin-before-drain`).
pub fn apply_set(doc: &mut toml::Table, assignment: &str) -> Result<(), ScenarioError> {
    let err = |message: String| ScenarioError {
        origin: "--set".into(),
        position: None,
        message,
    };
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| err(format!("`{assignment}`: expected KEY=VALUE")))?;
    let (key, append) = match key.trim().strip_suffix('+') {
        Some(k) => (k.trim(), true),
        None => (key.trim(), false),
    };
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| err(format!("`{assignment}`: empty key")))?;
    let mut table = doc;
    for part in parts {
        // `peer.0.count` addresses the first [[peer]].
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(a) => {
                return set_in_array(a, key, last, parsed).map_err(err);
            }
            _ => return Err(err(format!("`{key}`: `{part}` is not a table"))),
        };
    }
    if !append {
        table.insert(last.to_string(), parsed);
        return Ok(());
    }
    match table
        .entry(last.to_string())
        .or_insert_with(|| toml::Value::Array(Vec::new()))
    {
        toml::Value::Array(a) => {
            a.push(parsed);
            Ok(())
        }
        _ => Err(err(format!("`{key}+=`: `{key}` is not a list"))),
    }
}

fn set_in_array(
    a: &mut [toml::Value],
    key: &str,
    last: &str,
    value: toml::Value,
) -> Result<(), String> {
    // Only `peer.N.field` is supported for arrays.
    let mut it = key.split('.').skip(1);
    let index: usize = it
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("`{key}`: use peer.N.{last} to address one [[peer]]"))?;
    let n = a.len();
    match a.get_mut(index) {
        Some(toml::Value::Table(t)) => {
            t.insert(last.to_string(), value);
            Ok(())
        }
        _ => Err(format!("`{key}`: there are {n} [[peer]] entries")),
    }
}

/// Reads a scenario file and resolves it, with `--set` overrides.
pub fn load(path: &Path, sets: &[String]) -> Result<RunConfig, ScenarioError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        origin: origin.clone(),
        position: None,
        message: format!("cannot read: {e}"),
    })?;
    parse(&origin, &text, sets)
}

/// Parses scenario text (`origin` names it in errors) and resolves it.
pub fn parse(origin: &str, text: &str, sets: &[String]) -> Result<RunConfig, ScenarioError> {
    // Checked against the file first, so errors point into it.
    let file: ScenarioFile =
        toml::from_str(text).map_err(|e| toml_error(origin, Some(text), &e))?;
    let file = if sets.is_empty() {
        file
    } else {
        let mut doc: toml::Table =
            toml::from_str(text).map_err(|e| toml_error(origin, Some(text), &e))?;
        for s in sets {
            apply_set(&mut doc, s)?;
        }
        ScenarioFile::deserialize(doc).map_err(|e| toml_error("--set", None, &e))?
    };
    resolve(origin, file)
}

/// Checks a parsed scenario and resolves it into a [`RunConfig`], after applying its injectors.
pub fn resolve(origin: &str, mut f: ScenarioFile) -> Result<RunConfig, ScenarioError> {
    f.inject.sort();
    f.inject.dedup();
    for injector in f.inject.clone() {
        injector.apply(&mut f);
    }
    let err = |message: String| ScenarioError {
        origin: origin.to_string(),
        position: None,
        message,
    };
    let policy = Policy::from_name(&f.device.policy).ok_or_else(|| {
        err(format!(
            "device.policy = {:?}: expected one of {:?}",
            f.device.policy,
            Policy::NAMES
        ))
    })?;
    let mut device = DeviceConfig::for_policy(&policy);
    let d = &f.device;
    macro_rules! over {
        ($($f:ident),*) => { $( if let Some(v) = d.$f { device.$f = v; } )* };
    }
    over!(
        pool_size,
        pool_reserved,
        backlog,
        wiring_buffer_size,
        rx_buffer_size,
        tx_buffer_size,
        worker_delay_min_us,
        worker_delay_max_us,
        ack_delay_ms
    );
    if device.worker_delay_min_us > device.worker_delay_max_us {
        return Err(err(
            "device.worker_delay_min_us must not exceed device.worker_delay_max_us".into(),
        ));
    }
    if device.wiring_buffer_size == 0 || device.rx_buffer_size == 0 || device.backlog == 0 {
        return Err(err(
            "device.wiring_buffer_size, rx_buffer_size and backlog must be at least 1".into(),
        ));
    }
    if d.loop_period_us == 0 {
        return Err(err("device.loop_period_us must be at least 1".into()));
    }
    let app = match d.app {
        AppName::Forum => AppSpec::Forum,
        AppName::MultiClient => AppSpec::MultiClient {
            slots: d.slots,
            inactivity_timeout_ms: d.inactivity_timeout_ms,
            pattern: parse_hex(&d.pattern_hex)
                .map_err(|e| err(format!("device.pattern_hex: {e}")))?,
        },
        AppName::ServerCloses => AppSpec::ServerCloses {
            close_after: d.close_after,
        },
        AppName::Echo => AppSpec::Echo,
    };
    let preset = f.link.preset.clone();
    let mut uplink = LinkParams::preset(&preset, false).ok_or_else(|| {
        err(format!(
            "link.preset = {preset:?}: expected one of {:?}",
            LinkParams::PRESETS
        ))
    })?;
    let mut downlink = LinkParams::preset(&preset, true).unwrap_or(uplink);
    for (name, o) in [
        ("link", &f.link.both),
        ("link.uplink", &f.link.uplink),
        ("link.downlink", &f.link.downlink),
    ] {
        o.check(name).map_err(err)?;
    }
    f.link.both.apply(&mut uplink);
    f.link.both.apply(&mut downlink);
    f.link.uplink.apply(&mut uplink);
    f.link.downlink.apply(&mut downlink);
    if f.turmoil_tick_us == 0 {
        return Err(err("turmoil_tick_us must be at least 1".into()));
    }
    if f.peer.is_empty() {
        return Err(err("no [[peer]] workload: nothing would connect".into()));
    }
    for (i, w) in f.peer.iter().enumerate() {
        parse_hex(&w.payload_hex).map_err(|e| err(format!("peer[{i}].payload_hex: {e}")))?;
        if w.start_delay_min_us > w.start_delay_max_us {
            return Err(err(format!(
                "peer[{i}]: start_delay_min_us exceeds start_delay_max_us"
            )));
        }
    }
    Ok(RunConfig {
        name: f.name,
        seed: f.seed,
        backend: f.backend,
        app,
        port: d.port,
        policy,
        device,
        loop_period_us: d.loop_period_us,
        loop_jitter_us: d.loop_jitter_us,
        slow_loop_every: d.slow_loop_every,
        slow_loop_us: d.slow_loop_us,
        loop_stall: LoopStall {
            on: d.loop_stall_on.clone(),
            stall: Duration::from_micros(d.loop_stall_us),
            until_close: d.loop_stall_until_close,
            max: Duration::from_millis(d.loop_stall_max_ms),
        },
        preset,
        uplink,
        downlink,
        workloads: f.peer,
        max_duration_ms: f.max_duration_ms,
        drain_ms: f.drain_ms,
        turmoil_tick_us: f.turmoil_tick_us,
        faults: f.fault,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\n[device]\napp = \"forum\"\n[[peer]]\ncount = 2\n";

    #[test]
    fn minimal_scenario_resolves_with_defaults() {
        let c = parse("t.toml", MINIMAL, &[]).unwrap();
        assert_eq!(c.policy, Policy::LEGACY);
        assert_eq!(c.uplink, LinkParams::IDEAL);
        assert_eq!(c.workloads[0].count, 2);
    }

    #[test]
    fn unknown_field_names_file_line_column_and_field() {
        let text = "name = \"t\"\n[device]\napp = \"forum\"\nloop_perod_us = 5\n[[peer]]\n";
        let e = parse("s.toml", text, &[]).unwrap_err();
        assert_eq!(e.origin, "s.toml");
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
        assert!(e.message.contains("loop_perod_us"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        for (text, needle) in [
            (
                "name = \"t\"\n[device]\napp = \"toaster\"\n[[peer]]\n",
                "toaster",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\npolicy = \"x\"\n[[peer]]\n",
                "device.policy",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[link]\npreset = \"5g\"\n[[peer]]\n",
                "link.preset",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[link]\nloss_p = 2.0\n[[peer]]\n",
                "loss_p",
            ),
            (
                "name = \"t\"\n[device]\napp = \"forum\"\n[[peer]]\npayload_hex = \"zz\"\n",
                "payload_hex",
            ),
            ("name = \"t\"\n[device]\napp = \"forum\"\n", "[[peer]]"),
            ("name = \"t\"\n[device\n", ""),
        ] {
            let e = parse("x.toml", text, &[]).unwrap_err();
            assert!(
                e.to_string().contains(needle),
                "{e} should mention {needle}"
            );
        }
    }

    #[test]
    fn set_overrides_fields_and_is_checked() {
        let sets = [
            "link.preset=wlan-bad".to_string(),
            "device.policy=fixed".into(),
            "peer.0.count=7".into(),
            "link.downlink.delay_us=9".into(),
        ];
        let c = parse("t.toml", MINIMAL, &sets).unwrap();
        assert_eq!(c.policy, Policy::FIXED);
        assert_eq!(c.workloads[0].count, 7);
        assert_eq!(c.downlink.delay_us, 9);
        assert_eq!(c.uplink.delay_us, 5_000);
        let e = parse("t.toml", MINIMAL, &["device.bogus=1".into()]).unwrap_err();
        assert_eq!(e.origin, "--set");
        assert!(e.message.contains("bogus"), "{e}");
        assert!(parse("t.toml", MINIMAL, &["novalue".into()]).is_err());
        assert!(parse("t.toml", MINIMAL, &["peer.3.count=1".into()]).is_err());
    }
}
