//! Device OS's TCP server test app (`user/tests/app/tcp_server/server.cpp` in
//! particle-iot/device-os) as a firmware app: a `ServerManager` running test servers, each on
//! its own port, started and stopped at run time by control requests ([`ControlRequest`]);
//! `loop()` runs every server once. `setup()` starts none, as the original.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use smoltcp::time::Instant;

use super::control::{ControlReply, ControlRequest};
use super::App;
use crate::device::Device;
use crate::event::AppEventSink;

mod server;

pub use server::{Server, ServerKind};

/// Free heap of a Photon running this app with no server and no connection (the model's
/// figure for `System.freeMemory()`; each pool slot in use takes its stack buffers from it).
const FREE_HEAP_AT_BOOT_BYTES: usize = 60_000;

/// Heap one `TCPServer` object and its WICED server take.
const SERVER_BYTES: usize = 400;

/// `ServerManager`: the running servers, in start order.
#[derive(Debug, Default)]
pub struct ServerManager {
    servers: Vec<Server>,
}

impl ServerManager {
    /// No server running.
    pub fn new() -> ServerManager {
        ServerManager::default()
    }

    /// The running servers, in start order.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// `startServer(id, type, port)`, with the vendor app's error messages.
    pub fn start_server(
        &mut self,
        dev: &mut Device,
        id: &str,
        kind: &str,
        port: u32,
    ) -> Result<(), String> {
        if id.is_empty() {
            return Err("Invalid server ID".into());
        }
        if self.servers.iter().any(|s| s.id() == id) {
            return Err(format!("Server is already running: {id}"));
        }
        let kind =
            ServerKind::from_name(kind).ok_or_else(|| format!("Unknown server type: {kind}"))?;
        // WICED cannot bind a port twice; the model's HAL would share the listener instead.
        let port = u16::try_from(port)
            .ok()
            .filter(|p| self.servers.iter().all(|s| s.port() != *p))
            .ok_or_else(|| String::from("Unable to start server"))?;
        let mut server = Server::new(id, kind, port);
        server.start(dev)?;
        self.servers.push(server);
        Ok(())
    }

    /// `stopServer(id)`: the server's error, if it finished with one.
    pub fn stop_server(
        &mut self,
        dev: &mut Device,
        id: &str,
        sink: &mut dyn AppEventSink,
    ) -> Result<(), String> {
        let i = self
            .servers
            .iter()
            .position(|s| s.id() == id)
            .ok_or_else(|| format!("Unknown server ID: {id}"))?;
        let mut server = self.servers.remove(i);
        server.destroy(dev, sink);
        server.error().map_or(Ok(()), |e| Err(e.into()))
    }

