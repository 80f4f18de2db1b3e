//! Section 3 of the field report, "server closes": the device reads until it has `close_after`
//! bytes of a connection, then closes it itself. Loses nothing under either policy.

use alloc::vec::Vec;

use smoltcp::time::Instant;

use super::{drain_into, App};
use crate::device::Device;
use crate::event::{AppEvent, AppEventSink, ConnId};
use crate::wiring::{TcpClient, TcpServer};

/// Accepts one connection at a time and closes it after `close_after` bytes.
#[derive(Debug)]
pub struct ServerCloses {
    server: TcpServer,
    client: TcpClient,
    current: Option<ConnId>,
    received: usize,
    close_after: usize,
    scratch: Vec<u8>,
}

impl ServerCloses {
    /// Serves `port`, closing each connection after `close_after` bytes (10 in the report).
    pub fn new(port: u16, close_after: usize) -> ServerCloses {
        ServerCloses {
            server: TcpServer::new(port),
            client: TcpClient::invalid(),
            current: None,
            received: 0,
            close_after,
            scratch: Vec::new(),
        }
    }
}

impl App for ServerCloses {
    fn setup(&mut self, dev: &mut Device) {
        let _ = self.server.begin(dev);
    }

    fn loop_once(&mut self, _now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        let Some(conn) = self.current else {
            self.client = self.server.available(dev);
            self.current = self.client.conn(dev);
            self.received = 0;
            if let Some(conn) = self.current {
                sink.app_event(AppEvent::Accepted { conn });
            }
            return;
        };
        if self.client.connected(dev) {
            self.received += drain_into(&mut self.client, conn, dev, &mut self.scratch, sink);
            if self.received >= self.close_after {
                self.client.stop(dev);
                sink.app_event(AppEvent::Closed { conn });
                self.current = None;
            }
        } else {
            sink.app_event(AppEvent::Disconnected { conn });
            self.current = None;
        }
    }

    fn idle(&self, dev: &Device) -> bool {
        // Without a connection the loop only asks for one.
        self.current.is_none() && self.server.is_listening() && !dev.accept_pending()
    }
}
