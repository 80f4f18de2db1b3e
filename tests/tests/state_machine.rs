//! proptest-state-machine: a reference model of the Wiring API against the firmware core on
//! smoltcp, under the fixed rules. Per connection the model knows what the peer sent, whether it
//! sent FIN (end of stream) or RST, and whether the application accepted it. Operations: peer
//! connect, send, FIN, RST, two segments delivered in reverse order, data and FIN with the FIN
//! first; application accept, connected, drain; time. After every step the application has read
//! a prefix of what was sent; `connected()` holds while anything is unread (F2); a drain reads
//! everything, also after the FIN or with reordered segments (F1, F7), and then reports the end
//! of a closed stream. Case counts: `PROPTEST_CASES=N`.

use std::collections::BTreeMap;

use firmware_core::app::App;
use firmware_core::smoltcp::iface::SocketHandle;
use firmware_core::testkit::{bench_config, Bench};
use firmware_core::{AppEventSink, Device, Policy, TcpClient, TcpServer};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const PORT: u16 = 6000;
const MAX_CONNS: usize = 4;

#[derive(Debug, Clone, Default)]
struct RefConn {
    sent: Vec<u8>,
    fin: bool,
    reset: bool,
    accepted: bool,
}

impl RefConn {
    fn open(&self) -> bool {
        !self.fin && !self.reset
    }
}

#[derive(Debug, Clone, Default)]
struct RefWorld {
    conns: Vec<RefConn>,
}

#[derive(Debug, Clone)]
enum Op {
    Connect,
    Send(usize, Vec<u8>),
    /// Two segments; the second reaches the device first.
    SendReordered(usize, Vec<u8>, Vec<u8>),
    Fin(usize),
    /// Data, then FIN; the FIN reaches the device first (smoltcp #111's shape).
    SendFinReordered(usize, Vec<u8>),
    Rst(usize),
    Accept,
    Connected(usize),
    Drain(usize),
    Advance(u64),
}

struct WiringModel;

impl ReferenceStateMachine for WiringModel {
    type State = RefWorld;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<RefWorld> {
        Just(RefWorld::default()).boxed()
    }

    fn transitions(state: &RefWorld) -> BoxedStrategy<Op> {
        // Only operations whose preconditions hold, so no case is rejected.
        let pick = |pred: &dyn Fn(&RefConn) -> bool| -> Vec<usize> {
            (0..state.conns.len())
                .filter(|&i| pred(&state.conns[i]))
                .collect()
        };
        let open = pick(&|c| c.open() && c.sent.len() < 2600);
        let accepted = pick(&|c| c.accepted);
        let data = || proptest::collection::vec(any::<u8>(), 1..200);
        let mut ops: Vec<(u32, BoxedStrategy<Op>)> =
            vec![(1, (1u64..30).prop_map(Op::Advance).boxed())];
        if state.conns.len() < MAX_CONNS {
            ops.push((2, Just(Op::Connect).boxed()));
        }
        if state.conns.iter().any(|c| !c.accepted) {
            ops.push((2, Just(Op::Accept).boxed()));
        }
        if !open.is_empty() {
            let i = || prop::sample::select(open.clone());
            ops.push((4, (i(), data()).prop_map(|(i, d)| Op::Send(i, d)).boxed()));
            ops.push((
                2,
                (i(), data(), data())
                    .prop_map(|(i, a, b)| Op::SendReordered(i, a, b))
                    .boxed(),
            ));
            ops.push((1, i().prop_map(Op::Fin).boxed()));
            ops.push((
                1,
                (i(), data())
                    .prop_map(|(i, d)| Op::SendFinReordered(i, d))
                    .boxed(),
            ));
            ops.push((1, i().prop_map(Op::Rst).boxed()));
        }
        if !accepted.is_empty() {
            let i = || prop::sample::select(accepted.clone());
            ops.push((2, i().prop_map(Op::Connected).boxed()));
            ops.push((2, i().prop_map(Op::Drain).boxed()));
        }
        proptest::strategy::Union::new_weighted(ops).boxed()
    }

