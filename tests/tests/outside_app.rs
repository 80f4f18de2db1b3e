//! A firmware app written outside firmware-core, run through the library API (`sim::Sim`) the
//! way a firmware team would in its own CI: a line-protocol server that hands each line to its
//! application logic, and a planted bug of the FIN-before-drain kind in the same app.
//! Replay a failure with the `FWSIM_SEED=N cargo test ...` in its message.

use firmware_core::app::App;
use firmware_core::smoltcp::time::Instant;
use firmware_core::{AppEvent, AppEventSink, ConnId, Device, TcpClient, TcpServer};
use sim::scenario::{AppName, Backend, PolicyName};
use sim::{Scenario, Sim, Verdict};

/// A server that reads lines and hands each to its logic (reported as read by the app). At the
/// end of a connection, an unterminated last line is a line too, unless `drops_last_line`.
struct LineServer {
    server: TcpServer,
    client: TcpClient,
    conn: Option<ConnId>,
    line: Vec<u8>,
    /// The planted bug: when the peer has closed, the unterminated tail is thrown away.
    drops_last_line: bool,
}

impl LineServer {
    fn new(port: u16, drops_last_line: bool) -> LineServer {
        LineServer {
            server: TcpServer::new(port),
            client: TcpClient::invalid(),
            conn: None,
            line: Vec::new(),
            drops_last_line,
        }
    }

    fn hand_over(&mut self, conn: ConnId, sink: &mut dyn AppEventSink) {
        if !self.line.is_empty() {
            sink.app_event(AppEvent::Read {
                conn,
                data: &self.line,
            });
            self.line.clear();
        }
    }
}

impl App for LineServer {
    fn setup(&mut self, dev: &mut Device) {
        let _ = self.server.begin(dev);
    }

    fn loop_once(&mut self, _now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        let Some(conn) = self.conn else {
            self.client = self.server.available(dev);
            self.conn = self.client.conn(dev);
            if let Some(conn) = self.conn {
                sink.app_event(AppEvent::Accepted { conn });
            }
            return;
        };
        while self.client.available(dev) > 0 {
            let Some(byte) = self.client.read(dev) else {
                break;
            };
            self.line.push(byte);
            if byte == b'\n' {
                self.hand_over(conn, sink);
            }
        }
        if !self.client.connected(dev) {
            if self.drops_last_line {
                self.line.clear();
            }
            self.hand_over(conn, sink);
            self.client.stop(dev);
            sink.app_event(AppEvent::Closed { conn });
            self.conn = None;
        }
    }
}

/// Two lines, the last one unterminated (`printf 'temp 21\nhum 40' | nc -N device 7000`).
fn scenario(policy: PolicyName) -> Scenario {
    let mut s = Scenario::new("line-server", AppName::Forum, policy);
    s.device.port = 7000;
    s.link = sim::scenario::LinkSpec::preset(sim::link::Preset::WlanGood);
    s.peer[0].payload_hex = "74656d702032310a68756d203430".into();
    s.peer[0].count = 8;
    s.peer[0].interval_ms = 300;
    s
}

fn line_server(policy: PolicyName, drops_last_line: bool) -> Sim {
    Sim::new(scenario(policy)).app(move |port| LineServer::new(port, drops_last_line))
}

#[test]
fn the_line_server_loses_nothing_under_the_fixed_rules_on_both_backends() {
    for backend in [Backend::Loopback, Backend::Turmoil] {
        let sweep = line_server(PolicyName::Fixed, false)
            .backend(backend)
            .sweep(1..=5)
            .unwrap();
        sweep.assert_no_silent_loss();
        // A connection may be refused visibly (a full backlog answers RST); most are served.
        let delivered: u64 = sweep.runs.iter().map(|r| r.summary.delivered).sum();
        let opened: u64 = sweep.runs.iter().map(|r| r.summary.connections).sum();
        assert!(
            delivered * 10 >= opened * 9,
            "{delivered} of {opened} delivered"
        );
        for r in &sweep.runs {
            for row in &r.rows {
                assert!(
                    matches!(row.verdict, Verdict::Delivered | Verdict::RefusedVisibly),
                    "{}",
                    sim::report::human(r, true)
                );
            }
        }
    }
}

#[test]
fn the_legacy_rules_lose_the_line_servers_messages_on_both_backends() {
    for backend in [Backend::Loopback, Backend::Turmoil] {
        let sweep = line_server(PolicyName::Legacy, false)
            .backend(backend)
            .sweep(1..=5)
            .unwrap();
        assert!(sweep.violations() > 0, "the platform bug shows in any app");
    }
}

#[test]
fn a_planted_fin_before_drain_bug_in_the_app_is_caught() {
    for backend in [Backend::Loopback, Backend::Turmoil] {
        let report = line_server(PolicyName::Fixed, true)
            .backend(backend)
            .seed(1)
            .run()
            .unwrap();
        assert!(report.summary.silently_lost > 0, "{report:?}");
        let message = std::panic::catch_unwind(|| report.assert_no_silent_loss())
            .expect_err("the assertion fails")
            .downcast::<String>()
            .expect("a formatted message");
        assert!(message.contains("DATA SILENTLY LOST"), "{message}");
        assert!(
            message.contains("replay: FWSIM_SEED=1 cargo test"),
            "{message}"
        );
    }
}

#[test]
fn a_sweep_that_tests_nothing_does_not_pass() {
    let mut s = scenario(PolicyName::Fixed);
    s.max_duration_ms = 50; // the first connection would open at 100 ms
    let sweep = Sim::new(s).sweep(1..=2).unwrap();
    assert_eq!(sweep.tested(), 0);
    assert!(std::panic::catch_unwind(|| sweep.assert_no_silent_loss()).is_err());
    assert_eq!(sweep.runs[0].outcome(), sim::Outcome::NothingTested);
}
