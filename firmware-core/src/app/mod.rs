//! Firmware apps as plain Rust, shaped like the field sketches: `setup()` once, then
//! `loop_once()` per application loop iteration, which the host schedules.

use alloc::vec::Vec;

use smoltcp::time::Instant;

use crate::device::Device;
use crate::event::AppEventSink;
use crate::wiring::TcpClient;
use crate::{AppEvent, ConnId};

mod connected_reader;
mod control;
mod echo;
mod forum;
mod http_server;
mod multi_client;
mod server_closes;
mod tcp_server;

pub use connected_reader::ConnectedReader;
pub use control::{ControlReply, ControlRequest};
pub use echo::Echo;
pub use forum::ForumSketch;
pub use http_server::HttpServer;
pub use multi_client::MultiClientReceiver;
pub use server_closes::ServerCloses;
pub use tcp_server::{Server, ServerKind, ServerManager};

/// A firmware application.
pub trait App {
    /// Runs once after boot.
    fn setup(&mut self, dev: &mut Device);
    /// One iteration of `loop()`.
    fn loop_once(&mut self, now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink);
    /// True if `loop_once` would do nothing now and would go on doing nothing until the device
    /// changes (a packet, a timer of the stack or the worker thread). A host may then skip the
    /// iterations before the device's next event, drawing their timing all the same. The
    /// default, false, keeps every iteration.
    fn idle(&self, _dev: &Device) -> bool {
        false
    }
    /// Answers a control request of the host (the vendor test app's USB requests). Apps
    /// without a control handler answer every request with an error.
    fn control(
        &mut self,
        _now: Instant,
        _dev: &mut Device,
        _request: &ControlRequest<'_>,
        _sink: &mut dyn AppEventSink,
    ) -> ControlReply {
        ControlReply::Error("this app has no control handler".into())
    }
}

/// Reads everything the client has now (`while available(): read()`), reporting it as one event.
fn drain_into(
    client: &mut TcpClient,
    conn: ConnId,
    dev: &mut Device,
    scratch: &mut Vec<u8>,
    sink: &mut dyn AppEventSink,
) -> usize {
    scratch.clear();
    while client.available(dev) != 0 {
        match client.read(dev) {
            Some(b) => scratch.push(b),
            None => break,
        }
    }
    if !scratch.is_empty() {
        sink.app_event(AppEvent::Read {
            conn,
            data: scratch,
        });
    }
    scratch.len()
}

/// An event sink that records owned copies of the events (tests and examples).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorder {
    /// `(connection, event kind, bytes)`; reads keep their bytes, other events none.
    pub events: Vec<(ConnId, RecordedKind, Vec<u8>)>,
}

/// The kind of a recorded app event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedKind {
    /// [`AppEvent::Accepted`].
    Accepted,
    /// [`AppEvent::Read`].
    Read,
    /// [`AppEvent::Wrote`].
    Wrote,
    /// [`AppEvent::Disconnected`].
    Disconnected,
    /// [`AppEvent::Closed`].
    Closed,
    /// [`AppEvent::Mismatch`].
    Mismatch,
}

impl Recorder {
    /// All bytes the app read, in event order.
    pub fn bytes_read(&self) -> Vec<u8> {
        self.events
            .iter()
            .filter(|e| e.1 == RecordedKind::Read)
            .flat_map(|e| e.2.iter().copied())
            .collect()
    }

    /// Number of events of one kind.
    pub fn count(&self, kind: RecordedKind) -> usize {
        self.events.iter().filter(|e| e.1 == kind).count()
    }
}

impl AppEventSink for Recorder {
    fn app_event(&mut self, event: AppEvent<'_>) {
        let row = match event {
            AppEvent::Accepted { conn } => (conn, RecordedKind::Accepted, Vec::new()),
            AppEvent::Read { conn, data } => (conn, RecordedKind::Read, data.to_vec()),
            AppEvent::Wrote { conn, .. } => (conn, RecordedKind::Wrote, Vec::new()),
            AppEvent::Disconnected { conn } => (conn, RecordedKind::Disconnected, Vec::new()),
            AppEvent::Closed { conn } => (conn, RecordedKind::Closed, Vec::new()),
            AppEvent::Mismatch { conn, .. } => (conn, RecordedKind::Mismatch, Vec::new()),
        };
        self.events.push(row);
    }
}
