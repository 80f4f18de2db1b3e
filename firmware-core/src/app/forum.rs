//! The sketch of the forum report, section 1:
//! ```text
//! if client.connected():
//!     if client.available() != 0:
//!         while client.available() != 0: print(client.read())
//! else:
//!     client = server.available()
//! ```

use alloc::vec::Vec;

use smoltcp::time::Instant;

use super::{drain_into, App};
use crate::device::Device;
use crate::event::{AppEvent, AppEventSink, ConnId};
use crate::wiring::{TcpClient, TcpServer};

/// The forum sketch on one port (6000 in the report).
#[derive(Debug)]
pub struct ForumSketch {
    server: TcpServer,
    client: TcpClient,
    /// The connection `client` serves, remembered so its end can be reported.
    current: Option<ConnId>,
    scratch: Vec<u8>,
}

impl ForumSketch {
    /// `TCPServer server(port); TCPClient client;`
    pub fn new(port: u16) -> ForumSketch {
        ForumSketch {
            server: TcpServer::new(port),
            client: TcpClient::invalid(),
            current: None,
            scratch: Vec::new(),
        }
    }
}

impl App for ForumSketch {
    fn setup(&mut self, dev: &mut Device) {
        // A failure here is retried by `available()` on every loop, as in the original.
        let _ = self.server.begin(dev);
    }

    fn loop_once(&mut self, _now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        if self.client.connected(dev) {
            if let Some(conn) = self.current {
                if self.client.available(dev) != 0 {
                    drain_into(&mut self.client, conn, dev, &mut self.scratch, sink);
                }
            }
        } else {
            if let Some(conn) = self.current.take() {
                sink.app_event(AppEvent::Disconnected { conn });
            }
            // The old client is overwritten without stop(), exactly as the sketch does.
            self.client = self.server.available(dev);
            self.current = self.client.conn(dev);
            if let Some(conn) = self.current {
                sink.app_event(AppEvent::Accepted { conn });
            }
        }
    }

    fn idle(&self, dev: &Device) -> bool {
        // No client (an open one may still be stopped by `connected()`), nothing to accept.
        self.current.is_none()
            && !self.client.is_open()
            && self.server.is_listening()
            && !dev.accept_pending()
    }
}
