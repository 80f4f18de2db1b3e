//! What a run observes: every event of the device, the application and the peer goes to the
//! oracle and to the trace, in the order it happened. Both backends feed one observer.

use firmware_core::smoltcp::time::Instant;
use firmware_core::{AppEvent, AppEventSink, DeviceEvent};

use crate::oracle::Oracle;
use crate::peer::PeerEvent;
use crate::trace::Trace;

/// The oracle and the trace of one run.
pub(crate) struct Observer {
    pub(crate) oracle: Oracle,
    pub(crate) trace: Trace,
}

impl Observer {
    /// Takes one event of the device's stack or socket layer.
    pub(crate) fn device(&mut self, now: Instant, event: &DeviceEvent) {
        self.oracle.device_event(event);
        match *event {
            DeviceEvent::DataReceived { conn, bytes } => {
                self.trace
                    .record_count(now, "device rx", conn.remote.port, bytes as u64)
            }
            e => self
                .trace
                .record(now, "device", Some(e.peer_port()), format_args!("{e:?}")),
        }
    }

    /// Takes one event of the application.
    pub(crate) fn app(&mut self, now: Instant, event: AppEvent<'_>) {
        self.oracle.app_event(&event);
        match event {
            AppEvent::Read { conn, data } => {
                self.trace
                    .record_count(now, "app read", conn.remote.port, data.len() as u64)
            }
            other => self.trace.record(
                now,
                "app",
                Some(other.peer_port()),
                format_args!("{other:?}"),
            ),
        }
    }

    /// Takes one event of the peer's programs and stack.
    pub(crate) fn peer(&mut self, now: Instant, event: &PeerEvent) {
        match *event {
            PeerEvent::Sent { port, bytes } => {
                self.trace
                    .record_count(now, "peer sent", port, bytes as u64)
            }
            ref e => self
                .trace
                .record(now, "peer", Some(e.port()), format_args!("{e:?}")),
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
        self.trace.record(now, source, port, what);
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
