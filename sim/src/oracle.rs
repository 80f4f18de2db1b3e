//! The oracle: no silent loss. Every byte the peer's stack saw acknowledged, and every connection
//! whose handshake completed, must reach the application or end in a reset the peer can see.

use std::collections::BTreeMap;

use firmware_core::{AppEvent, DeviceEvent};
use serde::Serialize;

use crate::peer::PeerConnRecord;

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
    /// The run ended while the peer program was still running (a stalled connection, a
    /// liveness failure): nothing was discarded yet, so it is not counted as silent loss.
    Unfinished,
}

impl Verdict {
    /// True for the verdicts that break the no-silent-loss rule.
    pub fn is_violation(self) -> bool {
        matches!(
            self,
            Verdict::DataSilentlyLost | Verdict::NeverAccepted | Verdict::Corrupted
        )
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
            Verdict::Unfinished => "unfinished",
        }
    }
}

/// What the device side saw of one connection (keyed by the peer's port).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceSide {
    pub accepted: bool,
    /// In-order bytes the device's stack took in (and acknowledged).
    pub bytes_received: u64,
    pub bytes_read: u64,
    /// The peer's FIN reached the stack while the application had not read everything yet
    /// (the field bug's precondition; what the `fin-before-drain` injector arranges).
    pub fin_before_drain: bool,
    /// The peer's FIN reached the stack before the application accepted the connection.
    pub fin_before_accept: bool,
    /// The peer's RST reached the stack before the application accepted the connection.
    pub reset_before_accept: bool,
    pub first_mismatch: Option<u64>,
    pub bytes_freed_unread: u64,
    pub app_disconnected: bool,
    pub syn_dropped: u32,
}

/// One connection's row in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnReport {
    pub peer_port: u16,
    pub workload: usize,
    pub opened_at_us: i64,
    pub established: bool,
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    pub reset_seen: bool,
    pub connect_failed: bool,
    /// The peer closed and gave up waiting for the device to close (a hanging `nc`).
    pub peer_gave_up: bool,
    #[serde(flatten)]
    pub device: DeviceSide,
    pub verdict: Verdict,
}

/// Collects the device side while the run goes.
#[derive(Debug, Default)]
pub struct Oracle {
    device: BTreeMap<u16, DeviceSide>,
    /// Expected payload per peer port, registered when the peer opens the connection.
    payloads: BTreeMap<u16, crate::peer::Payload>,
}

impl Oracle {
    /// Registers what a connection will send, so reads can be checked as they happen.
    pub fn expect(&mut self, peer_port: u16, payload: crate::peer::Payload) {
        self.payloads.insert(peer_port, payload);
    }

    /// Takes one device event.
    pub fn device_event(&mut self, event: &DeviceEvent) {
        match *event {
            DeviceEvent::UnreadDataFreed { conn, bytes } => {
                self.side(conn.remote.port).bytes_freed_unread += bytes as u64;
            }
            DeviceEvent::DataAfterClose { conn, bytes, .. } => {
                self.side(conn.remote.port).bytes_freed_unread += bytes as u64;
            }
            DeviceEvent::SynDropped { remote } => self.side(remote.port).syn_dropped += 1,
            DeviceEvent::DataReceived { conn, bytes } => {
                self.side(conn.remote.port).bytes_received += bytes as u64;
            }
            DeviceEvent::PeerClosed { conn, reset } => {
                let side = self.side(conn.remote.port);
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

    /// Takes one app event.
    pub fn app_event(&mut self, event: &AppEvent<'_>) {
        match *event {
            AppEvent::Accepted { conn } => self.side(conn.remote.port).accepted = true,
            AppEvent::Read { conn, data } => {
                let port = conn.remote.port;
                let mismatch = self.payloads.get(&port).and_then(|p| {
                    p.first_mismatch(self.device.get(&port).map_or(0, |d| d.bytes_read), data)
                });
                let side = self.side(port);
                if side.first_mismatch.is_none() {
                    side.first_mismatch = mismatch;
                }
                side.bytes_read += data.len() as u64;
            }
            AppEvent::Disconnected { conn } | AppEvent::Closed { conn } => {
                self.side(conn.remote.port).app_disconnected = true;
            }
            AppEvent::Wrote { .. } | AppEvent::Mismatch { .. } => {}
        }
    }

    fn side(&mut self, port: u16) -> &mut DeviceSide {
        self.device.entry(port).or_default()
    }

    /// Judges every connection the peer opened.
    pub fn judge<'a>(&self, peers: impl Iterator<Item = &'a PeerConnRecord>) -> Vec<ConnReport> {
        peers
            .map(|p| {
                let device = self.device.get(&p.local_port).cloned().unwrap_or_default();
                let verdict = if !p.established {
                    if p.connect_failed {
                        Verdict::RefusedVisibly
                    } else {
                        Verdict::Unfinished
                    }
                } else if device.first_mismatch.is_some() {
                    Verdict::Corrupted
                } else if device.accepted && device.bytes_read >= p.bytes_acked {
                    Verdict::Delivered
                } else if !p.finished {
                    Verdict::Unfinished
                } else if p.peer_aborted {
                    Verdict::AbortedByPeer
                } else if p.reset_seen || p.gave_up_waiting {
                    Verdict::RefusedVisibly
                } else if !device.accepted {
                    Verdict::NeverAccepted
                } else {
                    Verdict::DataSilentlyLost
                };
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
                    device,
                    verdict,
                }
            })
            .collect()
    }
}

/// Totals over a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub connections: u64,
    pub delivered: u64,
    pub silently_lost: u64,
    pub never_accepted: u64,
    pub corrupted: u64,
    pub refused_visible: u64,
    pub unfinished: u64,
    pub aborted_by_peer: u64,
    pub bytes_acked: u64,
    pub bytes_delivered: u64,
    /// Share of connections with a violation.
    pub loss_fraction: f64,
}

