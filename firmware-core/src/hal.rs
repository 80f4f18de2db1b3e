//! The socket HAL: a model of Device OS `hal/src/photon/socket_hal.cpp` over smoltcp.
//!
//! smoltcp has no accept queue: a listening socket becomes the connection. The HAL keeps
//! listeners armed per server, watches every socket after each processed packet, and reproduces
//! the Photon's Wi-Fi networking worker thread: handshake completions and peer closes are posted
//! to it, and it acts on them after a seeded delay (filling the accept FIFO, setting the
//! per-socket `closed` flag). The application's next HAL call on a flagged socket acts on the
//! flag according to the [`Policy`].

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg32;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

use crate::event::{ConnId, DeviceEvent};
use crate::policy::{DeviceConfig, EofRule, Policy, PoolOverflow, RxCopy, StopWithUnread};

/// A socket handle as the HAL gives it to the Wiring layer (`sock_handle_t`).
/// Stale handles (socket closed and slot reused) are detected by the generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SockId {
    index: u32,
    generation: u32,
}

/// Why a HAL socket call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockError {
    /// The handle does not name a live socket (never valid, or already closed by the app).
    InvalidHandle,
    /// The HAL closed the socket after its `closed` flag (Legacy L3/L4).
    Closed,
    /// The stack refused the operation in the socket's TCP state.
    InvalidState,
}

impl core::fmt::Display for SockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SockError::InvalidHandle => "the socket handle names no live socket",
            SockError::Closed => "the socket was closed after the peer closed it",
            SockError::InvalidState => "the socket's TCP state does not allow this operation",
        })
    }
}

impl core::error::Error for SockError {}

/// Why `TcpServer::begin` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenError {
    /// Port 0 cannot be listened on.
    Unaddressable,
    /// `max_servers` servers already listen (WICED's `WICED_MAXIMUM_NUMBER_OF_SERVERS`).
    TooManyServers,
}

impl core::fmt::Display for ListenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ListenError::Unaddressable => "cannot listen on port 0",
            ListenError::TooManyServers => "too many servers listening (max_servers)",
        })
    }
}

impl core::error::Error for ListenError {}

/// What happens to an arriving SYN (decided before the stack sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SynAdmission {
    /// The stack processes it (a listener takes it, or no socket does and it answers RST).
    Pass,
    /// L5: the backlog is full; the SYN vanishes and the peer retransmits.
    DropSilently,
    /// The pool is full but holds a socket the application closed: reclaim it, then pass.
    ReclaimFirst,
    /// R10: the pool is full of live connections; evict the oldest one, then pass.
    EvictFirst,
    /// A retransmitted SYN of a handshake in progress while a listener is armed. smoltcp gives
    /// a SYN to the first socket that accepts it, which can be a listener re-armed in a lower
    /// slot (a second connection, and an RST for the peer); lwIP matches the SYN_RCVD control
    /// block first. Ignoring it leaves the answer to that socket's SYN-ACK retransmission.
    IgnoreDuplicate,
}

/// A server socket's handle (`TCPServer::_sock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerId(u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Armed in LISTEN, waiting for a SYN.
    Listener,
    /// SYN received, handshake in progress.
    Handshaking,
    /// Handshake completed; the worker has not yet put it in the accept queue.
    Completed,
    /// In the accept queue.
    Queued,
    /// Handed to the application by `accept`.
    Accepted,
}

struct Slot {
    generation: u32,
    server: u32,
    /// The smoltcp socket; `None` once its pool slot was freed.
    handle: Option<SocketHandle>,
    role: Role,
    conn: ConnId,
    /// Set by the worker thread: the stack reported the peer's FIN or RST.
    closed_flag: bool,
    /// The flag was set before the application accepted the connection.
    flagged_while_queued: bool,
    /// The HAL closed the socket because of the flag (Legacy): every call now fails.
    hal_closed: bool,
    /// The stack's FIN or RST was seen by `observe` (the worker has been told).
    peer_close_posted: bool,
    /// The application called `socket_close`.
    released: bool,
    /// Bytes that arrived after the close, as far as reported.
    data_after_close: usize,
    /// Sizes of received packets not yet read, oldest first (sum = stack receive queue).
    rx_packets: VecDeque<usize>,
    rx_queue_seen: usize,
    /// In-order bytes the stack took for this connection, over its life.
    rx_total: u64,
    /// The peer's initial sequence number (from its SYN), when known.
    irs: Option<u32>,
}

struct Server {
    port: u16,
    accept_queue: VecDeque<SockId>,
    /// `socket_close` on the server: it listens no more and its id is never reused (the
    /// application may still hold it).
    stopped: bool,
}

