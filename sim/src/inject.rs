//! Injectors: the timing situations behind the field bug and its relatives, each a named change
//! to a scenario. A scenario file lists them (`inject = ["rst-before-accept"]`), the CLI adds
//! them (`fwsim run FILE --inject fin-before-drain`), and properties and fuzz targets draw them.
//!
//! An injector never decides an outcome: it arranges timing (an application loop stalled by the
//! system when a segment arrives, peer programs and schedules, link delays) and the firmware's
//! rules do the rest. Settings an injector needs win over the file's; everything else stays.

use crate::peer::{ProgramKind, Workload};
use crate::scenario::{Injector, Scenario, StallTrigger};

/// How long an injected loop stall lasts at least; always also longer than the device's worst
/// worker-thread notice delay (`worker_delay_max_us`), so the socket is flagged before the
/// application runs again.
pub const STALL_US: u64 = 5_000;

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

    /// Changes the scenario so the situation happens (when a run starts; the scenario's record
    /// keeps the injector's name, not its changes).
    pub fn apply(self, f: &mut Scenario) {
        let stall_on = |f: &mut Scenario, trigger: StallTrigger| {
            if !f.device.loop_stall_on.contains(&trigger) {
                f.device.loop_stall_on.push(trigger);
            }
            let notice_us = f.device.stack.worker_delay_max_us + f.device.loop_period_us;
            f.device.loop_stall_us = f.device.loop_stall_us.max(STALL_US).max(notice_us);
        };
        match self {
            Injector::FinBeforeDrain => {
                stall_on(f, StallTrigger::Fin);
                // The data comes after the accept (the handshake's notice and one loop), so the
                // FIN meets an accepted, undrained client.
                let after_accept_us =
                    2 * (f.device.stack.worker_delay_max_us + f.device.loop_period_us);
                for w in &mut f.peer {
                    w.start_delay_min_us = w.start_delay_min_us.max(after_accept_us);
                    w.start_delay_max_us = w.start_delay_max_us.max(w.start_delay_min_us);
                }
            }
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
                let holders = f.device.stack.server_slots().clamp(1, 64) as u32;
                let start_ms = f.peer.iter().map(|w| w.start_ms).min().unwrap_or(100);
                for w in &mut f.peer {
                    w.start_ms += 200;
                }
                f.peer.push(Workload {
                    kind: ProgramKind::Hold,
                    count: holders,
                    burst: holders,
                    start_ms,
                    hold_ms: 2_000,
                    ..Workload::default()
                });
            }
            Injector::FinOvertakesData => {
                // 5 ms +- 5 ms whatever the preset: the situation, not the link, decides.
                let d = &mut f.link.downlink;
                d.delay_us = 5_000;
                d.jitter_us = 5_000;
                d.jitter_dist = crate::link::JitterDist::Uniform;
                // A rate limit would serialise the packets again.
                d.rate_bps = 0;
            }
        }
    }
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
