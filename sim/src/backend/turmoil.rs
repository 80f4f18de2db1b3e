//! The turmoil backend: the device and the peer are turmoil hosts, and their smoltcp packets
//! travel as turmoil UDP datagrams, so turmoil's partitions, holds and host crashes act on real
//! TCP segments.
//!
//! Link model: turmoil's own latency is set to zero and the whole `sim::link` model (the same
//! presets as the loopback backend) is applied by each host to the packets it receives, counting
//! from the time they were sent (each datagram carries it). Delays, loss, reordering, batching,
//! power save and stalls therefore mean the same on both backends.
//!
//! Time: turmoil advances in steps of `turmoil_tick_us`, running the hosts one after another in
//! the order they were added; a datagram sent during a step reaches a host that runs later in
//! the same step, or every host at the next step. Each host runs its own events (application
//! loop, worker thread, stack timers, link deliveries) at microsecond resolution up to the end
//! of the step. The peer runs first, so the uplink (peer to device) is exact at any tick: each
//! packet reaches the device at its link-model time. The downlink can be up to one tick late
//! (two hosts with zero link delay cannot both be exact in fixed steps), so a smaller tick is
//! more faithful for the peer's view, a larger one faster.
//!
//! Use [`crate::run()`] for a scenario (with `backend = "turmoil"`), or [`FwsimHosts::add_to`]
//! to put a fwsim device and peer into a turmoil [`turmoil::Sim`] of your own, beside your hosts.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration as StdDuration, SystemTime};

use firmware_core::smoltcp::time::{Duration, Instant};
use turmoil::net::UdpSocket;

use crate::air::{AirCapture, Side};
use crate::link::{Link, LinkStats};
use crate::node::{DeviceNode, PeerNode};
use crate::phy::{deliver_due, BufferPool, LinkPhy};
use crate::run::{Prepared, RunCore, RunError, RunOptions, RunReport, Stop};
use crate::scenario::{FaultAction, Scenario, TurmoilTick};
use crate::seed::{boot_seed, split_seed};

/// UDP port of the packet tunnel on both hosts.
const TUNNEL_PORT: u16 = 4789;

/// What both hosts share: the run core they feed, and the peer's results.
struct Shared {
    core: RunCore,
    /// The workload ended at this time: hosts heal their incoming links from it (liveness).
    healed: Option<Instant>,
    /// When and why the peer ended the run.
    stopped: Option<(Instant, Stop)>,
    device_boots: u32,
    tick: TurmoilTick,
    uplink: LinkStats,
    downlink: LinkStats,
}

/// The simulated time of the current turmoil host.
fn sim_now() -> Instant {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    Instant::from_micros(elapsed.as_micros() as i64)
}

/// The start of the current turmoil step. Hosts wake only at step starts; anything else means
/// the simulation's tick is not the scenario's `turmoil_tick_us` (build it with [`sim_builder`]).
fn step_start(tick: Duration) -> Instant {
    let now = sim_now();
    assert!(
        (now.total_micros() as u64).is_multiple_of(tick.total_micros().max(1)),
        "fwsim host woke at {now} inside a step of {tick}: the turmoil Sim's tick must equal \
         the scenario's turmoil_tick_us (build it with sim::backend::turmoil::sim_builder)"
    );
    now
}

/// Moves every datagram that arrived into the host's incoming link, at the time it was sent
/// (the first 8 bytes), so link delays count from the true send time. The link decides each
/// packet's fate here, so the sender's side of the air capture is written here too.
fn receive_into(
    sock: &UdpSocket,
    link: &mut Link,
    buf: &mut [u8],
    step_start: Instant,
    mut air: Option<(&mut AirCapture, Side)>,
) {
    while let Ok((n, _)) = sock.try_recv_from(buf) {
        if n < 8 {
            continue;
        }
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&buf[..8]);
        let sent_at = Instant::from_micros(i64::from_le_bytes(stamp));
        let fate = link.enqueue_received(sent_at, buf[8..n].to_vec(), step_start);
        if let Some((air, sender)) = air.as_mut() {
            air.sent(*sender, sent_at, &buf[8..n], fate);
        }
    }
}

/// Sends what the host transmitted at `now`, stamped with the send time; the receiving host
/// applies the link model.
fn send_out(sock: &UdpSocket, now: Instant, to: IpAddr, outbox: &mut Vec<Vec<u8>>) {
    for packet in outbox.drain(..) {
        let mut datagram = Vec::with_capacity(packet.len() + 8);
        datagram.extend_from_slice(&now.total_micros().to_le_bytes());
        datagram.extend_from_slice(&packet);
        // A full or partitioned path drops the datagram: a lost segment, as on a real link.
        let _ = sock.try_send_to(&datagram, (to, TUNNEL_PORT));
    }
}

