//! The two sides of a run as both backends drive them: [`DeviceNode`] (firmware device, app and
//! application loop clock) and [`PeerNode`] (the peer host). A backend only moves packets and
//! time between them; what each side does at an instant is decided here.

use firmware_core::app::{App, ControlReply, ControlRequest};
use firmware_core::smoltcp::time::{Duration, Instant};
use firmware_core::smoltcp::wire::Ipv4Address;
use firmware_core::{Device, DeviceEvent, DeviceSeeds};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::observer::{AppSink, Observer};
use crate::peer::{PayloadError, PeerEvent, PeerHost};
use crate::phy::LinkPhy;
use crate::run::Prepared;
use crate::scenario::StallTrigger;
use crate::seed::{boot_seed, split_seed};

/// The device's address.
pub const DEVICE_ADDR: Ipv4Address = Ipv4Address::new(192, 168, 1, 10);

/// The application loop's timing: a base period plus system work between iterations.
struct LoopClock {
    rng: ChaCha8Rng,
    period_us: u64,
    jitter_us: u64,
    slow_every: u64,
    slow_us: u64,
}

impl LoopClock {
    fn next_after(&mut self, now: Instant) -> Instant {
        let mut us = self.period_us.max(1);
        if self.jitter_us > 0 {
            us += self.rng.random_range(0..=self.jitter_us);
        }
        if self.slow_every > 0 && self.rng.random_range(0..self.slow_every) == 0 {
            us += self.slow_us;
        }
        now + Duration::from_micros(us)
    }
}

/// Injected system stalls of the application loop (the `device.loop_stall_*` fields).
#[derive(Debug, Clone, PartialEq)]
struct LoopStall {
    /// Segments whose arrival stalls the loop; empty: no stalls.
    on: Vec<StallTrigger>,
    stall: Duration,
    /// Hold the loop until the connection's FIN or RST (at most `max`), then `stall` more.
    until_close: bool,
    max: Duration,
}

/// The device side of a run. `boot` counts restarts so a rebooted device draws fresh seeds.
pub(crate) struct DeviceNode {
    pub(crate) device: Device,
    app: Box<dyn App>,
    clock: LoopClock,
    next_tick: Instant,
    events: Vec<DeviceEvent>,
    stall: LoopStall,
    /// The connection (peer port) whose FIN or RST will release the held loop, and when the
    /// hold ends without it.
    stall_held_for: Option<(u16, Instant)>,
}

/// The peer port and kind of a SYN, FIN or RST segment toward the device.
fn stall_trigger(packet: &[u8]) -> Option<(u16, StallTrigger)> {
    use firmware_core::smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket};
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let trigger = if tcp.rst() {
        StallTrigger::Rst
    } else if tcp.syn() && !tcp.ack() {
        StallTrigger::Syn
    } else if tcp.fin() {
        StallTrigger::Fin
    } else {
        return None;
    };
    Some((tcp.src_port(), trigger))
}

impl DeviceNode {
    /// Boots the firmware (its `boot`-th life) at [`DEVICE_ADDR`] and runs the app's `setup()`.
    pub(crate) fn boot(
        prep: &Prepared,
        boot: u32,
        phy: &mut LinkPhy<'_>,
        now: Instant,
    ) -> DeviceNode {
        DeviceNode::boot_at(prep, boot, phy, now, (DEVICE_ADDR, 24))
    }

    /// Boots the firmware at `address`/`prefix_len` (live mode's interface).
    pub(crate) fn boot_at(
        prep: &Prepared,
        boot: u32,
        phy: &mut LinkPhy<'_>,
        now: Instant,
        (address, prefix_len): (Ipv4Address, u8),
    ) -> DeviceNode {
        let config = &prep.scenario.device;
        let tag = |name: &str| boot_seed(prep.scenario.seed, name, boot);
        let mut device = Device::new(
            phy,
            address,
            prefix_len,
            prep.policy,
            config.stack,
            DeviceSeeds {
                stack: tag("device.stack"),
                worker: tag("device.worker"),
            },
            now,
        );
        let mut app = (prep.app)(config.port);
        app.setup(&mut device);
        let mut clock = LoopClock {
            rng: ChaCha8Rng::seed_from_u64(tag("device.loop")),
            period_us: config.loop_period_us,
            jitter_us: config.loop_jitter_us,
            slow_every: config.slow_loop_every,
            slow_us: config.slow_loop_us,
        };
        let next_tick = clock.next_after(now);
        DeviceNode {
            device,
            app,
            clock,
            next_tick,
            events: Vec::new(),
            stall: LoopStall {
                on: config.loop_stall_on.clone(),
                stall: Duration::from_micros(config.loop_stall_us),
                until_close: config.loop_stall_until_close,
                max: Duration::from_millis(config.loop_stall_max_ms),
            },
            stall_held_for: None,
        }
    }

    /// The device's next event: the earliest of `external` (its stack timers and packets on
    /// their way to it, as the backend sees them) and the next application loop iteration.
    ///
    /// While the app is idle, the loop iterations before `external` (at most `bound`) are
    /// skipped first: nothing can change for the app before the device's next event. Each
    /// skipped iteration draws its timing as if it ran, so the run stays the same; with
    /// `skip_idle` off every iteration runs (the test that skipping changes nothing).
    pub(crate) fn next_event(
        &mut self,
        external: Option<Instant>,
        bound: Instant,
        skip_idle: bool,
    ) -> Instant {
        if skip_idle {
            self.skip_idle_ticks(external.map_or(bound, |x| x.min(bound)));
        }
        external.map_or(self.next_tick, |x| x.min(self.next_tick))
    }

