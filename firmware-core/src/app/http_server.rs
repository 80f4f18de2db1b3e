//! An HTTP-ish server with a few worker slots (OpenBK7231T_App's HTTP server, the serial
//! TCPServer of device-os #660, the polling server of esp8266/Arduino #2569): each loop takes
//! new connections while a slot is free, reads what each client sent, and once a client's
//! request is in and `service` has passed since it was taken, writes a response and stops it.
//! A client that ends (not `connected()`) with nothing left to read is stopped too.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::time::{Duration, Instant};

use super::{drain_into, App};
use crate::device::Device;
use crate::event::{AppEvent, AppEventSink, ConnId};
use crate::wiring::{TcpClient, TcpServer};

/// The response every served request gets.
const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nok\n";

/// One client being served.
#[derive(Debug)]
struct Worker {
    client: TcpClient,
    conn: ConnId,
    taken_at: Instant,
    read: usize,
}

/// Serves up to `slots` clients at once, each for `service` after its request arrived.
#[derive(Debug)]
pub struct HttpServer {
    server: TcpServer,
    workers: Vec<Option<Worker>>,
    service: Duration,
    scratch: Vec<u8>,
}

impl HttpServer {
    /// Serves `port` with `slots` workers (at least one), each request taking `service`.
    pub fn new(port: u16, slots: usize, service: Duration) -> HttpServer {
        let mut workers = Vec::new();
        workers.resize_with(slots.max(1), || None);
        HttpServer {
            server: TcpServer::new(port),
            workers,
            service,
            scratch: vec![],
        }
    }

    /// Takes new clients into free slots (`if (client)` checks each one first).
    fn take_new(&mut self, now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        for slot in self.workers.iter_mut().filter(|w| w.is_none()) {
            let mut client = self.server.available(dev);
            let Some(conn) = client.conn(dev) else {
                return;
            };
            if client.connected(dev) {
                sink.app_event(AppEvent::Accepted { conn });
                *slot = Some(Worker {
                    client,
                    conn,
                    taken_at: now,
                    read: 0,
                });
            } else {
                client.stop(dev);
            }
        }
    }
}

impl App for HttpServer {
    fn setup(&mut self, dev: &mut Device) {
        let _ = self.server.begin(dev);
    }

    fn loop_once(&mut self, now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        self.take_new(now, dev, sink);
        for slot in self.workers.iter_mut() {
            let Some(w) = slot else { continue };
            w.read += drain_into(&mut w.client, w.conn, dev, &mut self.scratch, sink);
            if w.read > 0 && now >= w.taken_at + self.service {
                if let Some(bytes) = w.client.write(dev, RESPONSE) {
                    sink.app_event(AppEvent::Wrote {
                        conn: w.conn,
                        bytes,
                    });
                }
                w.client.stop(dev);
                sink.app_event(AppEvent::Closed { conn: w.conn });
                *slot = None;
            } else if w.read == 0 && !w.client.connected(dev) {
                // Ended before a request came (a half-closed client with its request in still
                // gets the answer).
                sink.app_event(AppEvent::Disconnected { conn: w.conn });
                *slot = None;
            }
        }
    }

    fn idle(&self, dev: &Device) -> bool {
        self.workers.iter().all(Option::is_none)
            && self.server.is_listening()
            && !dev.accept_pending()
    }
}
