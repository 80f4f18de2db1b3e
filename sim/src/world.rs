//! The loopback backend: device and peer stacks in one event loop on a virtual clock.
//!
//! Event-driven: each step jumps to the earliest of link deliveries, both stacks' `poll_at`,
//! the worker thread, the application loop tick and the peer programs' timers.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write;

use firmware_core::app::App;
use firmware_core::smoltcp::phy::{self, DeviceCapabilities, Medium, PcapLinkType, PcapSink};
use firmware_core::smoltcp::time::{Duration, Instant};
use firmware_core::smoltcp::wire::Ipv4Address;
use firmware_core::{AppEvent, AppEventSink, Device, DeviceEvent, DeviceSeeds};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use twox_hash::XxHash3_128;

use crate::link::{Link, LinkStats};
use crate::oracle::{ConnReport, Oracle, Summary};
use crate::peer::{PeerEvent, PeerHost};
use crate::scenario::{LoopStall, RunConfig, StallTrigger};

/// The device's address.
pub const DEVICE_ADDR: Ipv4Address = Ipv4Address::new(192, 168, 1, 10);

/// Derives the seed of one component from the run's seed, so components draw independently
/// and adding a component does not shift the others.
pub fn split_seed(seed: u64, component: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(component.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// The event trace: every event as a line, hashed; kept in memory only when asked. Each event
/// is also a `tracing` event inside a span for its connection (`conn{port=..}`) inside the
/// run's span, so `RUST_LOG=fwsim=debug` shows them grouped.
pub(crate) struct Trace {
    /// xxHash3-128: a fixed, specified function, so hashes compare across machines and runs.
    hasher: XxHash3_128,
    line: String,
    kept: Option<Vec<String>>,
    events: u64,
    run_span: tracing::Span,
    conn_spans: BTreeMap<u16, tracing::Span>,
    tracing_on: bool,
}

impl Trace {
    pub(crate) fn new(keep: bool, run_span: tracing::Span) -> Trace {
        Trace {
            hasher: XxHash3_128::new(),
            line: String::new(),
            kept: keep.then(Vec::new),
            events: 0,
            tracing_on: tracing::enabled!(target: "fwsim::trace", tracing::Level::DEBUG),
            run_span,
            conn_spans: BTreeMap::new(),
        }
    }

    /// The span of one connection (created on first use, inside the run's span).
    fn conn_span(&mut self, port: u16) -> tracing::Span {
        let run = &self.run_span;
        self.conn_spans
            .entry(port)
            .or_insert_with(
                || tracing::debug_span!(target: "fwsim::trace", parent: run, "conn", port),
            )
            .clone()
    }

    /// The hot path (data moved): hashes the numbers directly and formats a line only when
    /// someone reads it (RUST_LOG or a kept trace).
    pub(crate) fn record_count(&mut self, now: Instant, what: &'static str, port: u16, bytes: u64) {
        // One write per event: the hasher's per-call cost dominates for these few bytes.
        let mut record = [0u8; 18];
        record[..8].copy_from_slice(&now.total_micros().to_le_bytes());
        record[8..10].copy_from_slice(&port.to_le_bytes());
        record[10..].copy_from_slice(&bytes.to_le_bytes());
        self.hasher.write(what.as_bytes());
        self.hasher.write(&record);
        self.events += 1;
        if self.tracing_on {
            let _entered = self.conn_span(port).entered();
            tracing::debug!(target: "fwsim::trace", t_us = now.total_micros(), "{what} bytes={bytes}");
        }
        if let Some(kept) = &mut self.kept {
            kept.push(format!(
                "{} {what} port={port} bytes={bytes}",
                now.total_micros()
            ));
        }
    }

    pub(crate) fn record(
        &mut self,
        now: Instant,
        source: &str,
        port: Option<u16>,
        args: std::fmt::Arguments<'_>,
    ) {
        self.line.clear();
        let _ = write!(self.line, "{} {} {}", now.total_micros(), source, args);
        self.hasher.write(self.line.as_bytes());
        self.hasher.write(b"\n");
        self.events += 1;
        if self.tracing_on {
            let span = match port {
                Some(p) => self.conn_span(p),
                None => self.run_span.clone(),
            };
            let _entered = span.entered();
            tracing::debug!(target: "fwsim::trace", t_us = now.total_micros(), "{} {}", source, args);
        }
        if let Some(kept) = &mut self.kept {
            kept.push(self.line.clone());
        }
    }

    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    pub(crate) fn kept_lines(&mut self) -> Option<Vec<String>> {
        self.kept.take()
    }

    pub(crate) fn hash(&self) -> String {
        format!("{:032x}", self.hasher.finish_128())
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub seed: u64,
    pub rows: Vec<ConnReport>,
    pub summary: Summary,
    /// SHA-256 (first 16 bytes, hex) of the event trace.
    pub trace_hash: String,
    pub trace_events: u64,
    pub trace_lines: Option<Vec<String>>,
    /// Simulated time the run covered.
    pub sim_time_us: i64,
    pub uplink: LinkStats,
    pub downlink: LinkStats,
    /// The run hit its time limit before every peer program finished.
    pub timed_out: bool,
}

/// Options that do not change what is simulated.
#[derive(Default)]
pub struct RunOptions {
    /// Write every packet the device sent or received here, as pcap (raw IP).
    pub pcap: Option<Box<dyn Write>>,
    /// Keep the trace lines in the report.
    pub keep_trace: bool,
    /// Run every application loop iteration, also those an idle application would skip (for
    /// the test that skipping changes nothing).
    pub step_every_loop: bool,
}

/// One host's side of the link: receives what the link delivered, transmits into the other
/// direction. The device's side also writes the pcap and wakes its downlink from power save
/// when it transmits.
pub(crate) struct LinkPhy<'a> {
    /// Free packet buffers, shared by both hosts (a packet's buffer is reused once consumed).
    pub(crate) pool: &'a RefCell<Vec<Vec<u8>>>,
    pub(crate) rx: &'a mut VecDeque<Vec<u8>>,
    pub(crate) tx: &'a mut Link,
    /// The link towards this host, told when it transmits (power save); device side only.
    pub(crate) wakes: Option<&'a mut Link>,
    pub(crate) now: Instant,
    pub(crate) pcap: Option<&'a mut Box<dyn Write>>,
}

pub struct RxBuf<'a> {
    packet: Vec<u8>,
    pool: &'a RefCell<Vec<Vec<u8>>>,
}

pub struct LinkTx<'a> {
    pool: &'a RefCell<Vec<Vec<u8>>>,
    link: &'a mut Link,
    wakes: Option<&'a mut Link>,
    now: Instant,
    pcap: Option<&'a mut Box<dyn Write>>,
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
        if let Some(pcap) = self.pcap {
            pcap.packet(self.now, &buf);
        }
        if let Some(wakes) = self.wakes {
            wakes.receiver_transmitted(self.now);
        }
        self.link.enqueue(self.now, buf);
        r
    }
}

