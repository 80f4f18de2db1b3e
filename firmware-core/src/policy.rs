//! Socket-layer rules of the device, one switch per rule.
//!
//! Each field is one rule of `shared/legacy-model.md` (L1-L7 and their fixes F1-F8) and is read in
//! exactly one place of the HAL or Wiring layer; the doc comment names that place. A new rule from
//! another embedded stack (ESP32 Arduino core, WiFi101, FreeRTOS+TCP) is one more field, its
//! legacy/fixed value in the presets, and one branch at the place it governs.

/// How `TcpClient::available()` refills the Wiring buffer from the stack (`hal::Hal::receive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum RxCopy {
    /// L1: each call copies from at most one received packet (`read_packet_and_dispose`).
    OnePacketPerCall,
    /// F7: each call copies as much as fits.
    DrainAll,
}

/// What `TcpClient::connected()` looks at (`wiring::TcpClient::connected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum ConnectedRule {
    /// L2: `status() || bufferCount() > 0`; when false, probe `available()` once and `stop()`
    /// if it returns 0. The probe moves stack data into the Wiring buffer as a side effect.
    StatusOrBuffered,
    /// F2: true while unread data remains anywhere (stack or Wiring buffer), without moving it;
    /// `stop()` only when nothing is left and the peer has closed.
    AnyUnreadData,
    /// R2 (ESP8266 Arduino 2.4.2+ `state() == CLOSED` check with CLOSE_WAIT mapped to CLOSED,
    /// ESP32 Arduino 2.x zero-length `recv`): true only while the stack has not processed the
    /// peer's FIN or RST, whatever is still unread; when false, `stop()`.
    OpenOnly,
}

/// When reads start reporting end of stream (`hal::Hal::read_gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum EofRule {
    /// Fixed: every byte received before the peer's FIN is readable, then end of stream.
    AfterData,
    /// R1: once the stack has processed the peer's FIN, reads and `available()` return
    /// nothing although bytes are queued (Wiznet W5500 driver in CLOSE_WAIT).
    AtPeerFin,
    /// R6: once the out-of-band close notice has been handled (the networking worker's
    /// "disconnected" job, the modem's `+UUSOCL` URC on the Electron), reads return nothing
    /// although bytes are queued: the close notice wins over the data still to be fetched.
    AtCloseNotice,
}

/// What a SYN does when every connection control block holds a live connection
/// (`hal::Hal::syn_admission`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum PoolOverflow {
    /// Fixed: the SYN finds no socket and the stack refuses it with RST.
    Refuse,
    /// R10 (lwIP `tcp_alloc` -> `tcp_kill_prio`): the oldest live connection is aborted (RST,
    /// its unread data freed) and its control block given to the new one.
    EvictOldest,
}

/// What `stop()` sends when unread data remains (`hal::Hal::close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum StopWithUnread {
    /// L7: FIN, so the peer never learns the data was discarded.
    Fin,
    /// F5: RST (RFC 1122 4.2.2.13).
    Rst,
}

/// What happens to a SYN when the listen backlog is full (`ingress::IngressFilter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum SynOverflow {
    /// L5: dropped silently; the peer retransmits after its RTO.
    DropSilently,
    /// F4: refused visibly with RST (smoltcp's answer when no socket listens).
    Reset,
}

/// The set of socket-layer rules. Build one from a preset and flip fields as needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// L1 / F7.
    pub rx_copy: RxCopy,
    /// L2 / F2.
    pub connected_rule: ConnectedRule,
    /// L3 (true) / F1 (false): when the HAL sees the worker's "disconnected" flag on an accepted
    /// socket, it closes it and frees unread receive data (`hal::Hal::check_closed`).
    pub fin_frees_unread_data: bool,
    /// L4 (true) / F3 (false): a connection flagged dead while still in the accept queue is
    /// handed out dead and its data freed on first use (`hal::Hal::check_closed`).
    pub accept_hands_out_dead: bool,
    /// L5 / F4.
    pub syn_overflow: SynOverflow,
    /// L6 (true) / F8 (false): a connection the application closed keeps its pool slot through
    /// TIME-WAIT, until TIME-WAIT ends or lwIP's allocator reclaims it for a new connection
    /// (`hal::Hal::collect_garbage`); F8 frees it at once.
    pub time_wait_holds_slot: bool,
    /// L7 / F5.
    pub stop_with_unread: StopWithUnread,
    /// Legacy (false) / F6 (true): `write()` is allowed after the peer's FIN (half-close);
    /// legacy requires `status()` (`wiring::TcpClient::write`).
    pub write_after_peer_fin: bool,
    /// R1 / R6 / fixed.
    pub eof_rule: EofRule,
    /// R3 (true) / F3 (false): a connection not yet taken by `accept` has no receive handler;
    /// the stack acknowledges and frees its data and answers its FIN by closing (lwIP
    /// `tcp_recv_null`, ESP8266 Arduino git after #6887) (`hal::Hal::observe`, which hands such
    /// connections to `discard_unclaimed`).
    pub pre_accept_data_discarded: bool,
    /// R5 (true) / fixed (false): the peer's FIN on an accepted connection is answered with RST
    /// instead of entering CLOSE-WAIT (ESP8266 `ClientContext::_recv(pb == NULL)` calling
    /// `abort()`); data received before it stays readable (`hal::Hal::observe_data_and_close`).
    pub fin_answered_with_rst: bool,
    /// R7 (true) / fixed (false): a FIN in a segment beyond a sequence hole is accepted, the
    /// socket enters CLOSE-WAIT and the missing data is never delivered (smoltcp 0.4, issue
    /// #111). smoltcp 0.14 ignores such a FIN, so the rule lives in the receive path in front of
    /// it (`ingress::FinPastHole`, switched on in `Device::new`).
    pub fin_past_hole_accepted: bool,
    /// R8 (true) / fixed (false): the peer's RST frees received data the application has not
    /// read yet (`hal::Hal::observe_data_and_close`); fixed keeps it readable, then reports the
    /// reset.
    pub rst_frees_unread_data: bool,
    /// R10 / fixed.
    pub pool_overflow: PoolOverflow,
}

