//! The device's receive path in front of smoltcp: Wi-Fi driver and lwIP input as one filter.
//! It implements what smoltcp cannot express: SYNs beyond a full backlog vanish (L5), and the
//! stack's immediate answer to a packet waits until the device has looked at the sockets.

use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, TcpPacket};

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
    Host(T, &'a mut Option<(Vec<u8>, IpEndpoint, u16)>),
}

impl<T: RxToken> RxToken for FilterRx<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self {
            FilterRx::Reinjected(packet) => f(packet),
            FilterRx::Host(token, held) => token.consume(|packet| match syn_source(packet) {
                Some((remote, port)) => {
                    *held = Some((packet.to_vec(), remote, port));
                    // The stack sees an empty frame, drops it as malformed, and the device
                    // decides about the held SYN before anything else arrives.
                    f(&[])
                }
                None => f(packet),
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
        } = self;
        if let Some(packet) = reinject.take() {
            **scratch = packet;
            return Some((
                FilterRx::Reinjected(scratch.as_slice()),
                HeldTx(held_replies),
            ));
        }
        let (rx, _) = inner.receive(timestamp)?;
        Some((FilterRx::Host(rx, held_syn), HeldTx(held_replies)))
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