/// Once a host runs in a turmoil step, nothing more reaches it in that step (hosts run one after
/// another), so it runs its own events at full resolution up to the next boundary: `run` is called at each
/// event time in `[start, start + tick)` and returns the host's next event. Returns the first
/// event at or after the boundary, if any.
fn run_until_boundary(
    start: Instant,
    tick: Duration,
    mut run: impl FnMut(Instant) -> Option<Instant>,
) -> Option<Instant> {
    // Work that one run makes due at the same instant (a delivery the device's own
    // transmission woke) runs at that instant again, as on the loopback backend; a host that
    // keeps asking for the same instant is a harness bug, cut off by moving on.
    const SAME_INSTANT_MAX: u32 = 64;
    let horizon = start + tick;
    let mut t = start;
    let mut same_instant = 0;
    while let Some(next) = run(t) {
        let next = if next > t {
            same_instant = 0;
            next
        } else if same_instant < SAME_INSTANT_MAX {
            same_instant += 1;
            t
        } else {
            same_instant = 0;
            t + Duration::from_micros(1)
        };
        if next >= horizon {
            return Some(next);
        }
        t = next;
    }
    None
}

/// Sleeps until the start of the step that holds `next` (so the event still runs at its exact
/// time), or a long while without one, or until a datagram arrives. `start` is this step's start.
async fn wait(sock: &UdpSocket, start: Instant, tick: Duration, next: Option<Instant>) {
    let tick_us = tick.total_micros().max(1);
    let wait_us = match next {
        // Whole ticks from this step's start to the step containing `next` (at least one).
        Some(t) if t > start => ((t - start).total_micros() / tick_us).max(1) * tick_us,
        Some(_) => tick_us,
        None => (1_000_000 / tick_us).max(1) * tick_us,
    };
    tokio::select! {
        biased;
        _ = sock.readable() => {}
        _ = tokio::time::sleep(StdDuration::from_micros(wait_us)) => {}
    }
}

/// One host's packets: its incoming link (the link model, applied at the receiver), what that
/// link delivered, and what the host sent in this instant.
struct HostWire {
    incoming: Link,
    rx: VecDeque<Vec<u8>>,
    outbox: Vec<Vec<u8>>,
    pool: BufferPool,
    buf: Vec<u8>,
}

impl HostWire {
    fn new(incoming: Link) -> HostWire {
        HostWire {
            incoming,
            rx: VecDeque::new(),
            outbox: Vec::new(),
            pool: BufferPool::default(),
            buf: vec![0u8; 65536],
        }
    }

    /// The host's phy at `t`; the device's side wakes its incoming link when it transmits.
    fn phy<'a>(
        &'a mut self,
        t: Instant,
        device: bool,
        capture: Option<&'a mut crate::capture::Capture>,
    ) -> LinkPhy<'a> {
        LinkPhy {
            pool: &self.pool,
            rx: &mut self.rx,
            tx: &mut self.outbox,
            wakes: device.then_some(&mut self.incoming),
            now: t,
            capture,
            // The receiving host's link decides each packet's fate and writes it then.
            air: None,
        }
    }
}

/// The device host: boots the firmware (again after each bounce) and runs it forever.
async fn device_host(
    prep: Rc<Prepared>,
    shared: Rc<RefCell<Shared>>,
    peer: String,
) -> turmoil::Result {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, TUNNEL_PORT)).await?;
    let peer = turmoil::lookup(peer);
    let boot = {
        let mut s = shared.borrow_mut();
        s.device_boots += 1;
        s.device_boots - 1
    };
    let config = &prep.scenario;
    let downlink_seed = boot_seed(config.seed, "link.downlink", boot);
    let mut wire = HostWire::new(Link::new(config.link.downlink, downlink_seed));
    let now = sim_now();
    let mut node = DeviceNode::boot(&prep, boot, &mut wire.phy(now, true, None), now);
    if boot > 0 {
        let mut s = shared.borrow_mut();
        s.core
            .observer
            .note(now, "device", None, format_args!("rebooted (boot {boot})"));
    }
    let tick = Duration::from_micros(config.turmoil_tick().tick_us);
    let skip_idle = shared.borrow().core.skip_idle;
    loop {
        let now = step_start(tick);
        if let Some(at) = shared.borrow().healed {
            wire.incoming.heal_from(at);
        }
        {
            let mut s = shared.borrow_mut();
            let air = s.core.air.as_mut().map(|a| (a, Side::Peer));
            receive_into(&sock, &mut wire.incoming, &mut wire.buf, now, air);
            // The peer ran this step already and the device every earlier one: nothing before
            // `now` is still to come (a held datagram excepted).
            if let Some(air) = s.core.air.as_mut() {
                air.flush_before(now);
            }
        }
        if skip_idle {
            // Asleep while idle (below): nothing changed for the device since.
            node.skip_idle_ticks(now);
        }
        let next = run_until_boundary(now, tick, |t| {
            {
                let mut s = shared.borrow_mut();
                let core = &mut s.core;
                let air = core.air.as_mut();
                deliver_due(&mut wire.incoming, t, &mut wire.rx, air, Side::Device);
                let due = node.device.poll_at().is_some_and(|x| x <= t);
                let mut phy = wire.phy(t, true, core.capture.as_mut());
                node.step(t, due, &mut phy, &mut core.observer);
                s.downlink = wire.incoming.stats();
            }
            send_out(&sock, t, peer, &mut wire.outbox);
            // Nothing reaches this host before the next step, so the device's own next event
            // (or the step's end) bounds the idle loop iterations that can be skipped.
            let device_next = [node.device.poll_at(), wire.incoming.next_delivery()]
                .into_iter()
                .flatten()
                .min();
            Some(node.next_event(device_next, now + tick, skip_idle))
        });
        // An idle device with nothing on its way to it sleeps until its own next timer or a
        // datagram; the loop iterations in between are skipped when it wakes.
        let next = if skip_idle && node.app_idle() && wire.incoming.in_flight() == 0 {
            node.device.poll_at()
        } else {
            next
        };
        wait(&sock, now, tick, next).await;
    }
}

