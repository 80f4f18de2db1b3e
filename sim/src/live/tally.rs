//! The live report as connections end: the oracle takes every event as it happens, and each
//! connection is judged and dropped once its verdict is final, so a long `serve` holds only
//! the connections still open. The summary counts every connection; the rows kept are the
//! ones the report shows: the first failed ones (`FAILED_ROWS`), and the first others.
//!
//! A verdict is final when the host's side finished (as the wire showed it) and the device
//! can no longer change it: the handshake never completed for the host, or the device let
//! the connection go (the app saw it end or closed it, or the stack dropped the handshake).
//! Until then the app may still accept it or read from it. Device events that come after
//! (a slot freed after TIME-WAIT) no longer count toward the row.

use std::collections::BTreeMap;

use firmware_core::app::RecordedKind;
use firmware_core::smoltcp::time::Instant;
use firmware_core::DeviceEvent;

use super::wire::WireEvent;
use crate::observer::ObservedEvent;
use crate::oracle::{ConnReport, Oracle, Summary};
use crate::peer::PeerEvent;

/// Rows kept besides the failures: as many as the human report shows.
pub(crate) const OTHER_ROWS: usize = 10;

/// Rows kept of failed connections (silent loss, stalled, unfinished): the first ones, so a
/// long legacy serve that loses half its connections still holds a bounded report (the
/// summary counts every one).
pub(crate) const FAILED_ROWS: usize = 1000;

/// What an open connection has shown toward its verdict being final.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    established: bool,
    peer_finished: bool,
    /// The device let go of it: nothing it does can change the verdict any more.
    device_done: bool,
}

impl Progress {
    fn is_final(self) -> bool {
        self.peer_finished && (!self.established || self.device_done)
    }
}

/// The connections judged so far and the ones still open, by the host's port.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    open: BTreeMap<u16, Progress>,
    summary: Summary,
    rows: Vec<ConnReport>,
    others: usize,
    failed: usize,
}

impl Tally {
    /// Takes one event of the host's side: into the oracle (an opening with its payload,
    /// after judging the port's previous connection), and toward the connection's verdict.
    pub(crate) fn peer(&mut self, oracle: &mut Oracle, at: Instant, e: WireEvent) {
        let port = e.event.port();
        if let (PeerEvent::Opened { workload, .. }, Some(payload)) = (&e.event, e.payload) {
            if let Some(row) = oracle.take(port, at) {
                self.add(row);
            }
            oracle.open(at, port, *workload, payload);
            self.open.insert(port, Progress::default());
            return;
        }
        oracle.peer_event(at, &e.event);
        let Some(p) = self.open.get_mut(&port) else {
            return;
        };
        match e.event {
            PeerEvent::Established { .. } => p.established = true,
            PeerEvent::Finished { .. } => p.peer_finished = true,
            _ => {}
        }
        self.settle(oracle, port, at);
    }

    /// Notes one device or app event at `at` toward its connection's verdict (the oracle took
    /// it as it happened).
    pub(crate) fn device(&mut self, oracle: &mut Oracle, at: Instant, e: &ObservedEvent) {
        let (port, done) = match e {
            ObservedEvent::Device(d) => match d {
                DeviceEvent::Stopped { .. } | DeviceEvent::HandshakeAborted { .. } => {
                    (d.peer_port(), true)
                }
                // A retransmitted SYN: the stack may complete the handshake after all.
                DeviceEvent::SynReceived { .. } => (d.peer_port(), false),
                _ => return,
            },
            ObservedEvent::App(conn, RecordedKind::Disconnected | RecordedKind::Closed, _) => {
                (conn.remote.port, true)
            }
            _ => return,
        };
        if let Some(p) = self.open.get_mut(&port) {
            p.device_done = done;
            self.settle(oracle, port, at);
        }
    }

    /// Judges and drops the port's connection if its verdict is final.
    fn settle(&mut self, oracle: &mut Oracle, port: u16, at: Instant) {
        if !self.open.get(&port).is_some_and(|p| p.is_final()) {
            return;
        }
        self.open.remove(&port);
        if let Some(row) = oracle.take(port, at) {
            self.add(row);
        }
    }

