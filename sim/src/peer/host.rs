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

#[cfg(test)]
mod tests {
    use smoltcp::time::Instant;
    use smoltcp::wire::{Ipv4Packet, TcpPacket};

    use super::super::tests::{Bench, Talk};
    use super::super::{PeerEvent, ProgramKind, Workload, COMPACT_MIN};
    use super::*;
    use crate::scenario::{parse, Set, SetFlag};

    /// A TCP segment of the bench's wire.
    #[derive(Debug)]
    struct Segment {
        at: Instant,
        from_peer: bool,
        syn: bool,
        control: bool,
        len: usize,
    }

    fn segments(b: &Bench) -> Vec<Segment> {
        b.packets
            .iter()
            .map(|(at, from_peer, bytes)| {
                let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                Segment {
                    at: *at,
                    from_peer: *from_peer,
                    syn: tcp.syn(),
                    control: tcp.syn() || tcp.fin() || tcp.rst(),
                    len: tcp.payload().len(),
                }
            })
            .collect()
    }

    fn workload(host: HostProfile) -> Workload {
        Workload {
            start_ms: 0,
            host,
            ..Workload::default()
        }
    }

    #[test]
    fn a_connect_gives_up_when_the_hosts_kernel_does() {
        // SYNs into the void: the program would wait 200 s (`nc -w 200`), the kernels less.
        for (host, give_up_s) in [
            (HostProfile::Smoltcp, 200),
            (HostProfile::Linux, 127),
            (HostProfile::Macos, 75),
        ] {
            let w = Workload {
                connect_timeout_ms: 200_000,
                ..workload(host)
            };
            let mut b = Bench::new(vec![w], 1, COMPACT_MIN);
            b.unreachable = true;
            b.run_until(Instant::from_secs(300));
            let failed: Vec<_> = b
                .events
                .iter()
                .filter(|(_, e)| matches!(e, PeerEvent::ConnectFailed { .. }))
                .map(|(t, _)| t.total_millis())
                .collect();
            assert_eq!(failed, [give_up_s * 1000], "{host}");
            // The SYNs follow smoltcp's RTO (1 s, doubling, at most 60 s) whatever the host:
            // Linux's schedule up to 63 s (then smoltcp's cap sends one more at 123 s), not
            // XNU's (0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s).
            let syns: Vec<i64> = segments(&b)
                .iter()
                .filter(|s| s.from_peer && s.syn)
                .map(|s| s.at.total_millis() / 1000)
                .collect();
            let all = [0, 1, 3, 7, 15, 31, 63, 123, 183];
            let sent = all.iter().filter(|&&t| t < give_up_s).count();
            assert_eq!(syns, all[..sent], "{host}");
        }
    }

    #[test]
    fn acks_are_quick_then_delayed_as_on_the_host() {
        // The device sends 20 one-byte segments 200 ms apart to a peer that holds its
        // connection open: the delay before each pure ACK of the peer.
        for (host, quick, delayed_ms) in [
            (HostProfile::Smoltcp, 0, 1),
            (HostProfile::Linux, 16, 40),
            (HostProfile::Macos, 16, 100),
        ] {
            let w = Workload {
                kind: ProgramKind::Hold,
                payload_hex: "aa".into(),
                hold_ms: 10_000,
                ..workload(host)
            };
            let mut b = Bench::new(vec![w], 1, COMPACT_MIN);
            b.talk = Some(Talk::new(20, Duration::from_millis(200)));
            b.run_until(Instant::from_secs(6));
            let segs = segments(&b);
            let data: Vec<Instant> = segs
                .iter()
                .filter(|s| !s.from_peer && s.len > 0)
                .map(|s| s.at)
                .collect();
            assert_eq!(data.len(), 20, "{host}");
            let delays: Vec<i64> = data
                .iter()
                .map(|&t| {
                    let ack = segs
                        .iter()
                        .find(|s| s.from_peer && s.at >= t && s.len == 0 && !s.control)
                        .unwrap_or_else(|| panic!("{host}: no ACK after {t}"));
                    (ack.at - t).total_millis() as i64
                })
                .collect();
            let mut expected = vec![0; quick];
            expected.resize(20, delayed_ms);
            assert_eq!(delays, expected, "{host}");
        }
    }

    #[test]
    fn nagle_holds_the_short_segment_on_macos_only() {
        // 2000 bytes: a full segment (1460) and a short one (540). Nagle holds the short one
        // until the device acknowledges the full one (its delayed ACK: 10 ms).
        for (host, gap_ms) in [
            (HostProfile::Smoltcp, 0),
            (HostProfile::Linux, 0),
            (HostProfile::Macos, 10),
        ] {
            let w = Workload {
                kind: ProgramKind::Stream,
                stream_bytes: 2000,
                ..workload(host)
            };
            let mut b = Bench::new(vec![w], 1, COMPACT_MIN);
            b.run_until(Instant::from_secs(1));
            let data: Vec<_> = segments(&b)
                .into_iter()
                .filter(|s| s.from_peer && s.len > 0)
                .collect();
            assert_eq!(
                data.iter().map(|s| s.len).collect::<Vec<_>>(),
                [1460, 540],
                "{host}"
            );
            assert_eq!((data[1].at - data[0].at).total_millis(), gap_ms, "{host}");
        }
    }

    #[test]
    fn host_is_a_peer_field_with_a_default_and_a_named_error() {
        let text = "name = \"t\"\n[device]\napp = \"forum\"\n[[peer]]\ncount = 1\n";
        let set = |v: &str| [Set::parse(SetFlag::Set, &format!("peer.0.host={v}")).unwrap()];
        assert_eq!(
            parse("t.toml", text, &[]).unwrap().peer[0].host,
            HostProfile::Smoltcp
        );
        for host in HostProfile::ALL {
            let s = parse("t.toml", text, &set(host.name())).unwrap();
            assert_eq!(s.peer[0].host, host);
            assert_eq!(parse("saved.toml", &s.to_toml(), &[]).unwrap(), s);
        }
        let err = parse("t.toml", text, &set("windows"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("peer.0.host=windows")
                && err.contains("peer[0].host")
                && err.contains("`linux`"),
            "{err}"
        );
    }

    #[test]
    fn the_give_up_is_the_earlier_of_program_and_kernel() {
        let linux = HostProfile::Linux.timers();
        assert_eq!(linux.connect_give_up_ms(10_000), 10_000);
        assert_eq!(linux.connect_give_up_ms(300_000), 127_000);
        assert_eq!(
            HostProfile::Smoltcp.timers().connect_give_up_ms(300_000),
            300_000
        );
    }
}
