//! A minimal back-to-back bench for tests: the device and one peer smoltcp stack joined by a
//! lossless, zero-delay wire, stepped by hand. The simulator (`sim`) replaces it for scenarios.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::app::{App, Recorder};
use crate::{Device, DeviceConfig, DeviceEvent, DeviceSeeds, Policy};

/// The device settings for hand-built rule tests: the policy's defaults, with the Wi-Fi worker's
/// notification delay bounded by 500 us, so that a bench stepping 1 ms at a time sees each
/// notification within a step. The calibrated Photon delay (up to 3.3 ms, fitted to the field
/// figure) decides how often the simulator's timing loses a race; a rule test builds its race
/// by hand and only needs the notification to come.
pub fn bench_config(policy: &Policy) -> DeviceConfig {
    DeviceConfig {
        worker_delay_max_us: 500,
        ..DeviceConfig::for_policy(policy)
    }
}

/// The device's address on the bench.
pub const DEVICE_ADDR: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
/// The peer's address on the bench.
pub const PEER_ADDR: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

/// One end of the wire: receives from `inbound`, transmits into `outbound`.
pub struct WireEnd<'a> {
    inbound: &'a mut VecDeque<Vec<u8>>,
    outbound: &'a mut VecDeque<Vec<u8>>,
}

impl<'a> WireEnd<'a> {
    /// An end that reads `inbound` and writes `outbound` (IP medium, MTU 1500).
    pub fn new(inbound: &'a mut VecDeque<Vec<u8>>, outbound: &'a mut VecDeque<Vec<u8>>) -> Self {
        WireEnd { inbound, outbound }
    }
}

/// Receive token of a [`WireEnd`].
pub struct WireRx(Vec<u8>);
/// Transmit token of a [`WireEnd`].
pub struct WireTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for WireRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for WireTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl phy::Device for WireEnd<'_> {
    type RxToken<'b>
        = WireRx
    where
        Self: 'b;
    type TxToken<'b>
        = WireTx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _t: Instant) -> Option<(WireRx, WireTx<'_>)> {
        let packet = self.inbound.pop_front()?;
        Some((WireRx(packet), WireTx(self.outbound)))
    }

    fn transmit(&mut self, _t: Instant) -> Option<WireTx<'_>> {
        Some(WireTx(self.outbound))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// The bench: device, app, peer stack, wire and clock.
pub struct Bench {
    /// The device under test.
    pub dev: Device,
    /// The firmware app, run by [`Bench::run_app`].
    pub app: alloc::boxed::Box<dyn App>,
    /// Everything the app reported.
    pub seen: Recorder,
    /// Everything the device reported.
    pub device_events: Vec<DeviceEvent>,
    peer: Interface,
    /// The peer's sockets.
    pub peer_sockets: SocketSet<'static>,
    to_device: VecDeque<Vec<u8>>,
    to_peer: VecDeque<Vec<u8>>,
    /// The bench clock.
    pub now: Instant,
    next_port: u16,
}