    /// `stopServers()`: stops every server; the first error any of them finished with.
    pub fn stop_servers(
        &mut self,
        dev: &mut Device,
        sink: &mut dyn AppEventSink,
    ) -> Result<(), String> {
        let mut first_error = None;
        for mut server in self.servers.drain(..) {
            server.destroy(dev, sink);
            if first_error.is_none() {
                first_error = server.error().map(String::from);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `System.freeMemory()` as the model counts it: the boot figure less the servers and the
    /// stack buffers of the pool slots in use.
    pub fn free_memory(&self, dev: &Device) -> u32 {
        let config = dev.config();
        let per_slot = config.rx_buffer_size + config.tx_buffer_size + config.wiring_buffer_size;
        let used = self.servers.len() * SERVER_BYTES + dev.pool_in_use() * per_slot;
        FREE_HEAP_AT_BOOT_BYTES.saturating_sub(used) as u32
    }
}

impl App for ServerManager {
    fn setup(&mut self, _dev: &mut Device) {}

    fn loop_once(&mut self, _now: Instant, dev: &mut Device, sink: &mut dyn AppEventSink) {
        for server in &mut self.servers {
            server.run(dev, sink);
        }
    }

    fn control(
        &mut self,
        _now: Instant,
        dev: &mut Device,
        request: &ControlRequest<'_>,
        sink: &mut dyn AppEventSink,
    ) -> ControlReply {
        let done =
            |r: Result<(), String>| r.map_or_else(ControlReply::Error, |()| ControlReply::Done);
        match *request {
            ControlRequest::StartServer { id, kind, port } => {
                done(self.start_server(dev, id, kind, port))
            }
            ControlRequest::StopServer { id } => done(self.stop_server(dev, id, sink)),
            ControlRequest::StopServers => done(self.stop_servers(dev, sink)),
            ControlRequest::FreeMemory => ControlReply::FreeMemory {
                bytes: self.free_memory(dev),
            },
        }
    }

    fn idle(&self, dev: &Device) -> bool {
        self.servers.is_empty() && !dev.accept_pending()
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;

    use smoltcp::socket::tcp::State;

    use super::*;
    use crate::app::RecordedKind;
    use crate::testkit::Bench;
    use crate::{DeviceConfig, DeviceEvent, Policy};

    fn bench() -> Bench {
        let policy = Policy::FIXED;
        Bench::new(
            policy,
            DeviceConfig::for_policy(&policy),
            Box::new(ServerManager::new()),
        )
    }

    fn control(b: &mut Bench, request: ControlRequest<'_>) -> ControlReply {
        b.app.control(b.now, &mut b.dev, &request, &mut b.seen)
    }

    fn start(b: &mut Bench, id: &str, kind: &str, port: u32) -> ControlReply {
        control(b, ControlRequest::StartServer { id, kind, port })
    }

    fn echoes(b: &mut Bench, port: u16, data: &[u8]) -> bool {
        let h = b.connect(port);
        b.run_app(5);
        b.peer_send(h, data);
        b.run_app(10);
        let mut back = [0u8; 64];
        let n = b.peer(h).recv_slice(&mut back).unwrap_or(0);
        b.peer(h).abort();
        b.run_app(2);
        &back[..n] == data
    }

    #[test]
    fn an_echo_server_echoes_and_five_run_at_once() {
        let mut b = bench();
        assert_eq!(start(&mut b, "e", "EchoServer", 1234), ControlReply::Done);
        assert!(echoes(&mut b, 1234, b"hello"));
        for (id, port) in [("a", 2001), ("b", 2002), ("c", 2003), ("d", 2004)] {
            assert_eq!(start(&mut b, id, "EchoServer", port), ControlReply::Done);
        }
        for port in [1234, 2001, 2002, 2003, 2004] {
            assert!(echoes(&mut b, port, &port.to_be_bytes()), "port {port}");
        }
        assert_eq!(
            start(&mut b, "f", "EchoServer", 2005),
            ControlReply::Error("Unable to start server".into())
        );
    }

    #[test]
    fn stopping_a_server_frees_its_port() {
        let mut b = bench();
        assert_eq!(start(&mut b, "s", "SimpleServer", 2001), ControlReply::Done);
        assert_eq!(
            control(&mut b, ControlRequest::StopServer { id: "s" }),
            ControlReply::Done
        );
        let h = b.connect(2001);
        b.run_app(5);
        assert_eq!(b.peer(h).state(), State::Closed, "a stopped port refuses");
        assert_eq!(start(&mut b, "t", "EchoServer", 2001), ControlReply::Done);
        assert!(echoes(&mut b, 2001, b"again"));
    }

    #[test]
    fn bad_requests_get_the_vendor_errors() {
        let mut b = bench();
        let err = |s: &str| ControlReply::Error(s.into());
        assert_eq!(start(&mut b, "", "EchoServer", 1), err("Invalid server ID"));
        assert_eq!(
            start(&mut b, "x", "Nope", 1),
            err("Unknown server type: Nope")
        );
        assert_eq!(
            start(&mut b, "x", "EchoServer", 0),
            err("Unable to start server")
        );
        assert_eq!(
            start(&mut b, "x", "EchoServer", 70000),
            err("Unable to start server")
        );
        assert_eq!(start(&mut b, "x", "EchoServer", 5), ControlReply::Done);
        assert_eq!(
            start(&mut b, "x", "EchoServer", 6),
            err("Server is already running: x")
        );
        assert_eq!(
            start(&mut b, "y", "EchoServer", 5),
            err("Unable to start server")
        );
        assert_eq!(
            control(&mut b, ControlRequest::StopServer { id: "z" }),
            err("Unknown server ID: z")
        );
        assert!(matches!(
            control(&mut b, ControlRequest::FreeMemory),
            ControlReply::FreeMemory { bytes } if bytes > 0
        ));
        assert_eq!(
            control(&mut b, ControlRequest::StopServers),
            ControlReply::Done
        );
        assert!(ServerManager::new().servers().is_empty());
    }

    /// Every device event names a real connection: none with port 0 or 0.0.0.0 (a listener's
    /// placeholder).
    fn phantom_events(b: &mut Bench) -> Vec<DeviceEvent> {
        b.dev.take_events(&mut b.device_events);
        let unknown = |e: &DeviceEvent| e.remote().port == 0 || e.remote().addr.is_unspecified();
        b.device_events.iter().copied().filter(unknown).collect()
    }

    /// Opens one peer connection to each port and keeps them open: how many the app accepted
    /// and the peer sees established.
    fn served_at_once(b: &mut Bench, ports: &[u16]) -> usize {
        let peers: Vec<_> = ports.iter().map(|&p| b.connect(p)).collect();
        b.run_app(20);
        let accepted = b
            .seen
            .events
            .iter()
            .filter(|e| e.1 == RecordedKind::Accepted)
            .count();
        let established = peers
            .iter()
            .filter(|&&h| b.peer(h).state() == State::Established)
            .count();
        accepted.min(established)
    }

    fn stop_all(b: &mut Bench) {
        let reply = control(b, ControlRequest::StopServers);
        assert_eq!(reply, ControlReply::Done);
    }

    /// Issue 17: a stopped server's listeners were taken for connections by the next SYN.
    #[test]
    fn a_restarted_server_reports_no_phantom_connection() {
        let mut b = bench();
        assert_eq!(start(&mut b, "s", "EchoServer", 1234), ControlReply::Done);
        b.run_app(2);
        stop_all(&mut b);
        assert_eq!(start(&mut b, "s", "EchoServer", 1234), ControlReply::Done);
        assert!(echoes(&mut b, 1234, b"after restart"));
        assert_eq!(phantom_events(&mut b), [], "events naming no connection");
        let syns = b
            .device_events
            .iter()
            .filter(|e| matches!(e, DeviceEvent::SynReceived { .. }))
            .count();
        assert_eq!(syns, 1, "one SYN, one connection");
    }

    /// A server stopped while connections wait in its accept queue closes them as sockets
    /// whose data the application never read: under the fixed rules (F5) the peer sees a
    /// reset, so a connection that was never served is never a silent one; the legacy rules
    /// close with a FIN, as lwIP's netconn_delete does.
    #[test]
    fn a_stopped_server_resets_the_connections_it_never_handed_out() {
        for (policy, reset) in [(Policy::FIXED, true), (Policy::LEGACY, false)] {
            let config = DeviceConfig::for_policy(&policy);
            let mut b = Bench::new(policy, config, Box::new(ServerManager::new()));
            assert_eq!(start(&mut b, "s", "EchoServer", 1234), ControlReply::Done);
            b.run_app(1);
            let h = b.connect(1234);
            b.advance(20);
            assert_eq!(b.peer(h).state(), State::Established);
            stop_all(&mut b);
            b.advance(20);
            let state = b.peer(h).state();
            match reset {
                true => assert_eq!(state, State::Closed, "{policy:?}: reset"),
                false => assert_eq!(state, State::CloseWait, "{policy:?}: FIN"),
            }
        }
    }

    /// Issue 17: a stopped server's listener sockets go back to the pool at once, so five
    /// servers started after it serve as many connections as five on a fresh device.
    #[test]
    fn servers_started_after_a_stopped_one_get_the_whole_pool() {
        let policy = Policy::FIXED;
        let config = DeviceConfig {
            pool_size: 5,
            pool_reserved: 0,
            ..DeviceConfig::for_policy(&policy)
        };
        let ports = [2001, 2002, 2003, 2004, 2005];
        let five = |b: &mut Bench| {
            for (i, port) in ports.iter().enumerate() {
                let id = alloc::format!("s{i}");
                let reply = start(b, &id, "SimpleServer", u32::from(*port));
                assert_eq!(reply, ControlReply::Done);
            }
        };
        let mut fresh = Bench::new(policy, config, Box::new(ServerManager::new()));
        five(&mut fresh);
        assert_eq!(served_at_once(&mut fresh, &ports), 5, "a fresh device");

        let mut b = Bench::new(policy, config, Box::new(ServerManager::new()));
        assert_eq!(start(&mut b, "s", "SimpleServer", 1234), ControlReply::Done);
        b.run_app(2);
        stop_all(&mut b);
        five(&mut b);
        assert_eq!(served_at_once(&mut b, &ports), 5, "after a stopped server");
        assert_eq!(phantom_events(&mut b), []);
    }

    /// The server that gives its clients up: `TCPServer::available()` keeps only what it
    /// returned last, so the next call (one loop later) destroys the client, which closes
    /// (the vendor's `TcpClientClosesOnDestructionTest`).
    #[test]
    fn a_given_up_client_closes_at_the_next_available() {
        let mut b = bench();
        let kind = "TcpClientClosesOnDestructionTestServer";
        assert_eq!(start(&mut b, "d", kind, 3000), ControlReply::Done);
        let first = b.connect(3000);
        b.exchange();
        b.advance(2);
        assert_eq!(b.peer(first).state(), State::Established);
        b.run_app(3);
        assert!(
            matches!(b.peer(first).state(), State::CloseWait | State::Closed),
            "{:?}",
            b.peer(first).state()
        );
    }
}
