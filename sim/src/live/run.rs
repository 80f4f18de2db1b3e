//! The live loop: the simulator's device node (device, app, loop clock, Wi-Fi worker) on the
//! wall clock, its packets crossing a TUN interface through the same link model as in
//! simulation. Between two steps it waits on the interface until the device's next event
//! (stack timer, worker job, loop iteration, link delivery); control requests are answered
//! between steps, so the app sees them on its own thread.

use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use firmware_core::smoltcp::phy;
use firmware_core::smoltcp::time::{Duration, Instant};
use serde_json::{json, Value};

use super::addr::LiveAddr;
use super::clock::WallClock;
use super::control::{self, ControlServer};
use super::error::LiveError;
use super::events::LiveEvent;
use super::tally::Tally;
use super::tun::Tun;
use super::wire::{WireEvent, WirePeer};
use crate::capture::Capture;
use crate::link::Preset;
use crate::node::DeviceNode;
use crate::observer::{Observed, ObservedEvent, Observer};
use crate::oracle::Oracle;
use crate::phy::Wire;
use crate::run::{Prepared, Replay, RunLabel, RunReport};
use crate::scenario::{self, AppName, LinkSpec, PolicyName, Scenario, Set};
use crate::trace::Trace;

/// Longest wait between two looks at the stop flag and the control endpoint.
const MAX_WAIT: Duration = Duration::from_millis(20);

/// How often the capture is written through to its file: a capture read while `serve` runs,
/// or after it was killed, misses at most the last second.
const PCAP_SYNC: Duration = Duration::from_millis(500);

/// What `fwsim serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The firmware app.
    pub app: AppName,
    /// The socket rules (and with them the pool and server limits).
    pub policy: PolicyName,
    /// The link model applied to packets in both directions.
    pub link: Preset,
    /// The port the app's server listens on.
    pub port: u16,
    /// The TUN interface to create.
    pub tun: String,
    /// The device's and the host's addresses.
    pub addr: LiveAddr,
    /// Seeds the worker thread's delays, the loop's jitter and the link model.
    pub seed: u64,
    /// Write every packet the device sent or received here.
    pub pcap: Option<PathBuf>,
    /// Listen for control requests here (loopback only).
    pub control: Option<SocketAddr>,
    /// Changes to the device's fields, as `fwsim run --set` makes them
    /// (`device.loop_period_us=3000`); applied after the options above.
    pub sets: Vec<Set>,
}

/// How a live run ended: its report, and the error that ended it early, if one did.
#[derive(Debug)]
pub struct Served {
    /// The per-connection report so far: every connection in the summary; as rows, every
    /// violation and the first ten others.
    pub report: RunReport,
    /// What stopped the run before `stop` was set (the interface deleted from outside, the
    /// capture file failing).
    pub stopped_by: Option<LiveError>,
}

/// A live device, set up and ready to run.
pub struct Live {
    prep: Prepared,
    addr: LiveAddr,
    tun: Tun,
    control: Option<ControlServer>,
    capture: Option<Capture>,
    pcap: Option<PathBuf>,
}

/// Where each event the loop observes goes as it happens: out, and to the tally (the oracle
/// has the device's and the app's already). Nothing is kept.
struct Log<'a> {
    clock: WallClock,
    tally: Tally,
    wire: Vec<WireEvent>,
    out: &'a mut dyn FnMut(&LiveEvent),
}

impl Log<'_> {
    /// Takes the wire view's and the observer's new events.
    fn take(&mut self, now: Instant, tap: &mut WirePeer, observer: &mut Observer) {
        let Log {
            clock,
            tally,
            wire,
            out,
        } = self;
        tap.take_events(wire);
        for e in wire.drain(..) {
            let observed = Observed {
                at_us: now.total_micros(),
                event: ObservedEvent::Peer(e.event.clone()),
            };
            out(&LiveEvent::of(&observed, clock.unix_us(now)));
            tally.peer(&mut observer.oracle, now, e);
        }
        let kept = observer.kept.as_mut().map(std::mem::take);
        for e in kept.unwrap_or_default() {
            out(&LiveEvent::of(
                &e,
                clock.unix_us(Instant::from_micros(e.at_us)),
            ));
            tally.device(
                &mut observer.oracle,
                Instant::from_micros(e.at_us),
                &e.event,
            );
        }
    }
}

