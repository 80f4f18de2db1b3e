//! The air capture of a run: one pcapng file with two interfaces, `device` (0) and `peer` (1),
//! so a reader sees what reached each side. Each side shows what it sent, at its send time, and
//! what the link delivered to it, at the delivery time (the pcapng direction flag says which).
//! A packet the link dropped appears only on its sender's side, with a packet comment saying
//! why ("dropped by the link: Gilbert-Elliott bad state"); duplicated and reordered packets are
//! commented on the sender's side too. The device's own pcap ([`crate::capture`]) instead shows
//! every packet the device's stack handled, including those that never reached the peer.
//!
//! Records wait until no earlier one can come ([`AirCapture::flush_before`]): the turmoil
//! backend learns a packet's fate at the receiver, after the sender wrote later records. What
//! a turmoil fault does happens before the link model: a datagram a partition or a crashed
//! host discards is on neither side, one a hold delays is written when it arrives (out of
//! time order).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use firmware_core::smoltcp::time::Instant;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, PcapError};

use crate::link::Fate;

/// A side of the link: its interface in the air capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    /// The firmware device (interface 0).
    Device = 0,
    /// The peer (interface 1).
    Peer = 1,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Device => "device",
            Side::Peer => "peer",
        }
    }
}

/// pcapng `epb_flags` direction bits.
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;
/// pcap-file writes EPB timestamps in nanoseconds: the interfaces must say so (`if_tsresol`).
const NANOSECONDS: u8 = 9;

/// When, where and which way a packet was seen: the order in which records are written (by
/// time, then side and direction, so a file does not depend on the order in which a backend
/// learns of simultaneous packets, then arrival).
type Key = (Instant, Side, bool, u64);

/// One packet seen on one side, waiting for its turn.
struct Record {
    packet: Vec<u8>,
    comment: Option<String>,
}

/// A pcapng air capture being written.
pub(crate) struct AirCapture {
    /// `None` once a write failed (the first error is kept).
    writer: Option<PcapNgWriter<Box<dyn Write>>>,
    error: Option<io::Error>,
    pending: BTreeMap<Key, Record>,
    order: u64,
}

impl AirCapture {
    /// Starts a capture into `out`: the section header and both interfaces.
    pub(crate) fn new(out: Box<dyn Write>) -> AirCapture {
        let mut air = AirCapture {
            writer: None,
            error: None,
            pending: BTreeMap::new(),
            order: 0,
        };
        // Little-endian whatever the machine, so equal runs write equal files.
        match PcapNgWriter::with_endianness(out, Endianness::Little) {
            Ok(writer) => air.writer = Some(writer),
            Err(e) => air.fail(e),
        }
        for (side, description) in [
            (
                Side::Device,
                "what the device sent and what the link delivered to it",
            ),
            (
                Side::Peer,
                "what the peer sent and what the link delivered to it",
            ),
        ] {
            air.write(InterfaceDescriptionBlock {
                linktype: DataLink::RAW,
                snaplen: 0,
                options: vec![
                    InterfaceDescriptionOption::IfName(side.name().into()),
                    InterfaceDescriptionOption::IfDescription(description.into()),
                    InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
                ],
            });
        }
        air
    }

    /// `side` sent `packet` at `at`, and the link did `fate` with it.
    pub(crate) fn sent(&mut self, side: Side, at: Instant, packet: &[u8], fate: Fate) {
        let comment = match fate {
            Fate::Lost(cause) => Some(format!("dropped by the link: {cause}")),
            Fate::Sent {
                duplicated,
                reordered,
                ..
            } => {
                let notes = [
                    duplicated.then_some("duplicated by the link: delivered twice"),
                    reordered.then_some("reordered by the link: sent ahead of earlier packets"),
                ];
                let notes: Vec<&str> = notes.into_iter().flatten().collect();
                (!notes.is_empty()).then(|| notes.join("; "))
            }
        };
        self.push(at, side, true, packet, comment);
    }

