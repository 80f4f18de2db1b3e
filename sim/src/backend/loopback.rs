//! The loopback backend: device and peer stacks in one event loop on a virtual clock.
//!
//! Event-driven: each step jumps to the earliest of link deliveries, both stacks' `poll_at`,
//! the worker thread, the application loop tick and the peer programs' timers.

use std::collections::VecDeque;

use firmware_core::smoltcp::time::Instant;

use crate::capture::Capture;
use crate::link::Link;
use crate::node::{DeviceNode, PeerNode};
use crate::phy::{BufferPool, LinkPhy};
use crate::run::{Prepared, RunCore, RunError, RunOptions, RunReport};
use crate::seed::split_seed;

/// The two links and what each delivered to its host.
struct Wire {
    /// Peer to device.
    downlink: Link,
    /// Device to peer.
    uplink: Link,
    device_rx: VecDeque<Vec<u8>>,
    peer_rx: VecDeque<Vec<u8>>,
    pool: BufferPool,
}

impl Wire {
    fn device_phy<'a>(&'a mut self, now: Instant, capture: Option<&'a mut Capture>) -> LinkPhy<'a> {
        LinkPhy {
            pool: &self.pool,
            rx: &mut self.device_rx,
            tx: &mut self.uplink,
            wakes: Some(&mut self.downlink),
            now,
            capture,
        }
    }

    fn peer_phy(&mut self, now: Instant) -> LinkPhy<'_> {
        LinkPhy {
            pool: &self.pool,
            rx: &mut self.peer_rx,
            tx: &mut self.downlink,
            wakes: None,
            now,
            capture: None,
        }
    }
}

/// Runs one prepared scenario on the loopback backend.
pub(crate) fn run(prep: &Prepared, options: RunOptions) -> Result<RunReport, RunError> {
    let config = &prep.scenario;
    if !config.fault.is_empty() {
        return Err(RunError::FaultsNeedTurmoil);
    }
    let seed = config.seed;
    let mut wire = Wire {
        downlink: Link::new(config.link.downlink, split_seed(seed, "link.downlink")),
        uplink: Link::new(config.link.uplink, split_seed(seed, "link.uplink")),
        device_rx: VecDeque::new(),
        peer_rx: VecDeque::new(),
        pool: BufferPool::default(),
    };
    let mut core = RunCore::new(prep, "loopback", options)?;
    let mut now = Instant::ZERO;
    let mut node = DeviceNode::boot(prep, 0, &mut wire.device_phy(now, None), now);
    let mut peer = PeerNode::boot(prep, &mut wire.peer_phy(now)).map_err(RunError::Peer)?;
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
        wire.downlink.deliver_due(now, &mut wire.device_rx);
        wire.uplink.deliver_due(now, &mut wire.peer_rx);

        let peer_due = peer_at.is_some_and(|x| x <= now);
        if peer.step(now, peer_due, &mut wire.peer_phy(now), &mut core.observer) {
            peer_at_cache = None;
        }
        let device_due = device_at.is_some_and(|x| x <= now);
        let mut phy = wire.device_phy(now, core.capture.as_mut());
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
