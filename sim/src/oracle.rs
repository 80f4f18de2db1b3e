//! The oracle, in two parts as a simulation test's checker should be. Safety: no silent loss.
//! Every byte the peer's stack saw acknowledged, and every connection whose handshake completed,
//! must reach the application or end in a reset the peer can see. Liveness: every connection
//! finishes; one that waits on the device and makes no progress for `liveness_ms` is stalled,
//! and one still open when the run ends is unfinished. Neither is a pass.

use firmware_core::smoltcp::time::{Duration, Instant};
use firmware_core::{AppEvent, DeviceEvent};
use serde::Serialize;

use crate::observer::{Observed, ObservedEvent};
use crate::peer::{Payload, PeerConnRecord, PeerEvent, PeerLedger};

/// What happened to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The application accepted it and read every acknowledged byte, correctly.
    Delivered,
    /// Acknowledged bytes never reached the application and the peer saw no reset.
    DataSilentlyLost,
    /// The handshake completed, the peer saw no reset, the application never took it.
    NeverAccepted,
    /// The application read bytes that differ from what the peer sent.
    Corrupted,
    /// Visible to the peer: connect refused or timed out, RST while attached, or the peer gave
    /// up waiting for the device to close (a hanging `nc`).
    RefusedVisibly,
    /// The peer aborted the connection itself (RST) before the application had all of it: the
    /// peer gave up its claim (a receiver may flush on RST), so this is not a violation.
    AbortedByPeer,
    /// A liveness failure: the connection waited on the device (its handshake, acknowledgement
    /// of its bytes, or the device's answer to its FIN) with no progress at all for the
    /// scenario's `liveness_ms` (the row's `stalled_at_us` says since when), and nothing the
    /// peer could see ended it. A hang is never a pass, even one that later recovered; one
    /// that ended in a reset or a refused connect is [`Verdict::RefusedVisibly`] (the peer was
    /// told and the connection ended), its row still carrying `stalled_at_us`.
    Stalled,
    /// A liveness failure: the run ended while the peer program was still running, before it
    /// had waited `liveness_ms` (the time limit cut it short). Nothing was discarded yet, so it
    /// is not silent loss, and the connection was not tested.
    Unfinished,
}

impl Verdict {
    /// True for the verdicts that break the no-silent-loss rule (safety).
    pub fn is_violation(self) -> bool {
        matches!(
            self,
            Verdict::DataSilentlyLost | Verdict::NeverAccepted | Verdict::Corrupted
        )
    }

    /// True for the verdicts that break the every-connection-finishes rule (liveness).
    pub fn is_liveness_failure(self) -> bool {
        matches!(self, Verdict::Stalled | Verdict::Unfinished)
    }

    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::DataSilentlyLost => "DATA SILENTLY LOST",
            Verdict::NeverAccepted => "NEVER ACCEPTED",
            Verdict::Corrupted => "CORRUPTED",
            Verdict::RefusedVisibly => "visible to peer",
            Verdict::AbortedByPeer => "aborted by peer",
            Verdict::Stalled => "STALLED",
            Verdict::Unfinished => "UNFINISHED",
        }
    }
}

/// What the device side saw of one connection (keyed by the peer's port).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceSide {
    /// The application accepted the connection.
    pub accepted: bool,
    /// In-order bytes the device's stack took in (and acknowledged).
    pub bytes_received: u64,
    /// Bytes the application read from the connection.
    pub bytes_read: u64,
    /// The peer's FIN reached the stack while the application had not read everything yet
    /// (the field bug's precondition; what the `fin-before-drain` injector arranges).
    pub fin_before_drain: bool,
    /// The peer's FIN reached the stack before the application accepted the connection.
    pub fin_before_accept: bool,
    /// The peer's RST reached the stack before the application accepted the connection.
    pub reset_before_accept: bool,
    /// Offset of the first byte the application read that differs from what the peer sent.
    pub first_mismatch: Option<u64>,
    /// Bytes the device's stack discarded without the application reading them (freed unread
    /// on close, or arriving after the close).
    pub bytes_freed_unread: u64,
    /// The application saw the connection end (disconnected or closed).
    pub app_disconnected: bool,
    /// SYNs from this port the device dropped without answer (backlog full).
    pub syn_dropped: u32,
}

