//! What a workload is: its program, schedule and payload, as a scenario's `[[peer]]` says.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::host::HostProfile;

/// What a connection of a workload does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProgramKind {
    /// `echo ... | nc -N HOST PORT`: send the payload, FIN `close_delay_us` later, then read
    /// until the device closes (or `linger_ms` passes).
    Nc,
    /// Send the payload, keep the connection open `hold_ms` once it is acknowledged, then close
    /// (the device may close first). The hold counts from the acknowledgement because the
    /// peer stack (smoltcp) retransmits after 1 s at the earliest where Linux takes ~200 ms: a
    /// hold from the send would make a retransmission coincide with the FIN.
    Hold,
    /// Send `stream_bytes` of a counting pattern, wait until all is acknowledged, keep the
    /// connection `hold_ms` longer, then close.
    Stream,
    /// Send the payload, wait until it is acknowledged, then abort with RST `close_delay_us`
    /// later (data the device acknowledged must still reach the application).
    Reset,
}

/// One workload: a program and its schedule. All fields can be set in a scenario's `[[peer]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// The program each connection runs.
    pub kind: ProgramKind,
    /// Payload of `nc`/`hold` connections, as hex (spaces allowed).
    pub payload_hex: String,
    /// Bytes of the counting pattern a `stream` connection sends. Range: 0..=1099511627776 (1 TiB).
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 1099511627776>")]
    pub stream_bytes: u64,
    /// Connections in all (each burst counts `burst`). Range: 0..=4294967295.
    #[serde(deserialize_with = "firmware_core::range::u32_in::<_, 0, 4294967295>")]
    pub count: u32,
    /// Connections opened at the same instant per schedule step (connect bursts). Range: 1..=10000.
    #[serde(deserialize_with = "firmware_core::range::u32_in::<_, 1, 10000>")]
    pub burst: u32,
    /// First connection at this time. Range: 0..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 86400000>")]
    pub start_ms: u64,
    /// Time between schedule steps. Range: 0..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 86400000>")]
    pub interval_ms: u64,
    /// Uniform jitter added to each interval, `0..=interval_jitter_ms`. Range: 0..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 86400000>")]
    pub interval_jitter_ms: u64,
    /// Process start-up after the handshake before the first byte (drawn per connection
    /// uniformly in `start_delay_min_us..=start_delay_max_us`). Range: 0..=60000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 60000000>")]
    pub start_delay_min_us: u64,
    /// Upper bound of the start-up delay. Range: 0..=60000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 60000000>")]
    pub start_delay_max_us: u64,
    /// Gap between the payload segment and the FIN (nc: 12-43 us, median 15 us). Range: 0..=60000000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 60000000>")]
    pub close_delay_us: u64,
    /// How long `hold`/`stream` keep the connection open after sending. Range: 0..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 86400000>")]
    pub hold_ms: u64,
    /// How long a closed connection keeps reading for the device's FIN or RST. Range: 0..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 0, 86400000>")]
    pub linger_ms: u64,
    /// After its FIN, wait for the device to close (`linger_ms`) and watch for a reset (true,
    /// like `nc`), or be done at once (false: the sender closed its socket and moved on, like
    /// an HTTP server after a `Connection: close` response; an RST arriving later reaches a
    /// socket nobody reads, so the peer cannot see it).
    pub await_device_close: bool,
    /// A connection still not established after this long gives up (like `nc -w`); the
    /// host's kernel may give up first (`host`). Range: 1..=86400000.
    #[serde(deserialize_with = "firmware_core::range::u64_in::<_, 1, 86400000>")]
    pub connect_timeout_ms: u64,
    /// Whose TCP timers the connections' stack follows: `smoltcp` (the default: fwsim's peer
    /// as the Photon model was fitted with it), `linux` or `macos` (the field's laptops: quick
    /// and delayed ACKs, Nagle, the kernel's connect give-up). `docs/peer-hosts.md` says what
    /// each sets and which host timers smoltcp cannot match.
    pub host: HostProfile,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            kind: ProgramKind::Nc,
            payload_hex: "aa05fe9300000141 0a".into(),
            stream_bytes: 0,
            count: 1,
            burst: 1,
            start_ms: 100,
            interval_ms: 1000,
            interval_jitter_ms: 0,
            start_delay_min_us: 60,
            start_delay_max_us: 380,
            close_delay_us: 15,
            hold_ms: 1000,
            linger_ms: 2000,
            await_device_close: true,
            connect_timeout_ms: 10_000,
            host: HostProfile::Smoltcp,
        }
    }
}

/// The bytes a connection sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// These bytes.
    Bytes(Rc<[u8]>),
    /// `len` bytes of the counting pattern `offset % 256`.
    Counting(u64),
    /// The bytes sent so far, growing as they are sent: live mode's connections, whose
    /// payload is what the host sends (the wire view appends to it).
    Growing(Rc<RefCell<Vec<u8>>>),
}