impl LinkPhy<'_> {
    fn tx_token(&mut self) -> LinkTx<'_> {
        LinkTx {
            pool: self.pool,
            link: self.tx,
            wakes: self.wakes.as_deref_mut(),
            now: self.now,
            pcap: self.pcap.as_deref_mut(),
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
        if let Some(pcap) = self.pcap.as_mut() {
            pcap.packet(self.now, &packet);
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

/// Feeds app events to the oracle and the trace.
pub(crate) struct AppSink<'a> {
    oracle: &'a mut Oracle,
    trace: &'a mut Trace,
    now: Instant,
}

impl AppEventSink for AppSink<'_> {
    fn app_event(&mut self, event: AppEvent<'_>) {
        self.oracle.app_event(&event);
        match event {
            AppEvent::Read { conn, data } => {
                self.trace
                    .record_count(self.now, "app read", conn.remote.port, data.len() as u64)
            }
            other => self.trace.record(
                self.now,
                "app",
                Some(other.peer_port()),
                format_args!("{other:?}"),
            ),
        }
    }
}

/// The application loop's timing: a base period plus system work between iterations.
pub(crate) struct LoopClock {
    rng: ChaCha8Rng,
    period_us: u64,
    jitter_us: u64,
    slow_every: u64,
    slow_us: u64,
}

