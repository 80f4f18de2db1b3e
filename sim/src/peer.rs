//! Peer programs on their own smoltcp stack: the laptop of the field report.
//!
//! Each workload opens connections on a schedule; each connection runs a small program
//! (`nc` send-and-close, hold-then-close, stream). The peer host records what its stack saw:
//! handshake completed, bytes acknowledged, reset or connect failure. That is the oracle's
//! "peer side".

use std::collections::VecDeque;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// What a connection of a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProgramKind {
    /// `echo ... | nc -N HOST PORT`: send the payload, FIN `close_delay_us` later, then read
    /// until the device closes (or `linger_ms` passes).
    Nc,
    /// Send the payload, keep the connection open `hold_ms` once it is acknowledged, then close
    /// (the device may close first). The hold counts from the acknowledgement because the
    /// peer stack (smoltcp) retransmits after 1 s at the earliest where Linux takes ~200 ms: a
    /// hold from the send would make a retransmission coincide with the FIN.
    Hold,
    /// Send `stream_bytes` of a counting pattern, wait until all is acknowledged, keep the
    /// connection `hold_ms` longer, then close.
    Stream,
    /// Send the payload, wait until it is acknowledged, then abort with RST `close_delay_us`
    /// later (data the device acknowledged must still reach the application).
    Reset,
}

/// One workload: a program and its schedule. All fields can be set in a scenario's `[[peer]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// The program each connection runs.
    pub kind: ProgramKind,
    /// Payload of `nc`/`hold` connections, as hex (spaces allowed).
    pub payload_hex: String,
    /// Bytes of the counting pattern a `stream` connection sends.
    pub stream_bytes: u64,
    /// Connections in all (each burst counts `burst`).
    pub count: u32,
    /// Connections opened at the same instant per schedule step (connect bursts).
    pub burst: u32,
    /// First connection at this time.
    pub start_ms: u64,
    /// Time between schedule steps.
    pub interval_ms: u64,
    /// Uniform jitter added to each interval, `0..=interval_jitter_ms`.
    pub interval_jitter_ms: u64,
    /// Process start-up after the handshake before the first byte (drawn per connection
    /// uniformly in `start_delay_min_us..=start_delay_max_us`).
    pub start_delay_min_us: u64,
    /// Upper bound of the start-up delay.
    pub start_delay_max_us: u64,
    /// Gap between the payload segment and the FIN (nc: 12-43 us, median 15 us).
    pub close_delay_us: u64,
    /// How long `hold`/`stream` keep the connection open after sending.
    pub hold_ms: u64,
    /// How long a closed connection keeps reading for the device's FIN or RST.
    pub linger_ms: u64,
    /// A connection still not established after this long gives up (like `nc -w`).
    pub connect_timeout_ms: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            kind: ProgramKind::Nc,
            payload_hex: "aa05fe9300000141 0a".into(),
            stream_bytes: 0,
            count: 1,
            burst: 1,
            start_ms: 100,
            interval_ms: 1000,
            interval_jitter_ms: 0,
            start_delay_min_us: 60,
            start_delay_max_us: 380,
            close_delay_us: 15,
            hold_ms: 1000,
            linger_ms: 2000,
            connect_timeout_ms: 10_000,
        }
    }
}

/// The bytes a connection sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// These bytes.
    Bytes(Rc<[u8]>),
    /// `len` bytes of the counting pattern `offset % 256`.
    Counting(u64),
}

impl Payload {
    /// Total length.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Counting(n) => *n,
        }
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte at `offset` (caller keeps `offset < len`).
    pub fn byte_at(&self, offset: u64) -> u8 {
        match self {
            Payload::Bytes(b) => b[offset as usize],
            Payload::Counting(_) => offset as u8,
        }
    }

    /// Writes the payload bytes starting at `offset` into `buf` (caller keeps it in range).
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        match self {
            Payload::Bytes(b) => {
                let from = offset as usize;
                buf.copy_from_slice(&b[from..from + buf.len()]);
            }
            Payload::Counting(_) => fill_counting(offset, buf),
        }
    }

    /// Offset of the first byte of `data` (read at `offset`) that differs from the payload.
    pub fn first_mismatch(&self, offset: u64, data: &[u8]) -> Option<u64> {
        // Bytes beyond the end are a mismatch; compare only the part that can match.
        let fits = (self.len().saturating_sub(offset) as usize).min(data.len());
        let within = match self {
            Payload::Bytes(b) => {
                let expected = &b[offset as usize..offset as usize + fits];
                data[..fits].iter().zip(expected).position(|(a, e)| a != e)
            }
            Payload::Counting(_) => first_counting_mismatch(offset, &data[..fits]),
        };
        match within {
            Some(i) => Some(offset + i as u64),
            None if fits < data.len() => Some(offset + fits as u64),
            None => None,
        }
    }
}