/// One connection's row in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnReport {
    /// The peer's local port (the device's remote port).
    pub peer_port: u16,
    /// Index of the scenario workload that opened the connection.
    pub workload: usize,
    /// When the peer opened it, in simulated time.
    pub opened_at_us: i64,
    /// The handshake completed on the peer's side.
    pub established: bool,
    /// Bytes the peer's stack took for sending.
    pub bytes_sent: u64,
    /// Bytes the device acknowledged to the peer: what the no-silent-loss rule is about.
    pub bytes_acked: u64,
    /// The peer saw a reset from the device.
    pub reset_seen: bool,
    /// The peer's connect was refused or timed out.
    pub connect_failed: bool,
    /// The peer closed and gave up waiting for the device to close (a hanging `nc`).
    pub peer_gave_up: bool,
    /// When the connection's progress stopped for `liveness_ms` or longer while it waited on
    /// the device (the first such stop), in simulated time; `None` if it never did.
    pub stalled_at_us: Option<i64>,
    /// What the device side saw (flattened into the same JSON object).
    #[serde(flatten)]
    pub device: DeviceSide,
    /// The oracle's judgement from both sides.
    pub verdict: Verdict,
}

/// Judges a run from its events alone: the peer's (what its stack saw), the device's and the
/// application's, in the order they happened. Live mode and capture import feed it the same way.
#[derive(Debug)]
pub struct Oracle {
    /// The peer side, per connection in opening order.
    peer: PeerLedger,
    /// The device side, parallel to the peer's records.
    device: Vec<DeviceSide>,
    /// Each connection's progress, parallel to the peer's records.
    progress: Vec<Progress>,
    /// How long a waiting connection may go without progress before it is stalled.
    liveness: Duration,
    /// Connections whose peer program finished.
    finished: u64,
}

/// When a connection last made progress, and whether it ever stalled.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The last event that moved the connection on (any peer event; the device's handshake,
    /// data, close and accept; any application event but a mismatch).
    last_at: Instant,
    /// The first instant from which it waited on the device for `liveness` or longer.
    stalled_at: Option<Instant>,
}

impl Progress {
    /// The instant the connection stalled, counting the gap from its last progress to `at`
    /// (`waiting`: it waited on the device all that time): the first stall is kept.
    fn stalled_until(&self, waiting: bool, at: Instant, liveness: Duration) -> Option<Instant> {
        // Signed: events joined from two clocks (live mode) may come slightly out of order.
        let gap_us = at.total_micros() - self.last_at.total_micros();
        let stalls = waiting && gap_us >= liveness.total_micros() as i64;
        self.stalled_at.or(stalls.then_some(self.last_at))
    }
}

impl Oracle {
    /// An oracle for a run whose workloads send these payloads ([`crate::peer::workload_payloads`]),
    /// with the scenario's `liveness_ms`.
    pub fn new(payloads: Vec<Payload>, liveness_ms: u64) -> Oracle {
        Oracle {
            peer: PeerLedger::new(payloads),
            device: Vec::new(),
            progress: Vec::new(),
            liveness: Duration::from_millis(liveness_ms),
            finished: 0,
        }
    }

    /// Takes one peer event. An event of a connection the peer never opened is a harness bug.
    pub fn peer_event(&mut self, at: Instant, event: &PeerEvent) {
        let opened = matches!(event, PeerEvent::Opened { .. });
        if let Some(i) = self.peer.current(event.port()).filter(|_| !opened) {
            self.progressed(i, at);
        }
        if let Err(e) = self.peer.apply(at, event) {
            panic!("peer events out of order: {e}");
        }
        self.finished += u64::from(matches!(event, PeerEvent::Finished { .. }));
        if opened {
            self.device.push(DeviceSide::default());
            self.progress.push(Progress {
                last_at: at,
                stalled_at: None,
            });
        }
    }