impl Payload {
    /// Total length.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Counting(n) => *n,
            Payload::Growing(b) => b.borrow().len() as u64,
        }
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte at `offset` (caller keeps `offset < len`).
    pub fn byte_at(&self, offset: u64) -> u8 {
        match self {
            Payload::Bytes(b) => b[offset as usize],
            Payload::Counting(_) => offset as u8,
            Payload::Growing(b) => b.borrow()[offset as usize],
        }
    }

    /// Writes the payload bytes starting at `offset` into `buf` (caller keeps it in range).
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        match self {
            Payload::Bytes(b) => {
                let from = offset as usize;
                buf.copy_from_slice(&b[from..from + buf.len()]);
            }
            Payload::Counting(_) => fill_counting(offset, buf),
            Payload::Growing(b) => {
                let from = offset as usize;
                buf.copy_from_slice(&b.borrow()[from..from + buf.len()]);
            }
        }
    }

    /// Offset of the first byte of `data` (read at `offset`) that differs from the payload.
    pub fn first_mismatch(&self, offset: u64, data: &[u8]) -> Option<u64> {
        // Bytes beyond the end are a mismatch; compare only the part that can match.
        let fits = (self.len().saturating_sub(offset) as usize).min(data.len());
        let within = match self {
            Payload::Bytes(b) => first_bytes_mismatch(b, offset, &data[..fits]),
            Payload::Counting(_) => first_counting_mismatch(offset, &data[..fits]),
            Payload::Growing(b) => first_bytes_mismatch(&b.borrow(), offset, &data[..fits]),
        };
        match within {
            Some(i) => Some(offset + i as u64),
            None if fits < data.len() => Some(offset + fits as u64),
            None => None,
        }
    }
}

/// Index of the first byte of `data` (starting at `offset`, and no longer than what `bytes`
/// has from there) that differs from `bytes`.
fn first_bytes_mismatch(bytes: &[u8], offset: u64, data: &[u8]) -> Option<usize> {
    // `offset` may lie beyond the end (then `data` is empty).
    let from = (offset.min(bytes.len() as u64)) as usize;
    let expected = &bytes[from..from + data.len()];
    data.iter().zip(expected).position(|(a, e)| a != e)
}

/// The counting pattern twice, so any 256-byte window of it is one slice.
static COUNTING: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// Writes the counting pattern for stream offset `offset` into `buf`, a block at a time.
pub fn fill_counting(offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let start = ((offset + i as u64) % 256) as usize;
        let k = (buf.len() - i).min(256);
        buf[i..i + k].copy_from_slice(&COUNTING[start..start + k]);
        i += k;
    }
}

/// Index of the first byte of `data` (starting at stream `offset`) that breaks `offset % 256`:
/// block-wise slice comparison (memcmp), since the oracle checks every streamed byte.
fn first_counting_mismatch(offset: u64, data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < data.len() {
        let start = ((offset + i as u64) % 256) as usize;
        let k = (data.len() - i).min(256);
        let expected = &COUNTING[start..start + k];
        if data[i..i + k] != *expected {
            let j = data[i..i + k]
                .iter()
                .zip(expected)
                .position(|(a, e)| a != e);
            return j.map(|j| i + j);
        }
        i += k;
    }
    None
}

/// Why a hex payload does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HexError {
    /// An odd number of hex digits.
    OddDigits,
    /// Two characters that are not a hex byte.
    NotHex(String),
}

impl std::fmt::Display for HexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HexError::OddDigits => f.write_str("odd number of hex digits"),
            HexError::NotHex(pair) => write!(f, "`{pair}` is not a hex byte"),
        }
    }
}

impl std::error::Error for HexError {}

/// A workload whose payload does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// `peer[workload].payload_hex` is not hex.
    Hex {
        /// The workload's index.
        workload: usize,
        /// Why.
        error: HexError,
    },
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::Hex { workload, error } => {
                write!(f, "peer[{workload}].payload_hex: {error}")
            }
        }
    }
}

impl std::error::Error for PayloadError {}

/// Parses hex with optional whitespace.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddDigits);
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = String::from_utf8_lossy(pair);
            u8::from_str_radix(&s, 16).map_err(|_| HexError::NotHex(s.into_owned()))
        })
        .collect()
}

impl Workload {
    /// When a connection that is not established gives up: `connect_timeout_ms`, or the
    /// host's kernel first.
    pub fn connect_give_up_ms(&self) -> u64 {
        self.host
            .timers()
            .connect_give_up_ms(self.connect_timeout_ms)
    }

    /// The rules between fields that single ranges cannot say: `(field, why)` when broken.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.kind != ProgramKind::Stream {
            parse_hex(&self.payload_hex).map_err(|e| ("payload_hex", e.to_string()))?;
        }
        if self.start_delay_min_us > self.start_delay_max_us {
            return Err((
                "start_delay_min_us",
                "must not exceed start_delay_max_us".into(),
            ));
        }
        if self.interval_ms == 0 && u64::from(self.count) > u64::from(self.burst) {
            return Err((
                "interval_ms",
                "must be at least 1 when count exceeds burst (all would open at once)".into(),
            ));
        }
        Ok(())
    }
}

/// The payload each workload's connections send (hex parsed once per workload).
pub fn workload_payloads(workloads: &[Workload]) -> Result<Vec<Payload>, PayloadError> {
    workloads
        .iter()
        .enumerate()
        .map(|(workload, w)| {
            Ok(match w.kind {
                ProgramKind::Stream => Payload::Counting(w.stream_bytes),
                _ => Payload::Bytes(
                    parse_hex(&w.payload_hex)
                        .map_err(|error| PayloadError::Hex { workload, error })?
                        .into(),
                ),
            })
        })
        .collect()
}
