//! Requests a host sends to a running app outside the network: the USB control requests of
//! Device OS's TCP server test app (`user/tests/app/tcp_server/server.cpp`,
//! `usb_request_custom_handler`), as far as the app itself answers them. Network connect and
//! disconnect belong to the host (it owns the link); the host also does the JSON.

use alloc::string::String;

/// One control request, parsed by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest<'a> {
    /// `{"cmd":"startServer","id":..,"type":..,"port":..}`.
    StartServer {
        /// The server's name, chosen by the client.
        id: &'a str,
        /// The registered server type (`SimpleServer`, `EchoServer`, ...).
        kind: &'a str,
        /// The port to listen on, as the request gave it (the app rejects what no server can
        /// listen on, as `TCPServer::begin()` does).
        port: u32,
    },
    /// `{"cmd":"stopServer","id":..}`.
    StopServer {
        /// The server's name.
        id: &'a str,
    },
    /// `{"cmd":"stopServers"}`.
    StopServers,
    /// `{"cmd":"getFreeMemory"}`.
    FreeMemory,
}

/// The app's answer; the host turns it into the reply object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlReply {
    /// Done; nothing to report (`{}`).
    Done,
    /// `{"bytes": N}`: free heap memory.
    FreeMemory {
        /// Bytes.
        bytes: u32,
    },
    /// `{"error": "..."}`: the vendor app's error message.
    Error(String),
}
