//! The Wiring API the sketches call: `TCPServer` and `TCPClient` of Device OS
//! (`wiring/src/spark_wiring_tcp{server,client}.cpp`), with the device passed explicitly.
//!
//! C's `-1` becomes `None`; a client that names no socket answers "nothing" to every call.

use alloc::vec;
use alloc::vec::Vec;

use crate::device::Device;
use crate::event::ConnId;
use crate::hal::{ListenError, ServerId, SockId};
use crate::policy::{ConnectedRule, RxCopy};

/// `TCPServer`: listens on a port and hands out accepted connections.
#[derive(Debug)]
pub struct TcpServer {
    port: u16,
    server: Option<ServerId>,
}

impl TcpServer {
    /// `TCPServer server(port)`: nothing happens until [`TcpServer::begin`] or the first
    /// [`TcpServer::available`].
    pub fn new(port: u16) -> TcpServer {
        TcpServer { port, server: None }
    }

    /// The port this server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `begin()`: starts listening.
    pub fn begin(&mut self, dev: &mut Device) -> Result<(), ListenError> {
        self.server = Some(dev.hal.create_server(self.port)?);
        Ok(())
    }

    /// True once `begin` succeeded.
    pub fn is_listening(&self) -> bool {
        self.server.is_some()
    }

    /// `stop()`: stops listening; connections not yet handed out are aborted. Clients already
    /// handed out stay open. A later `begin()` listens again.
    pub fn stop(&mut self, dev: &mut Device) {
        if let Some(server) = self.server.take() {
            dev.hal.stop_server(server);
        }
    }

    /// `available()`: the next connection from the accept queue, or an invalid client.
    /// Like the original, it does not look at the connection it hands out.
    pub fn available(&mut self, dev: &mut Device) -> TcpClient {
        if self.server.is_none() && self.begin(dev).is_err() {
            return TcpClient::invalid();
        }
        let sock = self.server.and_then(|server| dev.hal.accept(server));
        match sock {
            Some(sock) => TcpClient::with_socket(sock, dev.config().wiring_buffer_size),
            None => TcpClient::invalid(),
        }
    }
}

/// `TCPClient`: one connection with the Wiring receive buffer (L1: 128 bytes on the Photon).
#[derive(Debug, Default)]
pub struct TcpClient {
    sock: Option<SockId>,
    buffer: Vec<u8>,
    offset: usize,
    total: usize,
}

impl TcpClient {
    /// `TCPClient client;`: names no socket.
    pub fn invalid() -> TcpClient {
        TcpClient::default()
    }

    fn with_socket(sock: SockId, buffer_size: usize) -> TcpClient {
        TcpClient {
            sock: Some(sock),
            buffer: vec![0; buffer_size],
            offset: 0,
            total: 0,
        }
    }

    /// True if this client names a socket it has not stopped (`isOpen(_sock)`).
    pub fn is_open(&self) -> bool {
        self.sock.is_some()
    }

    /// The connection this client serves, while its socket is open.
    pub fn conn(&self, dev: &Device) -> Option<ConnId> {
        dev.hal.conn(self.sock?)
    }

    /// `bufferCount()`: bytes in the Wiring buffer not yet read.
    pub fn buffered(&self) -> usize {
        self.total - self.offset
    }

    /// `status()`: the socket is open and active.
    pub fn status(&mut self, dev: &mut Device) -> bool {
        self.sock.is_some_and(|s| dev.hal.is_active(s))
    }

    /// `available()`: refills the Wiring buffer from the stack while it has room, then returns
    /// the number of buffered bytes.
    pub fn available(&mut self, dev: &mut Device) -> usize {
        if self.total > 0 && self.offset == self.total {
            self.offset = 0;
            self.total = 0;
        }
        if let Some(sock) = self.sock {
            if self.total < self.buffer.len() {
                if let Ok(n) = dev.hal.receive(sock, &mut self.buffer[self.total..]) {
                    if self.total == 0 {
                        self.offset = 0;
                    }
                    self.total += n;
                }
            }
        }
        self.buffered()
    }

    /// `read()`: one byte, or `None` when nothing is available.
    pub fn read(&mut self, dev: &mut Device) -> Option<u8> {
        if self.buffered() > 0 || self.available(dev) > 0 {
            let b = self.buffer[self.offset];
            self.offset += 1;
            Some(b)
        } else {
            None
        }
    }

    /// `read(buf, size)`: up to `out.len()` bytes from the Wiring buffer, or `None` when
    /// nothing is available.
    pub fn read_into(&mut self, dev: &mut Device, out: &mut [u8]) -> Option<usize> {
        // F7: with the Wiring buffer empty, drain the stack straight into the caller's buffer.
        if dev.policy().rx_copy == RxCopy::DrainAll && self.buffered() == 0 {
            let sock = self.sock?;
            return match dev.hal.receive(sock, out) {
                Ok(n) if n > 0 => Some(n),
                _ => None,
            };
        }
        if self.buffered() > 0 || self.available(dev) > 0 {
            let n = out.len().min(self.buffered());
            out[..n].copy_from_slice(&self.buffer[self.offset..self.offset + n]);
            self.offset += n;
            Some(n)
        } else {
            None
        }
    }

    /// `write(buf, size)`: queues bytes for sending; `None` when the socket cannot send.
    /// Legacy requires `status()`; F6 lets the stack decide (half-close allows writes).
    pub fn write(&mut self, dev: &mut Device, data: &[u8]) -> Option<usize> {
        let sock = self.sock?;
        if !dev.policy().write_after_peer_fin && !self.status(dev) {
            return None;
        }
        dev.hal.send(sock, data).ok()
    }

    /// `stop()`: closes the socket (FIN, or RST with unread data under F5) and forgets it.
    pub fn stop(&mut self, dev: &mut Device) {
        if let Some(sock) = self.sock.take() {
            dev.hal.close(sock, self.buffered());
        }
        self.offset = 0;
        self.total = 0;
    }

    /// `connected()`: whether the sketch should keep serving this client. When it turns false
    /// the client has been stopped.
    pub fn connected(&mut self, dev: &mut Device) -> bool {
        let Some(sock) = self.sock else {
            return false;
        };
        match dev.policy().connected_rule {
            ConnectedRule::StatusOrBuffered => {
                let mut rv = self.status(dev) || self.buffered() > 0;
                if !rv && self.sock.is_some() && !dev.hal.is_active(sock) {
                    // "Socket open but may be in CLOSE_WAIT yet ... may have data".
                    rv = self.available(dev) > 0;
                    if !rv {
                        self.stop(dev);
                    }
                }
                rv
            }
            ConnectedRule::AnyUnreadData => {
                if self.buffered() > 0 || dev.hal.rx_unread_bytes(sock) > 0 {
                    return true;
                }
                if dev.hal.is_active(sock) {
                    return true;
                }
                // Peer closed (or the socket is unusable) and nothing is left to read.
                self.stop(dev);
                false
            }
            ConnectedRule::OpenOnly => {
                // R2: whatever is still unread, a peer close ends the connection.
                if dev.hal.stack_open(sock) {
                    return true;
                }
                self.stop(dev);
                false
            }
        }
    }
}
