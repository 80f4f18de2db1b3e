//! The device's receive path in front of smoltcp: Wi-Fi driver and lwIP input as one filter.
//! It implements what smoltcp cannot express: SYNs beyond a full backlog vanish (L5), the
//! stack's immediate answer to a packet waits until the device has looked at the sockets, and
//! an older stack's acceptance of a FIN beyond a sequence hole (R7, [`FinPastHole`]).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, TcpPacket, TcpSeqNumber};

/// A SYN that the filter recognised.
pub(crate) fn syn_source(packet: &[u8]) -> Option<(IpEndpoint, u16)> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    if !tcp.syn() || tcp.ack() || tcp.rst() {
        return None;
    }
    let remote = IpEndpoint::new(IpAddress::Ipv4(ip.src_addr()), tcp.src_port());
    Some((remote, tcp.dst_port()))
}

/// The sequence number of a TCP segment.
pub(crate) fn tcp_seq(packet: &[u8]) -> Option<u32> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(tcp.seq_number().0 as u32)
}

/// R7, the receive path of smoltcp 0.4 (issue #111, fixed in 0.5.0 by fcffa6a): a FIN in a
/// segment that starts beyond the receive window's start (data before it is missing) was
/// accepted. The socket went to CLOSE-WAIT with the FIN taking the sequence number where the
/// hole starts, and the missing data was never delivered.
///
/// smoltcp 0.14 disregards such a FIN, so the rule sits here, in front of it: the segment is
/// rewritten into a bare FIN at the window start (its own payload dropped, as 0.4 did not
/// deliver it either), so the stack enters CLOSE-WAIT exactly as 0.4 did, and every later
/// segment of that connection carrying data or a FIN is dropped (0.4 in CLOSE-WAIT never
/// delivered it). The window start of each connection comes from the HAL
/// (`Hal::expected_seqs`): the peer's initial sequence number plus the in-order bytes taken.
#[derive(Debug, Default)]
pub(crate) struct FinPastHole {
    /// The peer and the next sequence number the stack expects, per connection it may read.
    pub expected: Vec<(IpEndpoint, u32)>,
    /// Peers whose FIN was taken past a hole, the most recent [`FinPastHole::REMEMBERED`].
    closed: VecDeque<IpEndpoint>,
    /// The rewritten segment.
    packet: Vec<u8>,
}

impl FinPastHole {
    /// How many such peers are remembered (their late segments dropped): peers do not reuse a
    /// port for tens of thousands of connections, and retransmissions stop long before.
    const REMEMBERED: usize = 1024;

    /// What the old receive path makes of `packet`: `None` passes it unchanged, an empty slice
    /// drops it, otherwise the rewritten segment.
    fn rewrite(&mut self, packet: &[u8]) -> Option<&[u8]> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if ip.next_header() != IpProtocol::Tcp {
            return None;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        let remote = IpEndpoint::new(IpAddress::Ipv4(ip.src_addr()), tcp.src_port());
        if self.closed.contains(&remote) {
            if tcp.payload().is_empty() && !tcp.fin() {
                return None;
            }
            self.packet.clear();
            return Some(&self.packet);
        }
        if !tcp.fin() || tcp.syn() || tcp.rst() {
            return None;
        }
        let &(_, expected) = self.expected.iter().find(|(r, _)| *r == remote)?;
        let seq = tcp.seq_number().0 as u32;
        if seq.wrapping_sub(expected) as i32 <= 0 {
            return None;
        }
        let (ip_len, tcp_len) = (ip.header_len() as usize, tcp.header_len() as usize);
        let (src, dst) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        self.packet.clear();
        self.packet.extend_from_slice(&packet[..ip_len + tcp_len]);
        let mut ip = Ipv4Packet::new_unchecked(&mut self.packet[..]);
        ip.set_total_len((ip_len + tcp_len) as u16);
        ip.fill_checksum();
        let mut tcp = TcpPacket::new_unchecked(&mut self.packet[ip_len..]);
        tcp.set_seq_number(TcpSeqNumber(expected as i32));
        tcp.fill_checksum(&src, &dst);
        if self.closed.len() == Self::REMEMBERED {
            self.closed.pop_front();
        }
        self.closed.push_back(remote);
        Some(&self.packet)
    }
}