impl Policy {
    /// Device OS 0.5.3 on the Photon: rules L1-L7, the data-losing ones.
    pub const LEGACY: Policy = Policy {
        rx_copy: RxCopy::OnePacketPerCall,
        connected_rule: ConnectedRule::StatusOrBuffered,
        fin_frees_unread_data: true,
        accept_hands_out_dead: true,
        syn_overflow: SynOverflow::DropSilently,
        time_wait_holds_slot: true,
        stop_with_unread: StopWithUnread::Fin,
        write_after_peer_fin: false,
        eof_rule: EofRule::AfterData,
        pre_accept_data_discarded: false,
        fin_answered_with_rst: false,
        fin_past_hole_accepted: false,
        rst_frees_unread_data: false,
        pool_overflow: PoolOverflow::Refuse,
    };

    /// Rules F1-F8: lose nothing, or tell the peer.
    pub const FIXED: Policy = Policy {
        rx_copy: RxCopy::DrainAll,
        connected_rule: ConnectedRule::AnyUnreadData,
        fin_frees_unread_data: false,
        accept_hands_out_dead: false,
        syn_overflow: SynOverflow::Reset,
        time_wait_holds_slot: false,
        stop_with_unread: StopWithUnread::Rst,
        write_after_peer_fin: true,
        eof_rule: EofRule::AfterData,
        pre_accept_data_discarded: false,
        fin_answered_with_rst: false,
        fin_past_hole_accepted: false,
        rst_frees_unread_data: false,
        pool_overflow: PoolOverflow::Refuse,
    };

    /// The preset names accepted by [`Policy::from_name`] (`crate::stacks::STACKS`).
    pub const NAMES: [&'static str; crate::stacks::STACKS.len()] = {
        let mut names = [""; crate::stacks::STACKS.len()];
        let mut i = 0;
        while i < names.len() {
            names[i] = crate::stacks::STACKS[i].name;
            i += 1;
        }
        names
    };

    /// Looks up a stack preset's rules by name.
    pub fn from_name(name: &str) -> Option<Policy> {
        crate::stacks::stack(name).map(|s| s.policy)
    }

    /// The name of the first stack preset with these rules, else `"custom"`.
    pub fn name(&self) -> &'static str {
        crate::stacks::STACKS
            .iter()
            .find(|s| s.policy == *self)
            .map_or("custom", |s| s.name)
    }
}

/// Sizes and timings of the device, with Photon defaults.
///
/// With the `serde` feature it is (de)serialisable: unknown fields are rejected and every number
/// must lie in the range its doc comment states (enforced by the `deserialize_with` helper from
/// `crate::range` next to it; a test checks that doc and helper agree). Rules between fields are
/// in [`DeviceConfig::check`]. A new knob is one field here: its doc with the range, and its
/// range attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, default)
)]
pub struct DeviceConfig {
    /// lwIP `MEMP_NUM_TCP_PCB`: connection control blocks in all. Range: 1..=64.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::usize_in::<_, 1, 64>")
    )]
    pub pool_size: usize,
    /// Control blocks held by the cloud connection (not available to the server).
    /// Range: 0..=63.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::usize_in::<_, 0, 63>")
    )]
    pub pool_reserved: usize,
    /// Connections received but not yet taken by `TcpServer::available()` (L5: 1).
    /// Range: 1..=64.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::usize_in::<_, 1, 64>")
    )]
    pub backlog: usize,
    /// `TCPCLIENT_BUF_MAX_SIZE` of the Wiring `TCPClient`, allocated per accepted client.
    /// Range: 1..=65535.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::usize_in::<_, 1, 65535>")
    )]
    pub wiring_buffer_size: usize,
    /// Stack receive buffer (advertised window) per connection, allocated per pool slot.
    /// Range: 1..=1048576 (beyond 65535 smoltcp scales the window).
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::usize_in::<_, 1, 1048576>")
    )]
    pub rx_buffer_size: usize,
    /// Stack transmit buffer per connection, allocated per pool slot. Range: 1..=1048576.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::usize_in::<_, 1, 1048576>")
    )]
    pub tx_buffer_size: usize,
    /// Delay of the Wi-Fi networking worker thread handling one notification, lower bound.
    /// Range: 0..=10000000 (10 s).
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::u64_in::<_, 0, 10000000>")
    )]
    pub worker_delay_min_us: u64,
    /// Upper bound (inclusive) of the worker delay; each notification draws uniformly.
    /// Range: 0..=10000000 (10 s).
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::u64_in::<_, 0, 10000000>")
    )]
    pub worker_delay_max_us: u64,
    /// Delayed-ACK timeout of the device stack (lwIP: up to 250 ms; 0 acknowledges at once).
    /// Range: 0..=10000 (10 s).
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::u64_in::<_, 0, 10000>")
    )]
    pub ack_delay_ms: u64,
    /// TCP keep-alive interval of the device's sockets; 0: off (lwIP without `SO_KEEPALIVE`).
    /// A peer that vanished without FIN or RST is then detected and the socket reset.
    /// Range: 0..=7200000 (2 h).
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::u64_in::<_, 0, 7200000>")
    )]
    pub keep_alive_ms: u64,
    /// Servers listening at once (WICED's `WICED_MAXIMUM_NUMBER_OF_SERVERS`: 5); one more
    /// `TCPServer::begin()` fails. Range: 1..=64.
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::range::usize_in::<_, 1, 64>")
    )]
    pub max_servers: usize,
}

