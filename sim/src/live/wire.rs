//! The peer's side of each connection as the wire shows it, as [`PeerEvent`]s for the oracle:
//! live mode has no peer program of its own, so `serve`'s report judges what the host's TCP
//! sent (SYN, in-order data, FIN, RST) and what reached it from the device (SYN-ACK, ACKs, FIN,
//! RST), taken where packets cross the TUN interface. A client's own records, joined by
//! [`super::join`], say what the client's OS reported instead.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use firmware_core::smoltcp::phy::ChecksumCapabilities;
use firmware_core::smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

use crate::peer::{Payload, PeerEvent};

/// One connection the host opened and has not finished, as the wire shows it.
#[derive(Debug, Clone)]
struct WireConn {
    /// The host's address and the device's address and port.
    host: Ipv4Address,
    device: Ipv4Address,
    device_port: u16,
    /// The host's initial sequence number.
    isn: u32,
    /// The next in-order sequence number of the host's data.
    next_seq: u32,
    /// The device's next in-order sequence number as it reached the host, once its SYN did.
    device_next: Option<u32>,
    /// In-order bytes the host sent.
    sent: u64,
    acked: u64,
    /// The same bytes, shared with the oracle's record (its corruption check).
    payload: Rc<RefCell<Vec<u8>>>,
    syn_ack_seen: bool,
    established: bool,
    fin_sent: bool,
    device_fin_seen: bool,
}

/// One event of the wire's view: a peer event, and with `Opened` the connection's payload
/// (what the host sends, growing as it sends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// The peer event.
    pub event: PeerEvent,
    /// The connection's payload, with `Opened` only.
    pub payload: Option<Payload>,
}

impl From<PeerEvent> for WireEvent {
    fn from(event: PeerEvent) -> WireEvent {
        WireEvent {
            event,
            payload: None,
        }
    }
}

/// The wire's view of the host's connections to the device, keyed by the host's port. A
/// connection is forgotten once it finished, so the view holds only the open ones.
#[derive(Debug, Default)]
pub struct WirePeer {
    conns: BTreeMap<u16, WireConn>,
    /// Connections opened so far: the next one's workload index (one workload per
    /// connection).
    opened: usize,
    events: Vec<WireEvent>,
}

/// A TCP segment's fields the view needs.
struct Seg<'a> {
    src: Ipv4Address,
    dst: Ipv4Address,
    src_port: u16,
    dst_port: u16,
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
    seq: u32,
    ack_number: u32,
    payload: &'a [u8],
}

fn segment(packet: &[u8]) -> Option<Seg<'_>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let payload = &packet[ip.header_len() as usize..usize::from(ip.total_len()).min(packet.len())];
    let tcp = TcpPacket::new_checked(payload).ok()?;
    Some(Seg {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        syn: tcp.syn(),
        ack: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        seq: tcp.seq_number().0 as u32,
        ack_number: tcp.ack_number().0 as u32,
        payload: &payload[usize::from(tcp.header_len()).min(payload.len())..],
    })
}

impl WirePeer {
    /// An empty view.
    pub fn new() -> WirePeer {
        WirePeer::default()
    }

    /// A packet the host sent toward the device.
    pub fn from_host(&mut self, packet: &[u8]) {
        let Some(s) = segment(packet) else { return };
        let port = s.src_port;
        if s.syn && !s.ack {
            self.syn(&s);
            return;
        }
        let Some(c) = self.conns.get_mut(&port) else {
            return;
        };
        if s.rst {
            self.events.push(PeerEvent::ResetSent { port }.into());
            self.finish(port);
            return;
        }
        if s.ack && c.syn_ack_seen && !c.established {
            c.established = true;
            self.events.push(PeerEvent::Established { port }.into());
        }
        // New in-order bytes only: retransmissions and segments beyond a hole add nothing.
        let offset = c.next_seq.wrapping_sub(s.seq) as usize;
        if offset < s.payload.len() {
            let new = &s.payload[offset..];
            c.next_seq = c.next_seq.wrapping_add(new.len() as u32);
            c.sent += new.len() as u64;
            c.payload.borrow_mut().extend_from_slice(new);
            let sent = PeerEvent::Sent {
                port,
                bytes: new.len(),
            };
            self.events.push(sent.into());
        }
        let fin_seq = s.seq.wrapping_add(s.payload.len() as u32);
        if s.fin && fin_seq == c.next_seq && !c.fin_sent {
            c.fin_sent = true;
            self.events.push(PeerEvent::FinSent { port }.into());
        }
        self.finish_if_closed(port);
    }

