//! Peer programs on their own smoltcp stack: the laptop of the field report.
//!
//! Each workload opens connections on a schedule; each connection runs a small program
//! (`nc` send-and-close, hold-then-close, stream). The peer host records what its stack saw:
//! handshake completed, bytes acknowledged, reset or connect failure. That is the oracle's
//! "peer side".

mod host;
mod ledger;
mod schedule;
mod workload;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

pub use host::{HostProfile, HostTimers};
pub use ledger::{LedgerError, PeerConnRecord, PeerEvent, PeerLedger};
use schedule::{after_ms, after_us, Schedule};
pub use workload::{
    fill_counting, parse_hex, workload_payloads, HexError, Payload, PayloadError, ProgramKind,
    Workload,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    /// Established; the first byte goes at this time.
    StartingAt(Instant),
    Sending,
    /// All enqueued; FIN at this time (nc) or once acknowledged plus hold (stream/hold).
    CloseAt(Instant),
    WaitAcked,
    /// FIN sent; reading until the device closes or this time.
    Lingering(Instant),
    /// FIN sent and the program gone (`await_device_close = false`): the stack still sends,
    /// acknowledges and closes until this time, but no reset reaches the program.
    Orphaned(Instant),
    Done,
}

/// A connection whose program still runs.
struct PeerConn {
    /// Opening order (0 for the run's first connection): orders `records()`.
    seq: u64,
    handle: SocketHandle,
    phase: Phase,
    record: PeerConnRecord,
    last_state: tcp::State,
    /// In-order data segments the stack took in (the host profile's quick ACKs count them).
    rx_segments: u32,
    /// Bytes in the receive queue at the last look: a rise after a packet is a data segment.
    rx_queued: usize,
}

/// Closed sockets are taken out of the socket set in bulk once there are at least this many
/// and at least as many as open ones.
const COMPACT_MIN: usize = 64;

/// The peer host: one smoltcp interface, many connections.
///
/// Per poll, the work is proportional to the connections still open: a connection whose
/// program finished leaves the program loops (its record moves to the finished records), and
/// its socket leaves the socket set once smoltcp has closed it (a socket in TIME-WAIT stays
/// until then, to answer a retransmitted FIN).
pub struct PeerHost {
    iface: Interface,
    /// The open sockets in opening order, plus closed ones not yet compacted away. New sockets
    /// always go to the end (no slot is ever freed except by rebuilding the set), so the
    /// stack visits sockets in opening order, as if none were ever removed.
    sockets: SocketSet<'static>,
    workloads: Vec<Workload>,
    payloads: Vec<Payload>,
    device_addr: Ipv4Address,
    device_port: u16,
    /// Connections whose program still runs, in opening order.
    conns: Vec<PeerConn>,
    /// Sockets of finished programs the stack is still closing (FIN exchange, TIME-WAIT, an
    /// RST to send), with their opening order: read and discarded until closed.
    closing: Vec<(u64, SocketHandle)>,
    /// Closed sockets still in `sockets`.
    dead_sockets: usize,
    /// See [`COMPACT_MIN`] (settable in tests).
    compact_min: usize,
    /// Records of finished programs by opening order (unless `keep_records` is off).
    finished_records: std::collections::BTreeMap<u64, PeerConnRecord>,
    keep_records: bool,
    next_seq: u64,
    schedule: Schedule,
    rng: ChaCha8Rng,
    next_port: u16,
    events: Vec<PeerEvent>,
}

/// Address of the peer host.
pub const PEER_ADDR: Ipv4Address = Ipv4Address::new(192, 168, 1, 20);

