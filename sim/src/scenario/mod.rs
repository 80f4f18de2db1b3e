//! The scenario: one typed value that is the scenario file, the target of `--set` and `--vary`,
//! and the record of a run (`fwsim run --save-scenario`).
//!
//! Every knob is one field here (or in [`DeviceConfig`], [`LinkParams`], [`Workload`]) with a
//! doc comment and its range, checked when the file is loaded; [`load`] fills defaults and names
//! the file, line and field (or the `--set`) of any error.

use std::fmt;

use firmware_core::app::{
    App, ConnectedReader, Echo, ForumSketch, HttpServer, MultiClientReceiver, ServerCloses,
    ServerManager,
};
use firmware_core::range::{u16_in, u64_in, usize_in};
use firmware_core::smoltcp::time::Duration;
use firmware_core::{DeviceConfig, Policy};
use serde::{Deserialize, Serialize};

use crate::link::{LinkParams, Preset};
use crate::peer::{parse_hex, Workload};

mod load;
mod rules;
mod set;

pub use load::{load, parse};
pub use rules::RuleOverrides;
pub use set::{Set, SetFlag};

/// A complete scenario. [`load`] returns it with every default filled in; code that builds one
/// starts from [`Scenario::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in reports.
    pub name: String,
    /// One line on what the scenario is.
    #[serde(default)]
    pub description: String,
    /// Seed of every random draw of the run (split per component). Range: any u64.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The backend that runs it.
    #[serde(default)]
    pub backend: Backend,
    /// The run stops here at the latest (simulated). Range: 1..=86400000 (one day).
    #[serde(
        default = "default_duration",
        deserialize_with = "u64_in::<_, 1, 86400000>"
    )]
    pub max_duration_ms: u64,
    /// Time after the peer went quiet for the application to finish. Range: 0..=3600000.
    #[serde(
        default = "default_drain",
        deserialize_with = "u64_in::<_, 0, 3600000>"
    )]
    pub drain_ms: u64,
    /// A connection waiting on the device (handshake, unacknowledged bytes, or its FIN sent)
    /// that makes no progress for this long is `stalled`, a liveness failure
    /// ([`crate::Verdict::Stalled`]). The default, 60 s, is longer than any one retransmission
    /// timeout of the peer's stack (smoltcp backs off to at most 60 s only after six losses of
    /// the same segment in a row): a minute with nothing acknowledged, read or closed is a hang
    /// to any user. Range: 1..=86400000.
    #[serde(
        default = "default_liveness",
        deserialize_with = "u64_in::<_, 1, 86400000>"
    )]
    pub liveness_ms: u64,
    /// Time step of the turmoil backend; 0 (the default) picks the exact one, the minimum
    /// one-way delay from the device to the peer ([`Scenario::turmoil_tick`]). A larger tick
    /// runs faster but approximates: the report counts the packets it delivered late.
    /// Range: 0..=1000000.
    #[serde(default, deserialize_with = "u64_in::<_, 0, 1000000>")]
    pub turmoil_tick_us: u64,
    /// The firmware device.
    pub device: DeviceSpec,
    /// The WLAN link between device and peer.
    #[serde(default)]
    pub link: LinkSpec,
    /// The peer's workloads (`[[peer]]`): who connects, when, and what they send.
    #[serde(default)]
    pub peer: Vec<Workload>,
    /// Timed network faults (`[[fault]]`, turmoil backend).
    #[serde(default)]
    pub fault: Vec<Fault>,
    /// Named timing situations applied when the run starts (see [`Injector::apply`]).
    #[serde(default)]
    pub inject: Vec<Injector>,
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
/// The default of [`Scenario::liveness_ms`] (live mode uses it too).
pub const DEFAULT_LIVENESS_MS: u64 = 60_000;

fn default_liveness() -> u64 {
    DEFAULT_LIVENESS_MS
}

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
    /// When (simulated). Range: 0..=86400000.
    #[serde(deserialize_with = "u64_in::<_, 0, 86400000>")]
    pub at_ms: u64,
    /// What.
    pub action: FaultAction,
}

