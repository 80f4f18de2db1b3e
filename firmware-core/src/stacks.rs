//! Stack presets: the socket rules and device defaults of one firmware stack, by name.
//!
//! Each preset is the [`Policy`] of a stack as its field report and fix show it (which rules are
//! in their buggy position) plus the [`DeviceConfig`] values the report or the stack's source
//! pins down (pool, backlog, buffers, notice delays). Everything else keeps its Photon or fixed
//! value. `docs/field-library-notes.md` gives the source of each value.

use crate::policy::{
    ConnectedRule, DeviceConfig, EofRule, Policy, PoolOverflow, StopWithUnread, SynOverflow,
};

/// One named stack: its socket rules and its device defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackPreset {
    /// The name a scenario's `device.policy` and `fwsim --policy` use.
    pub name: &'static str,
    /// The socket rules.
    pub policy: Policy,
    /// Device knobs a scenario leaves out take these values.
    pub device: DeviceConfig,
    /// The report the preset reproduces (repository and number) and its fix.
    pub source: &'static str,
}

/// The fixed firmware's device: the Photon with PR #1350's pool of 10 and a backlog of 4.
const FIXED_DEVICE: DeviceConfig = DeviceConfig {
    pool_size: 10,
    backlog: 4,
    ..DeviceConfig::PHOTON
};

/// ESP8266 Arduino core on lwIP 2 (`MEMP_NUM_TCP_PCB` 5, listen backlog 5 since #7096,
/// `TCP_WND` 2 x 1460); lwIP's callbacks run in the same task as `loop()`, so no notice delay.
/// lwIP acknowledges a FIN at once (`tcp_ack_now`), and these reports' peers send one segment
/// and a FIN: no delayed ACK.
const ESP8266_DEVICE: DeviceConfig = DeviceConfig {
    pool_size: 5,
    pool_reserved: 0,
    backlog: 5,
    wiring_buffer_size: 1460,
    rx_buffer_size: 2920,
    tx_buffer_size: 2920,
    worker_delay_min_us: 0,
    worker_delay_max_us: 0,
    ack_delay_ms: 0,
    keep_alive_ms: 0,
    // lwIP's default `MEMP_NUM_TCP_PCB_LISTEN`.
    max_servers: 8,
};