impl PeerHost {
    /// A peer host running `workloads` against `device_addr:device_port`.
    ///
    /// `program_seed` seeds the programs' draws: the start-up delays (in the order connections
    /// establish) and, per workload, the interval jitter (its own stream, drawn as the
    /// schedule advances).
    pub fn new<D: phy::Device + ?Sized>(
        phy: &mut D,
        workloads: Vec<Workload>,
        device_addr: Ipv4Address,
        device_port: u16,
        stack_seed: u64,
        program_seed: u64,
    ) -> Result<PeerHost, PayloadError> {
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = stack_seed;
        let mut iface = Interface::new(config, phy, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(PEER_ADDR), 24));
        });
        let payloads = workload_payloads(&workloads)?;
        let schedule = Schedule::new(&workloads, program_seed);
        Ok(PeerHost {
            iface,
            sockets: SocketSet::new(Vec::new()),
            workloads,
            payloads,
            device_addr,
            device_port,
            conns: Vec::new(),
            closing: Vec::new(),
            dead_sockets: 0,
            compact_min: COMPACT_MIN,
            finished_records: std::collections::BTreeMap::new(),
            keep_records: true,
            next_seq: 0,
            schedule,
            rng: ChaCha8Rng::seed_from_u64(program_seed),
            next_port: 40000,
            events: Vec::new(),
        })
    }

    /// What the peer saw, one record per connection, in opening order: the finished ones
    /// (unless [`PeerHost::set_keep_records`] turned them off) and the running ones.
    pub fn records(&self) -> impl Iterator<Item = &PeerConnRecord> {
        let mut done = self.finished_records.iter().peekable();
        let mut live = self.conns.iter().peekable();
        std::iter::from_fn(move || match (done.peek(), live.peek()) {
            (Some((&seq, _)), Some(c)) if seq < c.seq => done.next().map(|(_, r)| r),
            (_, Some(_)) => live.next().map(|c| &c.record),
            (Some(_), None) => done.next().map(|(_, r)| r),
            (None, None) => None,
        })
    }

    /// Whether to keep the records of finished connections for [`PeerHost::records`] (on by
    /// default). Off, memory stays proportional to the open connections; the events still
    /// carry every record ([`PeerLedger`]).
    pub fn set_keep_records(&mut self, keep: bool) {
        self.keep_records = keep;
        if !keep {
            self.finished_records.clear();
        }
    }

    /// Events since the last call.
    pub fn take_events(&mut self, out: &mut Vec<PeerEvent>) {
        out.append(&mut self.events);
    }

    /// True when every scheduled connection has run to its end.
    pub fn finished(&self) -> bool {
        self.schedule.is_empty() && self.conns.iter().all(|c| c.phase == Phase::Done)
    }

    /// True when no peer socket is still trying to reach the device (all closed or in
    /// TIME-WAIT): nothing more can arrive from the peer.
    pub fn quiet(&self) -> bool {
        self.conns
            .iter()
            .map(|c| c.handle)
            .chain(self.closing.iter().map(|&(_, h)| h))
            .all(|h| {
                matches!(
                    self.sockets.get::<tcp::Socket>(h).state(),
                    tcp::State::Closed | tcp::State::TimeWait
                )
            })
    }

    /// The next time a program needs to act, or the stack needs polling.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let stack = self.iface.poll_at(now, &self.sockets);
        let mut t = self.schedule.next_at();
        let mut consider = |x: Instant| t = Some(t.map_or(x, |y: Instant| y.min(x)));
        for c in &self.conns {
            match c.phase {
                Phase::StartingAt(x)
                | Phase::CloseAt(x)
                | Phase::Lingering(x)
                | Phase::Orphaned(x) => consider(x),
                Phase::Connecting => {
                    let w = &self.workloads[c.record.workload];
                    consider(after_ms(c.record.opened_at, w.connect_give_up_ms()));
                }
                _ => {}
            }
        }
        if let Some(x) = stack {
            consider(x);
        }
        t
    }

    fn open(&mut self, now: Instant, workload: usize) {
        // Like a host's socket buffers, but no larger than the program needs.
        let tx_size = (self.payloads[workload].len().min(65535) as usize).max(4096);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; tx_size]),
        );
        self.workloads[workload]
            .host
            .timers()
            .configure(&mut socket);
        let port = self.next_port;
        // Ports wrap after 25,536 connections: a port names the connection opened most
        // recently on it. The host itself keys connections by socket handle, never by port.
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        let _ = socket.connect(
            self.iface.context(),
            (IpAddress::Ipv4(self.device_addr), self.device_port),
            port,
        );
        let handle = self.sockets.add(socket);
        self.conns.push(PeerConn {
            seq: self.next_seq,
            handle,
            phase: Phase::Connecting,
            record: PeerConnRecord::opened(workload, port, now, self.payloads[workload].clone()),
            last_state: tcp::State::SynSent,
            rx_segments: 0,
            rx_queued: 0,
        });
        self.next_seq += 1;
        self.events.push(PeerEvent::Opened { port, workload });
    }

    /// Runs the programs due at `now`, then polls the stack with `phy` (which holds the packets
    /// the link delivered), observing the sockets after each packet.
    pub fn poll<D: phy::Device + ?Sized>(&mut self, now: Instant, phy: &mut D) {
        while let Some(w) = self.schedule.pop_due(now, &self.workloads) {
            self.open(now, w);
        }
        self.run_programs(now);
        loop {
            let r = self.iface.poll_ingress_single(now, phy, &mut self.sockets);
            if r == PollIngressSingleResult::None {
                break;
            }
            self.observe(now);
        }
        self.run_programs(now);
        self.iface.poll_egress(now, phy, &mut self.sockets);
        self.observe(now);
        self.retire();
    }

    /// Moves finished programs out of the loops, notes the sockets smoltcp has closed, and
    /// rebuilds the socket set once closed sockets are as many as open ones.
    fn retire(&mut self) {
        for c in self.conns.extract_if(.., |c| c.phase == Phase::Done) {
            self.closing.push((c.seq, c.handle));
            if self.keep_records {
                self.finished_records.insert(c.seq, c.record);
            }
        }
        let sockets = &self.sockets;
        let mut dead = 0;
        self.closing.retain(|&(_, h)| {
            let s = sockets.get::<tcp::Socket>(h);
            // Closed and forgotten: an aborted socket stays until it has sent its RST.
            let closed = s.state() == tcp::State::Closed && s.remote_endpoint().is_none();
            dead += usize::from(closed);
            !closed
        });
        self.dead_sockets += dead;
        if self.dead_sockets >= self.compact_min
            && self.dead_sockets >= self.conns.len() + self.closing.len()
        {
            self.compact();
        }
    }

    /// A new socket set holding the open sockets only, in opening order (the old slot order).
    fn compact(&mut self) {
        let mut old = std::mem::replace(&mut self.sockets, SocketSet::new(Vec::new()));
        self.closing.sort_unstable_by_key(|&(seq, _)| seq);
        let mut closing = self.closing.iter_mut().peekable();
        for c in &mut self.conns {
            while let Some((_, h)) = closing.next_if(|(seq, _)| *seq < c.seq) {
                *h = self.sockets.add(old.remove(*h));
            }
            c.handle = self.sockets.add(old.remove(c.handle));
        }
        for (_, h) in closing {
            *h = self.sockets.add(old.remove(*h));
        }
        self.dead_sockets = 0;
    }

    fn observe(&mut self, now: Instant) {
        for c in &mut self.conns {
            if c.phase == Phase::Done {
                continue;
            }
            let socket = self.sockets.get_mut::<tcp::Socket>(c.handle);
            let queued = socket.recv_queue();
            if queued > c.rx_queued {
                c.rx_segments = c.rx_segments.saturating_add(1);
                let w = &self.workloads[c.record.workload];
                w.host.timers().after_data_segment(c.rx_segments, socket);
            }
            c.rx_queued = queued;
            let state = socket.state();
            let port = c.record.local_port;
            if state != tcp::State::Closed {
                let acked = c.record.bytes_sent - socket.send_queue() as u64;
                if acked > c.record.bytes_acked {
                    self.events.push(PeerEvent::Acked {
                        port,
                        bytes: acked - c.record.bytes_acked,
                    });
                    c.record.bytes_acked = acked;
                }
            }
            if !c.record.established && !matches!(state, tcp::State::SynSent | tcp::State::Closed) {
                c.record.established = true;
                let w = &self.workloads[c.record.workload];
                let delay = self.rng.random_range(
                    w.start_delay_min_us..=w.start_delay_max_us.max(w.start_delay_min_us),
                );
                c.phase = Phase::StartingAt(after_us(now, delay));
                self.events.push(PeerEvent::Established { port });
            }
            if matches!(
                state,
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::TimeWait
                    | tcp::State::Closing
            ) && !c.record.device_fin_seen
            {
                c.record.device_fin_seen = true;
                self.events.push(PeerEvent::DeviceFinSeen { port });
            }
            if state == tcp::State::Closed && c.last_state != tcp::State::Closed {
                // Closed without TIME-WAIT or LAST-ACK: the device reset us (or refused the SYN).
                if c.last_state == tcp::State::SynSent {
                    c.record.connect_failed = true;
                    self.events.push(PeerEvent::ConnectFailed { port });
                } else if c.last_state != tcp::State::LastAck
                    && c.last_state != tcp::State::TimeWait
                    && !matches!(c.phase, Phase::Orphaned(_))
                {
                    c.record.reset_seen = true;
                    self.events.push(PeerEvent::ResetSeen { port });
                }
                c.phase = Phase::Done;
                c.record.finished = true;
                self.events.push(PeerEvent::Finished { port });
            }
            c.last_state = state;
        }
    }

    /// Runs every program as far as it goes at `now`, connection by connection in opening
    /// order (the order of their events).
    fn run_programs(&mut self, now: Instant) {
        // Finished programs' sockets still read and discard what arrives (nc's output).
        for &(_, h) in &self.closing {
            drain_rx(self.sockets.get_mut::<tcp::Socket>(h));
        }
        for c in &mut self.conns {
            let w = &self.workloads[c.record.workload];
            let socket = self.sockets.get_mut::<tcp::Socket>(c.handle);
            drain_rx(socket);
            c.rx_queued = 0;
            // A program may pass several phases in one poll: step until it stays put.
            loop {
                let before = c.phase;
                c.step(w, socket, now, &mut self.events);
                if c.phase == before {
                    break;
                }
            }
        }
    }
}