    fn preconditions(state: &RefWorld, op: &Op) -> bool {
        let conn = |i: usize| state.conns.get(i);
        // Keep each connection within the device's window plus the peer's buffer.
        let fits =
            |i: usize, n: usize| conn(i).is_some_and(|c| c.open() && c.sent.len() + n <= 3000);
        match op {
            Op::Connect => state.conns.len() < MAX_CONNS,
            Op::Send(i, d) | Op::SendFinReordered(i, d) => fits(*i, d.len()),
            Op::SendReordered(i, a, b) => fits(*i, a.len() + b.len()),
            Op::Fin(i) | Op::Rst(i) => conn(*i).is_some_and(RefConn::open),
            Op::Accept => state.conns.iter().any(|c| !c.accepted),
            Op::Connected(i) | Op::Drain(i) => conn(*i).is_some_and(|c| c.accepted),
            Op::Advance(_) => true,
        }
    }

    fn apply(mut state: RefWorld, op: &Op) -> RefWorld {
        match op {
            Op::Connect => state.conns.push(RefConn::default()),
            Op::Send(i, d) => state.conns[*i].sent.extend_from_slice(d),
            Op::SendReordered(i, a, b) => {
                state.conns[*i].sent.extend_from_slice(a);
                state.conns[*i].sent.extend_from_slice(b);
            }
            Op::Fin(i) => state.conns[*i].fin = true,
            Op::SendFinReordered(i, d) => {
                state.conns[*i].sent.extend_from_slice(d);
                state.conns[*i].fin = true;
            }
            Op::Rst(i) => state.conns[*i].reset = true,
            Op::Accept => {
                // The accept queue is FIFO in handshake order, which is connect order here; a
                // reset connection is handed out too (F3: exactly once, with its data).
                if let Some(c) = state.conns.iter_mut().find(|c| !c.accepted) {
                    c.accepted = true;
                }
            }
            Op::Connected(_) | Op::Drain(_) | Op::Advance(_) => {}
        }
        state
    }
}

struct Idle;
impl App for Idle {
    fn setup(&mut self, _dev: &mut Device) {}
    fn loop_once(
        &mut self,
        _n: firmware_core::smoltcp::time::Instant,
        _d: &mut Device,
        _s: &mut dyn AppEventSink,
    ) {
    }
}

struct Sut {
    bench: Bench,
    server: TcpServer,
    peers: Vec<SocketHandle>,
    clients: Vec<TcpClient>,
    /// What the application read, per connection index.
    read: BTreeMap<usize, Vec<u8>>,
}

impl Sut {
    fn read_available(&mut self, i: usize) {
        let mut buf = [0u8; 256];
        while let Some(n) = self.clients[i].read_into(&mut self.bench.dev, &mut buf) {
            self.read.entry(i).or_default().extend_from_slice(&buf[..n]);
        }
    }
}

impl Sut {
    fn new(policy: Policy) -> Sut {
        let mut bench = Bench::new(policy, bench_config(&policy), Box::new(Idle));
        let mut server = TcpServer::new(PORT);
        server.begin(&mut bench.dev).expect("listen");
        Sut {
            bench,
            server,
            peers: Vec::new(),
            clients: Vec::new(),
            read: BTreeMap::new(),
        }
    }

    fn read_len(&self, i: usize) -> usize {
        self.read.get(&i).map_or(0, Vec::len)
    }