    /// Connection `i` moved on at `at`: if it had been waiting on the device since its last
    /// progress for `liveness` or longer, it stalled then. (The peer's state only changes
    /// through its own events, each of which is progress and is checked before it applies,
    /// so the record as it is now is the record during the whole gap.)
    fn progressed(&mut self, i: usize, at: Instant) {
        let waiting = self.peer.records()[i].waiting_on_device();
        let p = &mut self.progress[i];
        p.stalled_at = p.stalled_until(waiting, at, self.liveness);
        p.last_at = p.last_at.max(at);
    }

    /// The device side of the connection the peer opened most recently from `port` (the
    /// device sees the peer's port as the remote port).
    fn side(&mut self, port: u16) -> Option<&mut DeviceSide> {
        let i = self.peer.current(port)?;
        self.device.get_mut(i)
    }

    /// Takes one device event at `at`.
    pub fn device_event(&mut self, at: Instant, event: &DeviceEvent) {
        if let Some(i) = self.peer.current(event.peer_port()) {
            if device_progress(event) {
                self.progressed(i, at);
            }
        }
        let Some(side) = self.side(event.peer_port()) else {
            return;
        };
        match *event {
            DeviceEvent::UnreadDataFreed { bytes, .. }
            | DeviceEvent::DataAfterClose { bytes, .. } => {
                side.bytes_freed_unread += bytes as u64;
            }
            DeviceEvent::SynDropped { .. } => side.syn_dropped += 1,
            DeviceEvent::DataReceived { bytes, .. } => side.bytes_received += bytes as u64,
            DeviceEvent::PeerClosed { reset, .. } => {
                if reset {
                    side.reset_before_accept |= !side.accepted;
                } else {
                    side.fin_before_drain |= side.bytes_read < side.bytes_received;
                    side.fin_before_accept |= !side.accepted;
                }
            }
            _ => {}
        }
    }

    /// Takes one app event at `at`.
    pub fn app_event(&mut self, at: Instant, event: &AppEvent<'_>) {
        let port = event.peer_port();
        let Some(i) = self.peer.current(port) else {
            return;
        };
        // A write the stack did not take (a full send buffer, every loop) changes nothing.
        if !matches!(
            event,
            AppEvent::Mismatch { .. } | AppEvent::Wrote { bytes: 0, .. }
        ) {
            self.progressed(i, at);
        }
        let payload = &self.peer.records()[i].payload;
        let side = &mut self.device[i];
        match *event {
            AppEvent::Accepted { .. } => side.accepted = true,
            AppEvent::Read { data, .. } => {
                if side.first_mismatch.is_none() {
                    side.first_mismatch = payload.first_mismatch(side.bytes_read, data);
                }
                side.bytes_read += data.len() as u64;
            }
            AppEvent::Disconnected { .. } | AppEvent::Closed { .. } => side.app_disconnected = true,
            AppEvent::Wrote { .. } | AppEvent::Mismatch { .. } => {}
        }
    }

    /// Judges a run from its kept events alone ([`crate::RunOptions::keep_events`]): the same
    /// rows as the run's report.
    /// `liveness_ms` and `end`, the instant the run ended, are the run's.
    pub fn replay(
        payloads: Vec<Payload>,
        liveness_ms: u64,
        events: &[Observed],
        end: Instant,
    ) -> Vec<ConnReport> {
        let mut oracle = Oracle::new(payloads, liveness_ms);
        for e in events {
            oracle.observe(e);
        }
        oracle.judge(end)
    }

    /// Connections the peer opened, and of those the ones whose program finished.
    pub fn connections(&self) -> (u64, u64) {
        (self.peer.records().len() as u64, self.finished)
    }