    /// The link delivered `packet` to `side` at `at`.
    pub(crate) fn received(&mut self, side: Side, at: Instant, packet: &[u8]) {
        self.push(at, side, false, packet, None);
    }

    fn push(
        &mut self,
        at: Instant,
        side: Side,
        outbound: bool,
        packet: &[u8],
        comment: Option<String>,
    ) {
        if self.writer.is_none() {
            return;
        }
        self.order += 1;
        let record = Record {
            packet: packet.to_vec(),
            comment,
        };
        self.pending
            .insert((at, side, outbound, self.order), record);
    }

    /// Writes every record before `t`: the backend saw everything that happened before it.
    pub(crate) fn flush_before(&mut self, t: Instant) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 >= t {
                break;
            }
            let (key, record) = entry.remove_entry();
            self.write_record(key, record);
        }
    }

    /// Writes what is left and flushes; returns the first error the capture met, if any.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        while let Some((key, record)) = self.pending.pop_first() {
            self.write_record(key, record);
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.writer.as_mut() {
            Some(writer) => writer.get_mut().flush(),
            None => Ok(()),
        }
    }

    fn write_record(&mut self, (at, side, outbound, _): Key, record: Record) {
        let flags = if outbound { OUTBOUND } else { INBOUND };
        let mut options = vec![EnhancedPacketOption::Flags(flags)];
        if let Some(comment) = record.comment {
            options.push(EnhancedPacketOption::Comment(comment.into()));
        }
        self.write(EnhancedPacketBlock {
            interface_id: side as u32,
            timestamp: Duration::from_micros(at.total_micros().max(0) as u64),
            original_len: record.packet.len() as u32,
            data: Cow::Owned(record.packet),
            options,
        });
    }

    fn write<'a>(&mut self, block: impl pcap_file::pcapng::PcapNgBlock<'a>) {
        if let Some(writer) = self.writer.as_mut() {
            if let Err(e) = writer.write_pcapng_block(block) {
                self.fail(e);
            }
        }
    }

    /// Keeps the first error and stops writing.
    fn fail(&mut self, e: PcapError) {
        self.writer = None;
        self.pending.clear();
        self.error.get_or_insert(match e {
            PcapError::IoError(e) => e,
            other => io::Error::other(other.to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use pcap_file::pcapng::{Block, PcapNgReader};

    use super::*;
    use crate::link::LossCause;
    use crate::{RunOptions, RunReport, Sim};

    /// A `Write` whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// One packet as read back: interface name, time (us), outbound, comment.
    type Seen = (String, u64, bool, Option<String>);

    fn read_back(bytes: &[u8]) -> Vec<Seen> {
        let mut reader = PcapNgReader::new(bytes).unwrap();
        let mut seen = Vec::new();
        while let Some(block) = reader.next_block() {
            let Block::EnhancedPacket(p) = block.unwrap() else {
                continue;
            };
            let mut outbound = None;
            let mut comment = None;
            for option in &p.options {
                match option {
                    EnhancedPacketOption::Flags(f) => outbound = Some(*f == OUTBOUND),
                    EnhancedPacketOption::Comment(c) => comment = Some(c.to_string()),
                    _ => {}
                }
            }
            let at_us = p.timestamp.as_micros() as u64;
            seen.push((p.interface_id, at_us, outbound.unwrap(), comment));
        }
        let names: Vec<String> = reader
            .interfaces()
            .iter()
            .map(|i| {
                let ns = InterfaceDescriptionOption::IfTsResol(NANOSECONDS);
                assert!(i.options.contains(&ns), "timestamps in ns");
                let name = i.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                    _ => None,
                });
                name.unwrap()
            })
            .collect();
        assert_eq!(names, ["device", "peer"]);
        let name = |id: u32| names[id as usize].clone();
        seen.into_iter()
            .map(|(id, at, out, comment)| (name(id), at, out, comment))
            .collect()
    }

    #[test]
    fn records_come_out_in_time_order_with_their_comments() {
        let out = Shared::default();
        let mut air = AirCapture::new(Box::new(out.clone()));
        let t = Instant::from_micros;
        let sent = Fate::Sent {
            at: t(40),
            duplicated: true,
            reordered: false,
        };
        // As on turmoil: the receiver's record comes first, the sender's fate later.
        air.received(Side::Device, t(30), &[0x45; 20]);
        air.sent(Side::Peer, t(10), &[0x45; 20], sent);
        air.flush_before(t(20));
        air.sent(
            Side::Device,
            t(20),
            &[0x45; 24],
            Fate::Lost(LossCause::BadState),
        );
        air.finish().unwrap();
        let seen = read_back(&out.0.borrow());
        let dup = "duplicated by the link: delivered twice";
        let lost = "dropped by the link: Gilbert-Elliott bad state";
        assert_eq!(
            seen,
            vec![
                ("peer".into(), 10, true, Some(dup.into())),
                ("device".into(), 20, true, Some(lost.into())),
                ("device".into(), 30, false, None),
            ]
        );
    }

    #[test]
    fn a_write_error_is_kept_not_panicked() {
        use crate::capture::tests::Full;
        let mut air = AirCapture::new(Box::new(Full));
        air.received(Side::Device, Instant::ZERO, &[0x45; 20]);
        let e = air.finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }

    /// Runs the lossy forum on `backend` with and without the air capture.
    fn lossy_forum(backend: &str) -> (RunReport, RunReport, Vec<u8>) {
        let forum = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/forum.toml");
        let mut sim = Sim::from_file(forum).unwrap();
        for set in [
            "link.preset=\"wlan-bad\"",
            "link.duplicate=0.02",
            "link.reorder=0.02",
            "peer.0.count=60",
            &format!("backend={backend}"),
        ] {
            sim = sim.set(set).unwrap();
        }
        let out = Shared::default();
        let options = RunOptions {
            pcap_air: Some(Box::new(out.clone())),
            ..RunOptions::default()
        };
        let with = sim.run_with(options).unwrap();
        let without = sim.run().unwrap();
        let bytes = out.0.borrow().clone();
        (with, without, bytes)
    }

    /// Every packet each side sent or got is on its interface, in time order, and every drop,
    /// duplicate and reorder the link counted carries its comment, on both backends; the
    /// capture changes nothing of the run.
    #[test]
    fn both_backends_show_every_packet_and_comment_every_drop() {
        let mut files = Vec::new();
        for backend in ["loopback", "turmoil"] {
            let (r, without, bytes) = lossy_forum(backend);
            assert_eq!(r.trace_hash, without.trace_hash, "{backend}");
            assert_eq!((r.uplink, r.downlink), (without.uplink, without.downlink));
            let (up, down) = (r.uplink, r.downlink);
            assert!(up.lost > 0 && down.lost > 0, "{backend}: a lossy run");
            assert!(down.duplicated + up.duplicated > 0 && down.reordered + up.reordered > 0);
            let seen = read_back(&bytes);
            assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "time order");
            let count = |side: &str, outbound: bool, note: &str| {
                let matches = |s: &&Seen| {
                    s.0 == side && s.2 == outbound && s.3.as_deref().unwrap_or("").contains(note)
                };
                seen.iter().filter(matches).count() as u64
            };
            // Sent: every packet offered to the link; received: every packet it delivered.
            assert_eq!(count("device", true, ""), up.enqueued, "{backend}");
            assert_eq!(count("device", false, ""), down.delivered, "{backend}");
            assert_eq!(count("peer", true, ""), down.enqueued, "{backend}");
            assert_eq!(count("peer", false, ""), up.delivered, "{backend}");
            for (side, stats) in [("device", up), ("peer", down)] {
                assert_eq!(count(side, true, "dropped by the link"), stats.lost);
                assert_eq!(count(side, true, "duplicated"), stats.duplicated);
                assert_eq!(count(side, true, "reordered"), stats.reordered);
            }
            files.push((r.exact_timing(), bytes));
        }
        if files.iter().all(|(exact, _)| *exact) {
            assert!(
                files[0].1 == files[1].1,
                "exact timing: the same air on both"
            );
        }
    }
}