impl PeerConn {
    /// One step of the connection's program `w` at `now`: at most one phase change.
    fn step(
        &mut self,
        w: &Workload,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
        events: &mut Vec<PeerEvent>,
    ) {
        let port = self.record.local_port;
        match self.phase {
            Phase::Connecting if now >= after_ms(self.record.opened_at, w.connect_give_up_ms()) => {
                socket.abort();
                self.record.connect_failed = true;
                self.phase = Phase::Done;
                events.push(PeerEvent::ConnectFailed { port });
                self.record.finished = true;
                events.push(PeerEvent::Finished { port });
            }
            Phase::StartingAt(t) if now >= t => self.phase = Phase::Sending,
            Phase::Sending => self.send(w, socket, now, events),
            Phase::WaitAcked if socket.send_queue() == 0 || !socket.may_send() => {
                self.phase = Phase::CloseAt(match w.kind {
                    ProgramKind::Reset => after_us(now, w.close_delay_us),
                    _ => after_ms(now, w.hold_ms),
                });
            }
            Phase::CloseAt(t) if now >= t && w.kind == ProgramKind::Reset => {
                // Our own RST: the program is done; the device's answer does not matter.
                socket.abort();
                self.record.peer_aborted = true;
                events.push(PeerEvent::ResetSent { port });
                self.record.finished = true;
                self.phase = Phase::Done;
                events.push(PeerEvent::Finished { port });
            }
            Phase::CloseAt(t) if now >= t => {
                socket.close();
                self.record.fin_sent = true;
                events.push(PeerEvent::FinSent { port });
                self.phase = match w.await_device_close {
                    true => Phase::Lingering(after_ms(now, w.linger_ms)),
                    // Closed and gone: nothing the device does later reaches the program.
                    false => Phase::Orphaned(after_ms(now, w.linger_ms)),
                };
            }
            Phase::Orphaned(t)
                if now >= t
                    || matches!(socket.state(), tcp::State::TimeWait | tcp::State::Closed) =>
            {
                self.record.finished = true;
                self.phase = Phase::Done;
                events.push(PeerEvent::Finished { port });
            }
            Phase::Lingering(t) => self.linger(t, socket, now, events),
            _ => {}
        }
    }

