//! What the device reports: socket-layer events from the HAL and application events from the
//! firmware apps. The host stamps them with the time and feeds them to the oracle and the trace.

use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

/// One connection as the device saw it: the peer's endpoint and a serial per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    /// 1 for the first SYN the device received, then counting.
    pub serial: u32,
    /// The peer's address and port (unique per run: peers never reuse ports).
    pub remote: IpEndpoint,
}

impl ConnId {
    /// Placeholder for a handle that names no connection.
    pub const UNKNOWN: ConnId = ConnId {
        serial: 0,
        remote: IpEndpoint {
            addr: IpAddress::Ipv4(Ipv4Address::UNSPECIFIED),
            port: 0,
        },
    };
}

/// Socket-layer events (HAL and worker thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// A SYN arrived at a listener.
    SynReceived { conn: ConnId },
    /// The handshake failed (RST or timeout) and the socket listens again.
    HandshakeAborted { conn: ConnId },
    /// The peer's ACK completed the handshake.
    HandshakeCompleted { conn: ConnId },
    /// The worker thread put the connection in the accept queue.
    AcceptQueued { conn: ConnId },
    /// `socket_accept` handed the connection to the application.
    Accepted { conn: ConnId },
    /// The stack accepted `bytes` of new in-order data for this connection.
    DataReceived { conn: ConnId, bytes: usize },
    /// The stack processed the peer's FIN (or RST when `reset`).
    PeerClosed { conn: ConnId, reset: bool },
    /// The worker thread set the socket's `closed` flag.
    MarkedClosed { conn: ConnId, while_queued: bool },
    /// The HAL closed the socket on its flag and discarded `bytes` unread bytes (L3/L4).
    UnreadDataFreed { conn: ConnId, bytes: usize },
    /// The application closed the socket with `unread_bytes` still unread.
    Stopped {
        conn: ConnId,
        unread_bytes: usize,
        sent_rst: bool,
    },
    /// `bytes` arrived after the application closed the socket; nobody will read them
    /// (`sent_rst`: the peer was told, F5).
    DataAfterClose {
        conn: ConnId,
        bytes: usize,
        sent_rst: bool,
    },
    /// The socket's pool slot was freed.
    SlotFreed { conn: ConnId },
    /// A SYN was dropped without answer because the backlog was full (L5).
    SynDropped { remote: IpEndpoint },
}

impl DeviceEvent {
    /// The peer's port this event is about (the connection's key on both sides).
    pub fn peer_port(&self) -> u16 {
        match *self {
            DeviceEvent::SynReceived { conn }
            | DeviceEvent::HandshakeAborted { conn }
            | DeviceEvent::HandshakeCompleted { conn }
            | DeviceEvent::AcceptQueued { conn }
            | DeviceEvent::Accepted { conn }
            | DeviceEvent::DataReceived { conn, .. }
            | DeviceEvent::PeerClosed { conn, .. }
            | DeviceEvent::MarkedClosed { conn, .. }
            | DeviceEvent::UnreadDataFreed { conn, .. }
            | DeviceEvent::Stopped { conn, .. }
            | DeviceEvent::DataAfterClose { conn, .. }
            | DeviceEvent::SlotFreed { conn } => conn.remote.port,
            DeviceEvent::SynDropped { remote } => remote.port,
        }
    }
}

impl AppEvent<'_> {
    /// The peer's port this event is about.
    pub fn peer_port(&self) -> u16 {
        match *self {
            AppEvent::Accepted { conn }
            | AppEvent::Read { conn, .. }
            | AppEvent::Wrote { conn, .. }
            | AppEvent::Disconnected { conn }
            | AppEvent::Closed { conn }
            | AppEvent::Mismatch { conn, .. } => conn.remote.port,
        }
    }
}

/// What a firmware app reports about the connections it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEvent<'a> {
    /// The app took a connection and considers it live.
    Accepted { conn: ConnId },
    /// The app read these bytes from the connection.
    Read { conn: ConnId, data: &'a [u8] },
    /// The app wrote bytes to the connection.
    Wrote { conn: ConnId, bytes: usize },
    /// The app saw the connection end (its `connected()` turned false).
    Disconnected { conn: ConnId },
    /// The app closed the connection itself (inactivity timeout, server-closes).
    Closed { conn: ConnId },
    /// Received data broke the expected pattern at `offset` (multi-client receiver).
    Mismatch { conn: ConnId, offset: u64 },
}

/// Receives the events of a firmware app as they happen.
pub trait AppEventSink {
    /// Called for each event, in order.
    fn app_event(&mut self, event: AppEvent<'_>);
}

/// Discards every event.
impl AppEventSink for () {
    fn app_event(&mut self, _event: AppEvent<'_>) {}
}
