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
    pub(crate) const UNKNOWN: ConnId = ConnId {
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
    SynReceived {
        /// The connection.
        conn: ConnId,
    },
    /// The handshake failed (RST or timeout) and the socket listens again.
    HandshakeAborted {
        /// The connection.
        conn: ConnId,
    },
    /// The peer's ACK completed the handshake.
    HandshakeCompleted {
        /// The connection.
        conn: ConnId,
    },
    /// The worker thread put the connection in the accept queue.
    AcceptQueued {
        /// The connection.
        conn: ConnId,
    },
    /// `socket_accept` handed the connection to the application.
    Accepted {
        /// The connection.
        conn: ConnId,
    },
    /// The stack accepted `bytes` of new in-order data for this connection.
    DataReceived {
        /// The connection.
        conn: ConnId,
        /// New bytes in the stack's receive queue.
        bytes: usize,
    },
    /// The stack processed the peer's FIN (or RST when `reset`).
    PeerClosed {
        /// The connection.
        conn: ConnId,
        /// The peer reset the connection instead of closing it.
        reset: bool,
    },
    /// The worker thread set the socket's `closed` flag.
    MarkedClosed {
        /// The connection.
        conn: ConnId,
        /// The connection was still in the accept queue (L4 applies).
        while_queued: bool,
    },
    /// The HAL closed the socket on its flag and discarded `bytes` unread bytes (L3/L4).
    UnreadDataFreed {
        /// The connection.
        conn: ConnId,
        /// Unread bytes discarded.
        bytes: usize,
    },
    /// The application closed the socket with `unread_bytes` still unread.
    Stopped {
        /// The connection.
        conn: ConnId,
        /// Bytes left unread in the stack and the Wiring buffer.
        unread_bytes: usize,
        /// The close was an RST (F5), not a FIN.
        sent_rst: bool,
    },
    /// `bytes` arrived after the application closed the socket; nobody will read them
    /// (`sent_rst`: the peer was told, F5).
    DataAfterClose {
        /// The connection.
        conn: ConnId,
        /// Bytes that arrived after the close.
        bytes: usize,
        /// The device answered with RST.
        sent_rst: bool,
    },
    /// The socket's pool slot was freed.
    SlotFreed {
        /// The connection.
        conn: ConnId,
    },
    /// A SYN was dropped without answer because the backlog was full (L5).
    SynDropped {
        /// The endpoint that sent the SYN.
        remote: IpEndpoint,
    },
}

impl DeviceEvent {
    /// The peer's port this event is about (the connection's key on both sides).
    pub fn peer_port(&self) -> u16 {
        self.remote().port
    }

    /// The peer endpoint this event is about.
    pub fn remote(&self) -> IpEndpoint {
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
            | DeviceEvent::SlotFreed { conn } => conn.remote,
            DeviceEvent::SynDropped { remote } => remote,
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
    Accepted {
        /// The connection.
        conn: ConnId,
    },
    /// The app read these bytes from the connection.
    Read {
        /// The connection.
        conn: ConnId,
        /// The bytes read, in order.
        data: &'a [u8],
    },
    /// The app wrote bytes to the connection.
    Wrote {
        /// The connection.
        conn: ConnId,
        /// Bytes the stack accepted for sending.
        bytes: usize,
    },
    /// The app saw the connection end (its `connected()` turned false).
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// The app closed the connection itself (inactivity timeout, server-closes).
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// Received data broke the expected pattern at `offset` (multi-client receiver).
    Mismatch {
        /// The connection.
        conn: ConnId,
        /// Position in the connection's byte stream of the first wrong byte.
        offset: u64,
    },
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