/// Wraps the host's device for one ingress step. Every SYN is held back (into `held_syn`), so
/// the device can decide with its whole state whether the SYN is dropped (L5),
/// needs a reclaimed pool slot first (lwIP `tcp_alloc`), or passes; it then comes back through
/// `reinject`. Other packets pass straight through.
///
/// What the stack sends while it processes a packet (an immediate ACK, a SYN-ACK) goes to
/// `held_replies`; the device sends it after observing the sockets. lwIP hands received data to
/// the application's callback before it acknowledges anything, so data that arrives after
/// `stop()` can be answered with RST instead of an ACK (F5; Linux does the same).
pub(crate) struct IngressFilter<'a, D: phy::Device + ?Sized> {
    pub inner: &'a mut D,
    pub held_syn: &'a mut Option<(Vec<u8>, IpEndpoint, u16)>,
    pub reinject: &'a mut Option<Vec<u8>>,
    pub scratch: &'a mut Vec<u8>,
    pub held_replies: &'a mut Vec<Vec<u8>>,
    /// R7, when the policy accepts a FIN past a hole.
    pub fin_past_hole: Option<&'a mut FinPastHole>,
}

/// A transmit token that keeps the packet in `held_replies`.
pub(crate) struct HeldTx<'a>(&'a mut Vec<Vec<u8>>);

impl TxToken for HeldTx<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut packet = alloc::vec![0; len];
        let result = f(&mut packet);
        self.0.push(packet);
        result
    }
}

/// The endpoint a packet the device sends goes to.
pub(crate) fn destination(packet: &[u8]) -> Option<IpEndpoint> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(IpEndpoint::new(
        IpAddress::Ipv4(ip.dst_addr()),
        tcp.dst_port(),
    ))
}

/// The receive token of the filter: a re-injected SYN, or the host's packet checked in place.
pub(crate) enum FilterRx<'a, T: RxToken> {
    Reinjected(&'a [u8]),
    Host(
        T,
        &'a mut Option<(Vec<u8>, IpEndpoint, u16)>,
        Option<&'a mut FinPastHole>,
    ),
}

impl<T: RxToken> RxToken for FilterRx<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self {
            FilterRx::Reinjected(packet) => f(packet),
            FilterRx::Host(token, held, fin) => token.consume(|packet| match syn_source(packet) {
                Some((remote, port)) => {
                    *held = Some((packet.to_vec(), remote, port));
                    // The stack sees an empty frame, drops it as malformed, and the device
                    // decides about the held SYN before anything else arrives.
                    f(&[])
                }
                None => match fin.and_then(|rule| rule.rewrite(packet)) {
                    Some(rewritten) => f(rewritten),
                    None => f(packet),
                },
            }),
        }
    }
}

impl<D: phy::Device + ?Sized> phy::Device for IngressFilter<'_, D> {
    type RxToken<'b>
        = FilterRx<'b, D::RxToken<'b>>
    where
        Self: 'b;
    type TxToken<'b>
        = HeldTx<'b>
    where
        Self: 'b;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Self {
            inner,
            held_syn,
            reinject,
            scratch,
            held_replies,
            fin_past_hole,
        } = self;
        if let Some(packet) = reinject.take() {
            **scratch = packet;
            return Some((
                FilterRx::Reinjected(scratch.as_slice()),
                HeldTx(held_replies),
            ));
        }
        let (rx, _) = inner.receive(timestamp)?;
        Some((
            FilterRx::Host(rx, held_syn, fin_past_hole.as_deref_mut()),
            HeldTx(held_replies),
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        Some(HeldTx(self.held_replies))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_source_never_panics_on_garbage() {
        let mut bytes = [0u8; 64];
        for seed in 0..2000u32 {
            let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
            for b in bytes.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            // Make about half of them look like IPv4 so deeper parsing is reached.
            if seed % 2 == 0 {
                bytes[0] = 0x45;
                bytes[9] = 6;
            }
            let len = (seed as usize) % bytes.len();
            let _ = syn_source(&bytes[..len]);
        }
    }
}