    /// A SYN from the host: a new connection unless it repeats the open one's.
    fn syn(&mut self, s: &Seg<'_>) {
        let port = s.src_port;
        if let Some(c) = self.conns.get(&port) {
            if c.isn == s.seq {
                return;
            }
            // The port was taken for a new connection: the old one is over for the host.
            self.finish(port);
        }
        let payload = Rc::new(RefCell::new(Vec::new()));
        self.conns.insert(
            port,
            WireConn {
                host: s.src,
                device: s.dst,
                device_port: s.dst_port,
                isn: s.seq,
                next_seq: s.seq.wrapping_add(1),
                device_next: None,
                sent: 0,
                acked: 0,
                payload: payload.clone(),
                syn_ack_seen: false,
                established: false,
                fin_sent: false,
                device_fin_seen: false,
            },
        );
        let workload = self.opened;
        self.opened += 1;
        self.events.push(WireEvent {
            event: PeerEvent::Opened { port, workload },
            payload: Some(Payload::Growing(payload)),
        });
    }

    /// A packet of the device that reached the host.
    pub fn to_host(&mut self, packet: &[u8]) {
        let Some(s) = segment(packet) else { return };
        let port = s.dst_port;
        let Some(c) = self.conns.get_mut(&port) else {
            return;
        };
        if s.rst {
            let event = if c.established {
                PeerEvent::ResetSeen { port }
            } else {
                PeerEvent::ConnectFailed { port }
            };
            self.events.push(event.into());
            self.finish(port);
            return;
        }
        if s.syn && s.ack {
            c.syn_ack_seen = true;
        }
        c.device_next = device_next(c.device_next, &s);
        if s.ack {
            // Bytes acknowledged: beyond the SYN, at most the data (not the host's FIN).
            // An ACK below the SYN's (wrapped to a huge distance) acknowledges nothing.
            let raw = s.ack_number.wrapping_sub(c.isn.wrapping_add(1));
            let acked = if raw > u32::MAX / 2 {
                0
            } else {
                u64::from(raw).min(c.sent)
            };
            if acked > c.acked {
                let newly = PeerEvent::Acked {
                    port,
                    bytes: acked - c.acked,
                };
                self.events.push(newly.into());
                c.acked = acked;
            }
        }
        if s.fin && !c.device_fin_seen {
            c.device_fin_seen = true;
            self.events.push(PeerEvent::DeviceFinSeen { port }.into());
        }
        self.finish_if_closed(port);
    }

    /// Both sides closed: the connection is over for the host.
    fn finish_if_closed(&mut self, port: u16) {
        if self
            .conns
            .get(&port)
            .is_some_and(|c| c.fin_sent && c.device_fin_seen)
        {
            self.finish(port);
        }
    }

    fn finish(&mut self, port: u16) {
        if self.conns.remove(&port).is_some() {
            self.events.push(PeerEvent::Finished { port }.into());
        }
    }

    /// Moves the events since the last call into `out`, oldest first.
    pub fn take_events(&mut self, out: &mut Vec<WireEvent>) {
        out.append(&mut self.events);
    }

    /// Connections the host opened and has not finished.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// A reset from the device for each connection still open, as the host's stack takes it
    /// (the device's next sequence number; for a connection the device never answered, an
    /// acknowledgement of the host's SYN): `serve` sends them as it ends, so clients see
    /// their connections end instead of hanging on an interface that is gone.
    pub fn resets(&self) -> Vec<Vec<u8>> {
        self.conns
            .iter()
            .map(|(&port, c)| {
                let tcp = TcpRepr {
                    src_port: c.device_port,
                    dst_port: port,
                    control: TcpControl::Rst,
                    seq_number: TcpSeqNumber(c.device_next.unwrap_or(0) as i32),
                    ack_number: Some(TcpSeqNumber(c.next_seq as i32)),
                    window_len: 0,
                    window_scale: None,
                    max_seg_size: None,
                    sack_permitted: false,
                    sack_ranges: [None; 3],
                    timestamp: None,
                    payload: &[],
                };
                let ip = Ipv4Repr {
                    src_addr: c.device,
                    dst_addr: c.host,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp.buffer_len(),
                    hop_limit: 64,
                };
                let mut packet = vec![0; ip.buffer_len() + ip.payload_len];
                let caps = ChecksumCapabilities::default();
                let mut ip_packet = Ipv4Packet::new_unchecked(&mut packet[..]);
                ip.emit(&mut ip_packet, &caps);
                let mut tcp_packet = TcpPacket::new_unchecked(ip_packet.payload_mut());
                let (src, dst) = (IpAddress::Ipv4(c.device), IpAddress::Ipv4(c.host));
                tcp.emit(&mut tcp_packet, &src, &dst, &caps);
                packet
            })
            .collect()
    }
}

