//! What the peer's stack saw of each connection, as events and as records rebuilt from them.

use smoltcp::time::Instant;

use super::workload::Payload;

/// What the peer's stack saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConnRecord {
    /// Workload index.
    pub workload: usize,
    /// The peer's local port (the device sees it as the remote port).
    pub local_port: u16,
    /// When the program opened the connection.
    pub opened_at: Instant,
    /// The handshake completed at the peer.
    pub established: bool,
    /// Bytes handed to the peer's stack.
    pub bytes_sent: u64,
    /// Bytes the device's stack acknowledged.
    pub bytes_acked: u64,
    /// The peer saw an RST while the program was still attached.
    pub reset_seen: bool,
    /// The connection attempt failed visibly (RST to SYN, or timeout).
    pub connect_failed: bool,
    /// The program closed its side (FIN).
    pub fin_sent: bool,
    /// The device closed its side (FIN) while the program watched.
    pub device_fin_seen: bool,
    /// The program ran to its end before the run stopped.
    pub finished: bool,
    /// The program aborted the connection itself (RST): it gave up any claim on delivery
    /// (RFC 9293 3.10.7.4 lets the receiver flush its queues).
    pub peer_aborted: bool,
    /// The program stopped waiting for the device to close (`linger_ms` passed without the
    /// device's FIN or RST): like `nc -N` hanging, something the user sees.
    pub gave_up_waiting: bool,
    /// What the connection sends.
    pub payload: Payload,
}

impl PeerConnRecord {
    /// The record of a connection `workload` just opened on `local_port`.
    pub(super) fn opened(
        workload: usize,
        local_port: u16,
        opened_at: Instant,
        payload: Payload,
    ) -> Self {
        PeerConnRecord {
            workload,
            local_port,
            opened_at,
            established: false,
            bytes_sent: 0,
            bytes_acked: 0,
            reset_seen: false,
            connect_failed: false,
            fin_sent: false,
            device_fin_seen: false,
            finished: false,
            peer_aborted: false,
            gave_up_waiting: false,
            payload,
        }
    }
}

impl PeerConnRecord {
    /// The program is waiting on the device: for the handshake, for the acknowledgement of
    /// bytes it sent, or for the device's answer to its FIN. A program pausing of its own
    /// accord (`hold_ms`, with everything acknowledged) is not waiting.
    pub fn waiting_on_device(&self) -> bool {
        let answered = self.device_fin_seen || self.reset_seen;
        !self.finished
            && ((!self.established && !self.connect_failed)
                || self.bytes_acked < self.bytes_sent
                || (self.fin_sent && !answered))
    }
}

/// Events of the peer for the trace, in the order they happened. Together with the workloads'
/// payloads ([`super::workload_payloads`]) they carry every field of every [`PeerConnRecord`];
/// see [`PeerLedger`], which rebuilds the records from them.
///
/// A `port` names the connection opened most recently on that port: ports wrap after 25,536
/// connections (`40000..=65535`), so a long run reuses them. An event's time is the time of
/// the `PeerHost::poll` that produced it.
///
/// Order within one poll: connections opened (`Opened`, in schedule order); then the programs
/// act, connection by connection in opening order (`Sent`, `FinSent`, `ResetSent`,
/// `ConnectFailed` on timeout, `GaveUp`, `Finished`); then, after every packet the stack takes
/// in and after it transmits, each connection in opening order reports what its socket shows
/// (`Acked`, `Established`, `DeviceFinSeen`, then `ConnectFailed` or `ResetSeen`, then
/// `Finished`). `Finished` is a connection's last event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// Workload `workload` opened a connection (sent its SYN) from `port`; `opened_at` is the
    /// event's time.
    Opened {
        /// The peer's local port.
        port: u16,
        /// Index of the scenario workload.
        workload: usize,
    },
    /// The handshake completed at the peer (`established`).
    Established {
        /// The peer's local port.
        port: u16,
    },
    /// The program handed `bytes` more to the peer's stack (`bytes_sent` grows by `bytes`).
    Sent {
        /// The peer's local port.
        port: u16,
        /// Bytes the stack took this time.
        bytes: usize,
    },
    /// The device's stack acknowledged `bytes` more (`bytes_acked` grows by `bytes`).
    Acked {
        /// The peer's local port.
        port: u16,
        /// Bytes newly acknowledged.
        bytes: u64,
    },
    /// The program closed its side (FIN).
    FinSent {
        /// The peer's local port.
        port: u16,
    },
    /// The program aborted the connection itself with an RST (`peer_aborted`).
    ResetSent {
        /// The peer's local port.
        port: u16,
    },
    /// The peer saw the device's RST while the program was attached (`reset_seen`).
    ResetSeen {
        /// The peer's local port.
        port: u16,
    },
    /// The connection attempt failed visibly: RST to the SYN, or `connect_timeout_ms`
    /// (`connect_failed`).
    ConnectFailed {
        /// The peer's local port.
        port: u16,
    },
    /// The device closed its side (FIN) while the program watched (`device_fin_seen`).
    DeviceFinSeen {
        /// The peer's local port.
        port: u16,
    },
    /// The program stopped waiting for the device to close (`gave_up_waiting`); `Finished`
    /// follows.
    GaveUp {
        /// The peer's local port.
        port: u16,
    },
    /// The program ran to its end (`finished`): the connection's last event.
    Finished {
        /// The peer's local port.
        port: u16,
    },
}

