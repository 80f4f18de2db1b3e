//! The device: a smoltcp interface, the socket HAL and the policy, driven by the host.

use alloc::vec::Vec;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult};
use smoltcp::phy::{self, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

use crate::event::DeviceEvent;
use crate::hal::{Hal, SynAdmission};
use crate::ingress::{destination, tcp_seq, FinPastHole, IngressFilter};
use crate::policy::{DeviceConfig, Policy};

/// Seeds for the device's two sources of nondeterminism; the host derives them from its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceSeeds {
    /// smoltcp `Config::random_seed` (initial sequence numbers).
    pub stack: u64,
    /// The Wi-Fi worker thread's delays.
    pub worker: u64,
}

/// The firmware device. The host owns the clock and the link: it calls [`Device::poll`] with
/// the link's `phy::Device` whenever packets arrive, at [`Device::poll_at`], and before each
/// application loop iteration.
pub struct Device {
    iface: Interface,
    pub(crate) hal: Hal,
    now: Instant,
    scratch: Vec<u8>,
    held_syn: Option<(Vec<u8>, IpEndpoint, u16)>,
    reinject: Option<Vec<u8>>,
    held_replies: Vec<Vec<u8>>,
    /// R7's receive path, when the policy has it.
    fin_past_hole: Option<FinPastHole>,
}

impl Device {
    /// A device with address `address`/`prefix_len` on an IP-medium link (no ARP).
    pub fn new<D: phy::Device + ?Sized>(
        phy: &mut D,
        address: Ipv4Address,
        prefix_len: u8,
        policy: Policy,
        config: DeviceConfig,
        seeds: DeviceSeeds,
        now: Instant,
    ) -> Device {
        let mut iface_config = Config::new(HardwareAddress::Ip);
        iface_config.random_seed = seeds.stack;
        let mut iface = Interface::new(iface_config, phy, now);
        iface.update_ip_addrs(|addrs| {
            // Cannot fail: the list holds several addresses and starts empty.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(address), prefix_len));
        });
        Device {
            iface,
            hal: Hal::new(policy, config, seeds.worker),
            now,
            scratch: Vec::new(),
            held_syn: None,
            reinject: None,
            held_replies: Vec::new(),
            // R7: the policy's switch, read here once.
            fin_past_hole: policy.fin_past_hole_accepted.then(FinPastHole::default),
        }
    }

    /// True if a connection waits in an accept queue (the application's next
    /// `TcpServer::available()` hands it out).
    pub fn accept_pending(&self) -> bool {
        self.hal.accept_pending()
    }

    /// The policy the device runs.
    pub fn policy(&self) -> &Policy {
        self.hal.policy()
    }

    /// The device's sizes and timings.
    pub fn config(&self) -> &DeviceConfig {
        self.hal.config()
    }

    /// The time of the last poll.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Advances the device to `now`: runs the worker thread's due jobs, processes every packet
    /// the link holds (one at a time, observing sockets after each), then sends what is due.
    pub fn poll<D: phy::Device + ?Sized>(&mut self, now: Instant, phy: &mut D) {
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        self.hal.run_worker(now);
        let mut syn_next = false;
        loop {
            if let Some(rule) = &mut self.fin_past_hole {
                self.hal.expected_seqs(&mut rule.expected);
            }
            let mut filter = IngressFilter {
                inner: &mut *phy,
                held_syn: &mut self.held_syn,
                reinject: &mut self.reinject,
                scratch: &mut self.scratch,
                held_replies: &mut self.held_replies,
                fin_past_hole: self.fin_past_hole.as_mut(),
            };
            let result = self
                .iface
                .poll_ingress_single(now, &mut filter, &mut self.hal.sockets);
            if let Some((syn, remote, port)) = self.held_syn.take() {
                let admission = self.hal.syn_admission(remote, port);
                if admission != SynAdmission::DropSilently {
                    if let Some(seq) = tcp_seq(&syn) {
                        self.hal.note_syn(remote, seq);
                    }
                }
                match admission {
                    SynAdmission::DropSilently => {
                        self.hal.push_event(DeviceEvent::SynDropped { remote });
                    }
                    SynAdmission::ReclaimFirst => {
                        // lwIP's tcp_alloc: make room for the SYN, then let the stack see it.
                        self.hal.reclaim_released_slot();
                        self.hal.rearm_listeners();
                        self.reinject = Some(syn);
                        syn_next = true;
                    }
                    SynAdmission::EvictFirst => {
                        // R10: lwIP's tcp_alloc kills the oldest connection for the new one.
                        self.hal.evict_oldest();
                        self.hal.rearm_listeners();
                        self.reinject = Some(syn);
                        syn_next = true;
                    }
                    SynAdmission::Pass => {
                        self.reinject = Some(syn);
                        syn_next = true;
                    }
                    SynAdmission::IgnoreDuplicate => {}
                }
                continue;
            }
            if result == PollIngressSingleResult::None {
                break;
            }
            self.hal.observe(now, syn_next);
            syn_next = false;
            self.send_held_replies(phy);
        }
        self.send_held_replies(phy);
        self.iface.poll_egress(now, phy, &mut self.hal.sockets);
        // Timers (retransmission give-up, TIME-WAIT expiry) change states during egress.
        self.hal.observe(now, false);
        self.hal.collect_garbage();
    }