#[derive(Debug, Clone, Copy)]
enum WorkerJob {
    Connected(SockId),
    Disconnected(SockId),
}

/// The socket layer of the device. Owns the smoltcp socket set.
pub(crate) struct Hal {
    pub(crate) sockets: SocketSet<'static>,
    policy: Policy,
    config: DeviceConfig,
    slots: Vec<Option<Slot>>,
    generations: Vec<u32>,
    servers: Vec<Server>,
    worker_queue: VecDeque<(Instant, WorkerJob)>,
    worker_busy_until: Instant,
    worker_rng: Pcg32,
    next_serial: u32,
    events: Vec<DeviceEvent>,
    /// Connections reset for data after close in the current ingress step (their held ACKs
    /// are dropped).
    just_reset: Vec<IpEndpoint>,
    /// The sequence number of the SYN the stack is about to see, and its sender.
    next_syn: Option<(IpEndpoint, u32)>,
    /// Sockets aborted by R10 eviction: removed once their RST went out.
    evicted: Vec<SocketHandle>,
}

impl Hal {
    pub(crate) fn new(policy: Policy, config: DeviceConfig, worker_seed: u64) -> Hal {
        Hal {
            sockets: SocketSet::new(Vec::new()),
            policy,
            config,
            slots: Vec::new(),
            generations: Vec::new(),
            servers: Vec::new(),
            worker_queue: VecDeque::new(),
            worker_busy_until: Instant::ZERO,
            worker_rng: Pcg32::seed_from_u64(worker_seed),
            next_serial: 0,
            events: Vec::new(),
            just_reset: Vec::new(),
            next_syn: None,
            evicted: Vec::new(),
        }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    pub(crate) fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// Events since the last call, oldest first.
    pub(crate) fn take_events(&mut self, out: &mut Vec<DeviceEvent>) {
        out.append(&mut self.events);
    }

    // ---- servers and accept ---------------------------------------------------------------

    /// `socket_create_tcp_server(port)`.
    pub(crate) fn create_server(&mut self, port: u16) -> Result<ServerId, ListenError> {
        if port == 0 {
            return Err(ListenError::Unaddressable);
        }
        if let Some(i) = self.server_on(port) {
            return Ok(ServerId(i as u32));
        }
        if self.servers.iter().filter(|s| !s.stopped).count() >= self.config.max_servers {
            return Err(ListenError::TooManyServers);
        }
        self.servers.push(Server {
            port,
            accept_queue: VecDeque::new(),
            stopped: false,
        });
        self.rearm_listeners();
        Ok(ServerId(self.servers.len() as u32 - 1))
    }

    /// The running server listening on `port`.
    fn server_on(&self, port: u16) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| !s.stopped && s.port == port)
    }

    /// `socket_close` on a server socket: its listeners go; the connections not yet accepted
    /// are closed as `stop()` closes (FIN, or under F5 RST when data is unread) and their
    /// slots freed once closed; accepted connections stay with the application. The port is
    /// free again at once.
    pub(crate) fn stop_server(&mut self, server: ServerId) {
        let Some(s) = self.servers.get_mut(server.0 as usize) else {
            return;
        };
        if s.stopped {
            return;
        }
        s.stopped = true;
        s.accept_queue.clear();
        for slot in self.slots.iter_mut().flatten() {
            if slot.server != server.0 || slot.role == Role::Accepted || slot.released {
                continue;
            }
            if let Some(handle) = slot.handle {
                let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                if slot.role == Role::Listener {
                    socket.abort();
                } else {
                    let unread = slot.rx_queue_seen > 0;
                    Self::close_stack_socket(socket, unread, self.policy.stop_with_unread);
                }
            }
            slot.released = true;
        }
    }

    /// `socket_accept` / `next_accept`: pops the next queued connection without looking at it
    /// (the dead-flag rules act on the first use, in [`Hal::check_closed`]).
    pub(crate) fn accept_pending(&self) -> bool {
        self.servers.iter().any(|s| !s.accept_queue.is_empty())
    }

    pub(crate) fn accept(&mut self, server: ServerId) -> Option<SockId> {
        let id = self
            .servers
            .get_mut(server.0 as usize)?
            .accept_queue
            .pop_front()?;
        let slot = self.slot_mut(id).ok()?;
        slot.role = Role::Accepted;
        let conn = slot.conn;
        self.events.push(DeviceEvent::Accepted { conn });
        self.rearm_listeners();
        Some(id)
    }

    /// Keeps listeners armed: at most `backlog` connections pending (listening, in handshake
    /// or queued) per server, and no more stack sockets than the pool has slots for. Armed
    /// round by round, one listener per server and round, so every server listens before any
    /// gets a second one from the shared pool (with one server: filled up to `backlog`).
    pub(crate) fn rearm_listeners(&mut self) {
        loop {
            let mut added = false;
            for server in 0..self.servers.len() as u32 {
                if self.servers[server as usize].stopped {
                    continue;
                }
                let (pending, in_pool) = self.pending_and_in_pool(server);
                if pending >= self.config.backlog || in_pool >= self.config.server_slots() {
                    continue;
                }
                self.add_listener(server);
                added = true;
            }
            if !added {
                break;
            }
        }
        for server in 0..self.servers.len() as u32 {
            if !self.servers[server as usize].stopped && self.pending_and_in_pool(server).0 == 0 {
                self.take_spare_listener(server);
            }
        }
    }

    /// A server with nothing pending on a pool full of other servers' listeners takes one
    /// from a server that has two or more: lwIP's listeners take no connection block, so one
    /// server's backlog cannot keep another from listening at all.
    fn take_spare_listener(&mut self, server: u32) {
        let mut listeners = alloc::collections::BTreeMap::<u32, Vec<usize>>::new();
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(slot) = slot.as_ref().filter(|s| s.role == Role::Listener) {
                listeners.entry(slot.server).or_default().push(index);
            }
        }
        let Some(&index) = listeners
            .values()
            .find(|l| l.len() >= 2)
            .and_then(|l| l.last())
        else {
            return;
        };
        if let Some(handle) = self.slots[index].take().and_then(|s| s.handle) {
            self.sockets.remove(handle);
        }
        self.add_listener(server);
    }

    /// Connections pending at `server` (listening, in handshake or queued), and stack sockets
    /// in the pool.
    fn pending_and_in_pool(&self, server: u32) -> (usize, usize) {
        let mut pending = 0;
        let mut in_pool = 0;
        for slot in self.slots.iter().flatten() {
            if slot.handle.is_some() {
                in_pool += 1;
            }
            if slot.server == server
                && matches!(
                    slot.role,
                    Role::Listener | Role::Handshaking | Role::Completed | Role::Queued
                )
            {
                pending += 1;
            }
        }
        (pending, in_pool)
    }

    /// lwIP's `tcp_alloc` on an empty pool: kill the oldest TIME-WAIT control block, else the
    /// oldest one the application already closed (it gets an RST). Only sockets the
    /// application released are taken, so no unread data is at stake.
    pub(crate) fn reclaim_released_slot(&mut self) -> bool {
        let mut victim: Option<(bool, u32, usize)> = None;
        for (index, slot) in self.slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let Some(handle) = slot.handle else { continue };
            if !(slot.released || slot.hal_closed) {
                continue;
            }
            let time_wait = self.sockets.get::<tcp::Socket>(handle).state() == tcp::State::TimeWait;
            // TIME-WAIT first, then the oldest connection.
            let key = (!time_wait, slot.conn.serial, index);
            if victim.is_none_or(|v| key < v) {
                victim = Some(key);
            }
        }
        let Some((_, _, index)) = victim else {
            return false;
        };
        let Some(slot) = self.slots[index].as_mut() else {
            return false;
        };
        if let Some(handle) = slot.handle.take() {
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
            self.sockets.remove(handle);
            self.events.push(DeviceEvent::SlotFreed { conn: slot.conn });
        }
        if slot.released {
            self.slots[index] = None;
        }
        true
    }

    /// R10: aborts the oldest live connection (RST to its peer, unread data freed) so its
    /// control block can take a new SYN. False if there is none.
    pub(crate) fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .filter(|(_, s)| s.handle.is_some() && s.role != Role::Listener)
            .filter(|(_, s)| !(s.released || s.hal_closed))
            .min_by_key(|(_, s)| s.conn.serial)
            .map(|(i, _)| i);
        let Some(slot) = oldest.and_then(|i| self.slots[i].as_mut()) else {
            return false;
        };
        let unread = slot.rx_queue_seen;
        slot.hal_closed = true;
        slot.data_after_close = 0;
        slot.rx_packets.clear();
        slot.rx_queue_seen = 0;
        if let Some(handle) = slot.handle.take() {
            self.sockets.get_mut::<tcp::Socket>(handle).abort();
            // The RST goes out with this poll's egress; the slot is free for the new SYN.
            self.evicted.push(handle);
        }
        self.events.push(DeviceEvent::UnreadDataFreed {
            conn: slot.conn,
            bytes: unread,
        });
        self.events.push(DeviceEvent::SlotFreed { conn: slot.conn });
        true
    }

    fn add_listener(&mut self, server: u32) {
        let port = self.servers[server as usize].port;
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.config.rx_buffer_size]),
            tcp::SocketBuffer::new(vec![0; self.config.tx_buffer_size]),
        );
        socket.set_ack_delay(Some(Duration::from_millis(self.config.ack_delay_ms)));
        let keep_alive = self.config.keep_alive_ms;
        socket.set_keep_alive((keep_alive > 0).then(|| Duration::from_millis(keep_alive)));
        // Cannot fail: port is non-zero and the socket is fresh.
        let _ = socket.listen(port);
        let handle = self.sockets.add(socket);
        let index = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
        };
        self.generations[index] = self.generations[index].wrapping_add(1);
        self.slots[index] = Some(Slot {
            generation: self.generations[index],
            server,
            handle: Some(handle),
            role: Role::Listener,
            conn: ConnId::UNKNOWN,
            closed_flag: false,
            flagged_while_queued: false,
            hal_closed: false,
            peer_close_posted: false,
            released: false,
            data_after_close: 0,
            rx_packets: VecDeque::new(),
            rx_queue_seen: 0,
            rx_total: 0,
            irs: None,
        });
    }

    /// What to do with a SYN from `remote` to `port` before the stack sees it.
    pub(crate) fn syn_admission(&self, remote: IpEndpoint, port: u16) -> SynAdmission {
        let Some(server) = self.server_on(port) else {
            return SynAdmission::Pass;
        };
        let server = server as u32;
        let (mut listening, mut pending, mut in_pool, mut reclaimable) = (false, 0, 0, false);
        let mut in_progress = false;
        for slot in self.slots.iter().flatten() {
            if slot.role != Role::Listener && slot.conn.remote == remote {
                // A retransmitted SYN of a connection in progress: its socket answers it.
                in_progress = true;
            }
            // Counted as `rearm_listeners` counts: every stack socket, listeners included.
            if slot.handle.is_some() {
                in_pool += 1;
                reclaimable |= slot.released || slot.hal_closed;
            }
            if slot.server == server {
                match slot.role {
                    Role::Listener => listening = true,
                    Role::Handshaking | Role::Completed | Role::Queued => pending += 1,
                    Role::Accepted => {}
                }
            }
        }
        if in_progress {
            return if listening {
                SynAdmission::IgnoreDuplicate
            } else {
                SynAdmission::Pass
            };
        }
        if listening {
            return SynAdmission::Pass;
        }
        if pending >= self.config.backlog {
            // L5 drops silently; F4 lets the stack answer RST (no socket listens).
            return match self.policy.syn_overflow {
                crate::policy::SynOverflow::DropSilently => SynAdmission::DropSilently,
                crate::policy::SynOverflow::Reset => SynAdmission::Pass,
            };
        }
        if in_pool >= self.config.server_slots() && reclaimable {
            return SynAdmission::ReclaimFirst;
        }
        if in_pool >= self.config.server_slots() {
            // A full pool of live connections: the stack answers RST (L6: "new connections
            // fail"), or R10 evicts the oldest one (lwIP `tcp_kill_prio`).
            return match self.policy.pool_overflow {
                PoolOverflow::Refuse => SynAdmission::Pass,
                PoolOverflow::EvictOldest => SynAdmission::EvictFirst,
            };
        }
        SynAdmission::Pass
    }

    /// True if the HAL reset the connection to `remote` since the last
    /// [`Hal::forget_just_reset`].
    pub(crate) fn was_just_reset(&self, remote: IpEndpoint) -> bool {
        self.just_reset.contains(&remote)
    }

    pub(crate) fn forget_just_reset(&mut self) {
        self.just_reset.clear();
    }

    pub(crate) fn push_event(&mut self, event: DeviceEvent) {
        self.events.push(event);
    }

    // ---- observing the stack --------------------------------------------------------------

    /// Looks at every socket after the stack processed a packet or a timer: handshakes,
    /// received packets, peer closes. Posts work to the worker thread.
    /// `after_syn`: a SYN was just processed. Only then can a listener have changed (the ingress
    /// filter holds every SYN back), so listeners are skipped otherwise.
    pub(crate) fn observe(&mut self, now: Instant, after_syn: bool) {
        let mut rearm = false;
        for index in 0..self.slots.len() {
            let Some(slot) = self.slots[index].as_ref() else {
                continue;
            };
            if slot.role == Role::Listener && !after_syn {
                continue;
            }
            let Some(handle) = slot.handle else { continue };
            rearm |= self.observe_handshake(index, handle, now);
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            if slot.role == Role::Listener || slot.role == Role::Handshaking {
                continue;
            }
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            if slot.released || slot.hal_closed {
                let event =
                    Self::observe_after_close(slot, socket, &self.policy, &mut self.just_reset);
                self.events.extend(event);
                continue;
            }
            if matches!(slot.role, Role::Completed | Role::Queued)
                && self.policy.pre_accept_data_discarded
            {
                Self::discard_unclaimed(slot, socket, &mut self.events);
                continue;
            }
            let id = SockId {
                index: index as u32,
                generation: slot.generation,
            };
            if self.observe_data_and_close(index, handle) {
                Self::post(
                    &mut self.worker_queue,
                    &mut self.worker_busy_until,
                    &mut self.worker_rng,
                    &self.config,
                    now,
                    WorkerJob::Disconnected(id),
                );
            }
        }
        if rearm {
            self.rearm_listeners();
        }
    }

    /// A listener that took a SYN, or a handshake that completed or failed. True if a listener
    /// was used up (listeners need re-arming).
    fn observe_handshake(&mut self, index: usize, handle: SocketHandle, now: Instant) -> bool {
        let Some(slot) = self.slots[index].as_mut() else {
            return false;
        };
        let socket = self.sockets.get::<tcp::Socket>(handle);
        let state = socket.state();
        let id = SockId {
            index: index as u32,
            generation: slot.generation,
        };
        let mut rearm = false;
        match slot.role {
            Role::Listener if state != tcp::State::Listen => {
                self.next_serial += 1;
                let remote = socket.remote_endpoint().unwrap_or(ConnId::UNKNOWN.remote);
                slot.conn = ConnId {
                    serial: self.next_serial,
                    remote,
                };
                slot.irs = self
                    .next_syn
                    .take()
                    .filter(|(from, _)| *from == remote)
                    .map(|(_, seq)| seq);
                slot.role = Role::Handshaking;
                self.events
                    .push(DeviceEvent::SynReceived { conn: slot.conn });
                rearm = true;
            }
            Role::Handshaking if state == tcp::State::Listen => {
                // RST or timeout during the handshake: smoltcp listens again.
                self.events
                    .push(DeviceEvent::HandshakeAborted { conn: slot.conn });
                slot.role = Role::Listener;
                slot.conn = ConnId::UNKNOWN;
            }
            _ => {}
        }
        if slot.role == Role::Handshaking && state != tcp::State::SynReceived {
            slot.role = Role::Completed;
            self.events
                .push(DeviceEvent::HandshakeCompleted { conn: slot.conn });
            Self::post(
                &mut self.worker_queue,
                &mut self.worker_busy_until,
                &mut self.worker_rng,
                &self.config,
                now,
                WorkerJob::Connected(id),
            );
        }
        rearm
    }

    /// Data after the application (or the HAL) closed: nobody will read it. lwIP acknowledges
    /// and drops it (`tcp_recv_null`); F5 answers with RST (RFC 1122 4.2.2.13).
    fn observe_after_close(
        slot: &mut Slot,
        socket: &mut tcp::Socket,
        policy: &Policy,
        just_reset: &mut Vec<IpEndpoint>,
    ) -> Option<DeviceEvent> {
        let queued = socket.recv_queue();
        if queued <= slot.data_after_close {
            return None;
        }
        let bytes = queued - slot.data_after_close;
        slot.data_after_close = queued;
        let sent_rst = policy.stop_with_unread == StopWithUnread::Rst;
        if sent_rst && socket.state() != tcp::State::Closed {
            socket.abort();
            // The stack's ACK for this data, if it made one, is not sent.
            just_reset.push(slot.conn.remote);
        }
        Some(DeviceEvent::DataAfterClose {
            conn: slot.conn,
            bytes,
            sent_rst,
        })
    }

    /// R3: a connection nobody has accepted yet has no receive handler (lwIP `tcp_recv_null`):
    /// its data is acknowledged and freed, and its FIN answered by closing the connection. The
    /// application later gets it from `accept` dead.
    fn discard_unclaimed(slot: &mut Slot, socket: &mut tcp::Socket, events: &mut Vec<DeviceEvent>) {
        let conn = slot.conn;
        let mut freed = 0;
        while let Ok(n) = socket.recv(|b| (b.len(), b.len())) {
            if n == 0 {
                break;
            }
            freed += n;
        }
        if freed > 0 {
            slot.rx_total += freed as u64;
            events.push(DeviceEvent::DataReceived { conn, bytes: freed });
            events.push(DeviceEvent::UnreadDataFreed { conn, bytes: freed });
        }
        let state = socket.state();
        if peer_closed(state) && !slot.peer_close_posted {
            slot.peer_close_posted = true;
            events.push(DeviceEvent::PeerClosed {
                conn,
                reset: state == tcp::State::Closed,
            });
            socket.close();
            slot.hal_closed = true;
            slot.data_after_close = 0;
        }
    }

    /// New in-order data and the peer's FIN or RST on a connection the application may read.
    /// True if the peer's close is new (the worker thread must be told).
    fn observe_data_and_close(&mut self, index: usize, handle: SocketHandle) -> bool {
        let Some(slot) = self.slots[index].as_mut() else {
            return false;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        let queued = socket.recv_queue();
        if queued > slot.rx_queue_seen {
            let bytes = queued - slot.rx_queue_seen;
            slot.rx_packets.push_back(bytes);
            slot.rx_queue_seen = queued;
            slot.rx_total += bytes as u64;
            self.events.push(DeviceEvent::DataReceived {
                conn: slot.conn,
                bytes,
            });
        }
        let state = socket.state();
        if !peer_closed(state) || slot.peer_close_posted {
            return false;
        }
        slot.peer_close_posted = true;
        let reset = state == tcp::State::Closed;
        self.events.push(DeviceEvent::PeerClosed {
            conn: slot.conn,
            reset,
        });
        if reset && self.policy.rst_frees_unread_data {
            // R8: the reset takes the received data with it.
            while matches!(socket.recv(|b| (b.len(), b.len())), Ok(n) if n > 0) {}
            self.events.push(DeviceEvent::UnreadDataFreed {
                conn: slot.conn,
                bytes: slot.rx_queue_seen,
            });
            slot.rx_packets.clear();
            slot.rx_queue_seen = 0;
        }
        if !reset && self.policy.fin_answered_with_rst {
            // R5: RST instead of CLOSE-WAIT; what was received stays readable.
            socket.abort();
        }
        true
    }

    /// The worker thread handles jobs one at a time, in order, each after a seeded delay.
    fn post(
        queue: &mut VecDeque<(Instant, WorkerJob)>,
        busy_until: &mut Instant,
        rng: &mut Pcg32,
        config: &DeviceConfig,
        now: Instant,
        job: WorkerJob,
    ) {
        let span = config
            .worker_delay_max_us
            .saturating_sub(config.worker_delay_min_us);
        let delay_us = config.worker_delay_min_us
            + if span == 0 {
                0
            } else {
                rng.next_u64() % (span + 1)
            };
        let start = if *busy_until > now { *busy_until } else { now };
        let due = start + Duration::from_micros(delay_us);
        *busy_until = due;
        queue.push_back((due, job));
    }

    /// When the worker thread next has something to do.
    pub(crate) fn worker_poll_at(&self) -> Option<Instant> {
        self.worker_queue.front().map(|(due, _)| *due)
    }

    /// Runs the worker thread's jobs that are due at `now`.
    pub(crate) fn run_worker(&mut self, now: Instant) {
        while let Some(&(due, job)) = self.worker_queue.front() {
            if due > now {
                break;
            }
            self.worker_queue.pop_front();
            match job {
                WorkerJob::Connected(id) => {
                    let Ok(slot) = self.slot_mut(id) else {
                        continue;
                    };
                    if slot.role != Role::Completed {
                        continue;
                    }
                    slot.role = Role::Queued;
                    let (server, conn) = (slot.server, slot.conn);
                    self.servers[server as usize].accept_queue.push_back(id);
                    self.events.push(DeviceEvent::AcceptQueued { conn });
                }
                WorkerJob::Disconnected(id) => {
                    let Ok(slot) = self.slot_mut(id) else {
                        continue;
                    };
                    slot.closed_flag = true;
                    slot.flagged_while_queued = slot.role != Role::Accepted;
                    let (conn, while_queued) = (slot.conn, slot.flagged_while_queued);
                    self.events
                        .push(DeviceEvent::MarkedClosed { conn, while_queued });
                }
            }
        }
    }

    /// Frees pool slots of sockets that are done (after egress, so an RST got out first).
    pub(crate) fn collect_garbage(&mut self) {
        for handle in self.evicted.drain(..) {
            self.sockets.remove(handle);
        }
        let mut freed = false;
        for index in 0..self.slots.len() {
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            let done_with = slot.released || slot.hal_closed;
            if let Some(handle) = slot.handle.filter(|_| done_with) {
                let state = self.sockets.get::<tcp::Socket>(handle).state();
                let free = match state {
                    tcp::State::Closed => done_with,
                    // L6 keeps the slot until TIME-WAIT ends; F8 frees it at once.
                    tcp::State::TimeWait => done_with && !self.policy.time_wait_holds_slot,
                    _ => false,
                };
                if free {
                    self.sockets.remove(handle);
                    slot.handle = None;
                    freed = true;
                    self.events.push(DeviceEvent::SlotFreed { conn: slot.conn });
                }
            }
            if slot.handle.is_none() && slot.released {
                self.slots[index] = None;
            }
        }
        if freed {
            self.rearm_listeners();
        }
    }

    // ---- per-socket calls from the Wiring layer -------------------------------------------

    fn slot_mut(&mut self, id: SockId) -> Result<&mut Slot, SockError> {
        Self::slot_in(&mut self.slots, id)
    }

    /// Borrows only the slot table, so the socket set stays available beside it.
    fn slot_in(slots: &mut [Option<Slot>], id: SockId) -> Result<&mut Slot, SockError> {
        match slots.get_mut(id.index as usize) {
            Some(Some(slot)) if slot.generation == id.generation && !slot.released => Ok(slot),
            _ => Err(SockError::InvalidHandle),
        }
    }

    fn slot(&self, id: SockId) -> Result<&Slot, SockError> {
        match self.slots.get(id.index as usize) {
            Some(Some(slot)) if slot.generation == id.generation && !slot.released => Ok(slot),
            _ => Err(SockError::InvalidHandle),
        }
    }

    /// `isClosed()` of `tcp_server_client_t`: acts on the worker's flag. Under L3 (accepted
    /// socket) or L4 (flagged while queued) the socket is closed and its unread data freed;
    /// otherwise the flag only means "peer closed" and the data stays readable (F1, F3).
    fn check_closed(&mut self, id: SockId) -> Result<(), SockError> {
        let policy = self.policy;
        let slot = Self::slot_in(&mut self.slots, id)?;
        if slot.hal_closed {
            return Err(SockError::Closed);
        }
        if !slot.closed_flag {
            return Ok(());
        }
        let frees = if slot.flagged_while_queued {
            policy.accept_hands_out_dead
        } else {
            policy.fin_frees_unread_data
        };
        if !frees {
            return Ok(());
        }
        slot.hal_closed = true;
        let conn = slot.conn;
        let unread = slot.rx_packets.iter().sum::<usize>();
        // Reported here; only bytes beyond these count as arriving after the close.
        slot.data_after_close = slot.rx_queue_seen;
        slot.rx_packets.clear();
        slot.rx_queue_seen = 0;
        if let Some(handle) = slot.handle {
            let socket = self.sockets.get_mut::<tcp::Socket>(handle);
            Self::close_stack_socket(socket, unread > 0, policy.stop_with_unread);
        }
        self.events.push(DeviceEvent::UnreadDataFreed {
            conn,
            bytes: unread,
        });
        Err(SockError::Closed)
    }

    /// L7 / F5: FIN, or RST when unread data would otherwise vanish unnoticed.
    fn close_stack_socket(socket: &mut tcp::Socket, unread: bool, rule: StopWithUnread) -> bool {
        if unread && rule == StopWithUnread::Rst {
            socket.abort();
            true
        } else {
            socket.close();
            false
        }
    }

    /// `socket_active_status`: the socket is open and the peer has not been seen to close.
    pub(crate) fn is_active(&mut self, id: SockId) -> bool {
        self.check_closed(id).is_ok() && self.slot(id).is_ok_and(|s| !s.closed_flag)
    }

    /// True while the stack has not seen the peer's FIN or RST on this socket (and the HAL has
    /// not closed it): the TCP state alone, whatever is unread (R2).
    pub(crate) fn stack_open(&self, id: SockId) -> bool {
        match self.slot(id) {
            Ok(s) if !s.hal_closed => s.handle.is_some_and(|h| {
                let state = self.sockets.get::<tcp::Socket>(h).state();
                !peer_closed(state) && state != tcp::State::Closed
            }),
            _ => false,
        }
    }

    /// Unread bytes in the stack for this socket that a read could return, without acting on
    /// the closed flag.
    pub(crate) fn rx_unread_bytes(&self, id: SockId) -> usize {
        match self.slot(id) {
            Ok(s) if !s.hal_closed && !self.read_gate(s) => s.rx_queue_seen,
            _ => 0,
        }
    }

    /// R1 / R6: true when reads report end of stream although bytes may still be queued: once
    /// the stack processed the peer's FIN (R1) or once the close notice was handled (R6).
    fn read_gate(&self, slot: &Slot) -> bool {
        match self.policy.eof_rule {
            EofRule::AfterData => false,
            EofRule::AtPeerFin => slot
                .handle
                .is_none_or(|h| peer_closed(self.sockets.get::<tcp::Socket>(h).state())),
            EofRule::AtCloseNotice => slot.closed_flag,
        }
    }

    /// The SYN the stack is about to process: its sender and sequence number (the initial
    /// receive sequence of the connection it opens).
    pub(crate) fn note_syn(&mut self, remote: IpEndpoint, seq: u32) {
        self.next_syn = Some((remote, seq));
    }

    /// For every connection the application may still read: the peer and the next sequence
    /// number the stack expects from it (where its receive window starts).
    pub(crate) fn expected_seqs(&self, out: &mut Vec<(IpEndpoint, u32)>) {
        out.clear();
        for slot in self.slots.iter().flatten() {
            if slot.role == Role::Listener || slot.released || slot.hal_closed {
                continue;
            }
            if let Some(irs) = slot.irs {
                let next = irs.wrapping_add(1).wrapping_add(slot.rx_total as u32);
                out.push((slot.conn.remote, next));
            }
        }
    }

    /// `socket_receive`: copies received data into `buf` (L1: from one packet at most).
    pub(crate) fn receive(&mut self, id: SockId, buf: &mut [u8]) -> Result<usize, SockError> {
        self.check_closed(id)?;
        if self.read_gate(self.slot(id)?) {
            return Ok(0);
        }
        let rule = self.policy.rx_copy;
        let slot = Self::slot_in(&mut self.slots, id)?;
        let Some(handle) = slot.handle else {
            return Ok(0);
        };
        let limit = match rule {
            RxCopy::OnePacketPerCall => {
                buf.len().min(slot.rx_packets.front().copied().unwrap_or(0))
            }
            RxCopy::DrainAll => buf.len(),
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        let n = socket.recv_slice(&mut buf[..limit]).unwrap_or(0);
        let mut left = n;
        while left > 0 {
            let Some(front) = slot.rx_packets.front_mut() else {
                break;
            };
            let take = left.min(*front);
            *front -= take;
            left -= take;
            if *front == 0 {
                slot.rx_packets.pop_front();
            }
        }
        slot.rx_queue_seen -= n;
        Ok(n)
    }

    /// `socket_send`.
    pub(crate) fn send(&mut self, id: SockId, data: &[u8]) -> Result<usize, SockError> {
        self.check_closed(id)?;
        let slot = self.slot(id)?;
        let Some(handle) = slot.handle else {
            return Err(SockError::InvalidState);
        };
        self.sockets
            .get_mut::<tcp::Socket>(handle)
            .send_slice(data)
            .map_err(|_| SockError::InvalidState)
    }

    /// `socket_close`: closes the connection (L7/F5 decide FIN or RST) and invalidates the handle.
    /// `wiring_unread` is what the Wiring buffer still held.
    pub(crate) fn close(&mut self, id: SockId, wiring_unread: usize) {
        let rule = self.policy.stop_with_unread;
        let Ok(slot) = Self::slot_in(&mut self.slots, id) else {
            return;
        };
        let conn = slot.conn;
        let unread = slot.rx_queue_seen + wiring_unread;
        let mut sent_rst = false;
        if !slot.hal_closed {
            if let Some(handle) = slot.handle {
                let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                sent_rst = Self::close_stack_socket(socket, unread > 0, rule);
            }
        }
        slot.released = true;
        // The unread bytes are reported by `Stopped`; later ones by `DataAfterClose`.
        if !slot.hal_closed {
            slot.data_after_close = slot.rx_queue_seen;
        }
        self.events.push(DeviceEvent::Stopped {
            conn,
            unread_bytes: unread,
            sent_rst,
        });
    }

    /// The connection a handle belongs to.
    pub(crate) fn conn(&self, id: SockId) -> Option<ConnId> {
        self.slot(id).ok().map(|s| s.conn)
    }

    /// Connection control blocks in use (listeners excluded, as lwIP keeps those in a
    /// separate pool).
    pub(crate) fn pool_in_use(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.handle.is_some() && s.role != Role::Listener)
            .count()
    }
}

/// True in the TCP states the stack enters once it processed the peer's FIN or RST.
fn peer_closed(state: tcp::State) -> bool {
    matches!(
        state,
        tcp::State::CloseWait
            | tcp::State::LastAck
            | tcp::State::Closing
            | tcp::State::TimeWait
            | tcp::State::Closed
    )
}
