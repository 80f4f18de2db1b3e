//! Bodies of the cargo-fuzz targets in `fuzz/`, kept here so `cargo test` on stable replays the
//! committed corpora and crash files through exactly the same code.
//!
//! - [`scenario`]: an arbitrary scenario under the fixed rules; silent loss is a failure.
//! - [`scenario_legacy`]: the same under the legacy rules; silent loss is the bug the fuzzer
//!   must find (it proves the search reaches FIN-before-drain).
//! - [`ingress`]: raw and mutated packets into the device; it must not panic.
//! - [`wiring_ops`]: arbitrary Wiring API call sequences against a live peer; the application
//!   may only ever read a prefix of what the peer sent.
//! - [`scenario_file`]: arbitrary text into the scenario parser; errors, never panics.

use arbitrary::{Arbitrary, Unstructured};
use firmware_core::app::ForumSketch;
use firmware_core::smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};
use firmware_core::testkit::{Bench, DEVICE_ADDR, PEER_ADDR};
use firmware_core::{DeviceConfig, Policy, TcpClient, TcpServer};

use crate::inject::Injector;
use crate::link::LinkParams;
use crate::oracle::Summary;
use crate::peer::{ProgramKind, Workload};
use crate::scenario::{self, AppName, DeviceTable, LinkOverrides, LinkTable, ScenarioFile};
use crate::RunOptions;

/// One peer workload of a fuzzed scenario (small, so a run takes well under a millisecond).
#[derive(Debug, Clone, Arbitrary)]
pub struct FuzzWorkload {
    pub kind: u8,
    pub payload_len: u8,
    pub count: u8,
    pub burst: u8,
    pub interval_ms: u16,
    pub close_delay_us: u16,
    pub hold_ms: u16,
    pub stream_kib: u8,
}

/// A fuzzed scenario: every field maps onto a scenario-file field.
#[derive(Debug, Clone, Arbitrary)]
pub struct FuzzScenario {
    pub seed: u64,
    pub app: u8,
    pub preset: u8,
    pub loop_period_us: u16,
    pub slow_loop_every: u8,
    pub worker_delay_max_us: u16,
    pub loss_per_mille: u8,
    pub jitter_us: u16,
    pub reorder_per_mille: u8,
    /// Bit i applies `Injector::ALL[i]`.
    pub injectors: u8,
    pub workloads: Vec<FuzzWorkload>,
}

impl FuzzScenario {
    /// The scenario file this input stands for (what `fwsim from-crash` writes).
    pub fn to_file(&self, policy: &str) -> ScenarioFile {
        let app = match self.app % 4 {
            0 => AppName::Forum,
            1 => AppName::MultiClient,
            2 => AppName::ServerCloses,
            _ => AppName::Echo,
        };
        let mut peer: Vec<Workload> = self
            .workloads
            .iter()
            .take(3)
            .map(|w| {
                let kind = match w.kind % 4 {
                    0 => ProgramKind::Nc,
                    1 => ProgramKind::Hold,
                    2 => ProgramKind::Stream,
                    _ => ProgramKind::Reset,
                };
                let payload: String = (0..(w.payload_len % 48) + 1)
                    .map(|i| format!("{:02x}", i.wrapping_mul(37).wrapping_add(w.payload_len)))
                    .collect();
                Workload {
                    kind,
                    payload_hex: payload,
                    stream_bytes: 1024 * (u64::from(w.stream_kib % 16) + 1),
                    count: u32::from(w.count % 4) + 1,
                    burst: u32::from(w.burst % 3) + 1,
                    start_ms: 100,
                    interval_ms: u64::from(w.interval_ms % 200) + 20,
                    close_delay_us: u64::from(w.close_delay_us % 2000),
                    hold_ms: u64::from(w.hold_ms % 800),
                    // Short tails keep an execution well under a millisecond.
                    linger_ms: 500,
                    connect_timeout_ms: 5_000,
                    ..Workload::default()
                }
            })
            .collect();
        if peer.is_empty() {
            peer.push(Workload::default());
        }
        ScenarioFile {
            name: "fuzz".into(),
            description: String::new(),
            seed: self.seed,
            backend: scenario::Backend::Loopback,
            max_duration_ms: 30_000,
            drain_ms: 500,
            device: DeviceTable {
                app,
                port: 6000,
                policy: policy.into(),
                loop_period_us: u64::from(self.loop_period_us % 5000) + 500,
                loop_jitter_us: 6,
                slow_loop_every: u64::from(self.slow_loop_every % 100),
                slow_loop_us: 3000,
                loop_stall_on: Vec::new(),
                loop_stall_us: 0,
                loop_stall_until_close: false,
                loop_stall_max_ms: 1000,
                pool_size: None,
                pool_reserved: None,
                backlog: None,
                wiring_buffer_size: None,
                rx_buffer_size: None,
                tx_buffer_size: None,
                worker_delay_min_us: Some(50),
                worker_delay_max_us: Some(u64::from(self.worker_delay_max_us % 3000) + 50),
                ack_delay_ms: None,
                slots: 5,
                inactivity_timeout_ms: 30_000,
                pattern_hex: String::new(),
                close_after: 10,
            },
            link: LinkTable {
                preset: LinkParams::PRESETS[usize::from(self.preset) % 4].into(),
                both: LinkOverrides {
                    loss_p: Some(f64::from(self.loss_per_mille % 50) / 1000.0),
                    jitter_us: Some(u64::from(self.jitter_us % 5000)),
                    reorder: Some(f64::from(self.reorder_per_mille % 20) / 1000.0),
                    ..LinkOverrides::default()
                },
                uplink: LinkOverrides::default(),
                downlink: LinkOverrides::default(),
            },
            peer,
            turmoil_tick_us: crate::scenario::default_turmoil_tick(),
            fault: Vec::new(),
            inject: Injector::from_mask(self.injectors),
        }
    }
}