/// A rule between [`DeviceConfig`] fields that [`DeviceConfig::check`] found broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `worker_delay_min_us` exceeds `worker_delay_max_us`.
    WorkerDelayInverted {
        /// The configured lower bound, in microseconds.
        min_us: u64,
        /// The configured upper bound, in microseconds.
        max_us: u64,
    },
    /// `pool_reserved` leaves no control block for the server (`pool_reserved >= pool_size`).
    NoServerSlot {
        /// The configured pool size.
        pool_size: usize,
        /// The configured reserved blocks.
        pool_reserved: usize,
    },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ConfigError::WorkerDelayInverted { min_us, max_us } => write!(
                f,
                "worker_delay_min_us ({min_us}) must not exceed worker_delay_max_us ({max_us})"
            ),
            ConfigError::NoServerSlot {
                pool_size,
                pool_reserved,
            } => write!(
                f,
                "pool_reserved ({pool_reserved}) must be less than pool_size ({pool_size}), \
                 or the server has no connection slot"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

impl DeviceConfig {
    /// Particle Photon, Device OS 0.5.3 (see `legacy-model.md`, "Timing facts").
    pub const PHOTON: DeviceConfig = DeviceConfig {
        pool_size: 5,
        pool_reserved: 1,
        backlog: 1,
        wiring_buffer_size: 128,
        rx_buffer_size: 4096,
        tx_buffer_size: 4096,
        worker_delay_min_us: 50,
        // Fitted, not measured (no source gives the WICED worker thread's latency): the one
        // field figure, 40-50% of nc messages lost (`field-report.md`), reached with
        // `fwsim fit scenarios/field/photon-forum-nc.toml --policy legacy
        //  --target loss_fraction=0.40..0.50 --free device.worker_delay_max_us=100..10000
        //  --seeds 200` (2026-12-02: region 3039-3813 us, chosen 3349 us, loss 0.442,
        // 95% CI 0.430-0.455). See docs/field-reports.md.
        worker_delay_max_us: 3349,
        ack_delay_ms: 250,
        keep_alive_ms: 0,
        max_servers: 5,
    };

    /// The defaults that go with a policy: those of the first stack preset with these rules
    /// (the fixed firmware raised the pool to 10, PR #1350, and uses a backlog of 4), else the
    /// Photon's.
    pub fn for_policy(policy: &Policy) -> DeviceConfig {
        crate::stacks::STACKS
            .iter()
            .find(|s| s.policy == *policy)
            .map_or(DeviceConfig::PHOTON, |s| s.device)
    }

    /// Connection slots available to the application's server.
    pub fn server_slots(&self) -> usize {
        self.pool_size.saturating_sub(self.pool_reserved)
    }

    /// Checks the rules between fields (the range of each field is checked on deserialisation).
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.worker_delay_min_us > self.worker_delay_max_us {
            return Err(ConfigError::WorkerDelayInverted {
                min_us: self.worker_delay_min_us,
                max_us: self.worker_delay_max_us,
            });
        }
        if self.pool_reserved >= self.pool_size {
            return Err(ConfigError::NoServerSlot {
                pool_size: self.pool_size,
                pool_reserved: self.pool_reserved,
            });
        }
        Ok(())
    }
}

/// [`DeviceConfig::PHOTON`].
impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig::PHOTON
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_by_name() {
        for name in Policy::NAMES {
            // Two stacks may share rules (they differ in device defaults): the name found is
            // one with the same rules.
            let rules = Policy::from_name(name).unwrap();
            assert_eq!(Policy::from_name(rules.name()), Some(rules), "{name}");
        }
        assert_eq!(Policy::LEGACY.name(), "legacy");
        assert_eq!(Policy::FIXED.name(), "fixed");
        assert!(Policy::from_name("photon").is_none());
        let custom = Policy {
            rx_copy: RxCopy::DrainAll,
            ..Policy::LEGACY
        };
        assert_eq!(custom.name(), "custom");
    }

    #[test]
    fn legacy_and_fixed_differ_in_every_rule() {
        let (l, f) = (Policy::LEGACY, Policy::FIXED);
        assert_ne!(l.rx_copy, f.rx_copy);
        assert_ne!(l.connected_rule, f.connected_rule);
        assert_ne!(l.fin_frees_unread_data, f.fin_frees_unread_data);
        assert_ne!(l.accept_hands_out_dead, f.accept_hands_out_dead);
        assert_ne!(l.syn_overflow, f.syn_overflow);
        assert_ne!(l.time_wait_holds_slot, f.time_wait_holds_slot);
        assert_ne!(l.stop_with_unread, f.stop_with_unread);
        assert_ne!(l.write_after_peer_fin, f.write_after_peer_fin);
    }
}

/// `DeviceConfig` as a configuration file: ranges, unknown fields, and docs that match the checks.
#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use alloc::format;
    use alloc::string::{String, ToString};

    use super::*;

    const PHOTON_TOML: &str = "pool_size = 5
