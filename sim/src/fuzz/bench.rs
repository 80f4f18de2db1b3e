//! The fuzz targets that drive the device directly on firmware-core's test bench: `ingress`
//! and `wiring_ops` (built with the `testkit` feature: test builds and the fuzz crate).

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use firmware_core::app::ForumSketch;
use firmware_core::smoltcp::iface::SocketHandle;
use firmware_core::smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use firmware_core::testkit::{bench_config, Bench, DEVICE_ADDR, PEER_ADDR};
use firmware_core::{Policy, TcpClient, TcpServer};

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
        let mut b = Bench::new(policy, bench_config(&policy), app);
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
    for policy in [Policy::LEGACY, Policy::FIXED] {
        let mut u = Unstructured::new(data);
        let mut run = WiringRun::new(policy);
        for _ in 0..128 {
            let Ok(op) = WiringOp::arbitrary(&mut u) else {
                break;
            };
            run.apply(op);
        }
    }
}

/// Index `i` into a list of `n` (any byte picks something), or `None` for an empty list.
fn pick(i: u8, n: usize) -> Option<usize> {
    (n > 0).then(|| usize::from(i) % n)
}

/// One `wiring_ops` run under one policy: the bench, the application's server and clients,
/// the peer's connections, and what went each way.
struct WiringRun {
    policy: Policy,
    b: Bench,
    server: TcpServer,
    /// Peer connections: socket handle and local port.
    peers: Vec<(SocketHandle, u16)>,
    /// Connections the application accepted.
    clients: Vec<TcpClient>,
    /// Per peer port: bytes sent.
    sent: BTreeMap<u16, Vec<u8>>,
    /// Per peer port: bytes read by the application.
    read: BTreeMap<u16, Vec<u8>>,
}

impl WiringRun {
    /// A bench under `policy` with an idle app and a server listening on port 6000.
    fn new(policy: Policy) -> WiringRun {
        let mut b = Bench::new(policy, bench_config(&policy), Box::new(Idle));
        let mut server = TcpServer::new(6000);
        let _ = server.begin(&mut b.dev);
        WiringRun {
            policy,
            b,
            server,
            peers: Vec::new(),
            clients: Vec::new(),
            sent: BTreeMap::new(),
            read: BTreeMap::new(),
        }
    }

    /// Carries out one step.
    fn apply(&mut self, op: WiringOp) {
        let b = &mut self.b;
        match op {
            WiringOp::Connect => {
                if self.peers.len() < 6 {
                    let h = b.connect(6000);
                    let port = b.peer(h).local_endpoint().map_or(0, |e| e.port);
                    self.peers.push((h, port));
                }
            }
            WiringOp::PeerSend(i, d) => self.peer_send(i, &d),
            WiringOp::PeerClose(i) => {
                if let Some(i) = pick(i, self.peers.len()) {
                    b.peer_close(self.peers[i].0);
                }
            }
            WiringOp::PeerAbort(i) => {
                if let Some(i) = pick(i, self.peers.len()) {
                    b.peer(self.peers[i].0).abort();
                    b.exchange();
                }
            }
            WiringOp::Accept => {
                let c = self.server.available(&mut b.dev);
                if c.is_open() && self.clients.len() < 8 {
                    self.clients.push(c);
                }
            }
            WiringOp::Read(i) => self.app_read(i, None),
            WiringOp::ReadInto(i, n) => self.app_read(i, Some(n)),
            WiringOp::Available(i)
            | WiringOp::Connected(i)
            | WiringOp::Write(i, _)
            | WiringOp::Stop(i) => {
                if let Some(i) = pick(i, self.clients.len()) {
                    client_call(b, &mut self.clients[i], op);
                }
            }
            WiringOp::Advance(ms) => b.advance(u64::from(ms % 50)),
        }
    }

    /// The peer's connection `i` sends `d` (what its stack takes of it).
    fn peer_send(&mut self, i: u8, d: &[u8]) {
        if let Some(i) = pick(i, self.peers.len()) {
            let (h, port) = self.peers[i];
            let n = self.b.peer(h).send_slice(d).unwrap_or(0);
            self.sent
                .entry(port)
                .or_default()
                .extend_from_slice(&d[..n]);
            self.b.exchange();
        }
    }

    /// The application reads from its client `i`: one byte (`read`), or up to `into` bytes
    /// (`read_into`); what it read so far on a port must be a prefix of what was sent on it.
    fn app_read(&mut self, i: u8, into: Option<u16>) {
        let Some(i) = pick(i, self.clients.len()) else {
            return;
        };
        let dev = &mut self.b.dev;
        let client = &mut self.clients[i];
        let port = client.conn(dev).map(|c| c.remote.port);
        let mut buf = vec![0u8; 512];
        let got = match into {
            Some(n) => {
                let n = usize::from(n % 512) + 1;
                client
                    .read_into(dev, &mut buf[..n])
                    .map(|k| buf[..k].to_vec())
            }
            None => client.read(dev).map(|x| vec![x]),
        };
        if let (Some(port), Some(got)) = (port, got) {
            let r = self.read.entry(port).or_default();
            r.extend_from_slice(&got);
            let s = self.sent.get(&port).map_or(&[][..], |v| v.as_slice());
            assert!(
                s.starts_with(r),
                "{:?}: read bytes that were not sent in this order on port {port}",
                self.policy
            );
        }
    }
}

/// The Wiring calls on one client that only need the client: `available`, `connected`,
/// `write` and `stop` (the last two let the bench exchange packets).
fn client_call(b: &mut Bench, client: &mut TcpClient, op: WiringOp) {
    match op {
        WiringOp::Available(_) => {
            client.available(&mut b.dev);
        }
        WiringOp::Connected(_) => {
            client.connected(&mut b.dev);
        }
        WiringOp::Write(_, d) => {
            client.write(&mut b.dev, &d);
            b.exchange();
        }
        WiringOp::Stop(_) => {
            client.stop(&mut b.dev);
            b.exchange();
        }
        _ => {}
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