    /// Applies one operation and checks what it promises; panics on a broken promise.
    fn step(&mut self, model: &RefWorld, op: Op) {
        match op {
            Op::Connect => {
                let h = self.bench.connect(PORT);
                self.bench.exchange();
                self.peers.push(h);
            }
            Op::Send(i, d) => {
                let n = self.bench.peer(self.peers[i]).send_slice(&d).unwrap_or(0);
                assert_eq!(n, d.len(), "the peer's buffer takes the whole send");
                self.bench.exchange();
            }
            Op::SendReordered(i, a, b) => {
                let h = self.peers[i];
                self.bench.peer_send(h, &a);
                self.bench.peer_send(h, &b);
                self.bench.reorder_to_device();
                self.bench.exchange();
            }
            Op::Fin(i) => self.bench.peer_close(self.peers[i]),
            Op::SendFinReordered(i, d) => {
                let h = self.peers[i];
                self.bench.peer_send(h, &d);
                self.bench.peer_close(h);
                self.bench.reorder_to_device();
                self.bench.exchange();
            }
            Op::Rst(i) => {
                let h = self.peers[i];
                self.bench.peer(h).abort();
                self.bench.poll_peer();
                self.bench.exchange();
            }
            Op::Accept => {
                // Let the worker thread queue the handshake first.
                self.bench.advance(2);
                let c = self.server.available(&mut self.bench.dev);
                assert!(c.is_open(), "a completed handshake must be handed out (F3)");
                self.clients.push(c);
            }
            Op::Connected(i) => {
                let connected = self.clients[i].connected(&mut self.bench.dev);
                let conn = &model.conns[i];
                if !conn.reset && conn.sent.len() > self.read_len(i) {
                    assert!(
                        connected,
                        "connected() must hold while data is unread (F2), conn {i}"
                    );
                }
            }
            Op::Drain(i) => {
                let conn = &model.conns[i];
                // Reordered segments wait for the peer's retransmission (smoltcp: RTO >= 1 s).
                for _ in 0..1500 {
                    self.bench.advance(1);
                    self.read_available(i);
                    if self.read_len(i) == conn.sent.len() {
                        break;
                    }
                }
                if conn.reset {
                    // A reset lets the device discard what it has not delivered; what was
                    // read is still a prefix (the invariant), and the end is reported.
                    let ended = (0..3000).any(|_| {
                        self.bench.advance(1);
                        self.read_available(i);
                        !self.clients[i].connected(&mut self.bench.dev)
                    });
                    assert!(
                        ended,
                        "a reset connection ends for the application, conn {i}"
                    );
                    return;
                }
                let got = self.read.get(&i).cloned().unwrap_or_default();
                assert_eq!(
                    got, conn.sent,
                    "a drain reads everything sent, conn {i} (F1, F7)"
                );
                if conn.fin {
                    // A FIN that overtook data is dropped and comes again with the peer's
                    // retransmission.
                    let ended = (0..3000).any(|_| {
                        self.bench.advance(1);
                        !self.clients[i].connected(&mut self.bench.dev)
                    });
                    assert!(
                        ended,
                        "after the FIN and a full drain the stream has ended, conn {i}"
                    );
                }
            }
            Op::Advance(ms) => self.bench.advance(ms),
        }
    }
}

struct WiringTest;

impl StateMachineTest for WiringTest {
    type SystemUnderTest = Sut;
    type Reference = WiringModel;

    fn init_test(_: &RefWorld) -> Sut {
        Sut::new(Policy::FIXED)
    }

    fn apply(mut sut: Sut, model: &RefWorld, op: Op) -> Sut {
        sut.step(model, op);
        sut
    }

    fn check_invariants(sut: &Sut, model: &RefWorld) {
        for (i, read) in &sut.read {
            assert!(
                model.conns[*i].sent.starts_with(read),
                "conn {i}: read bytes not sent in this order"
            );
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn wiring_api_matches_the_reference_model_under_fixed(sequential 1..40 => WiringTest);
}

/// Runs `ops` against the model and the device under `policy`; true if a promise broke.
fn breaks_a_promise(policy: Policy, ops: &[Op]) -> bool {
    let ops = ops.to_vec();
    let run = std::panic::catch_unwind(move || {
        let mut model = RefWorld::default();
        let mut sut = Sut::new(policy);
        for op in ops {
            assert!(WiringModel::preconditions(&model, &op), "{op:?}");
            model = WiringModel::apply(model, &op);
            sut.step(&model, op);
            WiringTest::check_invariants(&sut, &model);
        }
    });
    run.is_err()
}

/// The state machine's checks can fail: switching F1 or F3 back to its legacy form breaks a
/// promise on a short operation sequence, while the fixed rules keep it. (L2 alone changes only
/// side effects, never what is read: see `firmware-core/src/policy.rs`.)
#[test]
fn state_machine_catches_disabled_fixes() {
    let data = b"8 bytes!".to_vec();
    // Data and FIN arrive before the application reads.
    let fin_first = [
        Op::Connect,
        Op::Accept,
        Op::Send(0, data.clone()),
        Op::Fin(0),
        Op::Advance(5),
    ];
    let cases: [(&str, Policy, Vec<Op>); 2] = [
        (
            "F1",
            Policy {
                fin_frees_unread_data: true,
                ..Policy::FIXED
            },
            [&fin_first[..], &[Op::Drain(0)]].concat(),
        ),
        (
            "F3",
            Policy {
                accept_hands_out_dead: true,
                ..Policy::FIXED
            },
            vec![
                Op::Connect,
                Op::Send(0, data.clone()),
                Op::Fin(0),
                Op::Advance(5),
                Op::Accept,
                Op::Drain(0),
            ],
        ),
    ];
    for (rule, broken, ops) in cases {
        assert!(!breaks_a_promise(Policy::FIXED, &ops), "{rule}: {ops:?}");
        assert!(
            breaks_a_promise(broken, &ops),
            "{rule} switched back should break a promise: {ops:?}"
        );
    }
}