/// Every stack preset, `legacy` and `fixed` first.
pub const STACKS: [StackPreset; 9] = [
    StackPreset {
        name: "legacy",
        policy: Policy::LEGACY,
        device: DeviceConfig::PHOTON,
        source: "Particle Device OS 0.5.3 on the Photon (rules L1-L7)",
    },
    StackPreset {
        name: "fixed",
        policy: Policy::FIXED,
        device: FIXED_DEVICE,
        source: "rules F1-F8 and the fixed counterpart of every other rule",
    },
    StackPreset {
        name: "esp8266-arduino-2.6",
        policy: Policy {
            connected_rule: ConnectedRule::OpenOnly,
            pre_accept_data_discarded: true,
            fin_answered_with_rst: true,
            syn_overflow: SynOverflow::DropSilently,
            time_wait_holds_slot: true,
            write_after_peer_fin: false,
            ..Policy::FIXED
        },
        device: ESP8266_DEVICE,
        source: "esp8266/Arduino #2569 (R3 + R5), fixed by PR #7096 in 2.7.0",
    },
    StackPreset {
        name: "esp8266-arduino-2.7",
        policy: Policy {
            connected_rule: ConnectedRule::OpenOnly,
            syn_overflow: SynOverflow::DropSilently,
            time_wait_holds_slot: true,
            ..Policy::FIXED
        },
        device: ESP8266_DEVICE,
        source: "esp8266/Arduino #6701 (R2, since PR #4626 in 2.4.2; still open)",
    },
    StackPreset {
        name: "esp32-arduino-2.0",
        policy: Policy {
            connected_rule: ConnectedRule::OpenOnly,
            syn_overflow: SynOverflow::DropSilently,
            time_wait_holds_slot: true,
            stop_with_unread: StopWithUnread::Rst,
            ..Policy::FIXED
        },
        // ESP-IDF lwIP: 16 active PCBs, `WiFiServer` listens with `max_clients` 4, the 1436-byte
        // `WiFiClientRxBuffer`, TCP_WND 5744; lwIP runs in its own task (short notice delay).
        device: DeviceConfig {
            pool_size: 16,
            pool_reserved: 0,
            backlog: 4,
            wiring_buffer_size: 1436,
            rx_buffer_size: 5744,
            tx_buffer_size: 5744,
            worker_delay_min_us: 0,
            worker_delay_max_us: 100,
            ack_delay_ms: 0,
            keep_alive_ms: 0,
            // ESP-IDF's `CONFIG_LWIP_MAX_LISTENING_TCP` default.
            max_servers: 16,
        },
        source: "espressif/arduino-esp32 #8042 (R2, 2.0.6; closed as wontfix)",
    },
    StackPreset {
        name: "electron-0.5",
        policy: Policy {
            fin_frees_unread_data: false,
            accept_hands_out_dead: false,
            eof_rule: EofRule::AtCloseNotice,
            ..Policy::LEGACY
        },
        // u-blox modem: 7 sockets, one for the cloud; the remote-close URC (+UUSOCL) is handled
        // 0-200 ms after the FIN reached the modem (the report's overtaking window).
        device: DeviceConfig {
            pool_size: 7,
            worker_delay_min_us: 0,
            worker_delay_max_us: 200_000,
            ..DeviceConfig::PHOTON
        },
        source: "particle-iot/device-os #896 (R6), fixed by PR #900 (U260) and PR #962 (G350)",
    },
    StackPreset {
        name: "photon-0.4",
        policy: Policy {
            pool_overflow: PoolOverflow::EvictOldest,
            ..Policy::LEGACY
        },
        device: DeviceConfig::PHOTON,
        source: "particle-iot/device-os #660 and #1292 (R10 on top of L1-L7), PR #1350: pool 10",
    },
    StackPreset {
        name: "bk72xx-backlog0",
        policy: Policy {
            syn_overflow: SynOverflow::DropSilently,
            time_wait_holds_slot: true,
            ..Policy::FIXED
        },
        // `listen(s, 0)`: lwIP's `tcp_backlog_set` makes it 1; `MEMP_NUM_TCP_PCB` is
        // `MAX_SOCKETS_TCP` (10 here), one held by MQTT.
        device: DeviceConfig {
            pool_size: 10,
            pool_reserved: 1,
            backlog: 1,
            worker_delay_min_us: 0,
            worker_delay_max_us: 100,
            ..DeviceConfig::PHOTON
        },
        source: "openshwprojects/OpenBK7231T_App PR #2191 (R9): listen(max_socks)",
    },
    StackPreset {
        name: "smoltcp-0.4",
        policy: Policy {
            fin_past_hole_accepted: true,
            ..Policy::FIXED
        },
        device: DeviceConfig {
            worker_delay_min_us: 0,
            worker_delay_max_us: 0,
            ..FIXED_DEVICE
        },
        source: "smoltcp-rs/smoltcp #111 (R7), fixed by commit fcffa6a in 0.5.0",
    },
];

/// The preset called `name`.
pub fn stack(name: &str) -> Option<&'static StackPreset> {
    STACKS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_preset_checks() {
        for (i, s) in STACKS.iter().enumerate() {
            assert!(STACKS[..i].iter().all(|t| t.name != s.name), "{}", s.name);
            assert_eq!(s.device.check(), Ok(()), "{}", s.name);
            assert_eq!(stack(s.name), Some(s));
        }
        assert_eq!(stack("legacy").map(|s| s.policy), Some(Policy::LEGACY));
        assert_eq!(stack("fixed").map(|s| s.policy), Some(Policy::FIXED));
        assert!(stack("photon").is_none());
    }

    #[test]
    fn every_buggy_stack_differs_from_fixed() {
        for s in &STACKS[2..] {
            assert_ne!(s.policy, Policy::FIXED, "{}", s.name);
        }
    }
}