/// The counting pattern twice, so any 256-byte window of it is one slice.
static COUNTING: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// Writes the counting pattern for stream offset `offset` into `buf`, a block at a time.
pub fn fill_counting(offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let start = ((offset + i as u64) % 256) as usize;
        let k = (buf.len() - i).min(256);
        buf[i..i + k].copy_from_slice(&COUNTING[start..start + k]);
        i += k;
    }
}

/// Index of the first byte of `data` (starting at stream `offset`) that breaks `offset % 256`:
/// block-wise slice comparison (memcmp), since the oracle checks every streamed byte.
fn first_counting_mismatch(offset: u64, data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < data.len() {
        let start = ((offset + i as u64) % 256) as usize;
        let k = (data.len() - i).min(256);
        let expected = &COUNTING[start..start + k];
        if data[i..i + k] != *expected {
            let j = data[i..i + k]
                .iter()
                .zip(expected)
                .position(|(a, e)| a != e);
            return j.map(|j| i + j);
        }
        i += k;
    }
    None
}

/// Parses hex with optional whitespace.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("`{s}` is not a hex byte"))
        })
        .collect()
}

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
    Done,
}

/// What the peer's stack saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConnRecord {
    /// Workload index.
    pub workload: usize,
    /// The peer's local port (the device sees it as the remote port).
    pub local_port: u16,
    /// When the program opened the connection.
    pub opened_at: Instant,
    /// The handshake completed at the peer.
    pub established: bool,
    /// Bytes handed to the peer's stack.
    pub bytes_sent: u64,
    /// Bytes the device's stack acknowledged.
    pub bytes_acked: u64,
    /// The peer saw an RST while the program was still attached.
    pub reset_seen: bool,
    /// The connection attempt failed visibly (RST to SYN, or timeout).
    pub connect_failed: bool,
    /// The device closed its side (FIN) while the program watched.
    pub device_fin_seen: bool,
    /// The program ran to its end before the run stopped.
    pub finished: bool,
    /// The program aborted the connection itself (RST): it gave up any claim on delivery
    /// (RFC 9293 3.10.7.4 lets the receiver flush its queues).
    pub peer_aborted: bool,
    /// The program stopped waiting for the device to close (`linger_ms` passed without the
    /// device's FIN or RST): like `nc -N` hanging, something the user sees.
    pub gave_up_waiting: bool,
    /// What the connection sends.
    pub payload: Payload,
}

struct PeerConn {
    handle: SocketHandle,
    phase: Phase,
    record: PeerConnRecord,
    last_state: tcp::State,
}

/// A scheduled connection start.
struct Pending {
    at: Instant,
    workload: usize,
}

/// Events of the peer for the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Opened { port: u16 },
    Established { port: u16 },
    Sent { port: u16, bytes: usize },
    FinSent { port: u16 },
    ResetSent { port: u16 },
    ResetSeen { port: u16 },
    ConnectFailed { port: u16 },
    Finished { port: u16 },
}

impl PeerEvent {
    /// The peer's port (the connection's key).
    pub fn port(&self) -> u16 {
        match *self {
            PeerEvent::Opened { port }
            | PeerEvent::Established { port }
            | PeerEvent::Sent { port, .. }
            | PeerEvent::FinSent { port }
            | PeerEvent::ResetSent { port }
            | PeerEvent::ResetSeen { port }
            | PeerEvent::ConnectFailed { port }
            | PeerEvent::Finished { port } => port,
        }
    }
}

/// The peer host: one smoltcp interface, many connections.
pub struct PeerHost {
    iface: Interface,
    sockets: SocketSet<'static>,
    workloads: Vec<Workload>,
    payloads: Vec<Payload>,
    device_addr: Ipv4Address,
    device_port: u16,
    conns: Vec<PeerConn>,
    schedule: VecDeque<Pending>,
    rng: ChaCha8Rng,
    next_port: u16,
    events: Vec<PeerEvent>,
}

/// Address of the peer host.
pub const PEER_ADDR: Ipv4Address = Ipv4Address::new(192, 168, 1, 20);

