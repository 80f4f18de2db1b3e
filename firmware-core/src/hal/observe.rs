//! Watching the stack after each processed packet, and the Wi-Fi networking worker thread that
//! acts on handshake completions and peer closes after its delay.

use super::*;

impl Hal {
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

    /// A listener that took a SYN or was closed, or a handshake that completed or failed. True
    /// if a listener was used up (listeners need re-arming).
    pub(super) fn observe_handshake(
        &mut self,
        index: usize,
        handle: SocketHandle,
        now: Instant,
    ) -> bool {
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
            // Closed, not connected: it took no SYN (smoltcp moves a listener that takes one
            // to SYN-RECEIVED). Its socket goes back to the pool and a fresh listener comes.
            Role::Listener if state == tcp::State::Closed => {
                self.remove_listener(index);
                return true;
            }
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
    pub(super) fn observe_after_close(
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
    pub(super) fn discard_unclaimed(
        slot: &mut Slot,
        socket: &mut tcp::Socket,
        events: &mut Vec<DeviceEvent>,
    ) {
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
    pub(super) fn observe_data_and_close(&mut self, index: usize, handle: SocketHandle) -> bool {
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
    pub(super) fn post(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn listeners(hal: &Hal) -> Vec<SocketHandle> {
        let slots = hal.slots.iter().flatten();
        let listening = slots.filter(|s| s.role == Role::Listener);
        listening.filter_map(|s| s.handle).collect()
    }

    /// A listener that leaves LISTEN for CLOSED was closed, not connected: no connection is
    /// reported, and a fresh listener takes its socket's place in the pool.
    #[test]
    fn a_closed_listener_is_replaced_not_taken_for_a_connection() {
        let policy = Policy::FIXED;
        let config = DeviceConfig {
            backlog: 1,
            ..DeviceConfig::for_policy(&policy)
        };
        let mut hal = Hal::new(policy, config, 1);
        assert!(hal.create_server(1234).is_ok());
        let [closed] = listeners(&hal)[..] else {
            panic!("one listener expected");
        };
        hal.sockets.get_mut::<tcp::Socket>(closed).abort();
        hal.observe(Instant::ZERO, true);
        let mut events = Vec::new();
        hal.take_events(&mut events);
        assert_eq!(events, []);
        let [fresh] = listeners(&hal)[..] else {
            panic!("one listener expected");
        };
        assert_eq!(
            hal.sockets.get::<tcp::Socket>(fresh).state(),
            tcp::State::Listen
        );
        assert_eq!(
            hal.sockets.iter().count(),
            1,
            "the closed socket left the pool"
        );
        assert_eq!(hal.pool_in_use(), 0);
    }
}
