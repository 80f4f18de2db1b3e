//! Joins what real clients recorded (per connection: what they sent and what their OS
//! reported) with the device's and application's events from `serve --json`, through the
//! simulator's oracle: each client record becomes the peer events of one connection.
//!
//! A record names its connection by the client's port when the client knows it (the Python
//! client), or else by time: the one connection whose SYN reached the device while the client
//! ran (`nc` in a sequential loop).

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use firmware_core::smoltcp::time::Instant;
use serde::Deserialize;

use super::events::LiveEvent;
use crate::observer::{Observed, ObservedEvent};
use crate::oracle::{ConnReport, Oracle};
use crate::peer::{parse_hex, Payload, PeerEvent};

/// What a client recorded about one connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClientRecord {
    /// Which client (`nc`, `python`): for reports only.
    pub client: String,
    /// Unix time (microseconds) the client started the connection.
    pub start_unix_us: u64,
    /// Unix time (microseconds) the client was done with it.
    pub end_unix_us: u64,
    /// The client's local port, when it knows it.
    #[serde(default)]
    pub port: Option<u16>,
    /// The bytes it sent, hex.
    pub sent_hex: String,
    /// The OS reported the connection established.
    pub connected: bool,
    /// Bytes the OS reported delivered (acknowledged by the device).
    pub acked: u64,
    /// The OS reported a reset by the device.
    #[serde(default)]
    pub reset: bool,
    /// The client stopped waiting (the device never closed): the user sees a hang.
    #[serde(default)]
    pub gave_up: bool,
}

/// Why records and events could not be joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// Record `index` has a `sent_hex` that is not hex.
    BadHex(usize),
    /// A `serve --json` line is not a live event.
    BadEvent(String),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::BadHex(i) => write!(f, "client record {i}: sent_hex is not hex"),
            JoinError::BadEvent(e) => write!(f, "serve event: {e}"),
        }
    }
}

impl std::error::Error for JoinError {}

/// The device's connections: their events in order, by serial, and when each was first seen.
struct DeviceConns {
    by_serial: BTreeMap<u32, Vec<Observed>>,
    /// `(unix_us of the first event, port, serial)`, in serial order.
    first: Vec<(u64, u16, u32)>,
}

impl DeviceConns {
    fn of(events: &[LiveEvent]) -> Result<DeviceConns, JoinError> {
        let mut by_serial: BTreeMap<u32, Vec<Observed>> = BTreeMap::new();
        let mut first = Vec::new();
        for e in events.iter().filter(|e| e.source != "wire") {
            let Some(serial) = e.conn else { continue };
            let observed = e
                .observed()
                .map_err(|err| JoinError::BadEvent(err.to_string()))?;
            let list = by_serial.entry(serial).or_default();
            if list.is_empty() {
                first.push((e.unix_us, e.port, serial));
            }
            list.push(observed);
        }
        Ok(DeviceConns { by_serial, first })
    }

    /// The serial of record `r`'s connection: by port within its time, else the first
    /// connection the device saw while the client ran.
    fn serial_of(&self, r: &ClientRecord, taken: &[u32]) -> Option<(u16, u32)> {
        self.first
            .iter()
            .filter(|(t, _, s)| (r.start_unix_us..=r.end_unix_us).contains(t) && !taken.contains(s))
            .find(|(_, port, _)| r.port.is_none_or(|p| p == *port))
            .map(|&(_, port, serial)| (port, serial))
    }
}

/// The peer events a record stands for, after `Opened`.
fn peer_events(r: &ClientRecord, port: u16, sent: usize) -> Vec<PeerEvent> {
    let mut out = Vec::new();
    if r.connected {
        out.push(PeerEvent::Established { port });
        out.push(PeerEvent::Sent { port, bytes: sent });
        out.push(PeerEvent::Acked {
            port,
            bytes: r.acked.min(sent as u64),
        });
        out.push(PeerEvent::FinSent { port });
    } else {
        out.push(PeerEvent::ConnectFailed { port });
    }
    if r.reset {
        out.push(PeerEvent::ResetSeen { port });
    }
    if r.gave_up {
        out.push(PeerEvent::GaveUp { port });
    }
    out.push(PeerEvent::Finished { port });
    out
}

