//! Live mode's events as JSON lines (`serve --json`): every event of the device, the
//! application and the wire's view of the host, stamped with core time and Unix time, and read
//! back into the oracle's events when client records are joined with them ([`super::join`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use firmware_core::app::RecordedKind;
use firmware_core::smoltcp::wire::{IpAddress, IpEndpoint};
use firmware_core::{ConnId, DeviceEvent};
use serde::{Deserialize, Serialize};

use crate::observer::{Observed, ObservedEvent};
use crate::peer::PeerEvent;

/// One event as a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEvent {
    /// Microseconds since `serve` started (the core's time).
    pub t_us: i64,
    /// Unix time in microseconds (for joining with a client's records).
    pub unix_us: u64,
    /// `app`, `device` or `wire` (the host's side as the wire shows it).
    pub source: String,
    /// The event, snake case (`read`, `peer_closed`, `fin_sent`, ...).
    pub event: String,
    /// The host's port (the connection's key).
    pub port: u16,
    /// The device's connection serial (device and app events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u32>,
    /// The host's address (device and app events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// A byte count or offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The bytes an application read, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hex: Option<String>,
    /// `reset` of `peer_closed`, `while_queued` of `marked_closed`, `sent_rst` of `stopped`
    /// and `data_after_close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<bool>,
    /// The wire view's workload (one per connection) of `opened`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<usize>,
}

/// A JSON line that is not one of live mode's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError(pub String);

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a live event: {}", self.0)
    }
}

impl std::error::Error for EventError {}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn blank(t_us: i64, unix_us: u64, source: &str, event: &str, port: u16) -> LiveEvent {
    LiveEvent {
        t_us,
        unix_us,
        source: source.into(),
        event: event.into(),
        port,
        conn: None,
        remote: None,
        bytes: None,
        data_hex: None,
        flag: None,
        workload: None,
    }
}

impl LiveEvent {
    /// The JSON form of an observed event at Unix time `unix_us`.
    pub fn of(observed: &Observed, unix_us: u64) -> LiveEvent {
        let t = observed.at_us;
        match &observed.event {
            ObservedEvent::Device(d) => device_event(t, unix_us, d),
            ObservedEvent::App(conn, kind, data) => {
                let name = match kind {
                    RecordedKind::Accepted => "accepted",
                    RecordedKind::Read => "read",
                    RecordedKind::Wrote => "wrote",
                    RecordedKind::Disconnected => "disconnected",
                    RecordedKind::Closed => "closed",
                    RecordedKind::Mismatch => "mismatch",
                };
                let mut e = with_conn(blank(t, unix_us, "app", name, 0), conn);
                if *kind == RecordedKind::Read {
                    e.bytes = Some(data.len() as u64);
                    e.data_hex = Some(hex(data));
                }
                e
            }
            ObservedEvent::Peer(p) => wire_event(t, unix_us, p),
        }
    }

