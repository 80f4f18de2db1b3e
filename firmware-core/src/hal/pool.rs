//! Servers, listeners, SYN admission and the connection pool (lwIP's PCB pool and backlog).

use super::*;

impl Hal {
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
    pub(super) fn server_on(&self, port: u16) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| !s.stopped && s.port == port)
    }

    /// `socket_close` on a server socket: its listeners go at once, their sockets back to the
    /// pool (lwIP frees a listening PCB in `tcp_close`; it never had a peer to tell); the
    /// connections not yet accepted are closed as `stop()` closes a socket with unread data
    /// (the application saw none of it: FIN, or under F5 RST, so the peer learns it was never
    /// served) and their slots freed once closed; accepted connections stay with the
    /// application. The port is free again at once.
    pub(crate) fn stop_server(&mut self, server: ServerId) {
        let Some(s) = self.servers.get_mut(server.0 as usize) else {
            return;
        };
        if s.stopped {
            return;
        }
        s.stopped = true;
        s.accept_queue.clear();
        for index in 0..self.slots.len() {
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            if slot.server != server.0 || slot.role == Role::Accepted || slot.released {
                continue;
            }
            if slot.role == Role::Listener {
                self.remove_listener(index);
                continue;
            }
            if let Some(handle) = slot.handle {
                let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                // Never handed out: the application read none of it, so it is closed as a
                // socket with unread data is (F5: a reset the peer sees; lwIP: a FIN).
                Self::close_stack_socket(socket, true, self.policy.stop_with_unread);
            }
            slot.released = true;
        }
        // The freed sockets may let the other servers listen again.
        self.rearm_listeners();
    }

    /// Drops the listener in slot `index` and its stack socket. A listener names no
    /// connection and its handle was never given out, so nothing is reported.
    pub(super) fn remove_listener(&mut self, index: usize) {
        if let Some(handle) = self.slots[index].take().and_then(|s| s.handle) {
            self.sockets.remove(handle);
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
    pub(super) fn take_spare_listener(&mut self, server: u32) {
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
        self.remove_listener(index);
        self.add_listener(server);
    }

    /// Connections pending at `server` (listening, in handshake or queued), and stack sockets
    /// in the pool.
    pub(super) fn pending_and_in_pool(&self, server: u32) -> (usize, usize) {
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

    pub(super) fn add_listener(&mut self, server: u32) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    /// Listeners of `server`.
    fn listening(hal: &Hal, server: ServerId) -> usize {
        let slots = hal.slots.iter().flatten();
        slots
            .filter(|s| s.role == Role::Listener && s.server == server.0)
            .count()
    }

    /// A stopped server's listeners leave the socket set at once, and another server that
    /// the full pool kept to one listener takes their sockets.
    #[test]
    fn stopping_a_server_returns_its_listeners_to_the_pool_at_once() {
        let policy = Policy::FIXED;
        let config = DeviceConfig {
            pool_size: 5,
            pool_reserved: 0,
            backlog: 4,
            ..DeviceConfig::for_policy(&policy)
        };
        let mut hal = Hal::new(policy, config, 1);
        let (Ok(first), Ok(second)) = (hal.create_server(1234), hal.create_server(1235)) else {
            panic!("two servers expected");
        };
        assert_eq!((listening(&hal, first), listening(&hal, second)), (4, 1));
        hal.stop_server(first);
        assert_eq!((listening(&hal, first), listening(&hal, second)), (0, 4));
        assert_eq!(
            hal.sockets.iter().count(),
            4,
            "no stopped listener left in the set"
        );
        let mut events = Vec::new();
        hal.take_events(&mut events);
        assert_eq!(events, [], "a listener names no connection");
    }
}