    /// Takes one observed event.
    pub fn observe(&mut self, e: &Observed) {
        let at = Instant::from_micros(e.at_us);
        match &e.event {
            ObservedEvent::Device(d) => self.device_event(at, d),
            ObservedEvent::Peer(p) => self.peer_event(at, p),
            app => {
                if let Some(a) = app.app_event() {
                    self.app_event(at, &a);
                }
            }
        }
    }

    /// Judges every connection the peer opened, in opening order, for a run that ended at
    /// `end`: a connection still waiting on the device then, since its last progress
    /// `liveness_ms` or more before, stalled.
    pub fn judge(&self, end: Instant) -> Vec<ConnReport> {
        self.peer
            .records()
            .iter()
            .zip(&self.device)
            .zip(&self.progress)
            .map(|((p, device), progress)| {
                let stalled_at = progress.stalled_until(p.waiting_on_device(), end, self.liveness);
                ConnReport {
                    peer_port: p.local_port,
                    workload: p.workload,
                    opened_at_us: p.opened_at.total_micros(),
                    established: p.established,
                    bytes_sent: p.bytes_sent,
                    bytes_acked: p.bytes_acked,
                    reset_seen: p.reset_seen,
                    connect_failed: p.connect_failed,
                    peer_gave_up: p.gave_up_waiting,
                    stalled_at_us: stalled_at.map(|t| t.total_micros()),
                    device: device.clone(),
                    verdict: verdict(p, device, stalled_at.is_some()),
                }
            })
            .collect()
    }
}

/// Whether a device event moves its connection on. Repeats that can go on for ever without
/// anything changing (a dropped SYN, data arriving at a closed socket, a listener taking a
/// retransmitted SYN again) are not progress.
fn device_progress(event: &DeviceEvent) -> bool {
    !matches!(
        event,
        DeviceEvent::SynReceived { .. }
            | DeviceEvent::HandshakeAborted { .. }
            | DeviceEvent::SynDropped { .. }
            | DeviceEvent::UnreadDataFreed { .. }
            | DeviceEvent::DataAfterClose { .. }
    )
}

/// One connection's verdict from both sides' evidence. Safety first: acknowledged bytes the
/// device freed unread with no reset to the peer are silent loss whether or not the peer
/// finished; a connection the peer finished is judged on what reached the application, and a
/// visible failure (a reset, a refused connect, a peer that gave up) is the peer's news even
/// after a stall (the peer was told, and the connection ended). Liveness next: a connection
/// the peer has not finished is stalled or unfinished, also when the application has read
/// everything so far, and one that stalled on the way is stalled even if it delivered in the
/// end.
fn verdict(p: &PeerConnRecord, device: &DeviceSide, stalled: bool) -> Verdict {
    // A reset that cut the transfer short (the application did not get the whole payload) is
    // the peer's news, even if everything acknowledged until then was read (a stream cut by a
    // device crash). A reset after the application had it all leaves it delivered.
    let cut_by_reset = p.reset_seen && device.bytes_read < p.payload.len();
    let delivered = device.accepted && device.bytes_read >= p.bytes_acked && !cut_by_reset;
    // The device threw acknowledged bytes away and told nobody: lost, finished or not.
    let discarded_silently =
        device.bytes_freed_unread > 0 && device.bytes_read < p.bytes_acked && !p.reset_seen;
    let unfinished = match stalled {
        true => Verdict::Stalled,
        false => Verdict::Unfinished,
    };
    if !p.established {
        if p.connect_failed {
            Verdict::RefusedVisibly
        } else {
            unfinished
        }
    } else if device.first_mismatch.is_some() {
        Verdict::Corrupted
    } else if !p.finished {
        match discarded_silently && !p.peer_aborted {
            true => Verdict::DataSilentlyLost,
            false => unfinished,
        }
    } else if delivered && !stalled {
        Verdict::Delivered
    } else if p.peer_aborted {
        Verdict::AbortedByPeer
    } else if p.reset_seen || p.gave_up_waiting {
        Verdict::RefusedVisibly
    } else if delivered {
        Verdict::Stalled
    } else if !device.accepted {
        Verdict::NeverAccepted
    } else {
        Verdict::DataSilentlyLost
    }
}