impl Bench {
    /// A bench with `app` on a device running `policy` and `config`.
    pub fn new(policy: Policy, config: DeviceConfig, mut app: alloc::boxed::Box<dyn App>) -> Bench {
        let mut to_device = VecDeque::new();
        let mut to_peer = VecDeque::new();
        let now = Instant::from_millis(0);
        let mut end = WireEnd {
            inbound: &mut to_device,
            outbound: &mut to_peer,
        };
        let seeds = DeviceSeeds {
            stack: 0x5eed_0001,
            worker: 0x5eed_0002,
        };
        let mut dev = Device::new(&mut end, DEVICE_ADDR, 24, policy, config, seeds, now);
        let mut peer_config = Config::new(HardwareAddress::Ip);
        peer_config.random_seed = 0x5eed_0003;
        let mut peer = Interface::new(peer_config, &mut end, now);
        peer.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(PEER_ADDR), 24));
        });
        app.setup(&mut dev);
        Bench {
            dev,
            app,
            seen: Recorder::default(),
            device_events: Vec::new(),
            peer,
            peer_sockets: SocketSet::new(Vec::new()),
            to_device,
            to_peer,
            now,
            next_port: 49152,
        }
    }

    /// Opens a peer connection to `port` on the device (SYN is sent on the next exchange).
    pub fn connect(&mut self, port: u16) -> SocketHandle {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65535]),
            tcp::SocketBuffer::new(vec![0; 65535]),
        );
        // The peer acknowledges at once so tests see prompt ACKs.
        socket.set_ack_delay(None);
        // Each send is its own segment, as `peer_send` promises.
        socket.set_nagle_enabled(false);
        let local = self.next_port;
        self.next_port += 1;
        let _ = socket.connect(
            self.peer.context(),
            (IpAddress::Ipv4(DEVICE_ADDR), port),
            local,
        );
        self.peer_sockets.add(socket)
    }

    /// The peer socket behind a handle.
    pub fn peer(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.peer_sockets.get_mut::<tcp::Socket>(handle)
    }

    /// Sends `data` from a peer socket as its own segment: it is put on the wire before the
    /// next call adds more.
    pub fn peer_send(&mut self, handle: SocketHandle, data: &[u8]) {
        let _ = self.peer(handle).send_slice(data);
        self.poll_peer();
    }

    /// Closes a peer socket (FIN) and puts the FIN on the wire.
    pub fn peer_close(&mut self, handle: SocketHandle) {
        self.peer(handle).close();
        self.poll_peer();
    }

    /// Polls the peer stack once: what it sends goes on the wire towards the device.
    pub fn poll_peer(&mut self) {
        let mut end = WireEnd {
            inbound: &mut self.to_peer,
            outbound: &mut self.to_device,
        };
        self.peer.poll(self.now, &mut end, &mut self.peer_sockets);
    }

    /// Polls the device once at the current time: it takes what is on the wire towards it.
    pub fn poll_device(&mut self) {
        let mut end = WireEnd {
            inbound: &mut self.to_device,
            outbound: &mut self.to_peer,
        };
        self.dev.poll(self.now, &mut end);
        self.dev.take_events(&mut self.device_events);
    }

    /// Carries packets both ways at the current time until the wire is quiet.
    /// The application does not run.
    pub fn exchange(&mut self) {
        for _ in 0..1000 {
            self.poll_peer();
            self.poll_device();
            if self.to_device.is_empty() && self.to_peer.is_empty() {
                return;
            }
        }
    }

    /// Advances the clock by `ms`, in 1 ms steps, exchanging packets at each step (timers,
    /// worker thread). The application does not run.
    pub fn advance(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += Duration::from_millis(1);
            self.exchange();
        }
    }

    /// Runs `loops` application loop iterations, 1 ms apart, exchanging packets in between.
    pub fn run_app(&mut self, loops: usize) {
        for _ in 0..loops {
            self.now += Duration::from_millis(1);
            self.exchange();
            self.app.loop_once(self.now, &mut self.dev, &mut self.seen);
            self.exchange();
        }
    }

    /// Puts raw bytes on the wire towards the device, as if the link carried them.
    pub fn inject(&mut self, packet: Vec<u8>) {
        self.to_device.push_back(packet);
    }

    /// Packets on the wire towards the device (for capture in tests).
    pub fn to_device(&self) -> &VecDeque<Vec<u8>> {
        &self.to_device
    }

    /// Swaps the last two packets on the wire towards the device (the later one overtakes).
    pub fn reorder_to_device(&mut self) {
        let n = self.to_device.len();
        if n >= 2 {
            self.to_device.swap(n - 1, n - 2);
        }
    }

    /// Loses everything on the wire towards the peer.
    pub fn lose_to_peer(&mut self) {
        self.to_peer.clear();
    }

    /// Packets the device sent that the peer has not yet received (for capture in tests).
    pub fn to_peer(&self) -> &VecDeque<Vec<u8>> {
        &self.to_peer
    }

    /// True if the device reported an event matching `pred` (including events of Wiring
    /// calls made since the last exchange).
    pub fn device_saw(&mut self, pred: impl Fn(&DeviceEvent) -> bool) -> bool {
        self.dev.take_events(&mut self.device_events);
        self.device_events.iter().any(pred)
    }
}
