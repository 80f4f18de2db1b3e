//! The careful server of the field report, section 2: several client slots, a 1024-byte read
//! buffer per slot, an inactivity timeout, and a check that bytes follow an expected pattern.
//! Each slot accepts with `client = server.available(); if client.connected() { ... }`.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::time::{Duration, Instant};

use super::App;
use crate::device::Device;
use crate::event::{AppEvent, AppEventSink, ConnId};
use crate::wiring::{TcpClient, TcpServer};

#[derive(Debug, Default)]
struct ClientSlot {
    client: TcpClient,
    conn: Option<ConnId>,
    last_activity: Option<Instant>,
    offset: u64,
}

/// The multi-client receiver.
#[derive(Debug)]
pub struct MultiClientReceiver {
    server: TcpServer,
    slots: Vec<ClientSlot>,
    inactivity_timeout: Duration,
    /// Every connection's bytes must repeat this message from its first byte.
    pattern: Vec<u8>,
    buf: Vec<u8>,
}

impl MultiClientReceiver {
    /// The report's server: `slots` (5) client slots, `inactivity_timeout` (30 s), and the
    /// message each connection repeats (`pattern`; empty means "any bytes").
    pub fn new(
        port: u16,
        slots: usize,
        inactivity_timeout: Duration,
        pattern: Vec<u8>,
    ) -> MultiClientReceiver {
        MultiClientReceiver {
            server: TcpServer::new(port),
            slots: (0..slots).map(|_| ClientSlot::default()).collect(),
            inactivity_timeout,
            pattern,
            buf: vec![0; 1024],
        }
    }
}

impl App for MultiClientReceiver {
    fn setup(&mut self, dev: &mut Device) {
        let _ = self.server.begin(dev);
    }

    fn loop_once(&mut self, now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        for slot in &mut self.slots {
            if !slot.client.connected(dev) {
                if let Some(conn) = slot.conn.take() {
                    sink.app_event(AppEvent::Disconnected { conn });
                }
                slot.client = self.server.available(dev);
                if slot.client.connected(dev) {
                    slot.conn = slot.client.conn(dev);
                    slot.last_activity = Some(now);
                    slot.offset = 0;
                    if let Some(conn) = slot.conn {
                        sink.app_event(AppEvent::Accepted { conn });
                    }
                }
                continue;
            }
            let Some(conn) = slot.conn else { continue };
            if let Some(n) = slot.client.read_into(dev, &mut self.buf) {
                let data = &self.buf[..n];
                sink.app_event(AppEvent::Read { conn, data });
                if !self.pattern.is_empty() {
                    let len = self.pattern.len() as u64;
                    if let Some(i) = data.iter().enumerate().position(|(i, b)| {
                        *b != self.pattern[((slot.offset + i as u64) % len) as usize]
                    }) {
                        sink.app_event(AppEvent::Mismatch {
                            conn,
                            offset: slot.offset + i as u64,
                        });
                    }
                }
                slot.offset += n as u64;
                slot.last_activity = Some(now);
            } else if slot
                .last_activity
                .is_some_and(|t| now - t > self.inactivity_timeout)
            {
                slot.client.stop(dev);
                sink.app_event(AppEvent::Closed { conn });
                slot.conn = None;
            }
        }
    }

    fn idle(&self, dev: &Device) -> bool {
        self.slots
            .iter()
            .all(|s| s.conn.is_none() && !s.client.is_open())
            && self.server.is_listening()
            && !dev.accept_pending()
    }
}