impl LoopClock {
    pub(crate) fn next_after(&mut self, now: Instant) -> Instant {
        let mut us = self.period_us.max(1);
        if self.jitter_us > 0 {
            us += self.rng.random_range(0..=self.jitter_us);
        }
        if self.slow_every > 0 && self.rng.random_range(0..self.slow_every) == 0 {
            us += self.slow_us;
        }
        now + Duration::from_micros(us)
    }
}

/// The device side of a run: firmware device, app and application loop clock. Both backends
/// drive it the same way; `boot` counts restarts so a rebooted device draws fresh seeds.
pub(crate) struct DeviceNode {
    pub(crate) device: Device,
    app: Box<dyn App>,
    clock: LoopClock,
    next_tick: Instant,
    events: Vec<DeviceEvent>,
    stall: LoopStall,
    /// The connection (peer port) whose FIN or RST will release the held loop, and when the
    /// hold ends without it.
    stall_held_for: Option<(u16, Instant)>,
}

/// The peer port and kind of a SYN, FIN or RST segment toward the device.
fn stall_trigger(packet: &[u8]) -> Option<(u16, StallTrigger)> {
    use firmware_core::smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket};
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let trigger = if tcp.rst() {
        StallTrigger::Rst
    } else if tcp.syn() && !tcp.ack() {
        StallTrigger::Syn
    } else if tcp.fin() {
        StallTrigger::Fin
    } else {
        return None;
    };
    Some((tcp.src_port(), trigger))
}

impl DeviceNode {
    pub(crate) fn boot(
        config: &RunConfig,
        boot: u32,
        phy: &mut LinkPhy<'_>,
        now: Instant,
    ) -> DeviceNode {
        let seed = config.seed;
        let tag = |name: &str| {
            if boot == 0 {
                split_seed(seed, name)
            } else {
                split_seed(seed, &format!("{name}.boot{boot}"))
            }
        };
        let mut device = Device::new(
            phy,
            DEVICE_ADDR,
            24,
            config.policy,
            config.device,
            DeviceSeeds {
                stack: tag("device.stack"),
                worker: tag("device.worker"),
            },
            now,
        );
        let mut app = config.app.build(config.port);
        app.setup(&mut device);
        let mut clock = LoopClock {
            rng: ChaCha8Rng::seed_from_u64(tag("device.loop")),
            period_us: config.loop_period_us,
            jitter_us: config.loop_jitter_us,
            slow_every: config.slow_loop_every,
            slow_us: config.slow_loop_us,
        };
        let next_tick = clock.next_after(now);
        DeviceNode {
            device,
            app,
            clock,
            next_tick,
            events: Vec::new(),
            stall: config.loop_stall.clone(),
            stall_held_for: None,
        }
    }

    /// Skips the application loop iterations before `until` while the app is idle: nothing
    /// can change for it before the device's next event, which must not come before `until`.
    /// Each skipped iteration draws its timing as if it ran, so the run stays the same.
    pub(crate) fn skip_idle_ticks(&mut self, until: Instant) {
        if self.next_tick >= until || !self.app_idle() {
            return;
        }
        while self.next_tick < until {
            self.next_tick = self.clock.next_after(self.next_tick);
        }
    }

    /// True if the application would do nothing until the device changes.
    pub(crate) fn app_idle(&self) -> bool {
        self.app.idle(&self.device)
    }

