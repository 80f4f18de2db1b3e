//! The socket HAL: a model of Device OS `hal/src/photon/socket_hal.cpp` over smoltcp.
//!
//! smoltcp has no accept queue: a listening socket becomes the connection. The HAL keeps
//! listeners armed per server, watches every socket after each processed packet, and reproduces
//! the Photon's Wi-Fi networking worker thread: handshake completions and peer closes are posted
//! to it, and it acts on them after a seeded delay (filling the accept FIFO, setting the
//! per-socket `closed` flag). The application's next HAL call on a flagged socket acts on the
//! flag according to the [`Policy`].
//!
//! Here: the types, the sockets' bookkeeping and the calls of the Wiring layer; `pool`: servers,
//! listeners, SYN admission and the connection pool; `observe`: watching the stack after each
//! packet, and the worker thread.

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

mod observe;
mod pool;

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

    pub(crate) fn push_event(&mut self, event: DeviceEvent) {
        self.events.push(event);
    }

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