/// The device's next in-order sequence number at the host after segment `s` reached it: its
/// SYN sets it; a segment that starts at or before it and reaches beyond moves it.
fn device_next(next: Option<u32>, s: &Seg<'_>) -> Option<u32> {
    let len = s.payload.len() as u32 + u32::from(s.syn) + u32::from(s.fin);
    let end = s.seq.wrapping_add(len);
    match next {
        _ if s.syn => Some(end),
        Some(n) if n.wrapping_sub(s.seq) < len => Some(end),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;

    /// An IPv4/TCP packet (checksums are not looked at).
    fn seg(src: u16, dst: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 77, 0, 1]);
        p[16..20].copy_from_slice(&[10, 77, 0, 2]);
        p[20..22].copy_from_slice(&src.to_be_bytes());
        p[22..24].copy_from_slice(&dst.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p[34..36].copy_from_slice(&1024u16.to_be_bytes());
        p[40..].copy_from_slice(payload);
        p
    }

    fn events(w: &mut WirePeer) -> Vec<PeerEvent> {
        let mut out = Vec::new();
        w.take_events(&mut out);
        out.into_iter().map(|e| e.event).collect()
    }

    /// An `nc`-shaped connection: the view reports what the host's stack saw, once each.
    #[test]
    fn a_connection_reads_off_the_wire_as_peer_events() {
        let port = 40000;
        let mut w = WirePeer::new();
        w.from_host(&seg(port, 6000, 1000, 0, SYN, b""));
        let mut opened = Vec::new();
        w.take_events(&mut opened);
        let payload = opened[0]
            .payload
            .clone()
            .expect("Opened carries the payload");
        assert!(payload.is_empty());
        w.to_host(&seg(6000, port, 5000, 1001, SYN | ACK, b""));
        w.from_host(&seg(port, 6000, 1001, 5001, ACK, b""));
        w.from_host(&seg(port, 6000, 1001, 5001, ACK, b"hello"));
        // A retransmission adds nothing; the FIN comes in order after the data.
        w.from_host(&seg(port, 6000, 1001, 5001, ACK, b"hello"));
        w.from_host(&seg(port, 6000, 1006, 5001, FIN | ACK, b""));
        // The device acknowledges data and FIN: the data counts, the FIN does not.
        w.to_host(&seg(6000, port, 5001, 1007, ACK, b""));
        w.to_host(&seg(6000, port, 5001, 1007, FIN | ACK, b""));
        assert_eq!(opened[0].event, PeerEvent::Opened { port, workload: 0 });
        assert_eq!(
            events(&mut w),
            [
                PeerEvent::Established { port },
                PeerEvent::Sent { port, bytes: 5 },
                PeerEvent::FinSent { port },
                PeerEvent::Acked { port, bytes: 5 },
                PeerEvent::DeviceFinSeen { port },
                PeerEvent::Finished { port },
            ]
        );
        // The payload grew as the host sent; the finished connection is forgotten.
        assert_eq!(payload.first_mismatch(0, b"hello"), None);
        assert_eq!(payload.len(), 5);
        assert_eq!(w.open_connections(), 0);
        assert!(w.resets().is_empty());
    }

    /// A connection still open when serve ends gets a reset the host's stack takes: from the
    /// device's port, at the device's next in-order sequence number, checksums right.
    #[test]
    fn an_open_connection_gets_a_reset_at_the_devices_next_sequence_number() {
        let port = 40002;
        let mut w = WirePeer::new();
        w.from_host(&seg(port, 6000, 1000, 0, SYN, b""));
        w.to_host(&seg(6000, port, 5000, 1001, SYN | ACK, b""));
        w.from_host(&seg(port, 6000, 1001, 5001, ACK, b"hi"));
        w.to_host(&seg(6000, port, 5001, 1003, ACK, b"abc"));
        // A segment beyond a hole does not move the host's next expected number.
        w.to_host(&seg(6000, port, 5010, 1003, ACK, b"zz"));
        // A second connection the device never answered.
        w.from_host(&seg(port + 1, 6000, 77, 0, SYN, b""));
        assert_eq!(w.open_connections(), 2);
        let resets = w.resets();
        let fields = |p: &[u8]| {
            let ip = Ipv4Packet::new_checked(p).unwrap();
            assert!(ip.verify_checksum());
            let (src, dst) = (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
            );
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.verify_checksum(&src, &dst));
            assert!(tcp.rst() && tcp.ack());
            assert_eq!(ip.dst_addr(), Ipv4Address::new(10, 77, 0, 1));
            let seq = tcp.seq_number().0 as u32;
            let ack = tcp.ack_number().0 as u32;
            (tcp.src_port(), tcp.dst_port(), seq, ack)
        };
        assert_eq!(fields(&resets[0]), (6000, port, 5004, 1003));
        assert_eq!(fields(&resets[1]).1, port + 1);
        assert_eq!(fields(&resets[1]).3, 78);
    }

    /// A reset to the SYN is a refused connect; a new SYN on the port is a new connection.
    #[test]
    fn refused_connects_and_reused_ports() {
        let port = 40001;
        let mut w = WirePeer::new();
        w.from_host(&seg(port, 6000, 7, 0, SYN, b""));
        w.from_host(&seg(port, 6000, 7, 0, SYN, b""));
        w.to_host(&seg(6000, port, 0, 8, RST | ACK, b""));
        w.from_host(&seg(port, 6000, 900, 0, SYN, b""));
        // Not TCP, or too short: ignored.
        w.from_host(&[0x45, 0, 0]);
        assert_eq!(
            events(&mut w),
            [
                PeerEvent::Opened { port, workload: 0 },
                PeerEvent::ConnectFailed { port },
                PeerEvent::Finished { port },
                PeerEvent::Opened { port, workload: 1 },
            ]
        );
    }
}