    /// [`Phase::Sending`]: hands the stack as much of the payload as it takes; once all of it
    /// is in, the program moves on to its close (or lingers if the device closed first).
    fn send(
        &mut self,
        w: &Workload,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
        events: &mut Vec<PeerEvent>,
    ) {
        let port = self.record.local_port;
        let total = self.record.payload.len();
        while self.record.bytes_sent < total && socket.can_send() {
            let from = self.record.bytes_sent;
            let payload = &self.record.payload;
            let n = socket
                .send(|buf| {
                    let n = (buf.len() as u64).min(total - from) as usize;
                    payload.fill(from, &mut buf[..n]);
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            self.record.bytes_sent += n as u64;
            events.push(PeerEvent::Sent { port, bytes: n });
        }
        if self.record.bytes_sent >= total {
            self.phase = match w.kind {
                ProgramKind::Nc => Phase::CloseAt(after_us(now, w.close_delay_us)),
                ProgramKind::Hold | ProgramKind::Stream | ProgramKind::Reset => Phase::WaitAcked,
            };
        } else if !socket.may_send() {
            self.phase = Phase::Lingering(now);
        }
    }

    /// [`Phase::Lingering`] until `until`: done once the device closed or the time passed
    /// (then the program gave up waiting, unless it saw the device's FIN).
    fn linger(
        &mut self,
        until: Instant,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
        events: &mut Vec<PeerEvent>,
    ) {
        let port = self.record.local_port;
        let device_done = matches!(socket.state(), tcp::State::TimeWait | tcp::State::Closed);
        if now >= until || device_done {
            self.record.gave_up_waiting = !device_done && !self.record.device_fin_seen;
            if self.record.gave_up_waiting {
                events.push(PeerEvent::GaveUp { port });
            }
            self.phase = Phase::Done;
            self.record.finished = true;
            events.push(PeerEvent::Finished { port });
        }
    }
}

/// Every program reads and discards what the device sends (an echo), like nc printing it; a
/// peer that never read would stall the device's writes.
fn drain_rx(socket: &mut tcp::Socket<'_>) {
    while socket.can_recv() {
        if socket.recv(|b| (b.len(), ())).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::cmp::Reverse;
    use std::rc::Rc;

    use std::collections::VecDeque;

    use firmware_core::testkit::WireEnd;

    use smoltcp::time::Duration;

    use super::*;

    #[test]
    fn hex_payloads_parse_and_errors_say_why() {
        assert_eq!(
            parse_hex("aa05 fe93").unwrap(),
            vec![0xaa, 0x05, 0xfe, 0x93]
        );
        assert_eq!(parse_hex("abc"), Err(HexError::OddDigits));
        assert!(parse_hex("zz").unwrap_err().to_string().contains("zz"));
    }

    #[test]
    fn fill_matches_byte_at() {
        for p in [
            Payload::Counting(1000),
            Payload::Bytes(Rc::from(&(0..=255u8).rev().collect::<Vec<_>>()[..])),
            Payload::Growing(Rc::new(RefCell::new((0..=255u8).rev().collect()))),
        ] {
            let mut buf = vec![0; 200];
            p.fill(37, &mut buf);
            assert!(buf
                .iter()
                .enumerate()
                .all(|(i, b)| *b == p.byte_at(37 + i as u64)));
            assert_eq!(p.first_mismatch(37, &buf), None);
        }
    }

    #[test]
    fn counting_payload_mismatch_is_located() {
        let p = Payload::Counting(300);
        let good: Vec<u8> = (10..20u64).map(|i| i as u8).collect();
        assert_eq!(p.first_mismatch(10, &good), None);
        let mut bad = good.clone();
        bad[3] ^= 1;
        assert_eq!(p.first_mismatch(10, &bad), Some(13));
        assert_eq!(
            p.first_mismatch(299, &[43, 0]),
            Some(300),
            "beyond the end is a mismatch"
        );
        let bytes = Payload::Bytes(Rc::from(&[1u8, 2, 3][..]));
        assert_eq!(
            bytes.first_mismatch(18, &[1]),
            Some(18),
            "far beyond the end"
        );
        assert_eq!(bytes.first_mismatch(3, &[]), None);
        assert_eq!(Payload::Counting(3).first_mismatch(18, &[1]), Some(18));
    }

    /// A growing payload is checked against what was sent so far: bytes not sent yet are a
    /// mismatch until they are.
    #[test]
    fn growing_payload_checks_what_was_sent_so_far() {
        let sent = Rc::new(RefCell::new(b"ab".to_vec()));
        let p = Payload::Growing(sent.clone());
        assert_eq!(p.first_mismatch(0, b"abc"), Some(2));
        sent.borrow_mut().extend_from_slice(b"cd");
        assert_eq!(p.len(), 4);
        assert_eq!(p.first_mismatch(1, b"bcd"), None);
        assert_eq!(p.first_mismatch(2, b"cx"), Some(3));
    }

    // --- Schedule ---

    /// The eager schedule as `PeerHost::new` built it before it went lazy (jitter-free): the
    /// reference order.
    fn eager(workloads: &[Workload]) -> Vec<(Instant, usize)> {
        let mut starts = Vec::new();
        for (i, w) in workloads.iter().enumerate() {
            let mut at = Instant::from_millis(w.start_ms as i64);
            let burst = w.burst.max(1);
            let mut left = w.count;
            while left > 0 {
                for _ in 0..burst.min(left) {
                    starts.push((at, i));
                }
                left = left.saturating_sub(burst);
                at += Duration::from_millis(w.interval_ms);
            }
        }
        starts.sort_by_key(|p| p.0);
        starts
    }

    fn lazy(workloads: &[Workload]) -> Vec<(Instant, usize)> {
        let mut s = Schedule::new(workloads, 7);
        let mut out = Vec::new();
        while let Some(x) = s.pop(workloads) {
            out.push(x);
        }
        assert!(s.is_empty());
        assert_eq!(s.next_at(), None);
        out
    }

    fn wl(count: u32, burst: u32, start_ms: u64, interval_ms: u64) -> Workload {
        Workload {
            count,
            burst,
            start_ms,
            interval_ms,
            ..Workload::default()
        }
    }

    #[test]
    fn lazy_schedule_matches_the_eager_one_without_jitter() {
        let sets = vec![
            vec![Workload::default()],
            vec![wl(5, 1, 100, 1000)],
            // Bursts with remainders, ties across workloads, interval 0, an empty workload.
            vec![
                wl(7, 3, 100, 50),
                wl(4, 2, 100, 100),
                wl(3, 1, 0, 150),
                wl(0, 1, 0, 10),
                wl(5, 5, 200, 0),
                wl(6, 4, 100, 0),
                wl(3, 0, 150, 50),
            ],
            // Staggered starts that keep meeting on the same instants.
            vec![wl(5, 1, 0, 100), wl(5, 2, 100, 100), wl(9, 1, 200, 50)],
        ];
        for set in &sets {
            assert_eq!(lazy(set), eager(set), "{set:?}");
        }
        // And a pile of small random ones (start and interval on a coarse grid: many ties).
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..200 {
            let set: Vec<Workload> = (0..rng.random_range(1..8))
                .map(|_| {
                    wl(
                        rng.random_range(0..12),
                        rng.random_range(0..5),
                        rng.random_range(0..6) * 50,
                        rng.random_range(0..5) * 50,
                    )
                })
                .collect();
            assert_eq!(lazy(&set), eager(&set), "{set:?}");
        }
    }

    #[test]
    fn jitter_is_bounded_per_workload_and_independent_of_other_workloads() {
        let mut w = wl(50, 2, 0, 100);
        w.interval_jitter_ms = 30;
        let alone = lazy(std::slice::from_ref(&w));
        let with_other = lazy(&[w.clone(), wl(20, 1, 0, 37)]);
        let mine: Vec<_> = with_other.into_iter().filter(|p| p.1 == 0).collect();
        assert_eq!(
            alone, mine,
            "another workload must not shift this one's jitter"
        );
        assert_eq!(alone.len(), 50);
        let steps: Vec<i64> = alone.chunks(2).map(|b| b[0].0.total_micros()).collect();
        let gaps: Vec<i64> = steps.windows(2).map(|p| p[1] - p[0]).collect();
        assert!(
            gaps.iter().all(|g| (100_000..=130_000).contains(g)),
            "{gaps:?}"
        );
        assert!(gaps.iter().any(|&g| g != gaps[0]), "jitter drawn: {gaps:?}");
        assert_eq!(lazy(std::slice::from_ref(&w)), alone, "deterministic");
        let mut other_seed = Schedule::new(std::slice::from_ref(&w), 8);
        let other: Vec<_> =
            std::iter::from_fn(|| other_seed.pop(std::slice::from_ref(&w))).collect();
        assert_ne!(other, alone, "the program seed drives the jitter");
    }

    #[test]
    fn huge_counts_and_times_neither_allocate_nor_overflow() {
        let mut to_a = VecDeque::new();
        let mut to_b = VecDeque::new();
        let mut phy = WireEnd::new(&mut to_a, &mut to_b);
        let mut w = wl(u32::MAX, u32::MAX, 0, 0);
        w.interval_jitter_ms = 5;
        let ws = vec![
            w,
            wl(u32::MAX, 1, 10, 1),
            wl(2, 1, u64::MAX, 1), // never starts
            wl(3, 1, 5, u64::MAX), // the first starts, the others never
            wl(u32::MAX, 7, i64::MAX as u64 / 1000 - 1, u64::MAX / 2), // overflowing steps
        ];
        let mut host = PeerHost::new(&mut phy, ws.clone(), DEV, 5000, 1, 2).unwrap();
        let firsts: Vec<_> = (0..5).map(|_| host.schedule.pop(&ws).unwrap()).collect();
        assert_eq!(firsts, vec![(Instant::ZERO, 0); 5]);
        let s = &mut host.schedule;
        assert_eq!(s.heap.len(), 4);
        // Workload 0's burst is u32::MAX connections at 0 ms: set it aside to see the others.
        s.heap.retain(|Reverse((_, i))| *i != 0);
        let order: Vec<_> = std::iter::from_fn(|| s.pop(&ws)).take(6).collect();
        let far = (Instant::from_millis(i64::MAX / 1000 - 1), 4);
        assert_eq!(
            order,
            vec![
                (Instant::from_millis(5), 3),
                (Instant::from_millis(10), 1),
                (Instant::from_millis(11), 1),
                (Instant::from_millis(12), 1),
                (Instant::from_millis(13), 1),
                (Instant::from_millis(14), 1),
            ]
        );
        s.heap.retain(|Reverse((_, i))| *i != 1);
        assert_eq!(
            std::iter::from_fn(|| s.pop(&ws))
                .take(9)
                .collect::<Vec<_>>(),
            [far; 7]
        );
        assert!(
            s.never,
            "workloads 2 and 3 have connections that never start"
        );
        assert!(!s.is_empty());
        assert!(!host.finished());
    }

    // --- Events and records ---

    const DEV: Ipv4Address = Ipv4Address::new(192, 168, 1, 1);
    const DEV_PORT: u16 = 5000;

    /// A peer host against a bare smoltcp device stack: `listeners` listening sockets that read
    /// everything, close once the peer closed, and listen again once closed. The wire is
    /// lossless and instant; every packet is kept in `packets` with its time.
    pub(super) struct Bench {
        pub(super) peer: PeerHost,
        dev: Interface,
        dev_sockets: SocketSet<'static>,
        listeners: Vec<(SocketHandle, u64)>,
        to_dev: VecDeque<Vec<u8>>,
        to_peer: VecDeque<Vec<u8>>,
        now: Instant,
        pub(super) events: Vec<(Instant, PeerEvent)>,
        /// Every packet: when, whether the peer sent it, the IP packet.
        pub(super) packets: Vec<(Instant, bool, Vec<u8>)>,
        /// Nothing the peer sends reaches the device.
        pub(super) unreachable: bool,
        /// The device sends one byte on each connection it holds, `segments` times, `every`
        /// apart, starting `every` after the connection opened.
        pub(super) talk: Option<Talk>,
    }

    /// See [`Bench::talk`].
    pub(super) struct Talk {
        pub(super) segments: u32,
        pub(super) every: Duration,
        sent: u32,
        next: Option<Instant>,
    }

    impl Talk {
        pub(super) fn new(segments: u32, every: Duration) -> Talk {
            Talk {
                segments,
                every,
                sent: 0,
                next: None,
            }
        }
    }

    impl Bench {
        pub(super) fn new(workloads: Vec<Workload>, listeners: usize, compact_min: usize) -> Bench {
            let mut to_dev = VecDeque::new();
            let mut to_peer = VecDeque::new();
            let mut config = Config::new(HardwareAddress::Ip);
            config.random_seed = 99;
            let mut dev = Interface::new(
                config,
                &mut WireEnd::new(&mut to_dev, &mut to_peer),
                Instant::ZERO,
            );
            dev.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(DEV), 24));
            });
            let mut dev_sockets = SocketSet::new(Vec::new());
            let listeners = (0..listeners)
                .map(|_| {
                    let mut s = tcp::Socket::new(
                        tcp::SocketBuffer::new(vec![0; 8192]),
                        tcp::SocketBuffer::new(vec![0; 1024]),
                    );
                    s.listen(DEV_PORT).unwrap();
                    (dev_sockets.add(s), 0)
                })
                .collect();
            let mut peer = PeerHost::new(
                &mut WireEnd::new(&mut to_peer, &mut to_dev),
                workloads,
                DEV,
                DEV_PORT,
                3,
                4,
            )
            .unwrap();
            peer.compact_min = compact_min;
            Bench {
                peer,
                dev,
                dev_sockets,
                listeners,
                to_dev,
                to_peer,
                now: Instant::ZERO,
                events: Vec::new(),
                packets: Vec::new(),
                unreachable: false,
                talk: None,
            }
        }

