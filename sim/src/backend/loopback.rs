//! The loopback backend: device and peer stacks in one event loop on a virtual clock.
//!
//! Event-driven: each step jumps to the earliest of link deliveries, both stacks' `poll_at`,
//! the worker thread, the application loop tick and the peer programs' timers.

use firmware_core::smoltcp::time::Instant;

use crate::air::Side;
use crate::node::{DeviceNode, PeerNode};
use crate::phy::Wire;
use crate::run::{Prepared, RunCore, RunError, RunOptions, RunReport};

/// Runs one prepared scenario on the loopback backend.
pub(crate) fn run(prep: &Prepared, options: RunOptions) -> Result<RunReport, RunError> {
    let config = &prep.scenario;
    if !config.fault.is_empty() {
        return Err(RunError::FaultsNeedTurmoil);
    }
    let seed = config.seed;
    let mut wire = Wire::new(config, seed);
    let mut core = RunCore::new(prep, "loopback", options)?;
    let mut now = Instant::ZERO;
    let mut phy = wire
        .device_phy(now, None)
        .with_air(core.air.as_mut(), Side::Device);
    let mut node = DeviceNode::boot(prep, 0, &mut phy, now);
    let mut phy = wire.peer_phy(now).with_air(core.air.as_mut(), Side::Peer);
    let mut peer = PeerNode::boot(prep, &mut phy).map_err(RunError::Peer)?;
    // A side's next timer only changes when that side is polled, fed or run: cached.
    let mut peer_at_cache: Option<Option<Instant>> = None;
    let mut device_at_cache: Option<Option<Instant>> = None;
    let stop = loop {
        let peer_at = *peer_at_cache.get_or_insert_with(|| peer.host.poll_at(now));
        let device_at = *device_at_cache.get_or_insert_with(|| node.device.poll_at());
        // The earliest thing that happens next, besides the application loop.
        let others = [
            device_at,
            peer_at,
            wire.uplink.next_delivery(),
            wire.downlink.next_delivery(),
        ]
        .into_iter()
        .flatten()
        .min();
        now = now.max(node.next_event(others, core.horizon(), core.skip_idle));
        if let Some(stop) = core.stop_at(now) {
            break stop;
        }
        if let Some(air) = core.air.as_mut() {
            // Everything before `now` happened: the records so far are in time order.
            air.flush_before(now);
        }
        wire.deliver_due(now, core.air.as_mut());

        let peer_due = peer_at.is_some_and(|x| x <= now);
        let mut phy = wire.peer_phy(now).with_air(core.air.as_mut(), Side::Peer);
        if peer.step(now, peer_due, &mut phy, &mut core.observer) {
            peer_at_cache = None;
        }
        let device_due = device_at.is_some_and(|x| x <= now);
        let phy = wire.device_phy(now, core.capture.as_mut());
        let mut phy = phy.with_air(core.air.as_mut(), Side::Device);
        if node.step(now, device_due, &mut phy, &mut core.observer) {
            device_at_cache = None;
        }
        if core.after_peer(now, &peer.host) {
            wire.uplink.heal_from(now);
            wire.downlink.heal_from(now);
        }
    };
    core.finish(now, stop, wire.uplink.stats(), wire.downlink.stats())
}
