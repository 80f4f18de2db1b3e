//! fwsim's cross-crate test suite. The tests live in `tests/`; this library holds helpers they
//! share.

use firmware_core::app::{App, RecordedKind};
use firmware_core::testkit::Bench;
use firmware_core::{DeviceConfig, Policy};

/// The field message: `echo -e "\xaa\x05\xfe\x93\x00\x00\x01\x41" | nc HOST 6000`
/// (echo appends a newline: 9 bytes on the wire).
pub const FIELD_MESSAGE: &[u8] = b"\xaa\x05\xfe\x93\x00\x00\x01\x41\n";

/// Port of the forum sketch.
pub const FORUM_PORT: u16 = 6000;

/// What the application saw of one `nc`-style connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NcOutcome {
    /// Bytes the application read.
    pub read: Vec<u8>,
    /// The application logged the connection as accepted.
    pub accepted: bool,
}

/// One `nc` connection against `app`: connect, let the application loop run `accept_loops`
/// times, then data and FIN arrive together between two loop iterations; then the application
/// runs for 50 more loops.
pub fn nc_once(policy: Policy, app: Box<dyn App>, accept_loops: usize) -> NcOutcome {
    let mut b = Bench::new(policy, DeviceConfig::for_policy(&policy), app);
    let h = b.connect(FORUM_PORT);
    b.exchange();
    b.run_app(accept_loops);
    b.peer_send(h, FIELD_MESSAGE);
    b.peer_close(h);
    b.exchange();
    b.run_app(50);
    NcOutcome {
        read: b.seen.bytes_read(),
        accepted: b.seen.count(RecordedKind::Accepted) > 0,
    }
}