pool_reserved = 1
backlog = 1
wiring_buffer_size = 128
rx_buffer_size = 4096
tx_buffer_size = 4096
worker_delay_min_us = 50
worker_delay_max_us = 3349
ack_delay_ms = 250
";

    fn parse(text: &str) -> Result<DeviceConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn in_range_config_deserialises() {
        assert_eq!(parse(PHOTON_TOML), Ok(DeviceConfig::PHOTON));
        assert_eq!(DeviceConfig::PHOTON.check(), Ok(()));
    }

    #[test]
    fn serialise_round_trips() {
        let fixed = DeviceConfig::for_policy(&Policy::FIXED);
        let text = toml::to_string(&fixed).unwrap();
        assert_eq!(parse(&text), Ok(fixed));
    }

    #[test]
    fn out_of_range_fails_naming_the_range() {
        let text = PHOTON_TOML.replace("pool_size = 5", "pool_size = 30000");
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains("30000 is out of range: expected 1..=64"),
            "{err}"
        );
        let text = PHOTON_TOML.replace("rx_buffer_size = 4096", "rx_buffer_size = 0");
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains("0 is out of range: expected 1..=1048576"),
            "{err}"
        );
        let text = PHOTON_TOML.replace("ack_delay_ms = 250", "ack_delay_ms = 10001");
        let err = parse(&text).unwrap_err();
        assert!(
            err.contains("10001 is out of range: expected 0..=10000"),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_fails() {
        let err = parse(&format!("{PHOTON_TOML}pool_sise = 5\n")).unwrap_err();
        assert!(err.contains("unknown field `pool_sise`"), "{err}");
    }

    #[test]
    fn a_missing_field_takes_the_photon_value() {
        let text = PHOTON_TOML.replace("backlog = 1\n", "");
        assert_eq!(parse(&text), Ok(DeviceConfig::PHOTON));
        let text = PHOTON_TOML.replace("backlog = 1\n", "backlog = 3\n");
        assert_eq!(parse(&text).map(|c| c.backlog), Ok(3));
    }

    #[test]
    fn check_finds_cross_field_errors() {
        let inverted = DeviceConfig {
            worker_delay_min_us: 4000,
            ..DeviceConfig::PHOTON
        };
        assert_eq!(
            inverted.check(),
            Err(ConfigError::WorkerDelayInverted {
                min_us: 4000,
                max_us: 3349
            })
        );
        let no_slot = DeviceConfig {
            pool_reserved: 5,
            ..DeviceConfig::PHOTON
        };
        let err = no_slot.check().unwrap_err();
        assert!(err.to_string().contains("pool_reserved (5)"), "{err}");
    }

    /// Every numeric field of `DeviceConfig` documents a range, checks that same range on
    /// deserialisation, accepts its bounds and rejects the values just outside them. Reads the
    /// source, so a new field needs nothing here.
    #[test]
    fn every_field_documents_the_range_it_checks() {
        let source = include_str!("policy.rs");
        let start = source.find("pub struct DeviceConfig {").unwrap();
        let end = start + source[start..].find("\n}\n").unwrap();
        let mut doc_range: Option<(u64, u64)> = None;
        let mut attr_range: Option<(u64, u64)> = None;
        let mut fields = 0;
        for line in source[start..end].lines().skip(1).map(str::trim) {
            if let Some(at) = line.find("Range: ") {
                let text = &line[at + "Range: ".len()..];
                let (lo, rest) = text.split_once("..=").unwrap();
                let hi: String = rest.chars().take_while(char::is_ascii_digit).collect();
                doc_range = Some((lo.parse().unwrap(), hi.parse().unwrap()));
            }
            if let Some(at) = line.find("_in::<_, ") {
                let text = &line[at + "_in::<_, ".len()..];
                let (lo, rest) = text.split_once(", ").unwrap();
                let (hi, _) = rest.split_once('>').unwrap();
                attr_range = Some((lo.parse().unwrap(), hi.parse().unwrap()));
            }
            let Some(field) = line.strip_prefix("pub ") else {
                continue;
            };
            let (name, ty) = field.split_once(": ").unwrap();
            let doc = doc_range.take();
            let attr = attr_range.take();
            let numeric = [
                "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "f32",
                "f64",
            ];
            if !numeric.contains(&ty.trim_end_matches(',')) {
                assert_eq!(attr, None, "{name}: range attribute on a non-numeric field");
                continue;
            }
            fields += 1;
            assert!(doc.is_some(), "{name}: no `Range: LO..=HI.` in its doc");
            assert_eq!(doc, attr, "{name}: documented and checked ranges differ");
            let (lo, hi) = doc.unwrap();
            let with = |value: u64| {
                let mut table = toml::Table::try_from(DeviceConfig::PHOTON).unwrap();
                table.insert(name.to_string(), toml::Value::Integer(value as i64));
                parse(&table.to_string())
            };
            assert!(with(lo).is_ok(), "{name} = {lo}: {:?}", with(lo));
            assert!(with(hi).is_ok(), "{name} = {hi}: {:?}", with(hi));
            assert!(with(hi + 1).is_err(), "{name} = {} accepted", hi + 1);
            if lo > 0 {
                assert!(with(lo - 1).is_err(), "{name} = {} accepted", lo - 1);
            }
        }
        assert!(fields > 0, "no numeric field found in DeviceConfig");
    }
}

/// One test per rule: the same exchange under the rule's legacy and fixed value gives different,
/// asserted outcomes, so flipping a preset's switch fails a test.
#[cfg(test)]
mod rule_tests {
    use alloc::boxed::Box;
    use alloc::vec;
    use alloc::vec::Vec;

    use smoltcp::iface::SocketHandle;
    use smoltcp::socket::tcp::State;
    use smoltcp::time::Instant;

    use super::*;
    use crate::app::{App, ServerCloses};
    use crate::testkit::Bench;
    use crate::{AppEventSink, Device, DeviceEvent, TcpClient, TcpServer};

    const PORT: u16 = 6000;

    /// An app that does nothing: tests call the Wiring API themselves.
    struct Manual;
    impl App for Manual {
        fn setup(&mut self, _dev: &mut Device) {}
        fn loop_once(&mut self, _n: Instant, _d: &mut Device, _s: &mut dyn AppEventSink) {}
    }

