//! One host's side of the simulated wire as a `smoltcp::phy::Device`: it receives what the link
//! delivered and transmits into an outgoing queue (the link model, or a backend's outbox). The
//! device's side also writes the capture and wakes its downlink from power save; either side
//! shows what it sent, and what the link did with it, on the air capture.

use std::cell::RefCell;
use std::collections::VecDeque;

use firmware_core::smoltcp::phy::{self, DeviceCapabilities, Medium, PcapSink};
use firmware_core::smoltcp::time::Instant;

use crate::air::{AirCapture, Side};
use crate::capture::Capture;
use crate::link::{Fate, Link};
use crate::scenario::Scenario;
use crate::seed::split_seed;

/// Where a host's transmitted packets go.
pub(crate) trait Outgoing {
    /// Takes one packet sent at `now`; says what the link did with it, if it decided already.
    fn send(&mut self, now: Instant, packet: Vec<u8>) -> Option<Fate>;
}

impl Outgoing for Link {
    fn send(&mut self, now: Instant, packet: Vec<u8>) -> Option<Fate> {
        Some(self.enqueue(now, packet))
    }
}

/// Packets waiting to leave a host unchanged (the turmoil backend's tunnel applies the link
/// model at the receiver).
impl Outgoing for Vec<Vec<u8>> {
    fn send(&mut self, _now: Instant, packet: Vec<u8>) -> Option<Fate> {
        self.push(packet);
        None
    }
}

/// Free packet buffers, shared by the hosts of one backend (a buffer is reused once consumed).
pub(crate) type BufferPool = RefCell<Vec<Vec<u8>>>;

/// One host's side of the link at one instant.
pub(crate) struct LinkPhy<'a> {
    pub(crate) pool: &'a BufferPool,
    /// Packets the link delivered to this host.
    pub(crate) rx: &'a mut VecDeque<Vec<u8>>,
    pub(crate) tx: &'a mut dyn Outgoing,
    /// The link towards this host, told when it transmits (power save); device side only.
    pub(crate) wakes: Option<&'a mut Link>,
    pub(crate) now: Instant,
    pub(crate) capture: Option<&'a mut Capture>,
    /// The air capture and this host's side of it ([`LinkPhy::with_air`]).
    pub(crate) air: Option<(&'a mut AirCapture, Side)>,
}

/// A received packet; its buffer returns to the pool once consumed.
pub(crate) struct RxBuf<'a> {
    packet: Vec<u8>,
    pool: &'a BufferPool,
}

/// A transmit opportunity.
pub(crate) struct LinkTx<'a> {
    pool: &'a BufferPool,
    tx: &'a mut dyn Outgoing,
    wakes: Option<&'a mut Link>,
    now: Instant,
    capture: Option<&'a mut Capture>,
    air: Option<(&'a mut AirCapture, Side)>,
}

impl phy::RxToken for RxBuf<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.packet);
        let mut pool = self.pool.borrow_mut();
        if pool.len() < 1024 {
            pool.push(self.packet);
        }
        r
    }
}

impl phy::TxToken for LinkTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = self.pool.borrow_mut().pop().unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        let r = f(&mut buf);
        if let Some(capture) = self.capture {
            capture.packet(self.now, &buf);
        }
        if let Some(wakes) = self.wakes {
            wakes.receiver_transmitted(self.now);
        }
        let copy = self.air.is_some().then(|| buf.clone());
        let fate = self.tx.send(self.now, buf);
        // An outbox decides nothing: the receiver's link writes the packet then (turmoil).
        if let (Some((air, side)), Some(packet), Some(fate)) = (self.air, copy, fate) {
            air.sent(side, self.now, &packet, fate);
        }
        r
    }
}

impl<'a> LinkPhy<'a> {
    /// This phy, showing what it sends on `side` of `air`.
    pub(crate) fn with_air(mut self, air: Option<&'a mut AirCapture>, side: Side) -> Self {
        self.air = air.map(|air| (air, side));
        self
    }

    fn tx_token(&mut self) -> LinkTx<'_> {
        LinkTx {
            pool: self.pool,
            tx: &mut *self.tx,
            wakes: self.wakes.as_deref_mut(),
            now: self.now,
            capture: self.capture.as_deref_mut(),
            air: self.air.as_mut().map(|(air, side)| (&mut **air, *side)),
        }
    }
}

/// Moves every packet `link` delivers at `now` into `rx`, showing each on `to`'s side of `air`.
pub(crate) fn deliver_due(
    link: &mut Link,
    now: Instant,
    rx: &mut VecDeque<Vec<u8>>,
    air: Option<&mut AirCapture>,
    to: Side,
) {
    let before = rx.len();
    link.deliver_due(now, rx);
    if let Some(air) = air {
        for packet in rx.range(before..) {
            air.received(to, now, packet);
        }
    }
}

impl phy::Device for LinkPhy<'_> {
    type RxToken<'b>
        = RxBuf<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = LinkTx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _t: Instant) -> Option<(RxBuf<'_>, LinkTx<'_>)> {
        let packet = self.rx.pop_front()?;
        if let Some(capture) = self.capture.as_mut() {
            capture.packet(self.now, &packet);
        }
        let pool = self.pool;
        Some((RxBuf { packet, pool }, self.tx_token()))
    }

    fn transmit(&mut self, _t: Instant) -> Option<LinkTx<'_>> {
        Some(self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// Both directions of a device's link and what each delivered, in one process (the loopback
/// backend, live mode).
pub(crate) struct Wire {
    /// Peer to device.
    pub(crate) downlink: Link,
    /// Device to peer.
    pub(crate) uplink: Link,
    pub(crate) device_rx: VecDeque<Vec<u8>>,
    pub(crate) peer_rx: VecDeque<Vec<u8>>,
    pub(crate) pool: BufferPool,
}

impl Wire {
    /// The scenario's link, each direction with its own seed.
    pub(crate) fn new(config: &Scenario, seed: u64) -> Wire {
        Wire {
            downlink: Link::new(config.link.downlink, split_seed(seed, "link.downlink")),
            uplink: Link::new(config.link.uplink, split_seed(seed, "link.uplink")),
            device_rx: VecDeque::new(),
            peer_rx: VecDeque::new(),
            pool: BufferPool::default(),
        }
    }

    /// The device's phy at `now`: it receives what the downlink delivered, sends on the
    /// uplink, and wakes the downlink when it transmits.
    pub(crate) fn device_phy<'a>(
        &'a mut self,
        now: Instant,
        capture: Option<&'a mut Capture>,
    ) -> LinkPhy<'a> {
        LinkPhy {
            pool: &self.pool,
            rx: &mut self.device_rx,
            tx: &mut self.uplink,
            wakes: Some(&mut self.downlink),
            now,
            capture,
            air: None,
        }
    }

    /// Delivers what each direction has due at `now`, showing it on `air`.
    pub(crate) fn deliver_due(&mut self, now: Instant, mut air: Option<&mut AirCapture>) {
        let down = (&mut self.downlink, &mut self.device_rx, Side::Device);
        let up = (&mut self.uplink, &mut self.peer_rx, Side::Peer);
        for (link, rx, to) in [down, up] {
            deliver_due(link, now, rx, air.as_deref_mut(), to);
        }
    }

    /// The peer's phy at `now`.
    pub(crate) fn peer_phy(&mut self, now: Instant) -> LinkPhy<'_> {
        LinkPhy {
            pool: &self.pool,
            rx: &mut self.peer_rx,
            tx: &mut self.downlink,
            wakes: None,
            now,
            capture: None,
            air: None,
        }
    }
}
