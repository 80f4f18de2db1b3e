//! proptest-state-machine: a reference model of the Wiring API against the firmware core on
//! smoltcp, under the fixed rules. Per connection the model knows what the peer sent, whether it
//! sent FIN and whether the application accepted it; after every step the application has read
//! a prefix of what was sent, `connected()` holds while anything is unread, and a drain reads
//! everything (also after the FIN). Case counts: `PROPTEST_CASES=N`.

use std::collections::BTreeMap;

use firmware_core::app::App;
use firmware_core::smoltcp::iface::SocketHandle;
use firmware_core::testkit::Bench;
use firmware_core::{AppEventSink, Device, DeviceConfig, Policy, TcpClient, TcpServer};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const PORT: u16 = 6000;
const MAX_CONNS: usize = 4;

#[derive(Debug, Clone, Default)]
struct RefConn {
    sent: Vec<u8>,
    fin: bool,
    accepted: bool,
}

#[derive(Debug, Clone, Default)]
struct RefWorld {
    conns: Vec<RefConn>,
}

#[derive(Debug, Clone)]
enum Op {
    Connect,
    Send(usize, Vec<u8>),
    Fin(usize),
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
        let n = state.conns.len().max(1);
        prop_oneof![
            1 => Just(Op::Connect),
            4 => (0..n, proptest::collection::vec(any::<u8>(), 1..200)).prop_map(|(i, d)| Op::Send(i, d)),
            1 => (0..n).prop_map(Op::Fin),
            2 => Just(Op::Accept),
            2 => (0..n).prop_map(Op::Connected),
            2 => (0..n).prop_map(Op::Drain),
            1 => (1u64..30).prop_map(Op::Advance),
        ]
        .boxed()
    }

    fn preconditions(state: &RefWorld, op: &Op) -> bool {
        let conn = |i: usize| state.conns.get(i);
        match op {
            Op::Connect => state.conns.len() < MAX_CONNS,
            // Keep each connection within the device's window plus the peer's buffer.
            Op::Send(i, d) => conn(*i).is_some_and(|c| !c.fin && c.sent.len() + d.len() <= 3000),
            Op::Fin(i) => conn(*i).is_some_and(|c| !c.fin),
            Op::Accept => state.conns.iter().any(|c| !c.accepted),
            Op::Connected(i) | Op::Drain(i) => conn(*i).is_some_and(|c| c.accepted),
            Op::Advance(_) => true,
        }
    }

    fn apply(mut state: RefWorld, op: &Op) -> RefWorld {
        match op {
            Op::Connect => state.conns.push(RefConn::default()),
            Op::Send(i, d) => state.conns[*i].sent.extend_from_slice(d),
            Op::Fin(i) => state.conns[*i].fin = true,
            Op::Accept => {
                // The accept queue is FIFO in handshake order, which is connect order here.
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

struct WiringTest;

impl StateMachineTest for WiringTest {
    type SystemUnderTest = Sut;
    type Reference = WiringModel;

    fn init_test(_: &RefWorld) -> Sut {
        let policy = Policy::FIXED;
        let mut bench = Bench::new(policy, DeviceConfig::for_policy(&policy), Box::new(Idle));
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

    fn apply(mut sut: Sut, model: &RefWorld, op: Op) -> Sut {
        match op {
            Op::Connect => {
                let h = sut.bench.connect(PORT);
                sut.bench.exchange();
                sut.peers.push(h);
            }
            Op::Send(i, d) => {
                let h = sut.peers[i];
                let n = sut.bench.peer(h).send_slice(&d).unwrap_or(0);
                assert_eq!(n, d.len(), "the peer's buffer takes the whole send");
                sut.bench.exchange();
            }
            Op::Fin(i) => sut.bench.peer_close(sut.peers[i]),
            Op::Accept => {
                // Let the worker thread queue the handshake first.
                sut.bench.advance(2);
                let c = sut.server.available(&mut sut.bench.dev);
                assert!(c.is_open(), "a completed handshake must be handed out (F3)");
                sut.clients.push(c);
            }
            Op::Connected(i) => {
                let connected = sut.clients[i].connected(&mut sut.bench.dev);
                let unread = model.conns[i].sent.len() > sut.read.get(&i).map_or(0, Vec::len);
                if unread {
                    assert!(
                        connected,
                        "connected() must hold while data is unread (F2), conn {i}"
                    );
                }
            }
            Op::Drain(i) => {
                for _ in 0..50 {
                    sut.bench.advance(1);
                    sut.read_available(i);
                    if sut.read.get(&i).map_or(0, Vec::len) == model.conns[i].sent.len() {
                        break;
                    }
                }
                let got = sut.read.get(&i).cloned().unwrap_or_default();
                assert_eq!(
                    got, model.conns[i].sent,
                    "a drain reads everything sent, conn {i} (F1, F7)"
                );
            }
            Op::Advance(ms) => sut.bench.advance(ms),
        }
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
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn wiring_api_matches_the_reference_model_under_fixed(sequential 1..40 => WiringTest);
}