impl Live {
    /// Checks the options, creates the TUN interface, starts the control endpoint and
    /// creates the capture file. On an error nothing is left behind.
    pub fn start(options: &ServeOptions) -> Result<Live, LiveError> {
        let mut scenario = Scenario::new("live", options.app, options.policy);
        scenario.seed = options.seed;
        scenario.device.port = options.port;
        scenario.link = LinkSpec::preset(options.link);
        if !options.sets.is_empty() {
            // Reloaded with the changes, so their ranges and checks apply as in a file.
            scenario = scenario::parse("serve", &scenario.to_toml(), &options.sets)
                .map_err(LiveError::Scenario)?;
        }
        let prep =
            Prepared::new(&scenario, None, None, Replay::default()).map_err(LiveError::Scenario)?;
        // In this order, a failure leaves nothing behind: the interface goes with its value,
        // the endpoint's thread starts only once it listens, and the capture file comes last.
        let tun = Tun::create(&options.tun, &options.addr)?;
        let control = options.control.map(ControlServer::start).transpose()?;
        let capture = match &options.pcap {
            Some(path) => {
                let file = File::create(path).map_err(|e| LiveError::Pcap(path.clone(), e))?;
                Some(Capture::new(Box::new(BufWriter::new(file))))
            }
            None => None,
        };
        Ok(Live {
            prep,
            addr: options.addr,
            tun,
            control,
            capture,
            pcap: options.pcap.clone(),
        })
    }

    /// The TUN interface's name.
    pub fn tun_name(&self) -> &str {
        self.tun.name()
    }

