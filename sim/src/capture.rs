//! The pcap capture of a run: every packet the device sent or received, as raw IP (opens in
//! Wireshark and tshark). smoltcp's `PcapSink` for `io::Write` panics on a write error (a full
//! disk); this sink keeps the first error instead, stops writing, and the run reports it. Each
//! packet goes to the output in one write, so a buffered file only ever ends between two
//! packets: live mode syncs it while it runs, and a killed `serve` leaves a readable capture.

use std::io::{self, Write};

use firmware_core::smoltcp::phy::{PcapLinkType, PcapSink};

/// A pcap file being written.
pub struct Capture {
    out: Box<dyn Write>,
    /// The packet (or the global header) being written.
    record: Vec<u8>,
    error: Option<io::Error>,
}

impl Capture {
    /// Starts a capture into `out` (writes the pcap global header).
    pub fn new(out: Box<dyn Write>) -> Capture {
        let mut capture = Capture {
            out,
            record: Vec::new(),
            error: None,
        };
        capture.global_header(PcapLinkType::Ip);
        PcapSink::flush(&mut capture);
        capture
    }

    /// Writes what is buffered through to the file now (live mode does, every half second);
    /// returns the first error the capture met, if any.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        Write::flush(&mut self.out)
    }

    /// Flushes what is buffered at the end; returns the first error the capture met, if any.
    pub fn finish(&mut self) -> io::Result<()> {
        self.sync()
    }
}

impl PcapSink for Capture {
    fn write(&mut self, data: &[u8]) {
        self.record.extend_from_slice(data);
    }

    // smoltcp flushes after every packet: the whole packet goes to the (buffered) output in
    // one write, which a `BufWriter` never splits between the file and its buffer.
    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.record) {
                self.error = Some(e);
            }
        }
        self.record.clear();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use firmware_core::smoltcp::time::Instant;

    use super::*;

    /// A writer whose every write fails as a full disk does.
    pub(crate) struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Records the length of each write.
    struct Writes(std::rc::Rc<std::cell::RefCell<Vec<usize>>>);
    impl Write for Writes {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().push(data.len());
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The global header and each packet (its 16-byte header and data) reach the output in
    /// one write each, so a file cut anywhere between writes holds whole packets.
    #[test]
    fn each_packet_is_one_write() {
        let writes = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut c = Capture::new(Box::new(Writes(writes.clone())));
        c.packet(Instant::ZERO, &[0x45; 20]);
        c.packet(Instant::from_millis(3), &[0x45; 40]);
        c.sync().unwrap();
        assert_eq!(*writes.borrow(), [24, 16 + 20, 16 + 40]);
    }

    #[test]
    fn a_write_error_is_kept_not_panicked() {
        let mut c = Capture::new(Box::new(Full));
        c.packet(Instant::ZERO, &[0x45; 20]);
        let e = c.finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }
}