impl Summary {
    /// Adds up the rows.
    pub fn of(rows: &[ConnReport]) -> Summary {
        let mut s = Summary {
            connections: rows.len() as u64,
            ..Summary::default()
        };
        for r in rows {
            match r.verdict {
                Verdict::Delivered => s.delivered += 1,
                Verdict::DataSilentlyLost => s.silently_lost += 1,
                Verdict::NeverAccepted => s.never_accepted += 1,
                Verdict::Corrupted => s.corrupted += 1,
                Verdict::RefusedVisibly => s.refused_visible += 1,
                Verdict::Unfinished => s.unfinished += 1,
                Verdict::AbortedByPeer => s.aborted_by_peer += 1,
            }
            s.bytes_acked += r.bytes_acked;
            s.bytes_delivered += r.device.bytes_read.min(r.bytes_acked);
        }
        let violations = s.silently_lost + s.never_accepted + s.corrupted;
        s.loss_fraction = if s.connections == 0 {
            0.0
        } else {
            violations as f64 / s.connections as f64
        };
        s
    }

    /// Connections that broke the no-silent-loss rule.
    pub fn violations(&self) -> u64 {
        self.silently_lost + self.never_accepted + self.corrupted
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use firmware_core::smoltcp::time::Instant;
    use firmware_core::smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
    use firmware_core::ConnId;

    use super::*;
    use crate::peer::Payload;

    fn peer(port: u16, established: bool, acked: u64) -> PeerConnRecord {
        PeerConnRecord {
            workload: 0,
            local_port: port,
            opened_at: Instant::ZERO,
            established,
            bytes_sent: acked,
            bytes_acked: acked,
            reset_seen: false,
            connect_failed: false,
            device_fin_seen: false,
            gave_up_waiting: false,
            finished: true,
            peer_aborted: false,
            payload: Payload::Bytes(Rc::from(&b"abcd"[..])),
        }
    }

    fn conn(port: u16) -> ConnId {
        ConnId {
            serial: 1,
            remote: IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(1, 2, 3, 4)), port),
        }
    }

    /// Each verdict is reachable, and only from its own evidence.
    #[test]
    fn unfinished_and_peer_aborted_connections_are_not_silent_loss() {
        let o = Oracle::default();
        let mut running = peer(1, true, 4);
        running.finished = false;
        let mut aborted = peer(2, true, 4);
        aborted.peer_aborted = true;
        let rows = o.judge([running, aborted].iter());
        assert_eq!(rows[0].verdict, Verdict::Unfinished);
        assert_eq!(rows[1].verdict, Verdict::AbortedByPeer);
        assert_eq!(Summary::of(&rows).violations(), 0);
        // The same connection, finished and not aborted, is a silent loss.
        assert_eq!(
            o.judge([peer(3, true, 4)].iter())[0].verdict,
            Verdict::NeverAccepted
        );
    }

    #[test]
    fn verdicts_follow_the_evidence() {
        let mut o = Oracle::default();
        for port in 1..=6 {
            o.expect(port, Payload::Bytes(Rc::from(&b"abcd"[..])));
        }
        o.app_event(&AppEvent::Accepted { conn: conn(1) });
        o.app_event(&AppEvent::Read {
            conn: conn(1),
            data: b"abcd",
        });
        o.app_event(&AppEvent::Accepted { conn: conn(2) });
        o.app_event(&AppEvent::Read {
            conn: conn(2),
            data: b"ab",
        });
        o.app_event(&AppEvent::Accepted { conn: conn(4) });
        o.app_event(&AppEvent::Read {
            conn: conn(4),
            data: b"abXd",
        });
        let mut reset = peer(5, true, 4);
        reset.reset_seen = true;
        let mut refused = peer(6, false, 0);
        refused.connect_failed = true;
        let peers = [
            peer(1, true, 4),
            peer(2, true, 4),
            peer(3, true, 4),
            peer(4, true, 4),
            reset,
            refused,
            peer(7, false, 0),
        ];
        let verdicts: Vec<Verdict> = o.judge(peers.iter()).iter().map(|r| r.verdict).collect();
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
        let s = Summary::of(&o.judge(peers.iter()));
        assert_eq!(
            (s.delivered, s.silently_lost, s.never_accepted, s.corrupted),
            (1, 1, 1, 1)
        );
        assert_eq!(s.violations(), 3);
        assert!((s.loss_fraction - 3.0 / 7.0).abs() < 1e-9);
    }
}