/// Totals over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Connections the peer opened.
    pub connections: u64,
    /// Connections judged [`Verdict::Delivered`].
    pub delivered: u64,
    /// Connections judged [`Verdict::DataSilentlyLost`].
    pub silently_lost: u64,
    /// Connections judged [`Verdict::NeverAccepted`].
    pub never_accepted: u64,
    /// Connections judged [`Verdict::Corrupted`].
    pub corrupted: u64,
    /// Connections judged [`Verdict::RefusedVisibly`].
    pub refused_visible: u64,
    /// Connections judged [`Verdict::Stalled`].
    pub stalled: u64,
    /// Connections judged [`Verdict::Unfinished`].
    pub unfinished: u64,
    /// Connections judged [`Verdict::AbortedByPeer`].
    pub aborted_by_peer: u64,
    /// Bytes the device acknowledged, over all connections.
    pub bytes_acked: u64,
    /// Acknowledged bytes the application read (at most `bytes_acked` per connection).
    pub bytes_delivered: u64,
    /// Share of connections with a violation.
    pub loss_fraction: f64,
}

impl Summary {
    /// Adds up the rows.
    pub fn of(rows: &[ConnReport]) -> Summary {
        let mut s = Summary::default();
        for r in rows {
            s.add(r);
        }
        s
    }

    /// Adds one row (live mode adds each connection as it is judged, and keeps only some rows).
    pub fn add(&mut self, r: &ConnReport) {
        self.connections += 1;
        match r.verdict {
            Verdict::Delivered => self.delivered += 1,
            Verdict::DataSilentlyLost => self.silently_lost += 1,
            Verdict::NeverAccepted => self.never_accepted += 1,
            Verdict::Corrupted => self.corrupted += 1,
            Verdict::RefusedVisibly => self.refused_visible += 1,
            Verdict::Stalled => self.stalled += 1,
            Verdict::Unfinished => self.unfinished += 1,
            Verdict::AbortedByPeer => self.aborted_by_peer += 1,
        }
        self.bytes_acked += r.bytes_acked;
        self.bytes_delivered += r.device.bytes_read.min(r.bytes_acked);
        self.loss_fraction = self.violations() as f64 / self.connections as f64;
    }

    /// Connections that broke the no-silent-loss rule.
    pub fn violations(&self) -> u64 {
        self.silently_lost + self.never_accepted + self.corrupted
    }

    /// Connections that broke the every-connection-finishes rule (stalled or unfinished).
    pub fn liveness_failures(&self) -> u64 {
        self.stalled + self.unfinished
    }

    /// Connections that reached a verdict: every one but those the run stopped before they
    /// finished or stalled.
    pub fn tested(&self) -> u64 {
        self.connections - self.unfinished
    }
}

/// Live mode: connections whose payload is their own, judged and taken out one by one once
/// their verdicts are final, so a long `fwsim serve` holds only the connections still open.
impl Oracle {
    /// Takes the opening of a connection from `port` that sends `payload` rather than a
    /// workload's (live mode: what the host sends, known as it sends it). The port must have
    /// no connection: take the previous one out first.
    pub fn open(&mut self, at: Instant, port: u16, workload: usize, payload: Payload) {
        self.peer.open(at, port, workload, payload);
        self.device.push(DeviceSide::default());
        self.progress.push(Progress {
            last_at: at,
            stalled_at: None,
        });
    }