    /// Sends what the stack answered during ingress, except answers to connections the device
    /// has just reset (an ACK for data that nobody will read: the RST goes instead).
    fn send_held_replies<D: phy::Device + ?Sized>(&mut self, phy: &mut D) {
        for reply in self.held_replies.drain(..) {
            let to_reset = destination(&reply).is_some_and(|to| self.hal.was_just_reset(to));
            if to_reset {
                continue;
            }
            // No transmit token: the driver's queue is full and the packet is lost.
            if let Some(token) = phy.transmit(self.now) {
                token.consume(reply.len(), |buf| buf.copy_from_slice(&reply));
            }
        }
        self.hal.forget_just_reset();
    }

    /// The earliest time the device needs [`Device::poll`] again without new packets
    /// (stack timers, worker thread). `Some(t)` with `t <= now` means "now".
    pub fn poll_at(&mut self) -> Option<Instant> {
        let stack = self.iface.poll_at(self.now, &self.hal.sockets);
        let worker = self.hal.worker_poll_at();
        match (stack, worker) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the events since the last call into `out`, oldest first.
    pub fn take_events(&mut self, out: &mut Vec<DeviceEvent>) {
        self.hal.take_events(out);
    }

    /// Connection control blocks the server holds (pool slots in use, listeners excluded).
    pub fn pool_in_use(&self) -> usize {
        self.hal.pool_in_use()
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    use crate::app::ForumSketch;
    use crate::testkit::Bench;
    use crate::Policy;

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random bytes, and real packets with random bytes flipped, never panic the device.
    #[test]
    fn garbage_ingress_never_panics() {
        for policy in [Policy::LEGACY, Policy::FIXED] {
            let mut b = Bench::new(
                policy,
                crate::testkit::bench_config(&policy),
                Box::new(ForumSketch::new(6000)),
            );
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            // Capture real device packets to mutate: a handshake and some data.
            let h = b.connect(6000);
            b.run_app(3);
            b.peer_send(h, b"hello");
            let mut templates: Vec<Vec<u8>> = b.to_peer().iter().cloned().collect();
            templates.push(Vec::from(&b"\x45\x00\x00\x28"[..]));
            b.run_app(2);
            for i in 0..5000 {
                let mut packet = if i % 3 == 0 {
                    (0..(rng.next() % 80)).map(|_| rng.next() as u8).collect()
                } else {
                    let mut p = templates[(rng.next() as usize) % templates.len()].clone();
                    for _ in 0..(1 + rng.next() % 4) {
                        if !p.is_empty() {
                            let at = (rng.next() as usize) % p.len();
                            p[at] = rng.next() as u8;
                        }
                    }
                    p
                };
                if i % 7 == 0 {
                    packet.truncate((rng.next() as usize) % (packet.len() + 1));
                }
                b.inject(packet);
                if i % 16 == 0 {
                    b.run_app(1);
                }
            }
            b.run_app(10);
        }
    }
}