impl PeerHost {
    /// A peer host running `workloads` against `device_addr:device_port`.
    pub fn new<D: phy::Device + ?Sized>(
        phy: &mut D,
        workloads: Vec<Workload>,
        device_addr: Ipv4Address,
        device_port: u16,
        stack_seed: u64,
        program_seed: u64,
    ) -> Result<PeerHost, String> {
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = stack_seed;
        let mut iface = Interface::new(config, phy, Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(PEER_ADDR), 24));
        });
        let mut rng = ChaCha8Rng::seed_from_u64(program_seed);
        let mut payloads = Vec::new();
        let mut starts = Vec::new();
        for (i, w) in workloads.iter().enumerate() {
            payloads.push(match w.kind {
                ProgramKind::Stream => Payload::Counting(w.stream_bytes),
                _ => Payload::Bytes(parse_hex(&w.payload_hex)?.into()),
            });
            let mut at = Instant::from_millis(w.start_ms as i64);
            let burst = w.burst.max(1);
            let mut left = w.count;
            while left > 0 {
                for _ in 0..burst.min(left) {
                    starts.push(Pending { at, workload: i });
                }
                left = left.saturating_sub(burst);
                let jitter = if w.interval_jitter_ms > 0 {
                    rng.random_range(0..=w.interval_jitter_ms)
                } else {
                    0
                };
                at += Duration::from_millis(w.interval_ms + jitter);
            }
        }
        // Stable: equal times keep workload order.
        starts.sort_by_key(|p| p.at);
        Ok(PeerHost {
            iface,
            sockets: SocketSet::new(Vec::new()),
            workloads,
            payloads,
            device_addr,
            device_port,
            conns: Vec::new(),
            schedule: starts.into(),
            rng,
            next_port: 40000,
            events: Vec::new(),
        })
    }

    /// What the peer saw, one record per connection, in opening order.
    pub fn records(&self) -> impl Iterator<Item = &PeerConnRecord> {
        self.conns.iter().map(|c| &c.record)
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
        self.sockets.iter().all(|(_, s)| match s {
            smoltcp::socket::Socket::Tcp(t) => {
                matches!(t.state(), tcp::State::Closed | tcp::State::TimeWait)
            }
            #[allow(unreachable_patterns)]
            _ => true,
        })
    }

    /// The next time a program needs to act, or the stack needs polling.
    pub fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        let stack = self.iface.poll_at(now, &self.sockets);
        let mut t = self.schedule.front().map(|p| p.at);
        let mut consider = |x: Instant| t = Some(t.map_or(x, |y: Instant| y.min(x)));
        for c in &self.conns {
            match c.phase {
                Phase::StartingAt(x) | Phase::CloseAt(x) | Phase::Lingering(x) => consider(x),
                Phase::Connecting => {
                    let w = &self.workloads[c.record.workload];
                    consider(c.record.opened_at + Duration::from_millis(w.connect_timeout_ms));
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
        let tx_size = (self.payloads[workload].len() as usize).clamp(4096, 65535);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; tx_size]),
        );
        // Linux answers quickly; keep smoltcp's default delayed ACK (10 ms) out of the picture.
        socket.set_ack_delay(Some(Duration::from_millis(1)));
        socket.set_nagle_enabled(false);
        let port = self.next_port;
        // Ports are never reused in a run, so the port names the connection.
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        let _ = socket.connect(
            self.iface.context(),
            (IpAddress::Ipv4(self.device_addr), self.device_port),
            port,
        );
        let handle = self.sockets.add(socket);
        self.conns.push(PeerConn {
            handle,
            phase: Phase::Connecting,
            record: PeerConnRecord {
                workload,
                local_port: port,
                opened_at: now,
                established: false,
                bytes_sent: 0,
                bytes_acked: 0,
                reset_seen: false,
                connect_failed: false,
                device_fin_seen: false,
                gave_up_waiting: false,
                finished: false,
                peer_aborted: false,
                payload: self.payloads[workload].clone(),
            },
            last_state: tcp::State::SynSent,
        });
        self.events.push(PeerEvent::Opened { port });
    }

    /// Runs the programs due at `now`, then polls the stack with `phy` (which holds the packets
    /// the link delivered), observing the sockets after each packet.
    pub fn poll<D: phy::Device + ?Sized>(&mut self, now: Instant, phy: &mut D) {
        while self.schedule.front().is_some_and(|p| p.at <= now) {
            if let Some(p) = self.schedule.pop_front() {
                self.open(now, p.workload);
            }
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
    }

    fn observe(&mut self, now: Instant) {
        for c in &mut self.conns {
            if c.phase == Phase::Done {
                continue;
            }
            let socket = self.sockets.get::<tcp::Socket>(c.handle);
            let state = socket.state();
            let port = c.record.local_port;
            if state != tcp::State::Closed {
                let acked = c.record.bytes_sent - socket.send_queue() as u64;
                c.record.bytes_acked = c.record.bytes_acked.max(acked);
            }
            if !c.record.established && !matches!(state, tcp::State::SynSent | tcp::State::Closed) {
                c.record.established = true;
                let w = &self.workloads[c.record.workload];
                let delay = self.rng.random_range(
                    w.start_delay_min_us..=w.start_delay_max_us.max(w.start_delay_min_us),
                );
                c.phase = Phase::StartingAt(now + Duration::from_micros(delay));
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
            }
            if state == tcp::State::Closed && c.last_state != tcp::State::Closed {
                // Closed without TIME-WAIT or LAST-ACK: the device reset us (or refused the SYN).
                if c.last_state == tcp::State::SynSent {
                    c.record.connect_failed = true;
                    self.events.push(PeerEvent::ConnectFailed { port });
                } else if c.last_state != tcp::State::LastAck
                    && c.last_state != tcp::State::TimeWait
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

    fn run_programs(&mut self, now: Instant) {
        for c in &mut self.conns {
            let w = &self.workloads[c.record.workload];
            let socket = self.sockets.get_mut::<tcp::Socket>(c.handle);
            let port = c.record.local_port;
            // Every program reads and discards what the device sends (an echo), like nc
            // printing it; a peer that never read would stall the device's writes.
            while socket.can_recv() {
                if socket.recv(|b| (b.len(), ())).is_err() {
                    break;
                }
            }
            loop {
                let before = c.phase;
                match c.phase {
                    Phase::Connecting
                        if now
                            >= c.record.opened_at + Duration::from_millis(w.connect_timeout_ms) =>
                    {
                        socket.abort();
                        c.record.connect_failed = true;
                        c.phase = Phase::Done;
                        self.events.push(PeerEvent::ConnectFailed { port });
                        c.record.finished = true;
                        self.events.push(PeerEvent::Finished { port });
                    }
                    Phase::StartingAt(t) if now >= t => c.phase = Phase::Sending,
                    Phase::Sending => {
                        let total = c.record.payload.len();
                        while c.record.bytes_sent < total && socket.can_send() {
                            let from = c.record.bytes_sent;
                            let payload = &c.record.payload;
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
                            c.record.bytes_sent += n as u64;
                            self.events.push(PeerEvent::Sent { port, bytes: n });
                        }
                        if c.record.bytes_sent >= total {
                            c.phase = match w.kind {
                                ProgramKind::Nc => {
                                    Phase::CloseAt(now + Duration::from_micros(w.close_delay_us))
                                }
                                ProgramKind::Hold | ProgramKind::Stream | ProgramKind::Reset => {
                                    Phase::WaitAcked
                                }
                            };
                        } else if !socket.may_send() {
                            c.phase = Phase::Lingering(now);
                        }
                    }
                    Phase::WaitAcked if socket.send_queue() == 0 || !socket.may_send() => {
                        let after = match w.kind {
                            ProgramKind::Reset => Duration::from_micros(w.close_delay_us),
                            _ => Duration::from_millis(w.hold_ms),
                        };
                        c.phase = Phase::CloseAt(now + after);
                    }
                    Phase::CloseAt(t) if now >= t && w.kind == ProgramKind::Reset => {
                        // Our own RST: the program is done; the device's answer does not matter.
                        socket.abort();
                        c.record.peer_aborted = true;
                        self.events.push(PeerEvent::ResetSent { port });
                        c.record.finished = true;
                        c.phase = Phase::Done;
                        self.events.push(PeerEvent::Finished { port });
                    }
                    Phase::CloseAt(t) if now >= t => {
                        socket.close();
                        self.events.push(PeerEvent::FinSent { port });
                        c.phase = Phase::Lingering(now + Duration::from_millis(w.linger_ms));
                    }
                    Phase::Lingering(t) => {
                        let device_done =
                            matches!(socket.state(), tcp::State::TimeWait | tcp::State::Closed);
                        if now >= t || device_done {
                            c.record.gave_up_waiting = !device_done && !c.record.device_fin_seen;
                            c.phase = Phase::Done;
                            c.record.finished = true;
                            self.events.push(PeerEvent::Finished { port });
                        }
                    }
                    _ => {}
                }
                if c.phase == before {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_payloads_parse_and_errors_say_why() {
        assert_eq!(
            parse_hex("aa05 fe93").unwrap(),
            vec![0xaa, 0x05, 0xfe, 0x93]
        );
        assert!(parse_hex("abc").unwrap_err().contains("odd"));
        assert!(parse_hex("zz").unwrap_err().contains("zz"));
    }

    #[test]
    fn fill_matches_byte_at() {
        for p in [
            Payload::Counting(1000),
            Payload::Bytes(Rc::from(&(0..=255u8).rev().collect::<Vec<_>>()[..])),
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
    }
}