    /// The observed event this line stands for (`wrote` and `mismatch` lose their numbers,
    /// which the oracle does not use).
    pub fn observed(&self) -> Result<Observed, EventError> {
        let bad = || EventError(format!("{} event {:?}", self.source, self.event));
        let event = match self.source.as_str() {
            "device" => ObservedEvent::Device(self.device_event().ok_or_else(bad)?),
            "app" => {
                let kind = match self.event.as_str() {
                    "accepted" => RecordedKind::Accepted,
                    "read" => RecordedKind::Read,
                    "wrote" => RecordedKind::Wrote,
                    "disconnected" => RecordedKind::Disconnected,
                    "closed" => RecordedKind::Closed,
                    "mismatch" => RecordedKind::Mismatch,
                    _ => return Err(bad()),
                };
                let data = match &self.data_hex {
                    Some(h) => crate::peer::parse_hex(h).map_err(|_| bad())?,
                    None => Vec::new(),
                };
                ObservedEvent::App(self.conn_id().ok_or_else(bad)?, kind, data)
            }
            "wire" => ObservedEvent::Peer(self.wire_event().ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(Observed {
            at_us: self.t_us,
            event,
        })
    }

    fn conn_id(&self) -> Option<ConnId> {
        let addr: Ipv4Addr = self.remote.as_deref()?.parse().ok()?;
        Some(ConnId {
            serial: self.conn?,
            remote: IpEndpoint::new(IpAddress::Ipv4(addr), self.port),
        })
    }

    fn device_event(&self) -> Option<DeviceEvent> {
        let bytes = || self.bytes.map(|b| b as usize);
        if self.event == "syn_dropped" {
            let addr: Ipv4Addr = self.remote.as_deref()?.parse().ok()?;
            let remote = IpEndpoint::new(IpAddress::Ipv4(addr), self.port);
            return Some(DeviceEvent::SynDropped { remote });
        }
        let conn = self.conn_id()?;
        Some(match self.event.as_str() {
            "syn_received" => DeviceEvent::SynReceived { conn },
            "handshake_aborted" => DeviceEvent::HandshakeAborted { conn },
            "handshake_completed" => DeviceEvent::HandshakeCompleted { conn },
            "accept_queued" => DeviceEvent::AcceptQueued { conn },
            "accepted" => DeviceEvent::Accepted { conn },
            "data_received" => DeviceEvent::DataReceived {
                conn,
                bytes: bytes()?,
            },
            "peer_closed" => DeviceEvent::PeerClosed {
                conn,
                reset: self.flag?,
            },
            "marked_closed" => DeviceEvent::MarkedClosed {
                conn,
                while_queued: self.flag?,
            },
            "unread_data_freed" => DeviceEvent::UnreadDataFreed {
                conn,
                bytes: bytes()?,
            },
            "stopped" => DeviceEvent::Stopped {
                conn,
                unread_bytes: bytes()?,
                sent_rst: self.flag?,
            },
            "data_after_close" => DeviceEvent::DataAfterClose {
                conn,
                bytes: bytes()?,
                sent_rst: self.flag?,
            },
            "slot_freed" => DeviceEvent::SlotFreed { conn },
            _ => return None,
        })
    }

    fn wire_event(&self) -> Option<PeerEvent> {
        let port = self.port;
        Some(match self.event.as_str() {
            "opened" => PeerEvent::Opened {
                port,
                workload: self.workload?,
            },
            "established" => PeerEvent::Established { port },
            "sent" => PeerEvent::Sent {
                port,
                bytes: self.bytes? as usize,
            },
            "acked" => PeerEvent::Acked {
                port,
                bytes: self.bytes?,
            },
            "fin_sent" => PeerEvent::FinSent { port },
            "reset_sent" => PeerEvent::ResetSent { port },
            "reset_seen" => PeerEvent::ResetSeen { port },
            "connect_failed" => PeerEvent::ConnectFailed { port },
            "device_fin_seen" => PeerEvent::DeviceFinSeen { port },
            "gave_up" => PeerEvent::GaveUp { port },
            "finished" => PeerEvent::Finished { port },
            _ => return None,
        })
    }
}

fn with_conn(mut e: LiveEvent, conn: &ConnId) -> LiveEvent {
    e.port = conn.remote.port;
    e.conn = Some(conn.serial);
    e.remote = Some(IpAddr::from(conn.remote.addr).to_string());
    e
}

fn device_event(t: i64, unix_us: u64, d: &DeviceEvent) -> LiveEvent {
    let e = |name: &str, conn: &ConnId| with_conn(blank(t, unix_us, "device", name, 0), conn);
    match *d {
        DeviceEvent::SynReceived { conn } => e("syn_received", &conn),
        DeviceEvent::HandshakeAborted { conn } => e("handshake_aborted", &conn),
        DeviceEvent::HandshakeCompleted { conn } => e("handshake_completed", &conn),
        DeviceEvent::AcceptQueued { conn } => e("accept_queued", &conn),
        DeviceEvent::Accepted { conn } => e("accepted", &conn),
        DeviceEvent::DataReceived { conn, bytes } => LiveEvent {
            bytes: Some(bytes as u64),
            ..e("data_received", &conn)
        },
        DeviceEvent::PeerClosed { conn, reset } => LiveEvent {
            flag: Some(reset),
            ..e("peer_closed", &conn)
        },
        DeviceEvent::MarkedClosed { conn, while_queued } => LiveEvent {
            flag: Some(while_queued),
            ..e("marked_closed", &conn)
        },
        DeviceEvent::UnreadDataFreed { conn, bytes } => LiveEvent {
            bytes: Some(bytes as u64),
            ..e("unread_data_freed", &conn)
        },
        DeviceEvent::Stopped {
            conn,
            unread_bytes,
            sent_rst,
        } => LiveEvent {
            bytes: Some(unread_bytes as u64),
            flag: Some(sent_rst),
            ..e("stopped", &conn)
        },
        DeviceEvent::DataAfterClose {
            conn,
            bytes,
            sent_rst,
        } => LiveEvent {
            bytes: Some(bytes as u64),
            flag: Some(sent_rst),
            ..e("data_after_close", &conn)
        },
        DeviceEvent::SlotFreed { conn } => e("slot_freed", &conn),
        DeviceEvent::SynDropped { remote } => LiveEvent {
            remote: Some(IpAddr::from(remote.addr).to_string()),
            ..blank(t, unix_us, "device", "syn_dropped", remote.port)
        },
    }
}

fn wire_event(t: i64, unix_us: u64, p: &PeerEvent) -> LiveEvent {
    let e = |name: &str| blank(t, unix_us, "wire", name, p.port());
    match *p {
        PeerEvent::Opened { workload, .. } => LiveEvent {
            workload: Some(workload),
            ..e("opened")
        },
        PeerEvent::Established { .. } => e("established"),
        PeerEvent::Sent { bytes, .. } => LiveEvent {
            bytes: Some(bytes as u64),
            ..e("sent")
        },
        PeerEvent::Acked { bytes, .. } => LiveEvent {
            bytes: Some(bytes),
            ..e("acked")
        },
        PeerEvent::FinSent { .. } => e("fin_sent"),
        PeerEvent::ResetSent { .. } => e("reset_sent"),
        PeerEvent::ResetSeen { .. } => e("reset_seen"),
        PeerEvent::ConnectFailed { .. } => e("connect_failed"),
        PeerEvent::DeviceFinSeen { .. } => e("device_fin_seen"),
        PeerEvent::GaveUp { .. } => e("gave_up"),
        PeerEvent::Finished { .. } => e("finished"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(serial: u32, port: u16) -> ConnId {
        ConnId {
            serial,
            remote: IpEndpoint::new(IpAddress::Ipv4(Ipv4Addr::new(10, 77, 0, 1)), port),
        }
    }

    /// Every event kind survives the JSON line and comes back as the same event.
    #[test]
    fn every_event_round_trips_through_its_json_line() {
        let c = conn(7, 40001);
        let mut events: Vec<ObservedEvent> = [
            DeviceEvent::SynReceived { conn: c },
            DeviceEvent::HandshakeAborted { conn: c },
            DeviceEvent::HandshakeCompleted { conn: c },
            DeviceEvent::AcceptQueued { conn: c },
            DeviceEvent::Accepted { conn: c },
            DeviceEvent::DataReceived { conn: c, bytes: 9 },
            DeviceEvent::PeerClosed {
                conn: c,
                reset: true,
            },
            DeviceEvent::MarkedClosed {
                conn: c,
                while_queued: true,
            },
            DeviceEvent::UnreadDataFreed { conn: c, bytes: 9 },
            DeviceEvent::Stopped {
                conn: c,
                unread_bytes: 3,
                sent_rst: true,
            },
            DeviceEvent::DataAfterClose {
                conn: c,
                bytes: 4,
                sent_rst: false,
            },
            DeviceEvent::SlotFreed { conn: c },
            DeviceEvent::SynDropped { remote: c.remote },
        ]
        .into_iter()
        .map(ObservedEvent::Device)
        .collect();
        for kind in [
            RecordedKind::Accepted,
            RecordedKind::Disconnected,
            RecordedKind::Closed,
        ] {
            events.push(ObservedEvent::App(c, kind, Vec::new()));
        }
        events.push(ObservedEvent::App(
            c,
            RecordedKind::Read,
            vec![0xaa, 0, 0x41],
        ));
        let port = 40001;
        for p in [
            PeerEvent::Opened { port, workload: 3 },
            PeerEvent::Established { port },
            PeerEvent::Sent { port, bytes: 9 },
            PeerEvent::Acked { port, bytes: 9 },
            PeerEvent::FinSent { port },
            PeerEvent::ResetSent { port },
            PeerEvent::ResetSeen { port },
            PeerEvent::ConnectFailed { port },
            PeerEvent::DeviceFinSeen { port },
            PeerEvent::GaveUp { port },
            PeerEvent::Finished { port },
        ] {
            events.push(ObservedEvent::Peer(p));
        }
        for (i, event) in events.into_iter().enumerate() {
            let observed = Observed {
                at_us: i as i64 * 10,
                event,
            };
            let line = serde_json::to_string(&LiveEvent::of(&observed, 1_000)).unwrap();
            let back: LiveEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(back.observed().unwrap(), observed, "{line}");
        }
    }

    #[test]
    fn an_unknown_event_is_an_error_not_a_panic() {
        let mut e = blank(0, 0, "device", "no_such_event", 1);
        assert!(e.observed().is_err());
        e.source = "elsewhere".into();
        assert!(e.observed().unwrap_err().to_string().contains("elsewhere"));
    }
}