/// The firmware app a scenario names (a [`crate::Sim`] can run any other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppName {
    /// The forum sketch of the field report.
    Forum,
    /// The 5-slot receiver (`slots`, `inactivity_timeout_ms`, `pattern_hex`).
    MultiClient,
    /// Closes after `close_after` bytes.
    ServerCloses,
    /// Echoes what it reads.
    Echo,
    /// One client at a time, a byte per `available()` while `connected()`
    /// (`consume_us_per_byte`).
    ConnectedReader,
    /// Worker slots (`slots`), each answering a request after `service_time_ms`.
    HttpServer,
    /// Device OS's TCP server test app: no server until a control request starts one
    /// (`fwsim serve --control`).
    TcpServer,
}

/// The device's socket rules and defaults: a stack preset ([`firmware_core::STACKS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyName {
    /// Device OS 0.5.3: the rules that lose data ([`Policy::LEGACY`]).
    #[default]
    Legacy,
    /// The rules that lose nothing ([`Policy::FIXED`]).
    Fixed,
    /// ESP8266 Arduino core 2.6 (esp8266/Arduino #2569: R3, R5).
    #[serde(rename = "esp8266-arduino-2.6")]
    Esp8266Arduino26,
    /// ESP8266 Arduino core 2.7 (esp8266/Arduino #6701: R2).
    #[serde(rename = "esp8266-arduino-2.7")]
    Esp8266Arduino27,
    /// ESP32 Arduino core 2.0 (espressif/arduino-esp32 #8042: R2).
    #[serde(rename = "esp32-arduino-2.0")]
    Esp32Arduino20,
    /// Electron, Device OS 0.5 (particle-iot/device-os #896: R6).
    #[serde(rename = "electron-0.5")]
    Electron05,
    /// Photon, Device OS 0.4 (particle-iot/device-os #660: R10 on L1-L7).
    #[serde(rename = "photon-0.4")]
    Photon04,
    /// BK72xx OpenBK7231T_App before PR #2191 (R9: backlog 1).
    #[serde(rename = "bk72xx-backlog0")]
    Bk72xxBacklog0,
    /// smoltcp 0.4 (smoltcp-rs/smoltcp #111: R7).
    #[serde(rename = "smoltcp-0.4")]
    Smoltcp04,
}

impl PolicyName {
    /// Every preset, in the order of [`firmware_core::STACKS`].
    pub const ALL: [PolicyName; 9] = [
        PolicyName::Legacy,
        PolicyName::Fixed,
        PolicyName::Esp8266Arduino26,
        PolicyName::Esp8266Arduino27,
        PolicyName::Esp32Arduino20,
        PolicyName::Electron05,
        PolicyName::Photon04,
        PolicyName::Bk72xxBacklog0,
        PolicyName::Smoltcp04,
    ];