        fn step_device(&mut self) {
            let mut wire = WireEnd::new(&mut self.to_dev, &mut self.to_peer);
            self.dev.poll(self.now, &mut wire, &mut self.dev_sockets);
            for (h, read) in &mut self.listeners {
                let s = self.dev_sockets.get_mut::<tcp::Socket>(*h);
                while s.can_recv() {
                    *read += s.recv(|b| (b.len(), b.len())).unwrap() as u64;
                }
                match s.state() {
                    tcp::State::CloseWait => s.close(),
                    tcp::State::Closed => {
                        *read = 0;
                        s.listen(DEV_PORT).unwrap();
                    }
                    _ => {}
                }
                if let Some(talk) = &mut self.talk {
                    if s.state() == tcp::State::Established && talk.sent < talk.segments {
                        let next = *talk.next.get_or_insert(self.now + talk.every);
                        if self.now >= next && s.send_slice(b"x") == Ok(1) {
                            talk.sent += 1;
                            talk.next = (talk.sent < talk.segments).then(|| self.now + talk.every);
                        }
                    }
                }
            }
            self.dev.poll(self.now, &mut wire, &mut self.dev_sockets);
        }

        pub(super) fn run_until(&mut self, end: Instant) {
            for _ in 0..1_000_000 {
                let mut wire = WireEnd::new(&mut self.to_peer, &mut self.to_dev);
                self.peer.poll(self.now, &mut wire);
                let mut events = Vec::new();
                self.peer.take_events(&mut events);
                self.events
                    .extend(events.into_iter().map(|e| (self.now, e)));
                let now = self.now;
                self.packets
                    .extend(self.to_dev.iter().map(|p| (now, true, p.clone())));
                if self.unreachable {
                    self.to_dev.clear();
                }
                self.step_device();
                self.packets
                    .extend(self.to_peer.iter().map(|p| (now, false, p.clone())));
                if !self.to_dev.is_empty() || !self.to_peer.is_empty() {
                    continue;
                }
                let next = [
                    self.peer.poll_at(self.now),
                    self.dev.poll_at(self.now, &self.dev_sockets),
                    self.talk.as_ref().and_then(|t| t.next),
                ]
                .into_iter()
                .flatten()
                .min();
                match next {
                    Some(t) if t.max(self.now) <= end => {
                        self.now = t.max(self.now + Duration::from_micros(100))
                    }
                    _ => return,
                }
            }
            panic!("the bench did not settle");
        }