    /// The next application loop iteration.
    pub(crate) fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// Runs what is due at `now`: packets waiting in `phy`, device timers (`device_due`), an
    /// application loop iteration. Returns true if the device ran (its timers may have moved).
    pub(crate) fn step(
        &mut self,
        now: Instant,
        device_due: bool,
        phy: &mut LinkPhy<'_>,
        oracle: &mut Oracle,
        trace: &mut Trace,
    ) -> bool {
        if !self.stall.on.is_empty() {
            self.stall_loop(now, phy, trace);
        }
        let tick = now >= self.next_tick;
        // The app's HAL calls need no poll first unless packets or device timers are due.
        if !(!phy.rx.is_empty() || device_due || tick) {
            return false;
        }
        if !phy.rx.is_empty() || device_due {
            self.device.poll(now, phy);
            // What the stack saw happened before this loop iteration's reads.
            self.report_events(now, oracle, trace);
        }
        if tick {
            let mut sink = AppSink { oracle, trace, now };
            self.app.loop_once(now, &mut self.device, &mut sink);
            self.next_tick = self.clock.next_after(now);
            // What the app did (reads opening the window, writes, stops) goes out now.
            if self.device.poll_at().is_some_and(|x| x <= now) {
                self.device.poll(now, phy);
            }
        }
        self.report_events(now, oracle, trace);
        true
    }

    /// Injected system stalls, decided before the stack sees the packets now arriving: a
    /// `stall.on` segment delays the next loop iteration by `stall.stall`, or with
    /// `stall.until_close` holds it until that connection's FIN or RST arrives (at most
    /// `stall.max`), then `stall.stall` more.
    fn stall_loop(&mut self, now: Instant, phy: &LinkPhy<'_>, trace: &mut Trace) {
        if self.stall_held_for.is_some_and(|(_, end)| end <= now) {
            self.stall_held_for = None;
        }
        for packet in phy.rx.iter() {
            let Some((port, kind)) = stall_trigger(packet) else {
                continue;
            };
            let held_for = self.stall_held_for.map(|(p, _)| p);
            let closes = matches!(kind, StallTrigger::Fin | StallTrigger::Rst);
            let until = if held_for == Some(port) && closes {
                self.stall_held_for = None;
                now + self.stall.stall
            } else if self.stall.on.contains(&kind) && held_for.is_none() {
                if self.stall.until_close {
                    let end = (now + self.stall.max).max(self.next_tick);
                    self.stall_held_for = Some((port, end));
                    end
                } else {
                    (now + self.stall.stall).max(self.next_tick)
                }
            } else {
                continue;
            };
            if until != self.next_tick {
                self.next_tick = until;
                trace.record(
                    now,
                    "app",
                    Some(port),
                    format_args!("loop stalled until {until} by {kind:?}"),
                );
            }
        }
    }

    /// Hands the device's new events to the oracle and the trace.
    fn report_events(&mut self, now: Instant, oracle: &mut Oracle, trace: &mut Trace) {
        self.device.take_events(&mut self.events);
        for e in self.events.drain(..) {
            oracle.device_event(&e);
            match e {
                DeviceEvent::DataReceived { conn, bytes } => {
                    trace.record_count(now, "device rx", conn.remote.port, bytes as u64)
                }
                e => trace.record(now, "device", Some(e.peer_port()), format_args!("{e:?}")),
            }
        }
    }
}

/// The peer side of a run: the peer host and the safety/liveness phase bookkeeping. Both
/// backends drive it the same way.
pub(crate) struct PeerNode {
    pub(crate) host: PeerHost,
    events: Vec<PeerEvent>,
    liveness: bool,
    quiet_since: Option<Instant>,
}

impl PeerNode {
    pub(crate) fn boot(config: &RunConfig, phy: &mut LinkPhy<'_>) -> Result<PeerNode, String> {
        let host = PeerHost::new(
            phy,
            config.workloads.clone(),
            DEVICE_ADDR,
            config.port,
            split_seed(config.seed, "peer.stack"),
            split_seed(config.seed, "peer.programs"),
        )?;
        Ok(PeerNode {
            host,
            events: Vec::new(),
            liveness: false,
            quiet_since: None,
        })
    }