    /// The stack preset.
    pub fn preset(self) -> &'static firmware_core::StackPreset {
        let i = PolicyName::ALL.iter().position(|p| *p == self).unwrap_or(0);
        &firmware_core::STACKS[i]
    }

    /// The rules.
    pub fn policy(self) -> Policy {
        self.preset().policy
    }

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        self.preset().name
    }

    /// The preset called `name`.
    pub fn from_name(name: &str) -> Option<PolicyName> {
        PolicyName::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A segment whose arrival at the device stalls the application loop (`device.loop_stall_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StallTrigger {
    /// A connection request (SYN without ACK).
    Syn,
    /// The peer's FIN.
    Fin,
    /// The peer's RST.
    Rst,
}

/// A named timing situation (see [`Injector::apply`] for what each arranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injector {
    /// The application loop stalls when the peer's FIN reaches the device.
    FinBeforeDrain,
    /// A SYN holds the loop until that connection's FIN arrives.
    DataFinBeforeAccept,
    /// Peers abort with RST once acknowledged; a SYN holds the loop until the RST arrives.
    RstBeforeAccept,
    /// Connections open four at a time.
    SynBurst,
    /// Hold connections occupy every server slot for two seconds before the workload.
    SlotsBusy,
    /// 5-10 ms of uniform jitter toward the device: FINs overtake data.
    FinOvertakesData,
}

/// `[device]`: the firmware app, its socket rules and timing, and the device's knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// The firmware app.
    pub app: AppName,
    /// The port the app's server listens on. Range: 1..=65535.
    #[serde(default = "default_port", deserialize_with = "u16_in::<_, 1, 65535>")]
    pub port: u16,
    /// The socket rules.
    #[serde(default)]
    pub policy: PolicyName,
    /// Application loop period. Range: 1..=10000000.
    #[serde(
        default = "default_loop_period",
        deserialize_with = "u64_in::<_, 1, 10000000>"
    )]
    pub loop_period_us: u64,
    /// Uniform extra time per loop iteration, `0..=loop_jitter_us`. Range: 0..=10000000.
    #[serde(
        default = "default_loop_jitter",
        deserialize_with = "u64_in::<_, 0, 10000000>"
    )]
    pub loop_jitter_us: u64,
    /// One loop iteration in `slow_loop_every` (on average) takes `slow_loop_us` longer
    /// (cloud or serial servicing); 0 disables. Range: 0..=1000000.
    #[serde(
        default = "default_slow_every",
        deserialize_with = "u64_in::<_, 0, 1000000>"
    )]
    pub slow_loop_every: u64,
    /// Extra time of a slow iteration. Range: 0..=10000000.
    #[serde(
        default = "default_slow_us",
        deserialize_with = "u64_in::<_, 0, 10000000>"
    )]
    pub slow_loop_us: u64,
    /// When one of these segments reaches the device, the loop's next iteration waits at least
    /// `loop_stall_us` (the system thread busy at that moment).
    #[serde(default)]
    pub loop_stall_on: Vec<StallTrigger>,
    /// Length of an injected stall. Range: 0..=10000000.
    #[serde(default, deserialize_with = "u64_in::<_, 0, 10000000>")]
    pub loop_stall_us: u64,
    /// A `loop_stall_on` segment holds the loop until the same connection's FIN or RST
    /// arrives (then `loop_stall_us` more), at most `loop_stall_max_ms`.
    #[serde(default)]
    pub loop_stall_until_close: bool,
    /// Longest hold. Range: 0..=3600000.
    #[serde(
        default = "default_stall_max",
        deserialize_with = "u64_in::<_, 0, 3600000>"
    )]
    pub loop_stall_max_ms: u64,
    /// multi-client: client slots. Range: 1..=64.
    #[serde(default = "default_slots", deserialize_with = "usize_in::<_, 1, 64>")]
    pub slots: usize,
    /// multi-client: inactivity timeout. Range: 1..=86400000.
    #[serde(
        default = "default_inactivity",
        deserialize_with = "u64_in::<_, 1, 86400000>"
    )]
    pub inactivity_timeout_ms: u64,
    /// multi-client: the message every connection repeats, hex (empty: no check).
    #[serde(default)]
    pub pattern_hex: String,
    /// connected-reader: time to process one byte. Range: 0..=10000000.
    #[serde(default, deserialize_with = "u64_in::<_, 0, 10000000>")]
    pub consume_us_per_byte: u64,
    /// http-server: time from taking a client to answering its request. Range: 0..=3600000.
    #[serde(default, deserialize_with = "u64_in::<_, 0, 3600000>")]
    pub service_time_ms: u64,
    /// Socket rules switched away from the preset's value (`[device.rules]`).
    #[serde(default)]
    pub rules: RuleOverrides,
    /// server-closes: close after this many bytes. Range: 1..=1073741824.
    #[serde(
        default = "default_close_after",
        deserialize_with = "usize_in::<_, 1, 1073741824>"
    )]
    pub close_after: usize,
    /// The device's pool, buffers and Wi-Fi worker timing. Left out of a file, each takes the
    /// preset's default ([`firmware_core::StackPreset::device`]).
    #[serde(flatten)]
    pub stack: DeviceConfig,
}

fn default_stall_max() -> u64 {
    1000
}
fn default_port() -> u16 {
    6000
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

impl DeviceSpec {
    /// A fresh instance of the app this table names, listening on `port`.
    pub fn build_app(&self, port: u16) -> Box<dyn App> {
        match self.app {
            AppName::Forum => Box::new(ForumSketch::new(port)),
            AppName::MultiClient => Box::new(MultiClientReceiver::new(
                port,
                self.slots,
                Duration::from_millis(self.inactivity_timeout_ms),
                parse_hex(&self.pattern_hex).unwrap_or_default(),
            )),
            AppName::ServerCloses => Box::new(ServerCloses::new(port, self.close_after)),
            AppName::Echo => Box::new(Echo::new(port)),
            AppName::ConnectedReader => Box::new(ConnectedReader::new(
                port,
                Duration::from_micros(self.consume_us_per_byte),
            )),
            AppName::HttpServer => Box::new(HttpServer::new(
                port,
                self.slots,
                Duration::from_millis(self.service_time_ms),
            )),
            AppName::TcpServer => Box::new(ServerManager::new()),
        }
    }

    /// The app with every other field at its default (the policy's device knobs).
    pub fn new(app: AppName, policy: PolicyName) -> DeviceSpec {
        DeviceSpec {
            app,
            port: default_port(),
            policy,
            loop_period_us: default_loop_period(),
            loop_jitter_us: default_loop_jitter(),
            slow_loop_every: default_slow_every(),
            slow_loop_us: default_slow_us(),
            loop_stall_on: Vec::new(),
            loop_stall_us: 0,
            loop_stall_until_close: false,
            loop_stall_max_ms: default_stall_max(),
            slots: default_slots(),
            inactivity_timeout_ms: default_inactivity(),
            pattern_hex: String::new(),
            close_after: default_close_after(),
            consume_us_per_byte: 0,
            service_time_ms: 0,
            rules: RuleOverrides::default(),
            stack: policy.preset().device,
        }
    }
}

/// `[link]`: a preset, then both directions complete. In a file, keys directly under `[link]`
/// apply to both directions and `[link.uplink]`/`[link.downlink]` to one; what is left out
/// comes from the preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The preset the directions started from.
    pub preset: Preset,
    /// Device to peer.
    pub uplink: LinkParams,
    /// Peer to device (power save applies here).
    pub downlink: LinkParams,
}

impl LinkSpec {
    /// Both directions as the preset has them.
    pub fn preset(preset: Preset) -> LinkSpec {
        LinkSpec {
            preset,
            uplink: preset.params(false),
            downlink: preset.params(true),
        }
    }
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec::preset(Preset::Ideal)
    }
}

/// Why a scenario is not valid, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file name, or the flag that set the value (`--set KEY=VALUE`, `--policy fixed`).
    pub origin: String,
    /// 1-based line and column in the file, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong, starting with the field's path when known.
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

/// A rule between fields that a field's own range cannot express, broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// The field's path (`peer.0.payload_hex`), for finding where it was set.
    pub(crate) path: String,
    pub(crate) message: String,
}

/// The turmoil backend's time step for a scenario, and whether it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurmoilTick {
    /// The step.
    pub tick_us: u64,
    /// No packet can arrive inside the step it was sent in: both directions keep their
    /// link-model times (the peer runs first in a step, so the device's side is always exact).
    pub exact: bool,
}

/// The tick when the link from the device to the peer can be instant (no exact tick exists).
pub const APPROXIMATE_TICK_US: u64 = 100;

/// A tick every host's timers agree with: tokio's timers have millisecond resolution, so a
/// sleeping host wakes on a millisecond boundary, which must also be a step boundary. A tick
/// divides 1000 us or is a whole number of milliseconds.
pub fn tick_is_aligned(tick_us: u64) -> bool {
    tick_us > 0 && (1000u64.is_multiple_of(tick_us) || tick_us.is_multiple_of(1000))
}

/// The largest aligned tick no larger than `us` (at least 1 us).
fn aligned_tick_at_most(us: u64) -> u64 {
    if us >= 1000 {
        us / 1000 * 1000
    } else {
        (1..=us.max(1))
            .rev()
            .find(|&t| 1000u64.is_multiple_of(t))
            .unwrap_or(1)
    }
}

impl Scenario {
    /// The turmoil tick: `turmoil_tick_us` if set, else the minimum one-way delay from the
    /// device to the peer, the lookahead of conservative parallel simulation (a packet the
    /// device sends in one step then reaches the peer no earlier than the next, when the peer
    /// runs first), rounded down to an aligned tick ([`tick_is_aligned`]): 50 us on
    /// `wlan-good`. A link with no minimum delay (the `ideal` preset) has no exact tick;
    /// [`APPROXIMATE_TICK_US`] is used and the report says so.
    pub fn turmoil_tick(&self) -> TurmoilTick {
        let lookahead_us = self.link.uplink.min_one_way_delay_us();
        match self.turmoil_tick_us {
            0 if lookahead_us == 0 => TurmoilTick {
                tick_us: APPROXIMATE_TICK_US,
                exact: false,
            },
            0 => TurmoilTick {
                tick_us: aligned_tick_at_most(lookahead_us.min(1_000_000)),
                exact: true,
            },
            tick_us => TurmoilTick {
                tick_us,
                exact: tick_us <= lookahead_us,
            },
        }
    }

    /// A scenario of `app` under `policy` with one default `nc` workload on the ideal link.
    pub fn new(name: &str, app: AppName, policy: PolicyName) -> Scenario {
        Scenario {
            name: name.into(),
            description: String::new(),
            seed: default_seed(),
            backend: Backend::default(),
            max_duration_ms: default_duration(),
            drain_ms: default_drain(),
            liveness_ms: default_liveness(),
            turmoil_tick_us: 0,
            device: DeviceSpec::new(app, policy),
            link: LinkSpec::default(),
            peer: vec![Workload::default()],
            fault: Vec::new(),
            inject: Vec::new(),
        }
    }

    /// The device's socket rules: the preset's, with `[device.rules]` applied.
    pub fn policy(&self) -> Policy {
        self.device.rules.apply(self.device.policy.policy())
    }

    /// The name of the rules in reports: the preset's, `+rules` when `[device.rules]` switched
    /// some.
    pub fn policy_label(&self) -> String {
        let name = self.device.policy.name();
        if self.device.rules.is_empty() {
            name.into()
        } else {
            format!("{name}+rules")
        }
    }

    /// Checks the rules between fields (ranges of single fields are checked when a file is
    /// read; a scenario built in code is checked here too, before it runs).
    pub(crate) fn invalid(&self) -> Option<Invalid> {
        let bad = |path: &str, message: String| {
            Some(Invalid {
                path: path.into(),
                message,
            })
        };
        if let Err(e) = self.device.stack.check() {
            return bad("device", e.to_string());
        }
        if let Err(e) = parse_hex(&self.device.pattern_hex) {
            return bad("device.pattern_hex", e.to_string());
        }
        for (name, p) in [
            ("uplink", &self.link.uplink),
            ("downlink", &self.link.downlink),
        ] {
            if let Err((field, e)) = p.check() {
                return bad(&format!("link.{name}.{field}"), e);
            }
        }
        if self.turmoil_tick_us != 0 && !tick_is_aligned(self.turmoil_tick_us) {
            return bad(
                "turmoil_tick_us",
                format!(
                    "{} does not divide 1000 and is not a multiple of 1000 (tokio's timers \
                     have millisecond resolution, so a tick must line up with them); 0 picks \
                     the exact tick",
                    self.turmoil_tick_us
                ),
            );
        }
        if self.peer.is_empty() {
            return bad("peer", "no [[peer]] workload: nothing would connect".into());
        }
        for (i, w) in self.peer.iter().enumerate() {
            if let Err((field, e)) = w.check() {
                return bad(&format!("peer[{i}].{field}"), e);
            }
        }
        if self.peer.iter().all(|w| w.count == 0) {
            return bad(
                "peer",
                "every [[peer]] has count = 0: nothing would connect".into(),
            );
        }
        None
    }

    /// The scenario as TOML (the record of a run: loading it gives this value back).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
    }
}