/// Judges each client record with the device's and application's events: one row per
/// record, in record order (a record whose connection the device never saw keeps its port, or
/// gets port 0).
pub fn join(records: &[ClientRecord], events: &[LiveEvent]) -> Result<Vec<ConnReport>, JoinError> {
    let conns = DeviceConns::of(events)?;
    // Device events carry the core's time and the Unix time; client records only the latter.
    let unix_offset_us = events.first().map_or(0, |e| e.unix_us as i64 - e.t_us);
    let mut payloads = Vec::new();
    let mut observed = Vec::new();
    let mut taken = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let sent = parse_hex(&r.sent_hex).map_err(|_| JoinError::BadHex(i))?;
        let found = conns.serial_of(r, &taken);
        let port = found.map(|(p, _)| p).or(r.port).unwrap_or(0);
        // The client's times on the core's clock: it opened at its start and knew the rest
        // by its end.
        let core_us = |unix_us: u64| unix_us as i64 - unix_offset_us;
        let peer = |at_us: i64, e: PeerEvent| Observed {
            at_us,
            event: ObservedEvent::Peer(e),
        };
        observed.push(peer(
            core_us(r.start_unix_us),
            PeerEvent::Opened { port, workload: i },
        ));
        if let Some((_, serial)) = found {
            taken.push(serial);
            observed.extend(conns.by_serial[&serial].iter().cloned());
        }
        // The handshake is known to have completed, not when: at the start, so a long client
        // does not look like one waiting for it all along.
        let (start_us, end_us) = (core_us(r.start_unix_us), core_us(r.end_unix_us));
        observed.extend(peer_events(r, port, sent.len()).into_iter().map(|e| {
            let at = match e {
                PeerEvent::Established { .. } => start_us,
                _ => end_us,
            };
            peer(at, e)
        }));
        payloads.push(Payload::Bytes(Rc::from(sent)));
    }
    let end = observed.iter().map(|e| e.at_us).max().unwrap_or(0);
    Ok(Oracle::replay(
        payloads,
        crate::scenario::DEFAULT_LIVENESS_MS,
        &observed,
        Instant::from_micros(end),
    ))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use firmware_core::app::RecordedKind;
    use firmware_core::smoltcp::wire::{IpAddress, IpEndpoint};
    use firmware_core::{ConnId, DeviceEvent};

    use super::*;
    use crate::Verdict;

    fn record(start: u64, port: Option<u16>, connected: bool) -> ClientRecord {
        ClientRecord {
            client: "nc".into(),
            start_unix_us: start,
            end_unix_us: start + 50_000,
            port,
            sent_hex: "aa05fe93000001410a".into(),
            connected,
            acked: if connected { 9 } else { 0 },
            reset: false,
            gave_up: false,
        }
    }

    fn conn(serial: u32, port: u16) -> ConnId {
        let addr = Ipv4Addr::new(10, 77, 0, 1);
        ConnId {
            serial,
            remote: IpEndpoint::new(IpAddress::Ipv4(addr), port),
        }
    }

    fn line(unix_us: u64, event: ObservedEvent) -> LiveEvent {
        LiveEvent::of(&Observed { at_us: 0, event }, unix_us)
    }

    /// Three `nc` runs: one read by the app, one whose data the device freed unread, one that
    /// never connected. The oracle calls them delivered, silently lost and visible.
    #[test]
    fn records_join_by_time_and_the_oracle_judges_them() {
        let data = parse_hex("aa05fe93000001410a").unwrap();
        let (a, b) = (conn(1, 40000), conn(2, 40001));
        let events = vec![
            line(
                1_010,
                ObservedEvent::Device(DeviceEvent::SynReceived { conn: a }),
            ),
            line(
                1_020,
                ObservedEvent::Device(DeviceEvent::DataReceived { conn: a, bytes: 9 }),
            ),
            line(
                1_030,
                ObservedEvent::App(a, RecordedKind::Accepted, Vec::new()),
            ),
            line(
                1_040,
                ObservedEvent::App(a, RecordedKind::Read, data.clone()),
            ),
            line(
                100_010,
                ObservedEvent::Device(DeviceEvent::SynReceived { conn: b }),
            ),
            line(
                100_020,
                ObservedEvent::Device(DeviceEvent::DataReceived { conn: b, bytes: 9 }),
            ),
            line(
                100_030,
                ObservedEvent::App(b, RecordedKind::Accepted, Vec::new()),
            ),
            line(
                100_040,
                ObservedEvent::Device(DeviceEvent::UnreadDataFreed { conn: b, bytes: 9 }),
            ),
        ];
        let records = [
            record(1_000, None, true),
            record(100_000, None, true),
            record(200_000, None, false),
        ];
        let rows = join(&records, &events).unwrap();
        let verdicts: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Delivered,
                Verdict::DataSilentlyLost,
                Verdict::RefusedVisibly
            ]
        );
        assert_eq!(rows[1].peer_port, 40001);
        assert_eq!(rows[1].device.bytes_freed_unread, 9);
    }

    /// A record that knows its port takes that connection even when another started first.
    #[test]
    fn a_known_port_picks_its_connection() {
        let (a, b) = (conn(1, 40000), conn(2, 40001));
        let events = vec![
            line(
                1_010,
                ObservedEvent::Device(DeviceEvent::SynReceived { conn: a }),
            ),
            line(
                1_020,
                ObservedEvent::Device(DeviceEvent::SynReceived { conn: b }),
            ),
            line(
                1_030,
                ObservedEvent::App(b, RecordedKind::Accepted, Vec::new()),
            ),
        ];
        let rows = join(&[record(1_000, Some(40001), true)], &events).unwrap();
        assert_eq!(rows[0].peer_port, 40001);
        assert!(rows[0].device.accepted);
        let bad = ClientRecord {
            sent_hex: "zz".into(),
            ..record(0, None, true)
        };
        assert_eq!(join(&[bad], &[]).unwrap_err(), JoinError::BadHex(0));
    }
}
