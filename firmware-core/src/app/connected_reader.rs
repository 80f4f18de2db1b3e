//! The `while (client.connected())` reader of the Arduino-core reports (arduino-esp32 #8042,
//! esp8266/Arduino #6701, the Electron's HTTP reader of device-os #896): one client at a time,
//! one byte per `available()` check, each byte taking `consume` to process:
//! ```text
//! client = server.available()
//! if (client) {                        // operator bool: connected()
//!     while (client.connected())
//!         if (client.available()) process(client.read());   // `consume` per byte
//!     client.stop();
//! }
//! ```

use smoltcp::time::{Duration, Instant};

use super::App;
use crate::device::Device;
use crate::event::{AppEvent, AppEventSink, ConnId};
use crate::wiring::{TcpClient, TcpServer};

/// One client at a time, read byte by byte while `connected()`.
#[derive(Debug)]
pub struct ConnectedReader {
    server: TcpServer,
    client: TcpClient,
    current: Option<ConnId>,
    consume: Duration,
    busy_until: Instant,
}

impl ConnectedReader {
    /// Serves `port`; processing one byte takes `consume`.
    pub fn new(port: u16, consume: Duration) -> ConnectedReader {
        ConnectedReader {
            server: TcpServer::new(port),
            client: TcpClient::invalid(),
            current: None,
            consume,
            busy_until: Instant::ZERO,
        }
    }
}

impl App for ConnectedReader {
    fn setup(&mut self, dev: &mut Device) {
        let _ = self.server.begin(dev);
    }

    fn loop_once(&mut self, now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        if now < self.busy_until {
            return;
        }
        let Some(conn) = self.current else {
            let mut client = self.server.available(dev);
            let Some(conn) = client.conn(dev) else {
                return;
            };
            // `if (client)`: a client that is no longer connected is dropped unread.
            if client.connected(dev) {
                sink.app_event(AppEvent::Accepted { conn });
                self.client = client;
                self.current = Some(conn);
            } else {
                client.stop(dev);
            }
            return;
        };
        if !self.client.connected(dev) {
            self.client.stop(dev);
            sink.app_event(AppEvent::Disconnected { conn });
            self.current = None;
            return;
        }
        if self.client.available(dev) > 0 {
            if let Some(byte) = self.client.read(dev) {
                sink.app_event(AppEvent::Read {
                    conn,
                    data: &[byte],
                });
                self.busy_until = now + self.consume;
            }
        }
    }

    fn idle(&self, dev: &Device) -> bool {
        self.current.is_none() && self.server.is_listening() && !dev.accept_pending()
    }
}