impl PeerEvent {
    /// The peer's port (the connection's key: the connection opened most recently on it).
    pub fn port(&self) -> u16 {
        match *self {
            PeerEvent::Opened { port, .. }
            | PeerEvent::Established { port }
            | PeerEvent::Sent { port, .. }
            | PeerEvent::Acked { port, .. }
            | PeerEvent::FinSent { port }
            | PeerEvent::ResetSent { port }
            | PeerEvent::ResetSeen { port }
            | PeerEvent::ConnectFailed { port }
            | PeerEvent::DeviceFinSeen { port }
            | PeerEvent::GaveUp { port }
            | PeerEvent::Finished { port } => port,
        }
    }
}

/// The peer's records rebuilt from its events alone (what a reader of the trace sees): the
/// same records, in the same (opening) order, as [`super::PeerHost::records`].
#[derive(Debug, Clone, Default)]
pub struct PeerLedger {
    payloads: Vec<Payload>,
    records: Vec<PeerConnRecord>,
    /// The connection opened most recently on each port, as an index into `records`.
    by_port: std::collections::BTreeMap<u16, usize>,
}

impl PeerLedger {
    /// A ledger for a run of workloads with these payloads ([`super::workload_payloads`]).
    pub fn new(payloads: Vec<Payload>) -> PeerLedger {
        PeerLedger {
            payloads,
            ..PeerLedger::default()
        }
    }

    /// Takes one event the peer emitted at `at`. Events for a port no connection was opened
    /// on, or an `Opened` of an unknown workload, are errors.
    pub fn apply(&mut self, at: Instant, event: &PeerEvent) -> Result<(), LedgerError> {
        if let PeerEvent::Opened { port, workload } = *event {
            let payload = self
                .payloads
                .get(workload)
                .ok_or(LedgerError::UnknownWorkload(workload))?
                .clone();
            self.open(at, port, workload, payload);
            return Ok(());
        }
        let r = self
            .by_port
            .get(&event.port())
            .and_then(|&i| self.records.get_mut(i))
            .ok_or(LedgerError::UnknownPort(event.port()))?;
        match *event {
            PeerEvent::Opened { .. } => {}
            PeerEvent::Established { .. } => r.established = true,
            PeerEvent::Sent { bytes, .. } => r.bytes_sent += bytes as u64,
            PeerEvent::Acked { bytes, .. } => r.bytes_acked += bytes,
            PeerEvent::FinSent { .. } => r.fin_sent = true,
            PeerEvent::ResetSent { .. } => r.peer_aborted = true,
            PeerEvent::ResetSeen { .. } => r.reset_seen = true,
            PeerEvent::ConnectFailed { .. } => r.connect_failed = true,
            PeerEvent::DeviceFinSeen { .. } => r.device_fin_seen = true,
            PeerEvent::GaveUp { .. } => r.gave_up_waiting = true,
            PeerEvent::Finished { .. } => r.finished = true,
        }
        Ok(())
    }

    /// A connection `workload` opened from `port` at `at`, sending `payload` rather than the
    /// workload's (live mode: the bytes the host sends, known as it sends them).
    pub fn open(&mut self, at: Instant, port: u16, workload: usize, payload: Payload) {
        self.insert(PeerConnRecord::opened(workload, port, at, payload));
    }

    /// Adds a record as it stands, as the newest connection on its port (one taken out of
    /// another ledger, to be judged alone).
    pub fn insert(&mut self, record: PeerConnRecord) {
        self.by_port.insert(record.local_port, self.records.len());
        self.records.push(record);
    }

    /// Takes out the connection opened most recently on `port`: its index in
    /// [`PeerLedger::records`] before, and its record. Events of the port are errors again
    /// until a connection opens on it.
    pub fn take(&mut self, port: u16) -> Option<(usize, PeerConnRecord)> {
        let i = self.by_port.remove(&port)?;
        let record = self.records.remove(i);
        for later in self.by_port.values_mut().filter(|j| **j > i) {
            *later -= 1;
        }
        Some((i, record))
    }

    /// The records so far, in opening order.
    pub fn records(&self) -> &[PeerConnRecord] {
        &self.records
    }

    /// The index (in [`PeerLedger::records`]) of the connection opened most recently on `port`.
    pub fn current(&self, port: u16) -> Option<usize> {
        self.by_port.get(&port).copied()
    }
}

/// An event the ledger cannot place (a harness bug, or a trace from another run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerError {
    /// `Opened` names a workload the run does not have.
    UnknownWorkload(usize),
    /// An event of a port no connection was opened on.
    UnknownPort(u16),
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::UnknownWorkload(w) => write!(f, "a connection of unknown workload {w}"),
            LedgerError::UnknownPort(p) => write!(f, "an event of port {p}, never opened"),
        }
    }
}

impl std::error::Error for LedgerError {}
