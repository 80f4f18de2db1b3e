//! Injectors: the timing situations behind the field bug and its relatives, each a named change
//! to a scenario. A scenario file lists them (`inject = ["rst-before-accept"]`), the CLI adds
//! them (`fwsim run FILE --inject fin-before-drain`), and properties and fuzz targets draw them.
//!
//! An injector never decides an outcome: it arranges timing (an application loop stalled by the
//! system when a segment arrives, peer programs and schedules, link delays) and the firmware's
//! rules do the rest. Settings an injector needs win over the file's; everything else stays.

use firmware_core::{DeviceConfig, Policy};
use serde::{Deserialize, Serialize};

use crate::peer::ProgramKind;
use crate::scenario::{ScenarioFile, StallTrigger};

/// How long an injected loop stall lasts: longer than the worker thread's worst notice delay
/// (the field's 0.5.x worker reacts within about 1.5 ms), so the socket is flagged before the
/// application runs again.
pub const STALL_US: u64 = 5_000;

/// A named timing situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injector {
    /// The application loop stalls when the peer's FIN reaches the device: data and FIN are in
    /// and the worker thread has flagged the socket before the application reads.
    FinBeforeDrain,
    /// A SYN holds the loop until that connection's FIN arrives: handshake, data and FIN all
    /// reach the device before `TcpServer::available()` accepts.
    DataFinBeforeAccept,
    /// Every peer program sends its payload, then aborts with RST as soon as it is acknowledged;
    /// a SYN holds the loop until that connection's RST arrives, before the application accepts.
    RstBeforeAccept,
    /// Connections open four at a time: several SYNs inside one application loop iteration.
    SynBurst,
    /// Before the workload starts, hold connections occupy every server slot of the device's
    /// socket pool for two seconds: the workload connects while every slot is busy.
    SlotsBusy,
    /// Packets toward the device get 5-10 ms of uniform jitter and no rate limit, far more than
    /// nc's 15 us gap between data and FIN: FINs overtake data and data segments arrive permuted.
    FinOvertakesData,
}

impl Injector {
    /// Every injector, in a fixed order (fuzz inputs index it).
    pub const ALL: [Injector; 6] = [
        Injector::FinBeforeDrain,
        Injector::DataFinBeforeAccept,
        Injector::RstBeforeAccept,
        Injector::SynBurst,
        Injector::SlotsBusy,
        Injector::FinOvertakesData,
    ];

    /// The name used in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Injector::FinBeforeDrain => "fin-before-drain",
            Injector::DataFinBeforeAccept => "data-fin-before-accept",
            Injector::RstBeforeAccept => "rst-before-accept",
            Injector::SynBurst => "syn-burst",
            Injector::SlotsBusy => "slots-busy",
            Injector::FinOvertakesData => "fin-overtakes-data",
        }
    }

    /// The injector called `name`.
    pub fn from_name(name: &str) -> Option<Injector> {
        Injector::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The injectors whose bit is set in `mask` (bit i: `ALL[i]`).
    pub fn from_mask(mask: u8) -> Vec<Injector> {
        Injector::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, inj)| inj)
            .collect()
    }

    /// Changes `f` so the situation happens.
    pub fn apply(self, f: &mut ScenarioFile) {
        let stall_on = |f: &mut ScenarioFile, trigger: StallTrigger| {
            if !f.device.loop_stall_on.contains(&trigger) {
                f.device.loop_stall_on.push(trigger);
            }
            f.device.loop_stall_us = f.device.loop_stall_us.max(STALL_US);
        };
        match self {
            Injector::FinBeforeDrain => stall_on(f, StallTrigger::Fin),
            Injector::DataFinBeforeAccept => {
                stall_on(f, StallTrigger::Syn);
                f.device.loop_stall_until_close = true;
            }
            Injector::RstBeforeAccept => {
                stall_on(f, StallTrigger::Syn);
                f.device.loop_stall_until_close = true;
                for w in &mut f.peer {
                    w.kind = ProgramKind::Reset;
                    w.close_delay_us = 0;
                }
            }
            Injector::SynBurst => {
                for w in &mut f.peer {
                    w.burst = w.burst.max(4);
                    w.count = w.count.max(w.burst);
                }
            }
            Injector::SlotsBusy => {
                // As many holders as the pool has server slots (4 under legacy, 9 under fixed,
                // or the file's pool); the workload starts once they are in.
                let holders = server_slots(f);
                let start_ms = f.peer.iter().map(|w| w.start_ms).min().unwrap_or(100);
                for w in &mut f.peer {
                    w.start_ms += 200;
                }
                f.peer.push(crate::peer::Workload {
                    kind: ProgramKind::Hold,
                    count: holders,
                    burst: holders,
                    start_ms,
                    hold_ms: 2_000,
                    ..crate::peer::Workload::default()
                });
            }
            Injector::FinOvertakesData => {
                let d = &mut f.link.downlink;
                d.delay_us = Some(d.delay_us.unwrap_or(0).max(5_000));
                d.jitter_us = Some(d.jitter_us.unwrap_or(0).max(5_000));
                d.jitter_dist = Some(crate::link::JitterDist::Uniform);
                // A rate limit would serialise the packets again.
                d.rate_bps = Some(0);
            }
        }
    }
}

/// The device's pool slots for servers, as the scenario will configure them.
fn server_slots(f: &ScenarioFile) -> u32 {
    let policy = Policy::from_name(&f.device.policy).unwrap_or(Policy::LEGACY);
    let mut config = DeviceConfig::for_policy(&policy);
    config.pool_size = f.device.pool_size.unwrap_or(config.pool_size);
    config.pool_reserved = f.device.pool_reserved.unwrap_or(config.pool_reserved);
    config.server_slots().clamp(1, 64) as u32
}

impl std::fmt::Display for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_masks_select() {
        for inj in Injector::ALL {
            assert_eq!(Injector::from_name(inj.name()), Some(inj));
            let value = toml::Value::try_from(inj).unwrap();
            assert_eq!(
                value.as_str(),
                Some(inj.name()),
                "serde uses the same names"
            );
        }
        assert_eq!(Injector::from_name("fin-after-drain"), None);
        assert_eq!(
            Injector::from_mask(0b100001),
            vec![Injector::FinBeforeDrain, Injector::FinOvertakesData]
        );
        assert!(Injector::from_mask(0).is_empty());
    }
}