    fn bench(policy: Policy) -> (Bench, TcpServer) {
        bench_with(policy, crate::testkit::bench_config(&policy))
    }

    fn bench_with(policy: Policy, config: DeviceConfig) -> (Bench, TcpServer) {
        let mut b = Bench::new(policy, config, Box::new(Manual));
        let mut server = TcpServer::new(PORT);
        server.begin(&mut b.dev).unwrap();
        (b, server)
    }

    /// Lets the worker thread act on everything posted so far.
    fn settle(b: &mut Bench) {
        b.advance(2);
    }

    /// Reads with `available`/`read` until nothing more comes, as the forum sketch does.
    fn read_all(b: &mut Bench, client: &mut TcpClient) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..100 {
            if !client.connected(&mut b.dev) {
                break;
            }
            while client.available(&mut b.dev) != 0 {
                out.push(client.read(&mut b.dev).unwrap());
            }
            b.advance(1);
        }
        out
    }

    fn accepted(b: &mut Bench, server: &mut TcpServer) -> TcpClient {
        let client = server.available(&mut b.dev);
        assert!(
            client.is_open(),
            "a connection should be in the accept queue"
        );
        client
    }

    // L1 / F7 --------------------------------------------------------------------------------

    fn first_available(policy: Policy) -> usize {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        for chunk in [[1u8; 50], [2; 50], [3; 50]] {
            b.peer_send(h, &chunk);
            b.exchange();
        }
        client.available(&mut b.dev)
    }

    /// `read(buf, 1024)` after three 400-byte packets: bytes returned by one call.
    fn first_read_1024(policy: Policy) -> usize {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        for _ in 0..3 {
            b.peer_send(h, &[9; 400]);
            b.exchange();
        }
        let mut buf = [0u8; 1024];
        client.read_into(&mut b.dev, &mut buf).unwrap_or(0)
    }

    #[test]
    fn f7_read_into_drains_past_the_wiring_buffer() {
        assert_eq!(first_read_1024(Policy::LEGACY), 128);
        assert_eq!(first_read_1024(Policy::FIXED), 1024);
    }

    #[test]
    fn l1_one_packet_per_available_call_f7_drains() {
        assert_eq!(first_available(Policy::LEGACY), 50);
        assert_eq!(
            first_available(Policy {
                rx_copy: RxCopy::OnePacketPerCall,
                ..Policy::FIXED
            }),
            50
        );
        assert_eq!(first_available(Policy::FIXED), 128);
        assert_eq!(
            first_available(Policy {
                rx_copy: RxCopy::DrainAll,
                ..Policy::LEGACY
            }),
            128
        );
    }

    // L2 / F2 --------------------------------------------------------------------------------

    /// After data + FIN with nothing read: (connected, bytes the call moved into the buffer).
    fn connected_after_fin(policy: Policy) -> (bool, usize) {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, &[7; 300]);
        b.peer_close(h);
        b.exchange();
        settle(&mut b);
        let connected = client.connected(&mut b.dev);
        (connected, client.buffered())
    }

    #[test]
    fn l2_connected_probes_into_buffer_f2_counts_stack_data() {
        // Both keep the connection while data remains (F1 holds it); they differ in how.
        assert_eq!(
            connected_after_fin(Policy {
                connected_rule: ConnectedRule::StatusOrBuffered,
                ..Policy::FIXED
            }),
            (true, 128)
        );
        assert_eq!(connected_after_fin(Policy::FIXED), (true, 0));
    }

    // L3 / F1 --------------------------------------------------------------------------------

    /// Accept first, then data + FIN reach the device before the application reads.
    fn fin_before_drain(policy: Policy) -> (Vec<u8>, bool) {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, b"\xaa\x05\xfe\x93\x00\x00\x01\x41\n");
        b.peer_close(h);
        b.exchange();
        settle(&mut b);
        let got = read_all(&mut b, &mut client);
        let freed =
            b.device_saw(|e| matches!(e, DeviceEvent::UnreadDataFreed { bytes, .. } if *bytes > 0));
        (got, freed)
    }

    #[test]
    fn l3_fin_before_drain_loses_data_f1_keeps_it() {
        let msg = b"\xaa\x05\xfe\x93\x00\x00\x01\x41\n".to_vec();
        assert_eq!(fin_before_drain(Policy::LEGACY), (vec![], true));
        assert_eq!(
            fin_before_drain(Policy {
                fin_frees_unread_data: true,
                ..Policy::FIXED
            }),
            (vec![], true)
        );
        assert_eq!(fin_before_drain(Policy::FIXED), (msg.clone(), false));
        assert_eq!(
            fin_before_drain(Policy {
                fin_frees_unread_data: false,
                ..Policy::LEGACY
            }),
            (msg, false)
        );
    }

    #[test]
    fn legacy_connected_turns_false_after_fin_before_drain() {
        let (mut b, mut server) = bench(Policy::LEGACY);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, b"12345678");
        b.peer_close(h);
        b.exchange();
        settle(&mut b);
        assert!(!client.connected(&mut b.dev));
        assert!(!client.is_open(), "connected() stops the client");
        assert_eq!(client.available(&mut b.dev), 0);
    }

    // L4 / F3 --------------------------------------------------------------------------------

    /// Data + FIN arrive and are processed before the application accepts.
    fn closed_before_accept(policy: Policy) -> (bool, Vec<u8>) {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        b.peer_send(h, b"8 bytes!");
        b.peer_close(h);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        let alive = client.connected(&mut b.dev);
        let got = read_all(&mut b, &mut client);
        (alive, got)
    }

    #[test]
    fn l4_accept_hands_out_dead_client_f3_hands_out_data() {
        assert_eq!(closed_before_accept(Policy::LEGACY), (false, vec![]));
        // Independent of L3: only the accept-queue rule is legacy here. F2's connected() still
        // counts the stack's data, but the first read frees it.
        assert_eq!(
            closed_before_accept(Policy {
                accept_hands_out_dead: true,
                ..Policy::FIXED
            }),
            (true, vec![])
        );
        assert_eq!(
            closed_before_accept(Policy::FIXED),
            (true, b"8 bytes!".to_vec())
        );
        assert_eq!(
            closed_before_accept(Policy {
                accept_hands_out_dead: false,
                ..Policy::LEGACY
            }),
            (true, b"8 bytes!".to_vec())
        );
    }

    // L5 / F4 --------------------------------------------------------------------------------

    /// Backlog 1, one connection queued, a second peer connects: its TCP state afterwards.
    fn second_syn(policy: Policy) -> (State, bool) {
        let config = DeviceConfig {
            backlog: 1,
            ..DeviceConfig::for_policy(&policy)
        };
        let (mut b, _server) = bench_with(policy, config);
        let first = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        assert_eq!(b.peer(first).state(), State::Established);
        let second = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let dropped = b.device_saw(|e| matches!(e, DeviceEvent::SynDropped { .. }));
        (b.peer(second).state(), dropped)
    }

    #[test]
    fn l5_syn_beyond_backlog_vanishes_f4_refuses_visibly() {
        assert_eq!(second_syn(Policy::LEGACY), (State::SynSent, true));
        assert_eq!(
            second_syn(Policy {
                syn_overflow: SynOverflow::DropSilently,
                ..Policy::FIXED
            }),
            (State::SynSent, true)
        );
        assert_eq!(second_syn(Policy::FIXED), (State::Closed, false));
    }

    #[test]
    fn l5_dropped_syn_is_served_after_accept() {
        let (mut b, mut server) = bench(Policy::LEGACY);
        let _first = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let second = b.connect(PORT);
        b.exchange();
        let _client = accepted(&mut b, &mut server);
        // The peer's SYN retransmission (RTO 1 s) finds the re-armed listener.
        b.advance(1500);
        assert_eq!(b.peer(second).state(), State::Established);
    }

    /// A peer's SYN is retransmitted (its SYN-ACK was lost) after a listener was re-armed in a
    /// pool slot before the half-open socket's: smoltcp hands a SYN to the first socket that
    /// accepts it, so without care the listener would open a second connection and the peer
    /// would be reset. The handshake in progress must keep the connection (lwIP matches
    /// SYN_RCVD PCBs before listeners).
    fn retransmitted_syn(policy: Policy) {
        let config = DeviceConfig {
            backlog: 3,
            ..crate::testkit::bench_config(&policy)
        };
        let (mut b, mut server) = bench_with(policy, config);
        let first = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut first_client = accepted(&mut b, &mut server);
        // The second SYN reaches the device; its SYN-ACK is lost.
        let second = b.connect(PORT);
        b.poll_peer();
        let syn = b
            .to_device()
            .front()
            .cloned()
            .expect("the peer sent its SYN");
        b.poll_device();
        b.lose_to_peer();
        // The first connection ends on both sides, freeing its slot (a listener is re-armed).
        b.peer_close(first);
        b.exchange();
        first_client.stop(&mut b.dev);
        b.advance(50);
        // A third connection is accepted; the listener replacing it goes into the freed slot,
        // before the half-open socket.
        let _third = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let _third_client = accepted(&mut b, &mut server);
        b.exchange();
        // The peer's retransmitted SYN.
        b.inject(syn);
        b.exchange();
        let rst_to_peer = b
            .to_peer()
            .iter()
            .any(|p| p.len() > 33 && p[33] & 0x04 != 0);
        assert!(!rst_to_peer, "{policy:?}");
        b.advance(1500);
        assert_eq!(b.peer(second).state(), State::Established, "{policy:?}");
        let syns = b
            .device_events
            .iter()
            .filter(|e| matches!(e, DeviceEvent::SynReceived { .. }));
        assert_eq!(syns.count(), 3, "one SYN event per connection ({policy:?})");
        let mut second_client = accepted(&mut b, &mut server);
        assert!(second_client.connected(&mut b.dev), "{policy:?}");
    }

    #[test]
    fn retransmitted_syn_stays_with_its_handshake() {
        retransmitted_syn(Policy::LEGACY);
        retransmitted_syn(Policy::FIXED);
    }

    // L6 / F8 --------------------------------------------------------------------------------

    /// One server slot; the device closes the first connection itself (TIME-WAIT on the
    /// device). Returns the pool slots in use then, and the TCP state of a second connection.
    fn connect_during_time_wait(policy: Policy) -> (usize, State) {
        let config = DeviceConfig {
            pool_size: 2,
            pool_reserved: 1,
            ..crate::testkit::bench_config(&policy)
        };
        let mut b = Bench::new(policy, config, Box::new(ServerCloses::new(PORT, 4)));
        let first = b.connect(PORT);
        b.run_app(3);
        b.peer_send(first, b"done");
        b.run_app(5);
        b.peer_close(first);
        b.run_app(5);
        assert_eq!(b.peer(first).state(), State::Closed, "peer side finished");
        let in_use = b.dev.pool_in_use();
        let second = b.connect(PORT);
        b.run_app(5);
        (in_use, b.peer(second).state())
    }

    #[test]
    fn l6_time_wait_holds_the_slot_f8_frees_it() {
        // Either way a new connection gets the slot (lwIP reclaims TIME-WAIT on demand); the
        // rule decides whether TIME-WAIT occupies the pool meanwhile.
        assert_eq!(
            connect_during_time_wait(Policy::LEGACY),
            (1, State::Established)
        );
        assert_eq!(
            connect_during_time_wait(Policy {
                time_wait_holds_slot: true,
                ..Policy::FIXED
            }),
            (1, State::Established)
        );
        assert_eq!(
            connect_during_time_wait(Policy::FIXED),
            (0, State::Established)
        );
        assert_eq!(
            connect_during_time_wait(Policy {
                time_wait_holds_slot: false,
                ..Policy::LEGACY
            }),
            (0, State::Established)
        );
    }

    #[test]
    fn l6_full_pool_of_live_connections_refuses_new_ones() {
        // Two server slots, both held by connections the app has not closed: a third peer
        // is refused (RST), never silently queued.
        let policy = Policy::FIXED;
        let config = DeviceConfig {
            pool_size: 3,
            pool_reserved: 1,
            backlog: 4,
            ..DeviceConfig::for_policy(&policy)
        };
        let (mut b, _server) = bench_with(policy, config);
        let _a = b.connect(PORT);
        let _c = b.connect(PORT);
        b.exchange();
        let third = b.connect(PORT);
        b.exchange();
        assert_eq!(b.peer(third).state(), State::Closed);
    }

    // L7 / F5 --------------------------------------------------------------------------------

    /// The application stops a client with unread data: what the peer's socket shows.
    fn stop_with_unread(policy: Policy) -> State {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, b"unread");
        b.exchange();
        client.stop(&mut b.dev);
        b.exchange();
        b.peer(h).state()
    }

    #[test]
    fn l7_stop_sends_fin_f5_sends_rst() {
        assert_eq!(stop_with_unread(Policy::LEGACY), State::CloseWait);
        assert_eq!(
            stop_with_unread(Policy {
                stop_with_unread: StopWithUnread::Fin,
                ..Policy::FIXED
            }),
            State::CloseWait
        );
        assert_eq!(stop_with_unread(Policy::FIXED), State::Closed);
        assert_eq!(
            stop_with_unread(Policy {
                stop_with_unread: StopWithUnread::Rst,
                ..Policy::LEGACY
            }),
            State::Closed
        );
    }

    /// A connection the application accepted and stopped at once (FIN, nothing unread); the
    /// peer's side of it.
    fn stopped_at_once(policy: Policy) -> (Bench, SocketHandle) {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        client.stop(&mut b.dev);
        b.exchange();
        (b, h)
    }

    /// The application stops a drained client; then the peer sends more. What the peer sees.
    fn data_after_stop(policy: Policy) -> (State, bool) {
        let (mut b, h) = stopped_at_once(policy);
        b.peer_send(h, b"late data");
        b.exchange();
        let reported = b.device_saw(|e| matches!(e, DeviceEvent::DataAfterClose { bytes: 9, .. }));
        (b.peer(h).state(), reported)
    }

    #[test]
    fn l7_data_after_stop_is_acked_and_dropped_f5_resets() {
        assert_eq!(data_after_stop(Policy::LEGACY), (State::CloseWait, true));
        assert_eq!(data_after_stop(Policy::FIXED), (State::Closed, true));
    }

    /// After `stop()`, late data arrives out of order: smoltcp answers a segment that fills a
    /// hole at once, inside ingress. True if the device acknowledged the late data (a non-RST
    /// segment whose ACK covers it) before any RST.
    fn late_data_acknowledged(policy: Policy) -> bool {
        let (mut b, h) = stopped_at_once(policy);
        b.peer_send(h, b"late ");
        b.peer_send(h, b"data");
        b.reorder_to_device();
        b.poll_device();
        // IPv4 (20 bytes) then TCP: acknowledgment number at 8..12, flags at 13.
        let mut first_ack = None;
        for p in b.to_peer().iter().filter(|p| p.len() >= 40) {
            let ack = u32::from_be_bytes([p[28], p[29], p[30], p[31]]);
            if p[33] & 0x04 != 0 {
                return false;
            }
            match first_ack {
                None => first_ack = Some(ack),
                Some(a) if ack.wrapping_sub(a) == 9 => return true,
                Some(_) => {}
            }
        }
        false
    }

    #[test]
    fn l7_late_data_is_acknowledged_f5_resets_before_acknowledging() {
        assert!(late_data_acknowledged(Policy::LEGACY));
        assert!(!late_data_acknowledged(Policy::FIXED));
    }

    // F6 -------------------------------------------------------------------------------------

    /// The peer half-closes; the application then answers. What the peer receives.
    fn reply_after_half_close(policy: Policy) -> (Option<usize>, Vec<u8>) {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_close(h);
        b.exchange();
        settle(&mut b);
        let wrote = client.write(&mut b.dev, b"reply");
        b.exchange();
        let mut got = vec![0; 16];
        let n = b.peer(h).recv_slice(&mut got).unwrap_or(0);
        got.truncate(n);
        (wrote, got)
    }

    #[test]
    fn f6_write_after_peer_fin_reaches_the_peer() {
        assert_eq!(
            reply_after_half_close(Policy::FIXED),
            (Some(5), b"reply".to_vec())
        );
        assert_eq!(
            reply_after_half_close(Policy {
                write_after_peer_fin: false,
                ..Policy::FIXED
            }),
            (None, vec![])
        );
    }

    // R1 / R6 / fixed: eof_rule -------------------------------------------------------------

    /// 300 bytes and the peer's FIN reach the device unread; `notice`: the worker thread has
    /// handled the close. What the application can still read.
    fn read_after_fin(eof_rule: EofRule, notice: bool) -> usize {
        let (mut b, mut server) = bench(Policy {
            eof_rule,
            ..Policy::FIXED
        });
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, &[5; 300]);
        b.peer_close(h);
        b.exchange();
        if notice {
            settle(&mut b);
        }
        let mut n = 0;
        while client.available(&mut b.dev) != 0 && client.read(&mut b.dev).is_some() {
            n += 1;
        }
        n
    }

    #[test]
    fn r1_r6_eof_hides_queued_bytes_fixed_delivers_them() {
        assert_eq!(read_after_fin(EofRule::AfterData, true), 300);
        assert_eq!(read_after_fin(EofRule::AtPeerFin, false), 0);
        // R6: until the close notice is handled the bytes are readable, then they are not.
        assert_eq!(read_after_fin(EofRule::AtCloseNotice, false), 300);
        assert_eq!(read_after_fin(EofRule::AtCloseNotice, true), 0);
    }

    // R2: connected_rule = OpenOnly -----------------------------------------------------------

    /// Data + FIN reached the device, nothing read: `connected()`.
    fn connected_with_unread(policy: Policy) -> bool {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, &[7; 100]);
        b.peer_close(h);
        b.exchange();
        settle(&mut b);
        client.connected(&mut b.dev)
    }

    #[test]
    fn r2_connected_ignores_unread_data_f2_counts_it() {
        assert!(connected_with_unread(Policy::FIXED));
        assert!(!connected_with_unread(Policy {
            connected_rule: ConnectedRule::OpenOnly,
            ..Policy::FIXED
        }));
    }

    // R3: pre_accept_data_discarded ---------------------------------------------------------

    #[test]
    fn r3_unaccepted_data_is_freed_f3_hands_it_out() {
        assert_eq!(
            closed_before_accept(Policy::FIXED),
            (true, b"8 bytes!".to_vec())
        );
        let r3 = Policy {
            pre_accept_data_discarded: true,
            ..Policy::FIXED
        };
        assert_eq!(closed_before_accept(r3), (false, vec![]));
    }

    // R5: fin_answered_with_rst -------------------------------------------------------------

    /// The peer sends and closes after the application accepted: the peer's TCP state, and
    /// what the application then reads.
    fn fin_answer(policy: Policy) -> (State, Vec<u8>) {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, b"request");
        b.peer_close(h);
        b.exchange();
        settle(&mut b);
        let state = b.peer(h).state();
        let mut got = Vec::new();
        while client.available(&mut b.dev) != 0 {
            got.extend(client.read(&mut b.dev));
        }
        (state, got)
    }

    #[test]
    fn r5_fin_is_answered_with_rst_fixed_enters_close_wait() {
        assert_eq!(
            fin_answer(Policy::FIXED),
            (State::FinWait1, b"request".to_vec())
        );
        let r5 = Policy {
            fin_answered_with_rst: true,
            ..Policy::FIXED
        };
        // The data stays readable (the ESP8266 keeps it in the ClientContext); the peer is reset.
        assert_eq!(fin_answer(r5), (State::Closed, b"request".to_vec()));
    }

    // R7: fin_past_hole_accepted ------------------------------------------------------------

    /// "first", "second" and the FIN as three segments; the FIN overtakes "second".
    fn fin_past_hole(policy: Policy) -> Vec<u8> {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, b"first");
        b.peer_send(h, b"second");
        b.peer_close(h);
        b.reorder_to_device();
        b.exchange();
        settle(&mut b);
        read_all(&mut b, &mut client)
    }

    #[test]
    fn r7_fin_past_a_hole_closes_early_fixed_waits_for_the_data() {
        assert_eq!(fin_past_hole(Policy::FIXED), b"firstsecond".to_vec());
        let r7 = Policy {
            fin_past_hole_accepted: true,
            ..Policy::FIXED
        };
        assert_eq!(fin_past_hole(r7), b"first".to_vec());
    }

    // R8: rst_frees_unread_data -------------------------------------------------------------

    /// The peer sends, then resets, before the application reads: what it still reads.
    fn read_after_rst(policy: Policy) -> Vec<u8> {
        let (mut b, mut server) = bench(policy);
        let h = b.connect(PORT);
        b.exchange();
        settle(&mut b);
        let mut client = accepted(&mut b, &mut server);
        b.peer_send(h, b"last words");
        b.exchange();
        b.peer(h).abort();
        b.exchange();
        settle(&mut b);
        read_all(&mut b, &mut client)
    }

    #[test]
    fn r8_rst_frees_unread_data_fixed_keeps_it() {
        assert_eq!(read_after_rst(Policy::FIXED), b"last words".to_vec());
        let r8 = Policy {
            rst_frees_unread_data: true,
            ..Policy::FIXED
        };
        assert_eq!(read_after_rst(r8), vec![]);
    }

    // R10: pool_overflow --------------------------------------------------------------------

    /// Two server slots held by live connections, a third peer connects: the TCP states of the
    /// first and the third.
    fn third_connection(policy: Policy) -> (State, State) {
        let config = DeviceConfig {
            pool_size: 3,
            pool_reserved: 1,
            backlog: 4,
            ..DeviceConfig::for_policy(&policy)
        };
        let (mut b, _server) = bench_with(policy, config);
        let first = b.connect(PORT);
        b.exchange();
        let _second = b.connect(PORT);
        b.exchange();
        let third = b.connect(PORT);
        b.exchange();
        (b.peer(first).state(), b.peer(third).state())
    }

    #[test]
    fn r10_a_full_pool_evicts_the_oldest_fixed_refuses_the_newcomer() {
        assert_eq!(
            third_connection(Policy::FIXED),
            (State::Established, State::Closed)
        );
        let r10 = Policy {
            pool_overflow: PoolOverflow::EvictOldest,
            ..Policy::FIXED
        };
        assert_eq!(third_connection(r10), (State::Closed, State::Established));
    }
}