/// The peer host: runs the workload, then the liveness phase, then ends (a turmoil client).
async fn peer_host(
    prep: Rc<Prepared>,
    shared: Rc<RefCell<Shared>>,
    device: String,
) -> turmoil::Result {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, TUNNEL_PORT)).await?;
    let device = turmoil::lookup(device);
    let config = &prep.scenario;
    let uplink = Link::new(config.link.uplink, split_seed(config.seed, "link.uplink"));
    let mut wire = HostWire::new(uplink);
    let mut now = sim_now();
    let mut peer = PeerNode::boot(&prep, &mut wire.phy(now, false, None))?;
    let tick = Duration::from_micros(config.turmoil_tick().tick_us);
    let mut stopped = None;
    while stopped.is_none() {
        let start = step_start(tick);
        {
            let mut s = shared.borrow_mut();
            let air = s.core.air.as_mut().map(|a| (a, Side::Device));
            receive_into(&sock, &mut wire.incoming, &mut wire.buf, start, air);
        }
        let next = run_until_boundary(start, tick, |t| {
            let mut s = shared.borrow_mut();
            if let Some(stop) = s.core.stop_at(t) {
                stopped = Some(stop);
                return None;
            }
            now = t;
            let air = s.core.air.as_mut();
            deliver_due(&mut wire.incoming, t, &mut wire.rx, air, Side::Peer);
            let due = peer.host.poll_at(t).is_some_and(|x| x <= t);
            peer.step(t, due, &mut wire.phy(t, false, None), &mut s.core.observer);
            if s.core.after_peer(t, &peer.host) {
                // The device heals its own incoming link when it sees the flag.
                s.healed = Some(t);
                wire.incoming.heal_from(t);
            }
            s.uplink = wire.incoming.stats();
            drop(s);
            send_out(&sock, t, device, &mut wire.outbox);
            let done_at = shared.borrow().core.done_at();
            [peer.host.poll_at(t), wire.incoming.next_delivery(), done_at]
                .into_iter()
                .flatten()
                .min()
        });
        if stopped.is_none() {
            wait(&sock, start, tick, next).await;
        }
    }
    let mut s = shared.borrow_mut();
    s.stopped = stopped.map(|stop| (now, stop));
    Ok(())
}

/// A fwsim device and peer inside a turmoil simulation.
pub struct FwsimHosts {
    shared: Rc<RefCell<Shared>>,
    /// turmoil host name of the device.
    pub device: String,
    /// turmoil host name of the peer (a client: the simulation waits for it).
    pub peer: String,
}

impl FwsimHosts {
    /// Adds the scenario's device (a host) and peer (a client) to `sim` under the names
    /// `device` and `peer`. Run the simulation, then read [`FwsimHosts::report`].
    ///
    /// `sim` must step by the scenario's `turmoil_tick_us`: build it from [`sim_builder`].
    /// A mismatch panics at the first step that shows it (a harness bug, not an input error).
    pub fn add_to(
        sim: &mut turmoil::Sim<'_>,
        scenario: &Scenario,
        options: RunOptions,
        device: &str,
        peer: &str,
    ) -> Result<FwsimHosts, crate::Error> {
        let prep = Prepared::new(scenario, None, None, crate::run::Replay::default())?;
        Ok(FwsimHosts::add_prepared(sim, prep, options, device, peer)?)
    }