    /// Where the control endpoint listens, if it does.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(ControlServer::addr)
    }

    /// Runs until `stop` is set (or the interface or the capture fails), handing each event
    /// to `out` as it happens; the oracle judges each connection the host opened (the peer's
    /// side as the wire showed it) once its verdict is final, and the ones still open at the
    /// end as they stand. Then the host's open connections are reset, so no client hangs on
    /// an interface that is gone. The report is there even when the run failed.
    pub fn run(mut self, stop: &AtomicBool, out: &mut dyn FnMut(&LiveEvent)) -> Served {
        let clock = WallClock::start();
        let seed = self.prep.scenario.seed;
        let mut wire = Wire::new(&self.prep.scenario, seed);
        let span = tracing::info_span!(target: "fwsim::trace", "live", seed);
        let mut observer = Observer {
            oracle: Oracle::new(Vec::new(), self.prep.scenario.liveness_ms),
            trace: Trace::new(false, span),
            kept: Some(Vec::new()),
        };
        let mut now = clock.now();
        let address = (self.addr.device_address(), self.addr.prefix_len);
        let mut phy = wire.device_phy(now, self.capture.as_mut());
        let mut node = DeviceNode::boot_at(&self.prep, 0, &mut phy, now, address);
        let mut tap = WirePeer::new();
        let mut log = Log {
            clock,
            tally: Tally::default(),
            wire: Vec::new(),
            out,
        };
        let mut stopped_by = None;
        let mut next_sync = now + PCAP_SYNC;
        while !stop.load(Ordering::Relaxed) {
            now = clock.now();
            if let Err(e) = self.look(now, &mut next_sync) {
                stopped_by = Some(e);
                break;
            }
            while let Some(packet) = self.tun.recv(now) {
                tap.from_host(&packet);
                wire.downlink.enqueue(now, packet);
            }
            log.take(now, &mut tap, &mut observer);
            wire.downlink.deliver_due(now, &mut wire.device_rx);
            node.skip_idle_ticks(now);
            let device_due = node.device.poll_at().is_some_and(|t| t <= now);
            let mut phy = wire.device_phy(now, self.capture.as_mut());
            node.step(now, device_due, &mut phy, &mut observer);
            wire.uplink.deliver_due(now, &mut wire.peer_rx);
            for packet in wire.peer_rx.drain(..) {
                tap.to_host(&packet);
                self.tun.send(now, &packet);
            }
            log.take(now, &mut tap, &mut observer);
            while let Some((body, answer)) = self.control.as_ref().and_then(ControlServer::next) {
                let reply = self.answer(&body, now, &mut node, &mut observer);
                // The HTTP thread may have given up waiting.
                let _ = answer.send(reply);
                log.take(now, &mut tap, &mut observer);
            }
            if let Err(e) = self.wait(now, &mut node, &wire) {
                stopped_by = Some(e);
                break;
            }
        }
        let capture_error = self.sync_capture().err();
        let report = self.report(clock.now(), log.tally, &wire, &observer);
        // Not through the wire view: serve's own goodbye is no part of what is judged.
        if self.tun.check().is_ok() {
            for packet in tap.resets() {
                self.tun.send(now, &packet);
            }
        }
        Served {
            report,
            stopped_by: stopped_by.or(capture_error),
        }
    }

    /// Looks at the interface, and writes the capture through to its file when it is time.
    fn look(&mut self, now: Instant, next_sync: &mut Instant) -> Result<(), LiveError> {
        self.tun.check()?;
        if now >= *next_sync {
            *next_sync = now + PCAP_SYNC;
            self.sync_capture()?;
        }
        Ok(())
    }

    /// Writes the capture through to its file.
    fn sync_capture(&mut self) -> Result<(), LiveError> {
        match (self.capture.as_mut(), &self.pcap) {
            (Some(capture), Some(path)) => {
                capture.sync().map_err(|e| LiveError::Pcap(path.clone(), e))
            }
            _ => Ok(()),
        }
    }

    /// Waits until the device's next event or a packet from the host (at most `MAX_WAIT`).
    fn wait(&self, now: Instant, node: &mut DeviceNode, wire: &Wire) -> Result<(), LiveError> {
        let mut next = [
            node.device.poll_at(),
            wire.downlink.next_delivery(),
            wire.uplink.next_delivery(),
        ]
        .into_iter()
        .flatten()
        .min();
        // An idle app's iterations are skipped (they change nothing); a busy one's are due.
        if !node.app_idle() {
            next = Some(next.map_or(node.next_tick(), |t| t.min(node.next_tick())));
        }
        let deadline = next.map_or(now + MAX_WAIT, |t| t.min(now + MAX_WAIT));
        if deadline <= now {
            return Ok(());
        }
        match phy::wait(self.tun.as_raw_fd(), Some(deadline - now)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(LiveError::Wait(e)),
        }
    }

    /// Answers one control request: the app's requests go to the app, the network's to the
    /// interface.
    fn answer(
        &mut self,
        body: &str,
        now: Instant,
        node: &mut DeviceNode,
        observer: &mut Observer,
    ) -> (u16, Value) {
        let request = match control::parse(body) {
            Ok(r) => r,
            Err(e) => return (400, json!({ "error": e })),
        };
        if let Some(app_request) = control::app_request(&request) {
            let reply = node.control(now, &app_request, observer);
            return (200, control::reply_object(reply));
        }
        let address = self.addr.device.to_string();
        match request.cmd.as_str() {
            "connectToNetwork" => match self.tun.set_up(true) {
                Ok(()) => (200, json!({ "address": address })),
                Err(e) => (
                    200,
                    json!({ "error": format!("Unable to connect to network: {e}") }),
                ),
            },
            "disconnectFromNetwork" => match self.tun.set_up(false) {
                Ok(()) => (200, json!({})),
                Err(e) => (200, json!({ "error": e.to_string() })),
            },
            "getNetworkStatus" if self.tun.is_up() => {
                (200, json!({ "connected": true, "address": address }))
            }
            "getNetworkStatus" => (200, json!({ "connected": false })),
            "" => (400, json!({ "error": "malformed request: no \"cmd\"" })),
            other => (400, json!({ "error": format!("unknown cmd: {other}") })),
        }
    }

    /// The report: the connections judged so far, and the ones still open as they stand.
    fn report(&self, now: Instant, tally: Tally, wire: &Wire, observer: &Observer) -> RunReport {
        let (summary, rows) = tally.finish(&observer.oracle, now);
        let s = &self.prep.scenario;
        RunReport {
            label: RunLabel {
                scenario: format!("live:{}", self.tun.name()),
                policy: self.prep.policy.name().into(),
                preset: s.link.preset.name().into(),
                backend: "live".into(),
            },
            replay: "live runs are not replayable: the clients and the wall clock decide".into(),
            seed: s.seed,
            summary,
            rows,
            trace_hash: observer.trace.hash(),
            trace_events: observer.trace.events(),
            trace_lines: None,
            events: None,
            sim_time_us: now.total_micros(),
            uplink: wire.uplink.stats(),
            downlink: wire.downlink.stats(),
            timed_out: false,
            turmoil_tick: None,
        }
    }
}
