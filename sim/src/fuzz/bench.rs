//! The fuzz targets that drive the device directly on firmware-core's test bench: `ingress`
//! and `wiring_ops` (built with the `testkit` feature: test builds and the fuzz crate).

use arbitrary::{Arbitrary, Unstructured};
use firmware_core::app::ForumSketch;
use firmware_core::smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use firmware_core::testkit::{Bench, DEVICE_ADDR, PEER_ADDR};
use firmware_core::{DeviceConfig, Policy, TcpClient, TcpServer};

/// One step of the `ingress` target.
#[derive(Debug, Arbitrary)]
enum IngressOp {
    /// Raw bytes as one packet; with `fix`, addresses and checksums are made valid so the
    /// packet reaches the device's sockets.
    Packet { bytes: Vec<u8>, fix: bool },
    /// The peer opens a connection.
    Connect,
    /// The peer sends on its newest connection.
    Send(Vec<u8>),
    /// The peer closes its newest connection.
    Close,
    /// Application loop iterations.
    Loops(u8),
}

/// Points a packet at the device and fixes its checksums (when it parses as IPv4/TCP).
fn aim_at_device(bytes: &mut [u8]) {
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *bytes) else {
        return;
    };
    ip.set_src_addr(PEER_ADDR);
    ip.set_dst_addr(DEVICE_ADDR);
    ip.fill_checksum();
    let (src, dst) = (IpAddress::Ipv4(PEER_ADDR), IpAddress::Ipv4(DEVICE_ADDR));
    if let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) {
        tcp.fill_checksum(&src, &dst);
    }
}

/// The `ingress` target: whatever arrives, the device (both policies) must not panic.
pub fn ingress(data: &[u8]) {
    for policy in [Policy::LEGACY, Policy::FIXED] {
        let mut u = Unstructured::new(data);
        let app = Box::new(ForumSketch::new(6000));
        let mut b = Bench::new(policy, DeviceConfig::for_policy(&policy), app);
        let mut newest = None;
        for _ in 0..64 {
            let Ok(op) = IngressOp::arbitrary(&mut u) else {
                break;
            };
            match op {
                IngressOp::Packet { mut bytes, fix } => {
                    if fix {
                        aim_at_device(&mut bytes);
                    }
                    b.inject(bytes);
                    b.exchange();
                }
                IngressOp::Connect => newest = Some(b.connect(6000)),
                IngressOp::Send(d) => {
                    if let Some(h) = newest {
                        b.peer_send(h, &d);
                    }
                }
                IngressOp::Close => {
                    if let Some(h) = newest {
                        b.peer_close(h);
                    }
                }
                IngressOp::Loops(n) => b.run_app(usize::from(n % 8)),
            }
        }
        b.run_app(5);
    }
}

/// One step of the `wiring_ops` target.
#[derive(Debug, Arbitrary)]
enum WiringOp {
    Connect,
    PeerSend(u8, Vec<u8>),
    PeerClose(u8),
    PeerAbort(u8),
    Accept,
    Available(u8),
    Read(u8),
    ReadInto(u8, u16),
    Connected(u8),
    Write(u8, Vec<u8>),
    Stop(u8),
    Advance(u8),
}

/// The `wiring_ops` target: arbitrary Wiring API sequences against a live peer, both policies.
/// The application may lose data (legacy) but never reads bytes the peer did not send, in an
/// order it did not send them.
pub fn wiring_ops(data: &[u8]) {
    use std::collections::BTreeMap;
    for policy in [Policy::LEGACY, Policy::FIXED] {
        let mut u = Unstructured::new(data);
        let mut b = Bench::new(policy, DeviceConfig::for_policy(&policy), Box::new(Idle));
        let mut server = TcpServer::new(6000);
        let _ = server.begin(&mut b.dev);
        let mut peers = Vec::new();
        let mut clients: Vec<TcpClient> = Vec::new();
        // Per peer port: bytes sent, bytes read by the application.
        let mut sent: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        let mut read: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        let pick = |i: u8, n: usize| (n > 0).then(|| usize::from(i) % n);
        for _ in 0..128 {
            let Ok(op) = WiringOp::arbitrary(&mut u) else {
                break;
            };
            match op {
                WiringOp::Connect => {
                    if peers.len() < 6 {
                        let h = b.connect(6000);
                        let port = b.peer(h).local_endpoint().map_or(0, |e| e.port);
                        peers.push((h, port));
                    }
                }
                WiringOp::PeerSend(i, d) => {
                    if let Some(i) = pick(i, peers.len()) {
                        let (h, port) = peers[i];
                        let n = b.peer(h).send_slice(&d).unwrap_or(0);
                        sent.entry(port).or_default().extend_from_slice(&d[..n]);
                        b.exchange();
                    }
                }
                WiringOp::PeerClose(i) => {
                    if let Some(i) = pick(i, peers.len()) {
                        b.peer_close(peers[i].0);
                    }
                }
                WiringOp::PeerAbort(i) => {
                    if let Some(i) = pick(i, peers.len()) {
                        b.peer(peers[i].0).abort();
                        b.exchange();
                    }
                }
                WiringOp::Accept => {
                    let c = server.available(&mut b.dev);
                    if c.is_open() && clients.len() < 8 {
                        clients.push(c);
                    }
                }
                WiringOp::Available(i) => {
                    if let Some(i) = pick(i, clients.len()) {
                        clients[i].available(&mut b.dev);
                    }
                }
                WiringOp::Read(i) | WiringOp::ReadInto(i, _) => {
                    if let Some(i) = pick(i, clients.len()) {
                        let port = clients[i].conn(&b.dev).map(|c| c.remote.port);
                        let mut buf = vec![0u8; 512];
                        let got = match op {
                            WiringOp::ReadInto(_, n) => {
                                let n = usize::from(n % 512) + 1;
                                clients[i]
                                    .read_into(&mut b.dev, &mut buf[..n])
                                    .map(|k| buf[..k].to_vec())
                            }
                            _ => clients[i].read(&mut b.dev).map(|x| vec![x]),
                        };
                        if let (Some(port), Some(got)) = (port, got) {
                            let r = read.entry(port).or_default();
                            r.extend_from_slice(&got);
                            let s = sent.get(&port).map_or(&[][..], |v| v.as_slice());
                            assert!(
                                s.starts_with(r),
                                "{policy:?}: read bytes that were not sent in this order on port {port}"
                            );
                        }
                    }
                }
                WiringOp::Connected(i) => {
                    if let Some(i) = pick(i, clients.len()) {
                        clients[i].connected(&mut b.dev);
                    }
                }
                WiringOp::Write(i, d) => {
                    if let Some(i) = pick(i, clients.len()) {
                        clients[i].write(&mut b.dev, &d);
                        b.exchange();
                    }
                }
                WiringOp::Stop(i) => {
                    if let Some(i) = pick(i, clients.len()) {
                        clients[i].stop(&mut b.dev);
                        b.exchange();
                    }
                }
                WiringOp::Advance(ms) => b.advance(u64::from(ms % 50)),
            }
        }
    }
}

/// An app that does nothing: `wiring_ops` calls the Wiring API itself.
struct Idle;

impl firmware_core::app::App for Idle {
    fn setup(&mut self, _dev: &mut firmware_core::Device) {}
    fn loop_once(
        &mut self,
        _now: firmware_core::smoltcp::time::Instant,
        _dev: &mut firmware_core::Device,
        _sink: &mut dyn firmware_core::AppEventSink,
    ) {
    }
}