/// Inputs shorter than this are not scenarios.
pub const MIN_SCENARIO_INPUT: usize = 16;

/// What one fuzzed scenario did.
#[derive(Debug)]
pub enum ScenarioOutcome {
    /// The input was too short to describe a scenario.
    Rejected,
    /// The oracle found nothing.
    Clean(Summary),
    /// Silent loss; `toml` is the scenario that reproduces it.
    SilentLoss { summary: Summary, toml: String },
}

/// Runs the scenario `data` stands for under `policy` (`"legacy"` or `"fixed"`).
pub fn run_scenario(data: &[u8], policy: &str) -> ScenarioOutcome {
    // `arbitrary` turns short inputs into all-zero fields, which already describe the forum
    // scenario: an input has to say something before it counts as a scenario.
    if data.len() < MIN_SCENARIO_INPUT {
        return ScenarioOutcome::Rejected;
    }
    let Ok(input) = FuzzScenario::arbitrary(&mut Unstructured::new(data)) else {
        return ScenarioOutcome::Rejected;
    };
    let file = input.to_file(policy);
    let config = match scenario::resolve("fuzz", file.clone()) {
        Ok(c) => c,
        // A fuzzed scenario is always valid; an error here is a harness bug.
        Err(e) => panic!("fuzz scenario does not resolve: {e}"),
    };
    let report = match crate::run(&config, RunOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("fuzz scenario does not run: {e}"),
    };
    if report.summary.violations() > 0 {
        let toml = toml::to_string(&file).unwrap_or_else(|e| format!("# not serialisable: {e}"));
        ScenarioOutcome::SilentLoss {
            summary: report.summary,
            toml,
        }
    } else {
        ScenarioOutcome::Clean(report.summary)
    }
}

/// The scenario file a `scenario`/`scenario_legacy` input stands for, as TOML, or why not.
pub fn input_to_toml(data: &[u8], policy: &str) -> Result<String, String> {
    if data.len() < MIN_SCENARIO_INPUT {
        return Err(format!(
            "input has {} bytes; scenarios need {MIN_SCENARIO_INPUT}",
            data.len()
        ));
    }
    let input = FuzzScenario::arbitrary(&mut Unstructured::new(data)).map_err(|e| e.to_string())?;
    toml::to_string(&input.to_file(policy)).map_err(|e| e.to_string())
}

/// The `scenario` target: the fixed rules never lose silently.
pub fn scenario(data: &[u8]) {
    if let ScenarioOutcome::SilentLoss { summary, toml } = run_scenario(data, "fixed") {
        panic!(
            "silent loss under the fixed rules: {summary:?}\nscenario (save it and run `fwsim run FILE`):\n{toml}"
        );
    }
}

/// The `scenario_legacy` target: a silent loss under the legacy rules is the finding.
pub fn scenario_legacy(data: &[u8]) {
    if let ScenarioOutcome::SilentLoss { summary, toml } = run_scenario(data, "legacy") {
        panic!(
            "silent loss under the legacy rules (expected: the field bug): {summary:?}\nscenario:\n{toml}"
        );
    }
}

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

/// The `scenario_file` target: any text into the scenario parser gives a scenario or an error.
pub fn scenario_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = scenario::parse("fuzz.toml", text, &[]);
        let _ = scenario::parse(
            "fuzz.toml",
            text,
            &["device.policy=fixed".into(), "peer.0.count=2".into()],
        );
    }
}