    pub(crate) fn add_prepared(
        sim: &mut turmoil::Sim<'_>,
        prep: Prepared,
        options: RunOptions,
        device: &str,
        peer: &str,
    ) -> Result<FwsimHosts, RunError> {
        let shared = Rc::new(RefCell::new(Shared {
            core: RunCore::new(&prep, "turmoil", options)?,
            healed: None,
            stopped: None,
            device_boots: 0,
            tick: prep.scenario.turmoil_tick(),
            uplink: LinkStats::default(),
            downlink: LinkStats::default(),
        }));
        let config = Rc::new(prep);
        // turmoil runs hosts in the order they were added, and a datagram sent earlier in a
        // step reaches a later host in the same step. The peer goes first, so everything it
        // sends reaches the device at its exact link-model time, whatever the tick: the
        // arrival of data and FIN against the application loop is what the field bug is about.
        let (c, s, d) = (config.clone(), shared.clone(), device.to_string());
        sim.client(peer, peer_host(c, s, d));
        let (c, s, p) = (config.clone(), shared.clone(), peer.to_string());
        sim.host(device, move || device_host(c.clone(), s.clone(), p.clone()));
        Ok(FwsimHosts {
            shared,
            device: device.into(),
            peer: peer.into(),
        })
    }

    /// True once the peer finished its workload and the liveness phase (or the time limit).
    pub fn finished(&self) -> bool {
        self.shared.borrow().stopped.is_some()
    }

    /// Records a fault in the trace (the caller applies it to the simulation).
    fn note(&self, now: Instant, what: std::fmt::Arguments<'_>) {
        self.shared
            .borrow_mut()
            .core
            .observer
            .note(now, "fault", None, what);
    }

    /// The verdicts, once the simulation has run. A simulation stopped before the peer
    /// finished (turmoil's own duration limit) counts as timed out.
    pub fn report(&self) -> Result<RunReport, RunError> {
        let mut s = self.shared.borrow_mut();
        let Shared {
            core,
            stopped,
            uplink,
            downlink,
            tick,
            ..
        } = &mut *s;
        let (end, stop) = stopped.unwrap_or((Instant::ZERO, Stop::TimedOut));
        let mut report = core.finish(end, stop, *uplink, *downlink)?;
        report.turmoil_tick = Some(*tick);
        Ok(report)
    }
}

/// A turmoil builder for a simulation that will hold the scenario's hosts: its tick is the
/// scenario's `turmoil_tick_us`, turmoil's own latency and random loss are off (the link model
/// applies them), and its seed and epoch come from the scenario, so runs repeat exactly.
/// Add your own settings and hosts, then [`FwsimHosts::add_to`].
pub fn sim_builder(config: &Scenario) -> turmoil::Builder {
    let mut builder = turmoil::Builder::new();
    builder
        .simulation_duration(StdDuration::from_millis(
            config.max_duration_ms.saturating_add(60_000),
        ))
        .tick_duration(StdDuration::from_micros(config.turmoil_tick().tick_us))
        .min_message_latency(StdDuration::ZERO)
        .max_message_latency(StdDuration::ZERO)
        .fail_rate(0.0)
        .udp_capacity(1 << 16)
        .rng_seed(split_seed(config.seed, "turmoil"))
        .epoch(SystemTime::UNIX_EPOCH);
    builder
}

/// Runs one scenario on the turmoil backend, applying its timed faults between steps.
pub(crate) fn run(prep: &Prepared, options: RunOptions) -> Result<RunReport, RunError> {
    let mut sim = sim_builder(&prep.scenario).build();
    let hosts = FwsimHosts::add_prepared(&mut sim, prep.clone(), options, "device", "peer")?;
    let mut faults = prep.scenario.fault.clone();
    faults.sort_by_key(|f| f.at_ms);
    let mut faults = faults.into_iter().peekable();
    loop {
        let elapsed_ms = sim.elapsed().as_millis() as u64;
        while let Some(fault) = faults.next_if(|f| f.at_ms <= elapsed_ms) {
            let (d, p) = (hosts.device.as_str(), hosts.peer.as_str());
            match fault.action {
                FaultAction::Partition => sim.partition(d, p),
                FaultAction::Repair => sim.repair(d, p),
                FaultAction::Hold => sim.hold(d, p),
                FaultAction::Release => sim.release(d, p),
                FaultAction::Crash => sim.crash(d),
                FaultAction::Bounce => sim.bounce(d),
            }
            let now = Instant::from_millis(elapsed_ms as i64);
            hosts.note(now, format_args!("{:?}", fault.action));
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(RunError::Turmoil(e.to_string())),
        }
        if hosts.finished() {
            break;
        }
    }
    hosts.report()
}
