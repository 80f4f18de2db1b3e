//! The device's receive path in front of smoltcp: Wi-Fi driver and lwIP input as one filter.
//! It implements the one rule smoltcp cannot express: SYNs beyond a full backlog vanish (L5).

use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, RxToken};
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

/// Wraps the host's device for one ingress step.
pub(crate) struct IngressFilter<'a, D: phy::Device + ?Sized, F: Fn(IpEndpoint, u16) -> bool> {
    pub inner: &'a mut D,
    pub drop_syn: F,
    /// SYNs to this port are held back once (into `deferred`) so the HAL can reclaim a pool
    /// slot for them first, as lwIP's allocator does.
    pub defer_syn_port: Option<u16>,
    pub deferred: &'a mut Option<Vec<u8>>,
    /// A packet to hand to the stack before any new one (a deferred SYN coming back).
    pub reinject: &'a mut Option<Vec<u8>>,
    pub scratch: &'a mut Vec<u8>,
    pub dropped: &'a mut Vec<IpEndpoint>,
}

pub(crate) struct ScratchRx<'a>(&'a [u8]);

impl phy::RxToken for ScratchRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

impl<D: phy::Device + ?Sized, F: Fn(IpEndpoint, u16) -> bool> phy::Device
    for IngressFilter<'_, D, F>
{
    type RxToken<'b>
        = ScratchRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = D::TxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if let Some(packet) = self.reinject.take() {
            *self.scratch = packet;
            let Self { inner, scratch, .. } = self;
            let tx = inner.transmit(timestamp)?;
            return Some((ScratchRx(scratch.as_slice()), tx));
        }
        loop {
            let (rx, _tx) = self.inner.receive(timestamp)?;
            let scratch = &mut *self.scratch;
            let drop_syn = &self.drop_syn;
            let defer_port = if self.deferred.is_none() {
                self.defer_syn_port
            } else {
                None
            };
            let deferred = &mut *self.deferred;
            let dropped = rx.consume(|packet| match syn_source(packet) {
                Some((remote, port)) if drop_syn(remote, port) => Some(Some(remote)),
                Some((_, port)) if Some(port) == defer_port => {
                    *deferred = Some(packet.to_vec());
                    Some(None)
                }
                _ => {
                    scratch.clear();
                    scratch.extend_from_slice(packet);
                    None
                }
            });
            match dropped {
                Some(Some(remote)) => self.dropped.push(remote),
                // Deferred: stop here so the HAL can make room before the SYN is processed.
                Some(None) => return None,
                None => break,
            }
        }
        // The reply token is taken afresh: the one paired with the consumed packet is gone.
        let Self { inner, scratch, .. } = self;
        let tx = inner.transmit(timestamp)?;
        Some((ScratchRx(scratch.as_slice()), tx))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
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
