//! The peer's side of each connection as the wire shows it, as [`PeerEvent`]s for the oracle:
//! live mode has no peer program of its own, so `serve`'s report judges what the host's TCP
//! sent (SYN, in-order data, FIN, RST) and what reached it from the device (SYN-ACK, ACKs, FIN,
//! RST), taken where packets cross the TUN interface. A client's own records, joined by
//! [`super::join`], say what the client's OS reported instead.

use std::collections::BTreeMap;
use std::rc::Rc;

use firmware_core::smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket};

use crate::peer::{Payload, PeerEvent};

/// One connection the host opened, as the wire shows it.
#[derive(Debug, Clone)]
struct WireConn {
    workload: usize,
    /// The host's initial sequence number.
    isn: u32,
    /// The next in-order sequence number of the host's data.
    next_seq: u32,
    /// In-order bytes the host sent.
    sent: u64,
    acked: u64,
    syn_ack_seen: bool,
    established: bool,
    fin_sent: bool,
    device_fin_seen: bool,
    finished: bool,
}

/// The wire's view of the host's connections to the device, keyed by the host's port.
#[derive(Debug, Default)]
pub struct WirePeer {
    conns: BTreeMap<u16, WireConn>,
    /// Every connection's in-order data (its payload, for the oracle's corruption check), by
    /// workload: one workload per connection.
    payloads: Vec<Vec<u8>>,
    events: Vec<PeerEvent>,
}

/// A TCP segment's fields the view needs.
struct Seg<'a> {
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
            self.syn(port, s.seq);
            return;
        }
        let Some(c) = self.conns.get_mut(&port).filter(|c| !c.finished) else {
            return;
        };
        if s.rst {
            self.events.push(PeerEvent::ResetSent { port });
            self.finish(port);
            return;
        }
        if s.ack && c.syn_ack_seen && !c.established {
            c.established = true;
            self.events.push(PeerEvent::Established { port });
        }
        // New in-order bytes only: retransmissions and segments beyond a hole add nothing.
        let offset = c.next_seq.wrapping_sub(s.seq) as usize;
        if offset < s.payload.len() {
            let new = &s.payload[offset..];
            c.next_seq = c.next_seq.wrapping_add(new.len() as u32);
            c.sent += new.len() as u64;
            self.payloads[c.workload].extend_from_slice(new);
            self.events.push(PeerEvent::Sent {
                port,
                bytes: new.len(),
            });
        }
        let fin_seq = s.seq.wrapping_add(s.payload.len() as u32);
        if s.fin && fin_seq == c.next_seq && !c.fin_sent {
            c.fin_sent = true;
            self.events.push(PeerEvent::FinSent { port });
        }
        self.finish_if_closed(port);
    }

    /// A SYN from `port`: a new connection unless it repeats the open one's.
    fn syn(&mut self, port: u16, isn: u32) {
        if let Some(c) = self.conns.get(&port) {
            if !c.finished && c.isn == isn {
                return;
            }
            if !c.finished {
                // The port was taken for a new connection: the old one is over for the host.
                self.finish(port);
            }
        }
        let workload = self.payloads.len();
        self.payloads.push(Vec::new());
        self.conns.insert(
            port,
            WireConn {
                workload,
                isn,
                next_seq: isn.wrapping_add(1),
                sent: 0,
                acked: 0,
                syn_ack_seen: false,
                established: false,
                fin_sent: false,
                device_fin_seen: false,
                finished: false,
            },
        );
        self.events.push(PeerEvent::Opened { port, workload });
    }

    /// A packet of the device that reached the host.
    pub fn to_host(&mut self, packet: &[u8]) {
        let Some(s) = segment(packet) else { return };
        let port = s.dst_port;
        let Some(c) = self.conns.get_mut(&port).filter(|c| !c.finished) else {
            return;
        };
        if s.rst {
            self.events.push(if c.established {
                PeerEvent::ResetSeen { port }
            } else {
                PeerEvent::ConnectFailed { port }
            });
            self.finish(port);
            return;
        }
        if s.syn && s.ack {
            c.syn_ack_seen = true;
        }
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
                self.events.push(PeerEvent::Acked {
                    port,
                    bytes: acked - c.acked,
                });
                c.acked = acked;
            }
        }
        if s.fin && !c.device_fin_seen {
            c.device_fin_seen = true;
            self.events.push(PeerEvent::DeviceFinSeen { port });
        }
        self.finish_if_closed(port);
    }

    /// Both sides closed: the connection is over for the host.
    fn finish_if_closed(&mut self, port: u16) {
        if self
            .conns
            .get(&port)
            .is_some_and(|c| c.fin_sent && c.device_fin_seen && !c.finished)
        {
            self.finish(port);
        }
    }

    fn finish(&mut self, port: u16) {
        if let Some(c) = self.conns.get_mut(&port) {
            c.finished = true;
            self.events.push(PeerEvent::Finished { port });
        }
    }

    /// Moves the events since the last call into `out`, oldest first.
    pub fn take_events(&mut self, out: &mut Vec<PeerEvent>) {
        out.append(&mut self.events);
    }

    /// Each connection's payload (what the host sent in order), by workload index.
    pub fn payloads(&self) -> Vec<Payload> {
        self.payloads
            .iter()
            .map(|p| Payload::Bytes(Rc::from(p.as_slice())))
            .collect()
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
        out
    }

    /// An `nc`-shaped connection: the view reports what the host's stack saw, once each.
    #[test]
    fn a_connection_reads_off_the_wire_as_peer_events() {
        let port = 40000;
        let mut w = WirePeer::new();
        w.from_host(&seg(port, 6000, 1000, 0, SYN, b""));
        w.to_host(&seg(6000, port, 5000, 1001, SYN | ACK, b""));
        w.from_host(&seg(port, 6000, 1001, 5001, ACK, b""));
        w.from_host(&seg(port, 6000, 1001, 5001, ACK, b"hello"));
        // A retransmission adds nothing; the FIN comes in order after the data.
        w.from_host(&seg(port, 6000, 1001, 5001, ACK, b"hello"));
        w.from_host(&seg(port, 6000, 1006, 5001, FIN | ACK, b""));
        // The device acknowledges data and FIN: the data counts, the FIN does not.
        w.to_host(&seg(6000, port, 5001, 1007, ACK, b""));
        w.to_host(&seg(6000, port, 5001, 1007, FIN | ACK, b""));
        assert_eq!(
            events(&mut w),
            [
                PeerEvent::Opened { port, workload: 0 },
                PeerEvent::Established { port },
                PeerEvent::Sent { port, bytes: 5 },
                PeerEvent::FinSent { port },
                PeerEvent::Acked { port, bytes: 5 },
                PeerEvent::DeviceFinSeen { port },
                PeerEvent::Finished { port },
            ]
        );
        assert_eq!(w.payloads(), [Payload::Bytes(Rc::from(&b"hello"[..]))]);
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
