//! The test servers of Device OS's `user/tests/app/tcp_server/server.cpp`: the base `Server`
//! (accepts and stops each client), `SimpleServer` (tracks its clients and reads what they
//! send), `EchoServer` (writes it back) and `TcpClientClosesOnDestructionTestServer` (accepts
//! and gives the client up).

use alloc::string::String;
use alloc::vec::Vec;

use crate::device::Device;
use crate::event::{AppEvent, AppEventSink, ConnId};
use crate::wiring::{TcpClient, TcpServer};

/// The server types the app registers (`REGISTER_SERVER`), by the name a request gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The base `Server`: accepts and stops every client at once (not registered by the
    /// vendor app: reachable only from code).
    Base,
    /// `SimpleServer`.
    Simple,
    /// `EchoServer`.
    Echo,
    /// `TcpClientClosesOnDestructionTestServer`.
    ClosesOnDestruction,
}

impl ServerKind {
    /// The registered type called `name`.
    pub fn from_name(name: &str) -> Option<ServerKind> {
        match name {
            "SimpleServer" => Some(ServerKind::Simple),
            "EchoServer" => Some(ServerKind::Echo),
            "TcpClientClosesOnDestructionTestServer" => Some(ServerKind::ClosesOnDestruction),
            _ => None,
        }
    }
}

/// `EchoServer::buf_`: what one read-and-write step moves at most.
const ECHO_CHUNK_BYTES: usize = 128;

/// One client of a `SimpleServer`.
#[derive(Debug)]
struct Connection {
    client: TcpClient,
    conn: ConnId,
}

/// One running test server.
#[derive(Debug)]
pub struct Server {
    id: String,
    port: u16,
    kind: ServerKind,
    server: Option<TcpServer>,
    /// `SimpleServer::conns_`.
    conns: Vec<Connection>,
    /// The client `TCPServer` keeps a reference to (what its last `available()` returned):
    /// replaced, the old one is destroyed, and a destroyed `TCPClient` closes its socket.
    last: Option<Connection>,
    buf: [u8; ECHO_CHUNK_BYTES],
    /// `Errorable::error()`: the first failed check while running.
    error: Option<String>,
}

impl Server {
    /// `new _type(id, port)`: not listening yet.
    pub fn new(id: &str, kind: ServerKind, port: u16) -> Server {
        Server {
            id: id.into(),
            port,
            kind,
            server: None,
            conns: Vec::new(),
            last: None,
            buf: [0; ECHO_CHUNK_BYTES],
            error: None,
        }
    }

    /// The server's name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The error the server finished with, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// `start()`: listens. Fails as `TCPServer::begin()` does ("Unable to start server").
    pub fn start(&mut self, dev: &mut Device) -> Result<(), String> {
        if self.server.is_none() {
            let mut server = TcpServer::new(self.port);
            if server.begin(dev).is_err() {
                return Err("Unable to start server".into());
            }
            self.server = Some(server);
        }
        Ok(())
    }

    /// `stop()`: stops listening.
    pub fn stop(&mut self, dev: &mut Device) {
        if let Some(mut server) = self.server.take() {
            server.stop(dev);
        }
    }

    /// The destructor: stops listening and destroys the clients it holds (each closes).
    pub fn destroy(&mut self, dev: &mut Device, sink: &mut dyn AppEventSink) {
        self.stop(dev);
        for mut c in self.conns.drain(..).chain(self.last.take()) {
            c.client.stop(dev);
            sink.app_event(AppEvent::Closed { conn: c.conn });
        }
    }

    /// `run()`: one loop iteration of this server.
    pub fn run(&mut self, dev: &mut Device, sink: &mut dyn AppEventSink) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        match self.kind {
            ServerKind::Base => loop {
                let mut client = server.available(dev);
                let Some(conn) = client.conn(dev) else { break };
                sink.app_event(AppEvent::Accepted { conn });
                client.stop(dev);
                sink.app_event(AppEvent::Closed { conn });
            },
            ServerKind::ClosesOnDestruction => {
                // `TCPServer::available()` keeps what it returns in `_client`, an invalid client
                // when nothing is pending: the previous client is destroyed either way.
                let client = server.available(dev);
                let new = client.conn(dev).map(|conn| Connection { client, conn });
                if let Some(c) = &new {
                    sink.app_event(AppEvent::Accepted { conn: c.conn });
                }
                if let Some(mut old) = core::mem::replace(&mut self.last, new) {
                    old.client.stop(dev);
                    sink.app_event(AppEvent::Closed { conn: old.conn });
                }
            }
            ServerKind::Simple | ServerKind::Echo => self.run_simple(dev, sink),
        }
    }

    /// `SimpleServer::run()`: drop disconnected clients, serve readable ones, take one new.
    fn run_simple(&mut self, dev: &mut Device, sink: &mut dyn AppEventSink) {
        let mut i = 0;
        while i < self.conns.len() {
            if self.conns[i].client.connected(dev) {
                i += 1;
                continue;
            }
            let mut c = self.conns.remove(i);
            c.client.stop(dev);
            sink.app_event(AppEvent::Disconnected { conn: c.conn });
        }
        for i in 0..self.conns.len() {
            if self.conns[i].client.available(dev) > 0 {
                self.readable(i, dev, sink);
            }
        }
        let Some(server) = self.server.as_mut() else {
            return;
        };
        let client = server.available(dev);
        if let Some(conn) = client.conn(dev) {
            sink.app_event(AppEvent::Accepted { conn });
            self.conns.push(Connection { client, conn });
        }
    }

    /// `readable()`: `SimpleServer` reads and discards, `EchoServer` writes back what it read.
    fn readable(&mut self, i: usize, dev: &mut Device, sink: &mut dyn AppEventSink) {
        let c = &mut self.conns[i];
        loop {
            let n = c.client.available(dev).min(ECHO_CHUNK_BYTES);
            if n == 0 {
                break;
            }
            let read = c.client.read_into(dev, &mut self.buf[..n]).unwrap_or(0);
            if read == 0 {
                break;
            }
            sink.app_event(AppEvent::Read {
                conn: c.conn,
                data: &self.buf[..read],
            });
            if self.kind != ServerKind::Echo {
                continue;
            }
            if read != n {
                self.error
                    .get_or_insert_with(|| "Assertion failed: client.read(buf, n) == n".into());
            }
            let wrote = c.client.write(dev, &self.buf[..read]).unwrap_or(0);
            if wrote > 0 {
                sink.app_event(AppEvent::Wrote {
                    conn: c.conn,
                    bytes: wrote,
                });
            }
            if wrote != read {
                self.error
                    .get_or_insert_with(|| "Assertion failed: client.write(buf, n) == n".into());
            }
        }
    }
}