    /// Skips the idle application's loop iterations before `until`.
    pub(crate) fn skip_idle_ticks(&mut self, until: Instant) {
        if self.next_tick >= until || !self.app_idle() {
            return;
        }
        while self.next_tick < until {
            self.next_tick = self.clock.next_after(self.next_tick);
        }
    }

    /// True if the application would do nothing until the device changes.
    pub(crate) fn app_idle(&self) -> bool {
        self.app.idle(&self.device)
    }

    /// Runs what is due at `now`: packets waiting in `phy`, device timers (`device_due`), an
    /// application loop iteration. Returns true if the device ran (its timers may have moved).
    pub(crate) fn step(
        &mut self,
        now: Instant,
        device_due: bool,
        phy: &mut LinkPhy<'_>,
        observer: &mut Observer,
    ) -> bool {
        if !self.stall.on.is_empty() {
            self.stall_loop(now, phy, observer);
        }
        let tick = now >= self.next_tick;
        let packets = !phy.rx.is_empty();
        // The app's HAL calls need no poll first unless packets or device timers are due.
        if !(packets || device_due || tick) {
            return false;
        }
        if packets || device_due {
            self.device.poll(now, phy);
            // What the stack saw happened before this loop iteration's reads.
            self.report_events(now, observer);
        }
        if tick {
            let mut sink = AppSink { observer, now };
            self.app.loop_once(now, &mut self.device, &mut sink);
            self.next_tick = self.clock.next_after(now);
            // What the app did (reads opening the window, writes, stops) goes out now.
            if self.device.poll_at().is_some_and(|x| x <= now) {
                self.device.poll(now, phy);
            }
        }
        self.report_events(now, observer);
        true
    }

    /// Injected system stalls, decided before the stack sees the packets now arriving: a
    /// `stall.on` segment delays the next loop iteration by `stall.stall`, or with
    /// `stall.until_close` holds it until that connection's FIN or RST arrives (at most
    /// `stall.max`), then `stall.stall` more.
    fn stall_loop(&mut self, now: Instant, phy: &LinkPhy<'_>, observer: &mut Observer) {
        if self.stall_held_for.is_some_and(|(_, end)| end <= now) {
            self.stall_held_for = None;
        }
        for packet in phy.rx.iter() {
            let Some((port, kind)) = stall_trigger(packet) else {
                continue;
            };
            let held_for = self.stall_held_for.map(|(p, _)| p);
            let closes = matches!(kind, StallTrigger::Fin | StallTrigger::Rst);
            let until = if held_for == Some(port) && closes {
                self.stall_held_for = None;
                now + self.stall.stall
            } else if self.stall.on.contains(&kind) && held_for.is_none() {
                if self.stall.until_close {
                    let end = (now + self.stall.max).max(self.next_tick);
                    self.stall_held_for = Some((port, end));
                    end
                } else {
                    (now + self.stall.stall).max(self.next_tick)
                }
            } else {
                continue;
            };
            if until != self.next_tick {
                self.next_tick = until;
                observer.note(
                    now,
                    "app",
                    Some(port),
                    format_args!("loop stalled until {until} by {kind:?}"),
                );
            }
        }
    }

    /// Hands a control request to the app (live mode's control endpoint); what the app does
    /// goes out at the next [`DeviceNode::step`].
    pub(crate) fn control(
        &mut self,
        now: Instant,
        request: &ControlRequest<'_>,
        observer: &mut Observer,
    ) -> ControlReply {
        let mut sink = AppSink { observer, now };
        let reply = self.app.control(now, &mut self.device, request, &mut sink);
        self.report_events(now, observer);
        reply
    }

    /// When the app's next loop iteration is due.
    pub(crate) fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// Hands the device's new events to the observer.
    fn report_events(&mut self, now: Instant, observer: &mut Observer) {
        self.device.take_events(&mut self.events);
        for e in self.events.drain(..) {
            observer.device(now, &e);
        }
    }
}

/// The peer side of a run: the peer host running the scenario's workloads.
pub(crate) struct PeerNode {
    pub(crate) host: PeerHost,
    events: Vec<PeerEvent>,
}

impl PeerNode {
    /// Starts the peer host.
    pub(crate) fn boot(prep: &Prepared, phy: &mut LinkPhy<'_>) -> Result<PeerNode, PayloadError> {
        let s = &prep.scenario;
        let mut host = PeerHost::new(
            phy,
            s.peer.clone(),
            DEVICE_ADDR,
            s.device.port,
            split_seed(s.seed, "peer.stack"),
            split_seed(s.seed, "peer.programs"),
        )?;
        // The oracle rebuilds the records from the peer's events.
        host.set_keep_records(false);
        Ok(PeerNode {
            host,
            events: Vec::new(),
        })
    }

    /// Polls the peer when packets wait in `phy` or its timers are `due`, and hands its events
    /// to the observer. Returns whether it polled.
    pub(crate) fn step(
        &mut self,
        t: Instant,
        due: bool,
        phy: &mut LinkPhy<'_>,
        observer: &mut Observer,
    ) -> bool {
        let polled = !phy.rx.is_empty() || due;
        if polled {
            self.host.poll(t, phy);
        }
        self.host.take_events(&mut self.events);
        for e in self.events.drain(..) {
            observer.peer(t, &e);
        }
        polled
    }
}