    /// Polls the peer when packets wait in `phy` or its timers are `due`, and feeds its events
    /// to the oracle and trace. Returns whether it polled.
    pub(crate) fn step(
        &mut self,
        t: Instant,
        due: bool,
        phy: &mut LinkPhy<'_>,
        oracle: &mut Oracle,
        trace: &mut Trace,
    ) -> bool {
        let polled = !phy.rx.is_empty() || due;
        if polled {
            self.host.poll(t, phy);
        }
        self.host.take_events(&mut self.events);
        for e in self.events.drain(..) {
            if let PeerEvent::Opened { port, .. } = e {
                if let Some(r) = self.host.records().find(|r| r.local_port == port) {
                    oracle.expect(port, r.payload.clone());
                }
            }
            match e {
                PeerEvent::Sent { port, bytes } => {
                    trace.record_count(t, "peer sent", port, bytes as u64)
                }
                e => trace.record(t, "peer", Some(e.port()), format_args!("{e:?}")),
            }
        }
        polled
    }

    /// Safety phase while the workload runs, then the liveness phase. True at the moment the
    /// workload is over: the caller heals its links (no more loss, stalls or sleep), so every
    /// retransmission gets through before the verdict.
    pub(crate) fn start_liveness(&mut self, t: Instant, trace: &mut Trace) -> bool {
        if self.liveness || !self.host.finished() {
            return false;
        }
        self.liveness = true;
        trace.record(t, "sim", None, format_args!("liveness phase: links healed"));
        true
    }

    /// In the liveness phase, notes when nothing more can happen: the peer is quiet and the
    /// links (as the caller sees them) are empty.
    pub(crate) fn note_quiet(&mut self, t: Instant, links_empty: bool) {
        if self.liveness && self.quiet_since.is_none() && self.host.quiet() && links_empty {
            self.quiet_since = Some(t);
        }
    }

    /// When the run may end: `drain` after the peer went quiet.
    pub(crate) fn done_at(&self, drain: Duration) -> Option<Instant> {
        self.quiet_since.map(|q| q + drain)
    }
}

/// The run's span for `tracing`.
pub(crate) fn run_span(config: &RunConfig, backend: &str) -> tracing::Span {
    tracing::info_span!(
        target: "fwsim::trace",
        "run",
        scenario = %config.name,
        seed = config.seed,
        backend,
        policy = config.policy.name(),
        preset = %config.preset
    )
}

