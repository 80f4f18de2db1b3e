//! Echo server: writes back what it reads; stops when the peer is done.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::time::Instant;

use super::App;
use crate::device::Device;
use crate::event::{AppEvent, AppEventSink, ConnId};
use crate::wiring::{TcpClient, TcpServer};

/// One connection at a time, echoing everything.
#[derive(Debug)]
pub struct Echo {
    server: TcpServer,
    client: TcpClient,
    current: Option<ConnId>,
    buf: Vec<u8>,
    /// Bytes read but not yet accepted by the stack's send buffer.
    pending: Vec<u8>,
}

impl Echo {
    /// Echo on `port`.
    pub fn new(port: u16) -> Echo {
        Echo {
            server: TcpServer::new(port),
            client: TcpClient::invalid(),
            current: None,
            buf: vec![0; 512],
            pending: Vec::new(),
        }
    }
}

impl App for Echo {
    fn setup(&mut self, dev: &mut Device) {
        let _ = self.server.begin(dev);
    }

    fn loop_once(&mut self, _now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        let Some(conn) = self.current else {
            self.client = self.server.available(dev);
            self.current = self.client.conn(dev);
            self.pending.clear();
            if let Some(conn) = self.current {
                sink.app_event(AppEvent::Accepted { conn });
            }
            return;
        };
        if !self.pending.is_empty() {
            // A full send buffer takes nothing: no event, as tcp_server's echo reports it.
            if let Some(n) = self.client.write(dev, &self.pending).filter(|&n| n > 0) {
                self.pending.drain(..n);
                sink.app_event(AppEvent::Wrote { conn, bytes: n });
            }
        }
        if !self.client.connected(dev) {
            sink.app_event(AppEvent::Disconnected { conn });
            self.current = None;
            return;
        }
        if self.pending.is_empty() {
            if let Some(n) = self.client.read_into(dev, &mut self.buf) {
                sink.app_event(AppEvent::Read {
                    conn,
                    data: &self.buf[..n],
                });
                self.pending.extend_from_slice(&self.buf[..n]);
            }
        }
    }

    fn idle(&self, dev: &Device) -> bool {
        // Without a connection the loop only asks for one.
        self.current.is_none() && self.server.is_listening() && !dev.accept_pending()
    }
}