    /// Judges the connection opened most recently on `port` as it stands at `now`, and takes
    /// it out: later events of the port are ignored (peer events are an error) until a
    /// connection opens on it.
    pub fn take(&mut self, port: u16, now: Instant) -> Option<ConnReport> {
        let (i, record) = self.peer.take(port)?;
        let mut one = Oracle::new(Vec::new(), self.liveness.total_millis());
        one.peer.insert(record);
        one.device.push(self.device.remove(i));
        one.progress.push(self.progress.remove(i));
        one.judge(now).pop()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use firmware_core::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
    use firmware_core::ConnId;

    use super::*;

    const T: Instant = Instant::ZERO;
    const LIVENESS_MS: u64 = 60_000;

    fn oracle() -> Oracle {
        Oracle::new(vec![Payload::Bytes(Rc::from(&b"abcd"[..]))], LIVENESS_MS)
    }

    /// The peer's events of one connection from `port`: opened, established or not, `acked`
    /// bytes acknowledged, then `last` events, then finished.
    fn peer(o: &mut Oracle, port: u16, established: bool, acked: usize, last: &[PeerEvent]) {
        o.peer_event(T, &PeerEvent::Opened { port, workload: 0 });
        if established {
            o.peer_event(T, &PeerEvent::Established { port });
            o.peer_event(T, &PeerEvent::Sent { port, bytes: acked });
            o.peer_event(
                T,
                &PeerEvent::Acked {
                    port,
                    bytes: acked as u64,
                },
            );
        }
        for e in last {
            o.peer_event(T, e);
        }
        o.peer_event(T, &PeerEvent::Finished { port });
    }

    fn conn(port: u16) -> ConnId {
        ConnId {
            serial: 1,
            remote: IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(1, 2, 3, 4)), port),
        }
    }

    fn read(o: &mut Oracle, port: u16, data: &[u8]) {
        o.app_event(T, &AppEvent::Accepted { conn: conn(port) });
        o.app_event(
            T,
            &AppEvent::Read {
                conn: conn(port),
                data,
            },
        );
    }

    #[test]
    fn unfinished_and_peer_aborted_connections_are_not_silent_loss() {
        let mut o = oracle();
        o.peer_event(
            T,
            &PeerEvent::Opened {
                port: 1,
                workload: 0,
            },
        );
        o.peer_event(T, &PeerEvent::Established { port: 1 });
        o.peer_event(T, &PeerEvent::Acked { port: 1, bytes: 4 });
        peer(&mut o, 2, true, 4, &[PeerEvent::ResetSent { port: 2 }]);
        peer(&mut o, 3, true, 4, &[]);
        let verdicts: Vec<Verdict> = o.judge(T).iter().map(|r| r.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Unfinished,
                Verdict::AbortedByPeer,
                Verdict::NeverAccepted
            ]
        );
    }

    #[test]
    fn verdicts_follow_the_evidence() {
        let mut o = oracle();
        for port in 1..=4 {
            peer(&mut o, port, true, 4, &[]);
        }
        peer(&mut o, 5, true, 4, &[PeerEvent::ResetSeen { port: 5 }]);
        peer(&mut o, 6, false, 0, &[PeerEvent::ConnectFailed { port: 6 }]);
        o.peer_event(
            T,
            &PeerEvent::Opened {
                port: 7,
                workload: 0,
            },
        );
        read(&mut o, 1, b"abcd");
        read(&mut o, 2, b"ab");
        read(&mut o, 4, b"abXd");
        let rows = o.judge(T);
        let verdicts: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Delivered,
                Verdict::DataSilentlyLost,
                Verdict::NeverAccepted,
                Verdict::Corrupted,
                Verdict::RefusedVisibly,
                Verdict::RefusedVisibly,
                Verdict::Unfinished
            ]
        );
        let s = Summary::of(&rows);
        assert_eq!(
            (s.delivered, s.silently_lost, s.never_accepted, s.corrupted),
            (1, 1, 1, 1)
        );
        assert_eq!(s.violations(), 3);
        assert!((s.loss_fraction - 3.0 / 7.0).abs() < 1e-9);
    }

    /// A reset that cut a transfer short is visible to the peer even when the application
    /// read everything acknowledged until then (a stream cut by a device crash).
    #[test]
    fn a_transfer_cut_by_a_reset_is_visible_not_delivered() {
        let mut o = oracle();
        peer(&mut o, 1, true, 2, &[PeerEvent::ResetSeen { port: 1 }]);
        read(&mut o, 1, b"ab");
        assert_eq!(o.judge(T)[0].verdict, Verdict::RefusedVisibly);
    }

    /// A reset after the application read the whole payload leaves it delivered.
    #[test]
    fn a_reset_after_everything_was_read_is_delivered() {
        let mut o = oracle();
        peer(&mut o, 1, true, 0, &[PeerEvent::ResetSeen { port: 1 }]);
        read(&mut o, 1, b"abcd");
        assert_eq!(o.judge(T)[0].verdict, Verdict::Delivered);
    }

    /// A port reused by a later connection starts a new record; the device side follows it.
    #[test]
    fn a_reused_port_is_a_new_connection() {
        let mut o = oracle();
        peer(&mut o, 9, true, 4, &[]);
        read(&mut o, 9, b"abcd");
        peer(&mut o, 9, true, 4, &[]);
        let verdicts: Vec<Verdict> = o.judge(T).iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, [Verdict::Delivered, Verdict::NeverAccepted]);
    }

    fn at_s(s: u64) -> Instant {
        Instant::from_secs(s as i64)
    }

    /// Opens and establishes a connection from `port` that sent 4 bytes, `acked` of them
    /// acknowledged, all at time zero.
    fn sending(o: &mut Oracle, port: u16, acked: u64) {
        o.peer_event(T, &PeerEvent::Opened { port, workload: 0 });
        o.peer_event(T, &PeerEvent::Established { port });
        o.peer_event(T, &PeerEvent::Sent { port, bytes: 4 });
        if acked > 0 {
            o.peer_event(T, &PeerEvent::Acked { port, bytes: acked });
        }
    }

    /// A connection waiting for an acknowledgement with no progress until the run ends
    /// `liveness_ms` later stalled at its last progress; a shorter run leaves it unfinished.
    #[test]
    fn a_connection_waiting_without_progress_stalls() {
        let mut o = oracle();
        sending(&mut o, 1, 2);
        let rows = o.judge(at_s(60));
        assert_eq!(rows[0].verdict, Verdict::Stalled);
        assert_eq!(rows[0].stalled_at_us, Some(0));
        let rows = o.judge(at_s(59));
        assert_eq!(rows[0].verdict, Verdict::Unfinished);
        assert_eq!(rows[0].stalled_at_us, None);
        let s = Summary::of(&o.judge(at_s(60)));
        assert_eq!((s.stalled, s.liveness_failures(), s.tested()), (1, 1, 1));
    }

    /// A program that pauses of its own accord (everything acknowledged, no FIN yet) is not
    /// waiting on the device: the end of the run finds it unfinished, not stalled.
    #[test]
    fn a_pausing_program_is_unfinished_not_stalled() {
        let mut o = oracle();
        sending(&mut o, 1, 4);
        o.app_event(T, &AppEvent::Accepted { conn: conn(1) });
        assert_eq!(o.judge(at_s(600))[0].verdict, Verdict::Unfinished);
    }

    /// A hang is a failure even when the connection recovers and delivers in the end; the
    /// instant progress stopped is kept.
    #[test]
    fn a_recovered_stall_is_still_stalled() {
        let mut o = oracle();
        sending(&mut o, 1, 0);
        o.peer_event(at_s(70), &PeerEvent::Acked { port: 1, bytes: 4 });
        read(&mut o, 1, b"abcd");
        o.peer_event(at_s(71), &PeerEvent::Finished { port: 1 });
        let row = &o.judge(at_s(72))[0];
        assert_eq!(row.verdict, Verdict::Stalled);
        assert_eq!(row.stalled_at_us, Some(0));
        // Progress within the window keeps it alive.
        let mut o = oracle();
        sending(&mut o, 1, 0);
        o.peer_event(at_s(59), &PeerEvent::Acked { port: 1, bytes: 4 });
        read(&mut o, 1, b"abcd");
        o.peer_event(at_s(118), &PeerEvent::Finished { port: 1 });
        assert_eq!(o.judge(at_s(120))[0].verdict, Verdict::Delivered);
    }

    /// Safety beats liveness: a connection that stalled and then lost its data silently is
    /// silent loss; one that stalled and then saw a reset failed visibly.
    #[test]
    fn silent_loss_and_visible_failures_beat_a_stall() {
        let mut o = oracle();
        sending(&mut o, 1, 4);
        o.peer_event(at_s(1), &PeerEvent::FinSent { port: 1 });
        o.peer_event(at_s(90), &PeerEvent::GaveUp { port: 1 });
        o.peer_event(at_s(90), &PeerEvent::Finished { port: 1 });
        sending(&mut o, 2, 4);
        o.peer_event(at_s(1), &PeerEvent::FinSent { port: 2 });
        o.peer_event(at_s(90), &PeerEvent::DeviceFinSeen { port: 2 });
        o.peer_event(at_s(90), &PeerEvent::Finished { port: 2 });
        let rows = o.judge(at_s(100));
        assert_eq!(rows[0].verdict, Verdict::RefusedVisibly);
        assert_eq!(rows[1].verdict, Verdict::NeverAccepted);
        assert!(rows.iter().all(|r| r.stalled_at_us == Some(1_000_000)));
    }

    /// Dropped SYNs are not progress: a connect that only gets its SYN dropped stalls.
    #[test]
    fn repeats_that_change_nothing_are_not_progress() {
        let mut o = oracle();
        o.peer_event(
            T,
            &PeerEvent::Opened {
                port: 1,
                workload: 0,
            },
        );
        let remote = conn(1).remote;
        for s in [10, 30, 50, 70] {
            o.device_event(at_s(s), &DeviceEvent::SynDropped { remote });
        }
        let row = &o.judge(at_s(80))[0];
        assert_eq!(
            (row.verdict, row.stalled_at_us),
            (Verdict::Stalled, Some(0))
        );
    }

    /// A connection the run cut short is unfinished even when the application read all it
    /// got; one whose acknowledged bytes the device freed unread with no reset is silent loss
    /// although the peer never finished (safety beats liveness).
    #[test]
    fn open_connections_are_unfinished_unless_their_data_was_thrown_away() {
        let mut o = oracle();
        sending(&mut o, 1, 2);
        read(&mut o, 1, b"ab");
        assert_eq!(o.judge(at_s(1))[0].verdict, Verdict::Unfinished);
        assert_eq!(o.judge(at_s(61))[0].verdict, Verdict::Stalled);
        sending(&mut o, 2, 4);
        read(&mut o, 2, b"ab");
        let freed = DeviceEvent::UnreadDataFreed {
            conn: conn(2),
            bytes: 2,
        };
        o.device_event(T, &freed);
        assert_eq!(o.judge(at_s(61))[1].verdict, Verdict::DataSilentlyLost);
    }

    /// An application writing into a full send buffer every loop (`Wrote` of 0 bytes) makes
    /// no progress: the connection still stalls.
    #[test]
    fn writes_the_stack_did_not_take_are_not_progress() {
        let mut o = oracle();
        sending(&mut o, 1, 0);
        for s in 1..=70 {
            let wrote = AppEvent::Wrote {
                conn: conn(1),
                bytes: 0,
            };
            o.app_event(at_s(s), &wrote);
        }
        assert_eq!(o.judge(at_s(71))[0].verdict, Verdict::Stalled);
    }
}