/// Runs one scenario on the loopback backend.
pub fn run_loopback(config: &RunConfig, mut options: RunOptions) -> Result<RunReport, String> {
    if !config.faults.is_empty() {
        return Err(format!(
            "{}: [[fault]] actions need backend = \"turmoil\" (or --set backend=turmoil)",
            config.name
        ));
    }
    let seed = config.seed;
    let mut downlink = Link::new(config.downlink, split_seed(seed, "link.downlink"));
    let mut uplink = Link::new(config.uplink, split_seed(seed, "link.uplink"));
    let mut dev_rx: VecDeque<Vec<u8>> = VecDeque::new();
    let mut peer_rx: VecDeque<Vec<u8>> = VecDeque::new();
    let mut pcap = options.pcap.take();
    if let Some(p) = pcap.as_mut() {
        p.global_header(PcapLinkType::Ip);
    }
    let mut now = Instant::ZERO;
    let pool = RefCell::new(Vec::new());
    let mut node = {
        let mut phy = LinkPhy {
            pool: &pool,
            rx: &mut dev_rx,
            tx: &mut uplink,
            wakes: Some(&mut downlink),
            now,
            pcap: None,
        };
        DeviceNode::boot(config, 0, &mut phy, now)
    };
    let mut peer = {
        let mut phy = LinkPhy {
            pool: &pool,
            rx: &mut peer_rx,
            tx: &mut downlink,
            wakes: None,
            now,
            pcap: None,
        };
        PeerNode::boot(config, &mut phy)?
    };
    let run_span = run_span(config, "loopback");
    let mut trace = Trace::new(options.keep_trace, run_span);
    let mut oracle = Oracle::default();
    let end = Instant::from_millis(config.max_duration_ms as i64);
    let drain = Duration::from_millis(config.drain_ms);
    let mut peer_at_cache: Option<Option<Instant>> = None;
    let mut device_at_cache: Option<Option<Instant>> = None;
    let mut timed_out = false;

    loop {
        // A side's next timer only changes when that side is polled, fed or run: cached.
        let peer_at = *peer_at_cache.get_or_insert_with(|| peer.host.poll_at(now));
        let device_at = *device_at_cache.get_or_insert_with(|| node.device.poll_at());
        // The earliest thing that happens next, besides the application loop.
        let others = [
            device_at,
            peer_at,
            uplink.next_delivery(),
            downlink.next_delivery(),
        ]
        .into_iter()
        .flatten()
        .min();
        let done_at = peer.done_at(drain);
        if !options.step_every_loop {
            // The run's end (peer done plus drain, or past the time limit) bounds the skip too.
            let past_end = end + Duration::from_micros(1);
            let stop = done_at.map_or(past_end, |d| d.min(past_end));
            node.skip_idle_ticks(others.map_or(stop, |x| x.min(stop)));
        }
        let t = others.map_or(node.next_tick(), |x| x.min(node.next_tick()));
        now = now.max(t);
        if now > end {
            timed_out = true;
            break;
        }
        if done_at.is_some_and(|d| now >= d) {
            break;
        }

        downlink.deliver_due(now, &mut dev_rx);
        uplink.deliver_due(now, &mut peer_rx);

        let mut phy = LinkPhy {
            pool: &pool,
            rx: &mut peer_rx,
            tx: &mut downlink,
            wakes: None,
            now,
            pcap: None,
        };
        let peer_due = peer_at.is_some_and(|x| x <= now);
        if peer.step(now, peer_due, &mut phy, &mut oracle, &mut trace) {
            peer_at_cache = None;
        }

        let mut phy = LinkPhy {
            pool: &pool,
            rx: &mut dev_rx,
            tx: &mut uplink,
            wakes: Some(&mut downlink),
            now,
            pcap: pcap.as_mut(),
        };
        let device_due = device_at.is_some_and(|x| x <= now);
        if node.step(now, device_due, &mut phy, &mut oracle, &mut trace) {
            device_at_cache = None;
        }

        // Safety phase while the workload runs; then the liveness phase: the links heal and
        // the run goes on until the peer is quiet, plus `drain_ms` for the application.
        if peer.start_liveness(now, &mut trace) {
            uplink.heal();
            downlink.heal();
        }
        peer.note_quiet(now, uplink.in_flight() == 0 && downlink.in_flight() == 0);
    }
    if let Some(p) = pcap.as_mut() {
        let _ = Write::flush(p);
    }
    let rows = oracle.judge(peer.host.records());
    let summary = Summary::of(&rows);
    Ok(RunReport {
        seed,
        summary,
        rows,
        trace_hash: trace.hash(),
        trace_events: trace.events,
        trace_lines: trace.kept,
        sim_time_us: now.total_micros(),
        uplink: uplink.stats(),
        downlink: downlink.stats(),
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const SCENARIO: &str = "name = \"t\"\n[device]\napp = \"forum\"\n[[peer]]\ncount = 2\n";

    fn run_with_filter(filter: &str) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let config = crate::scenario::parse("t.toml", SCENARIO, &[]).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            run_loopback(&config, RunOptions::default()).unwrap();
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn tracing_groups_events_by_run_and_connection_and_obeys_the_filter() {
        let debug = run_with_filter("fwsim=debug");
        assert!(debug.contains("run{scenario=t seed=1"), "{debug}");
        assert!(debug.contains("conn{port=40000}"), "{debug}");
        assert!(debug.contains("conn{port=40001}"));
        assert!(debug.contains("peer FinSent"));
        assert_eq!(
            run_with_filter("fwsim=warn"),
            "",
            "nothing below the filter"
        );
    }

    #[test]
    fn trace_hash_does_not_depend_on_tracing_being_on() {
        let config = crate::scenario::parse("t.toml", SCENARIO, &[]).unwrap();
        let quiet = run_loopback(&config, RunOptions::default())
            .unwrap()
            .trace_hash;
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("fwsim=debug"))
            .with_writer(std::io::sink)
            .finish();
        let loud = tracing::subscriber::with_default(subscriber, || {
            run_loopback(&config, RunOptions::default())
                .unwrap()
                .trace_hash
        });
        assert_eq!(quiet, loud);
    }
}