        fn ledger(&self) -> Vec<PeerConnRecord> {
            let mut ledger = PeerLedger::new(self.peer.payloads.clone());
            for (t, e) in &self.events {
                ledger.apply(*t, e).unwrap();
            }
            ledger.records().to_vec()
        }
    }

    fn mixed_workloads() -> Vec<Workload> {
        let kind = |kind, count, burst, start_ms| Workload {
            kind,
            count,
            burst,
            start_ms,
            interval_ms: 700,
            stream_bytes: 20_000,
            payload_hex: "00 01 02 03 04 05 06 07 08 09 0a 0b".into(),
            ..Workload::default()
        };
        vec![
            // Bursts of 3 against 2 listeners: refused SYNs (ConnectFailed).
            Workload {
                count: 6,
                burst: 3,
                ..kind(ProgramKind::Nc, 6, 3, 0)
            },
            kind(ProgramKind::Hold, 2, 1, 300),
            kind(ProgramKind::Stream, 1, 1, 5000),
            kind(ProgramKind::Reset, 2, 1, 9000),
            // Short payload, no linger: gives up waiting for the device's FIN.
            Workload {
                payload_hex: "aa".into(),
                linger_ms: 0,
                ..kind(ProgramKind::Nc, 2, 1, 12_000)
            },
        ]
    }

    #[test]
    fn events_rebuild_the_records() {
        let mut b = Bench::new(mixed_workloads(), 2, COMPACT_MIN);
        b.run_until(Instant::from_secs(40));
        assert!(b.peer.finished());
        assert!(b.peer.conns.is_empty(), "finished programs leave the loops");
        let records: Vec<_> = b.peer.records().cloned().collect();
        assert_eq!(records.len(), 13);
        assert_eq!(b.ledger(), records);
        let seen = |f: fn(&PeerEvent) -> bool| b.events.iter().any(|(_, e)| f(e));
        assert!(seen(|e| matches!(e, PeerEvent::Acked { .. })));
        assert!(seen(|e| matches!(e, PeerEvent::DeviceFinSeen { .. })));
        assert!(seen(|e| matches!(e, PeerEvent::ConnectFailed { .. })));
        assert!(seen(|e| matches!(e, PeerEvent::ResetSent { .. })));
        assert!(seen(|e| matches!(e, PeerEvent::GaveUp { .. })));
        let acked: u64 = records.iter().map(|r| r.bytes_acked).sum();
        assert!(acked > 20_000, "the stream got through: {acked}");

        // A reused port names the newest connection, for the host and for the ledger.
        b.peer.next_port = 40000;
        b.peer.schedule = Schedule::new(&[], 0);
        let again = Workload {
            start_ms: 60_000,
            ..Workload::default()
        };
        b.peer.workloads.push(again.clone());
        b.peer.payloads = workload_payloads(&b.peer.workloads).unwrap();
        let mut ws = vec![wl(0, 1, 0, 0); b.peer.workloads.len() - 1];
        ws.push(again);
        b.peer.schedule = Schedule::new(&ws, 0);
        b.run_until(Instant::from_secs(80));
        let records: Vec<_> = b.peer.records().cloned().collect();
        assert_eq!(records.len(), 14);
        let last = records.last().unwrap();
        assert_eq!(last.local_port, 40000);
        assert_eq!(records[0].local_port, 40000);
        assert!(last.finished && last.established && last.bytes_acked == 9);
        assert_eq!(b.ledger(), records);

        // Finished records can be dropped; the running ones stay.
        b.peer.set_keep_records(false);
        assert_eq!(b.peer.records().count(), 0);
    }

    #[test]
    fn closed_sockets_leave_the_set_without_changing_anything() {
        let many = vec![
            Workload {
                count: 150,
                burst: 2,
                interval_ms: 40,
                ..Workload::default()
            },
            Workload {
                kind: ProgramKind::Hold,
                count: 40,
                start_ms: 130,
                interval_ms: 110,
                hold_ms: 300,
                ..Workload::default()
            },
        ];
        let mut kept = Bench::new(many.clone(), 3, usize::MAX);
        kept.run_until(Instant::from_secs(60));
        let mut compacted = Bench::new(many, 3, COMPACT_MIN);
        compacted.run_until(Instant::from_secs(60));
        assert_eq!(kept.events, compacted.events, "same packets, same events");
        assert_eq!(kept.ledger(), compacted.ledger());
        assert_eq!(
            compacted.peer.records().collect::<Vec<_>>(),
            kept.peer.records().collect::<Vec<_>>()
        );
        assert_eq!(compacted.peer.records().count(), 190);
        assert!(kept.peer.sockets.iter().count() >= 190);
        let slots = compacted.peer.sockets.iter().count();
        assert!(slots <= 2 * COMPACT_MIN, "{slots} sockets left in the set");
        assert!(compacted.peer.quiet() && compacted.peer.finished());
    }

    /// Taking a connection out leaves the others' events in place, and its port unknown
    /// until a connection opens on it again.
    #[test]
    fn ledger_takes_connections_out() {
        let mut ledger = PeerLedger::new(Vec::new());
        let t = Instant::from_millis;
        for (i, port) in [40000, 40001, 40002].into_iter().enumerate() {
            ledger.open(t(i as i64), port, i, Payload::Counting(i as u64));
        }
        let (index, record) = ledger.take(40001).unwrap();
        assert_eq!((index, record.local_port, record.workload), (1, 40001, 1));
        assert!(ledger.take(40001).is_none());
        let sent = PeerEvent::Sent {
            port: 40002,
            bytes: 4,
        };
        ledger.apply(t(5), &sent).unwrap();
        assert_eq!(ledger.records()[1].bytes_sent, 4);
        assert_eq!(ledger.current(40002), Some(1));
        let lost = PeerEvent::Sent {
            port: 40001,
            bytes: 1,
        };
        assert_eq!(
            ledger.apply(t(6), &lost),
            Err(LedgerError::UnknownPort(40001))
        );
    }

    #[test]
    fn ledger_follows_the_newest_connection_on_a_port() {
        let mut ledger = PeerLedger::new(vec![Payload::Counting(5), Payload::Counting(7)]);
        let t = Instant::from_millis;
        let events = [
            (
                t(1),
                PeerEvent::Opened {
                    port: 40000,
                    workload: 0,
                },
            ),
            (t(2), PeerEvent::Established { port: 40000 }),
            (
                t(3),
                PeerEvent::Sent {
                    port: 40000,
                    bytes: 5,
                },
            ),
            (
                t(4),
                PeerEvent::Acked {
                    port: 40000,
                    bytes: 2,
                },
            ),
            (
                t(4),
                PeerEvent::Acked {
                    port: 40000,
                    bytes: 3,
                },
            ),
            (t(5), PeerEvent::FinSent { port: 40000 }),
            (t(6), PeerEvent::GaveUp { port: 40000 }),
            (t(6), PeerEvent::Finished { port: 40000 }),
            (
                t(7),
                PeerEvent::Opened {
                    port: 40000,
                    workload: 1,
                },
            ),
            (t(8), PeerEvent::ConnectFailed { port: 40000 }),
            (t(8), PeerEvent::Finished { port: 40000 }),
        ];
        for (at, e) in &events {
            ledger.apply(*at, e).unwrap();
        }
        let r = ledger.records();
        assert_eq!(r.len(), 2);
        let mut first = PeerConnRecord::opened(0, 40000, t(1), Payload::Counting(5));
        first.established = true;
        first.bytes_sent = 5;
        first.bytes_acked = 5;
        first.fin_sent = true;
        first.gave_up_waiting = true;
        first.finished = true;
        assert_eq!(r[0], first);
        let mut second = PeerConnRecord::opened(1, 40000, t(7), Payload::Counting(7));
        second.connect_failed = true;
        second.finished = true;
        assert_eq!(r[1], second);
        assert!(ledger
            .apply(t(9), &PeerEvent::ResetSeen { port: 41000 })
            .is_err());
        assert!(ledger
            .apply(
                t(9),
                &PeerEvent::Opened {
                    port: 1,
                    workload: 2
                }
            )
            .is_err());
    }
}
