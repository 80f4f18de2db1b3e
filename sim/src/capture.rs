//! The pcap capture of a run: every packet the device sent or received, as raw IP (opens in
//! Wireshark and tshark). smoltcp's `PcapSink` for `io::Write` panics on a write error (a full
//! disk); this sink keeps the first error instead, stops writing, and the run reports it.

use std::io::{self, Write};

use firmware_core::smoltcp::phy::{PcapLinkType, PcapSink};

/// A pcap file being written.
pub struct Capture {
    out: Box<dyn Write>,
    error: Option<io::Error>,
}

impl Capture {
    /// Starts a capture into `out` (writes the pcap global header).
    pub fn new(out: Box<dyn Write>) -> Capture {
        let mut capture = Capture { out, error: None };
        capture.global_header(PcapLinkType::Ip);
        capture
    }

    /// Flushes what is buffered; returns the first error the capture met, if any.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        Write::flush(&mut self.out)
    }
}

impl PcapSink for Capture {
    fn write(&mut self, data: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(data) {
                self.error = Some(e);
            }
        }
    }

    // smoltcp flushes after every packet; the output is buffered and flushed once at the end.
    fn flush(&mut self) {}
}

#[cfg(test)]
mod tests {
    use firmware_core::smoltcp::time::Instant;

    use super::*;

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_is_kept_not_panicked() {
        let mut c = Capture::new(Box::new(Full));
        c.packet(Instant::ZERO, &[0x45; 20]);
        let e = c.finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }
}
