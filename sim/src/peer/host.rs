//! Which operating system's TCP timers the peer's stack follows (`[[peer]] host`), as far as
//! smoltcp lets a program set them.
//!
//! The field's peers were Linux and macOS laptops; the peer here is a smoltcp stack. smoltcp
//! lets a program set, per socket, the ACK delay, Nagle's algorithm, an idle timeout and
//! keep-alive; its retransmission timer (initial RTO 1 s, minimum 1 s, maximum 60 s, doubling),
//! its SYN retransmission schedule (the same timer), zero-window probing (from the RTO,
//! doubling to 60 s) and its TIME-WAIT (10 s) are constants. A profile sets what can be set and
//! does at program level what a host's kernel does around the stack (quick ACKs at the start of
//! a connection, giving up a connect). `docs/peer-hosts.md` lists every timer with its sources
//! and what the constants leave unmatched.

use serde::{Deserialize, Serialize};
use smoltcp::socket::tcp;
use smoltcp::time::Duration;

/// The host whose timers a workload's connections follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostProfile {
    /// fwsim's peer as it always ran: smoltcp's own timers, an ACK delay of 1 ms and Nagle
    /// off (not smoltcp's defaults, 10 ms and on), no connect give-up but the program's
    /// `connect_timeout_ms`. The default: the Photon model was fitted with it.
    #[default]
    Smoltcp,
    /// Linux (net/ipv4, include/net/tcp.h): the first 16 data segments acknowledged at once
    /// (quick-ACK, `TCP_MAX_QUICKACKS`), then a delayed ACK of 40 ms (`TCP_DELACK_MIN`);
    /// Nagle off in smoltcp's terms (Linux's Minshall variant holds a small segment only while
    /// another small one is unacknowledged, so a single write or a stream of full segments
    /// goes out as without Nagle); a connect fails after 6 SYN retransmissions, 127 s
    /// (`tcp_syn_retries`).
    Linux,
    /// macOS (XNU bsd/netinet): the first 16 data segments acknowledged at once
    /// (`TCP_FORCED_ACKS_COUNT`), then a delayed ACK of 100 ms (`tcp_delack`); Nagle on; a
    /// connect fails after 75 s (`tcp_keepinit`). Nagle on: like smoltcp's, XNU's
    /// `tcp_output` holds a segment shorter than the MSS while data is in flight (unless it is
    /// half the largest window seen, or the end of the buffer after a full segment).
    Macos,
}

/// The settable timers of a [`HostProfile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTimers {
    /// Data segments of a connection acknowledged at once before the delayed ACK applies.
    pub quick_acks: u32,
    /// The delayed ACK after the quick ACKs, in microseconds (`None`: every ACK at once).
    /// smoltcp still acknowledges at once when more than one segment's worth is unacknowledged,
    /// as Linux and XNU do.
    pub ack_delay_us: Option<u64>,
    /// smoltcp's Nagle: no segment shorter than the MSS while data is in flight (`nc` and
    /// the test clients leave `TCP_NODELAY` off; what that means differs per host).
    pub nagle: bool,
    /// The kernel gives up a connect (ETIMEDOUT) this long after the first SYN; `None`: never
    /// (only the program's `connect_timeout_ms`).
    pub connect_give_up_ms: Option<u64>,
}

impl HostProfile {
    /// Every profile, in the order of the docs' tables.
    pub const ALL: [HostProfile; 3] =
        [HostProfile::Smoltcp, HostProfile::Linux, HostProfile::Macos];

    /// The name in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HostProfile::Smoltcp => "smoltcp",
            HostProfile::Linux => "linux",
            HostProfile::Macos => "macos",
        }
    }

    /// The timers this profile sets.
    pub fn timers(self) -> HostTimers {
        match self {
            HostProfile::Smoltcp => HostTimers {
                quick_acks: 0,
                ack_delay_us: Some(1_000),
                nagle: false,
                connect_give_up_ms: None,
            },
            // TCP_MAX_QUICKACKS, TCP_DELACK_MIN (HZ/25), tcp_syn_retries 6: SYNs at 0, 1, 3,
            // 7, 15, 31 and 63 s, ETIMEDOUT when the last one's 64 s run out.
            HostProfile::Linux => HostTimers {
                quick_acks: 16,
                ack_delay_us: Some(40_000),
                nagle: false,
                connect_give_up_ms: Some(127_000),
            },
            // TCP_FORCED_ACKS_COUNT, tcp_delack (TCP_RETRANSHZ/10), TCPTV_KEEP_INIT.
            HostProfile::Macos => HostTimers {
                quick_acks: 16,
                ack_delay_us: Some(100_000),
                nagle: true,
                connect_give_up_ms: Some(75_000),
            },
        }
    }
}

impl HostTimers {
    /// Sets a new socket's timers: the quick-ACK phase's (or the delayed ACK's, when there is
    /// none) and Nagle. Keep-alive stays off and no idle timeout is set, as on every host by
    /// default (smoltcp's timeout would abort an idle connection, which no host does).
    pub(super) fn configure(&self, socket: &mut tcp::Socket<'_>) {
        let delay = match self.quick_acks {
            0 => self.ack_delay_us,
            _ => None,
        };
        socket.set_ack_delay(delay.map(Duration::from_micros));
        socket.set_nagle_enabled(self.nagle);
    }

    /// Called after each data segment a connection takes in (`segments` so far): once the quick
    /// ACKs are spent, the delayed ACK applies.
    pub(super) fn after_data_segment(&self, segments: u32, socket: &mut tcp::Socket<'_>) {
        if self.quick_acks > 0 && segments == self.quick_acks {
            socket.set_ack_delay(self.ack_delay_us.map(Duration::from_micros));
        }
    }

    /// When a connect gives up: the program's timeout or the kernel's, whichever is first.
    pub fn connect_give_up_ms(&self, program_timeout_ms: u64) -> u64 {
        self.connect_give_up_ms
            .map_or(program_timeout_ms, |kernel| kernel.min(program_timeout_ms))
    }
}

impl std::fmt::Display for HostProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
