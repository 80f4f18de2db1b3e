//! What a run observes: every event of the device, the application and the peer goes to the
//! oracle and to the trace (and, when asked, into a list), in the order it happened. Both
//! backends feed one observer.

use firmware_core::app::{RecordedKind, Recorder};
use firmware_core::smoltcp::time::Instant;
use firmware_core::{AppEvent, AppEventSink, ConnId, DeviceEvent};

use crate::oracle::Oracle;
use crate::peer::PeerEvent;
use crate::trace::{Stream, Trace};

/// The oracle and the trace of one run, and the events themselves when they are kept.
pub(crate) struct Observer {
    pub(crate) oracle: Oracle,
    pub(crate) trace: Trace,
    pub(crate) kept: Option<Vec<Observed>>,
}

/// One event a run observed, owned: what the oracle judges, kept so a verdict can be
/// recomputed from the events alone ([`crate::oracle::Oracle::replay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// When, in simulated microseconds.
    pub at_us: i64,
    /// What.
    pub event: ObservedEvent,
}

/// The three sources of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedEvent {
    /// The device's stack or socket layer.
    Device(DeviceEvent),
    /// The application: its kind, connection and, for reads, the bytes.
    App(ConnId, RecordedKind, Vec<u8>),
    /// The peer's programs and stack.
    Peer(PeerEvent),
}

impl ObservedEvent {
    /// The application event this stands for (`Wrote` and `Mismatch` lose their numbers,
    /// which the oracle does not use).
    pub fn app_event(&self) -> Option<AppEvent<'_>> {
        let ObservedEvent::App(conn, kind, data) = self else {
            return None;
        };
        let conn = *conn;
        Some(match kind {
            RecordedKind::Accepted => AppEvent::Accepted { conn },
            RecordedKind::Read => AppEvent::Read { conn, data },
            RecordedKind::Wrote => AppEvent::Wrote { conn, bytes: 0 },
            RecordedKind::Disconnected => AppEvent::Disconnected { conn },
            RecordedKind::Closed => AppEvent::Closed { conn },
            RecordedKind::Mismatch => AppEvent::Mismatch { conn, offset: 0 },
        })
    }
}

impl Observer {
    /// Takes one event of the device's stack or socket layer.
    pub(crate) fn device(&mut self, now: Instant, event: &DeviceEvent) {
        self.oracle.device_event(now, event);
        self.keep(now, || ObservedEvent::Device(*event));
        match *event {
            DeviceEvent::DataReceived { conn, bytes } => self.trace.record_count(
                now,
                Stream::Device,
                "device rx",
                conn.remote.port,
                bytes as u64,
            ),
            e => self.trace.record(
                now,
                Stream::Device,
                "device",
                Some(e.peer_port()),
                format_args!("{e:?}"),
            ),
        }
    }

    /// Takes one event of the application.
    pub(crate) fn app(&mut self, now: Instant, event: AppEvent<'_>) {
        self.oracle.app_event(now, &event);
        if self.kept.is_some() {
            let mut recorder = Recorder::default();
            recorder.app_event(event);
            if let Some((conn, kind, data)) = recorder.events.pop() {
                self.keep(now, || ObservedEvent::App(conn, kind, data));
            }
        }
        match event {
            AppEvent::Read { conn, data } => self.trace.record_count(
                now,
                Stream::Device,
                "app read",
                conn.remote.port,
                data.len() as u64,
            ),
            other => self.trace.record(
                now,
                Stream::Device,
                "app",
                Some(other.peer_port()),
                format_args!("{other:?}"),
            ),
        }
    }

    /// Takes one event of the peer's programs and stack.
    pub(crate) fn peer(&mut self, now: Instant, event: &PeerEvent) {
        self.oracle.peer_event(now, event);
        self.keep(now, || ObservedEvent::Peer(event.clone()));
        match *event {
            PeerEvent::Sent { port, bytes } => {
                self.trace
                    .record_count(now, Stream::Peer, "peer sent", port, bytes as u64)
            }
            // As frequent as data: hashed as numbers, formatted only when read.
            PeerEvent::Acked { port, bytes } => {
                self.trace
                    .record_count(now, Stream::Peer, "peer acked", port, bytes)
            }
            ref e => self.trace.record(
                now,
                Stream::Peer,
                "peer",
                Some(e.port()),
                format_args!("{e:?}"),
            ),
        }
    }

    fn keep(&mut self, now: Instant, event: impl FnOnce() -> ObservedEvent) {
        if let Some(kept) = &mut self.kept {
            kept.push(Observed {
                at_us: now.total_micros(),
                event: event(),
            });
        }
    }

    /// Notes something of the run itself (a phase, a fault, a reboot), or of one connection.
    pub(crate) fn note(
        &mut self,
        now: Instant,
        source: &str,
        port: Option<u16>,
        what: std::fmt::Arguments<'_>,
    ) {
        // The device notes its own restarts and stalls; everything else is the run's.
        let stream = match source {
            "device" | "app" => Stream::Device,
            _ => Stream::Run,
        };
        self.trace.record(now, stream, source, port, what);
    }
}

/// The application's event sink at one instant.
pub(crate) struct AppSink<'a> {
    pub(crate) observer: &'a mut Observer,
    pub(crate) now: Instant,
}

impl AppEventSink for AppSink<'_> {
    fn app_event(&mut self, event: AppEvent<'_>) {
        self.observer.app(self.now, event);
    }
}