    fn add(&mut self, row: ConnReport) {
        self.summary.add(&row);
        let failed = row.verdict.is_violation() || row.verdict.is_liveness_failure();
        let kept = match failed {
            true => &mut self.failed,
            false => &mut self.others,
        };
        let limit = if failed { FAILED_ROWS } else { OTHER_ROWS };
        if *kept < limit {
            *kept += 1;
            self.rows.push(row);
        }
    }

    /// Connections opened and not judged yet.
    #[cfg(test)]
    fn open_connections(&self) -> usize {
        self.open.len()
    }

    /// Judges the connections still open as they stand; the summary of all, and the rows
    /// kept in opening order.
    pub(crate) fn finish(mut self, oracle: &Oracle, now: Instant) -> (Summary, Vec<ConnReport>) {
        for row in oracle.judge(now) {
            self.add(row);
        }
        self.rows.sort_by_key(|r| r.opened_at_us);
        (self.summary, self.rows)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use firmware_core::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
    use firmware_core::{AppEvent, ConnId};

    use super::*;
    use crate::oracle::Verdict;
    use crate::peer::Payload;

    const T: Instant = Instant::ZERO;

    fn conn(port: u16) -> ConnId {
        ConnId {
            serial: u32::from(port),
            remote: IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 77, 0, 1)), port),
        }
    }

    fn peer(t: &mut Tally, o: &mut Oracle, event: PeerEvent) {
        t.peer(o, T, event.into());
    }

    /// The host opens a connection from `port` and sends `data`, acknowledged; its payload is
    /// what it sent.
    fn send(t: &mut Tally, o: &mut Oracle, port: u16, workload: usize, data: &[u8]) {
        let payload = Payload::Growing(Rc::new(RefCell::new(data.to_vec())));
        let opened = WireEvent {
            event: PeerEvent::Opened { port, workload },
            payload: Some(payload),
        };
        t.peer(o, T, opened);
        peer(t, o, PeerEvent::Established { port });
        let bytes = data.len();
        peer(t, o, PeerEvent::Sent { port, bytes });
        let bytes = bytes as u64;
        peer(t, o, PeerEvent::Acked { port, bytes });
        peer(t, o, PeerEvent::FinSent { port });
    }

    /// An app event, into the oracle as the observer hands it, then to the tally.
    fn app(t: &mut Tally, o: &mut Oracle, event: AppEvent<'_>) {
        o.app_event(T, &event);
        if let AppEvent::Disconnected { conn } = event {
            let observed = ObservedEvent::App(conn, RecordedKind::Disconnected, Vec::new());
            t.device(o, T, &observed);
        }
    }

    /// A connection is judged once both the host and the app are done with it, in either
    /// order, and not before: until the app lets go it may still read.
    #[test]
    fn a_connection_is_judged_once_host_and_app_are_done() {
        let (mut t, mut o) = (
            Tally::default(),
            Oracle::new(Vec::new(), crate::scenario::DEFAULT_LIVENESS_MS),
        );
        send(&mut t, &mut o, 40000, 0, b"abc");
        app(&mut t, &mut o, AppEvent::Accepted { conn: conn(40000) });
        peer(&mut t, &mut o, PeerEvent::Finished { port: 40000 });
        assert_eq!(t.open_connections(), 1, "the app may still read");
        let data = b"abc";
        app(
            &mut t,
            &mut o,
            AppEvent::Read {
                conn: conn(40000),
                data,
            },
        );
        app(&mut t, &mut o, AppEvent::Disconnected { conn: conn(40000) });
        assert_eq!(t.open_connections(), 0);
        assert!(o.judge(T).is_empty(), "the oracle dropped it");
        // The other order: the app lets go first, without reading.
        send(&mut t, &mut o, 40001, 1, b"de");
        app(&mut t, &mut o, AppEvent::Accepted { conn: conn(40001) });
        app(&mut t, &mut o, AppEvent::Disconnected { conn: conn(40001) });
        assert_eq!(t.open_connections(), 1);
        peer(&mut t, &mut o, PeerEvent::Finished { port: 40001 });
        assert_eq!(t.open_connections(), 0);
        let (s, rows) = t.finish(&o, T);
        assert_eq!((s.connections, s.delivered, s.silently_lost), (2, 1, 1));
        let verdicts: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, [Verdict::Delivered, Verdict::DataSilentlyLost]);
    }

    /// A refused connect is final at once; a new connection on a port judges the old one; the
    /// ones still open at the end are judged as they stand.
    #[test]
    fn refused_reused_and_open_connections_are_all_counted() {
        let (mut t, mut o) = (
            Tally::default(),
            Oracle::new(Vec::new(), crate::scenario::DEFAULT_LIVENESS_MS),
        );
        let opened = |port, workload| WireEvent {
            event: PeerEvent::Opened { port, workload },
            payload: Some(Payload::Growing(Rc::default())),
        };
        t.peer(&mut o, T, opened(40000, 0));
        peer(&mut t, &mut o, PeerEvent::ConnectFailed { port: 40000 });
        peer(&mut t, &mut o, PeerEvent::Finished { port: 40000 });
        assert_eq!(t.open_connections(), 0);
        send(&mut t, &mut o, 40001, 1, b"x");
        // The host reuses the port (the wire view finishes the old connection first).
        peer(&mut t, &mut o, PeerEvent::Finished { port: 40001 });
        assert_eq!(t.open_connections(), 1, "the app may still accept it");
        send(&mut t, &mut o, 40001, 2, b"y");
        send(&mut t, &mut o, 40002, 3, b"z");
        assert_eq!(t.open_connections(), 2);
        let (s, rows) = t.finish(&o, T);
        assert_eq!(s.connections, 4);
        assert_eq!(s.refused_visible, 1);
        assert_eq!(s.unfinished, 2, "the open connections of 40001 and 40002");
        assert_eq!(
            s.never_accepted, 1,
            "the first of 40001, finished by the new SYN"
        );
        assert_eq!(rows.len(), 4);
    }

    /// Every violation is kept, and only the first others.
    #[test]
    fn rows_kept_are_the_violations_and_the_first_others() {
        let (mut t, mut o) = (
            Tally::default(),
            Oracle::new(Vec::new(), crate::scenario::DEFAULT_LIVENESS_MS),
        );
        for i in 0..30u16 {
            let port = 40000 + i;
            send(&mut t, &mut o, port, usize::from(i), b"m");
            app(&mut t, &mut o, AppEvent::Accepted { conn: conn(port) });
            if i % 3 != 0 {
                let data = b"m";
                app(
                    &mut t,
                    &mut o,
                    AppEvent::Read {
                        conn: conn(port),
                        data,
                    },
                );
            }
            app(&mut t, &mut o, AppEvent::Disconnected { conn: conn(port) });
            peer(&mut t, &mut o, PeerEvent::Finished { port });
        }
        let (s, rows) = t.finish(&o, T);
        assert_eq!((s.connections, s.silently_lost, s.delivered), (30, 10, 20));
        assert_eq!(rows.len(), 10 + OTHER_ROWS);
        let lost = rows.iter().filter(|r| r.verdict.is_violation()).count();
        assert_eq!(lost, 10);
    }

    /// A long legacy serve loses half its connections: the report keeps the first
    /// `FAILED_ROWS` of them and counts every one.
    #[test]
    fn failed_rows_are_bounded_and_all_counted() {
        let (mut t, mut o) = (
            Tally::default(),
            Oracle::new(Vec::new(), crate::scenario::DEFAULT_LIVENESS_MS),
        );
        let lost = FAILED_ROWS as u16 + 5;
        for i in 0..lost {
            let port = 20000 + i;
            send(&mut t, &mut o, port, usize::from(i), b"m");
            app(&mut t, &mut o, AppEvent::Accepted { conn: conn(port) });
            app(&mut t, &mut o, AppEvent::Disconnected { conn: conn(port) });
            peer(&mut t, &mut o, PeerEvent::Finished { port });
        }
        let (s, rows) = t.finish(&o, T);
        assert_eq!(s.silently_lost, u64::from(lost));
        assert_eq!(rows.len(), FAILED_ROWS);
    }
}
