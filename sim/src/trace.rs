//! The event trace: every event of a run as a line, hashed with xxHash3-128, kept in memory only
//! when asked, and mirrored to `tracing` inside per-run and per-connection spans.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use firmware_core::smoltcp::time::Instant;
use twox_hash::XxHash3_128;

/// Who recorded an event. Each host's events are in time order on every backend, but how two
/// hosts' events interleave is the backend's business (turmoil runs the peer through a whole
/// step before the device), so each stream is hashed on its own and kept lines are merged by
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stream {
    /// The device: its stack, socket layer and application.
    Device = 0,
    /// The peer's programs and stack.
    Peer = 1,
    /// The run itself: phases and faults.
    Run = 2,
}

/// The event trace: every event as a line, hashed; kept in memory only when asked. Each event
/// is also a `tracing` event inside a span for its connection (`conn{port=..}`) inside the
/// run's span, so `RUST_LOG=fwsim=debug` shows them grouped.
pub(crate) struct Trace {
    /// xxHash3-128 per stream: a fixed, specified function, so hashes compare across
    /// machines, runs and backends.
    hashers: [XxHash3_128; 3],
    line: String,
    /// (time, stream, line) of each event, when kept.
    kept: Option<Vec<(i64, Stream, String)>>,
    events: u64,
    run_span: tracing::Span,
    conn_spans: BTreeMap<u16, tracing::Span>,
    tracing_on: bool,
}

impl Trace {
    pub(crate) fn new(keep: bool, run_span: tracing::Span) -> Trace {
        Trace {
            hashers: [XxHash3_128::new(), XxHash3_128::new(), XxHash3_128::new()],
            line: String::new(),
            kept: keep.then(Vec::new),
            events: 0,
            tracing_on: tracing::enabled!(target: "fwsim::trace", tracing::Level::DEBUG),
            run_span,
            conn_spans: BTreeMap::new(),
        }
    }

    /// The span of one connection (created on first use, inside the run's span).
    fn conn_span(&mut self, port: u16) -> tracing::Span {
        let run = &self.run_span;
        self.conn_spans
            .entry(port)
            .or_insert_with(
                || tracing::debug_span!(target: "fwsim::trace", parent: run, "conn", port),
            )
            .clone()
    }

    /// The hot path (data moved): hashes the numbers directly and formats a line only when
    /// someone reads it (RUST_LOG or a kept trace).
    pub(crate) fn record_count(
        &mut self,
        now: Instant,
        stream: Stream,
        what: &'static str,
        port: u16,
        bytes: u64,
    ) {
        // One write per event: the hasher's per-call cost dominates for these few bytes.
        let mut record = [0u8; 18];
        record[..8].copy_from_slice(&now.total_micros().to_le_bytes());
        record[8..10].copy_from_slice(&port.to_le_bytes());
        record[10..].copy_from_slice(&bytes.to_le_bytes());
        let hasher = &mut self.hashers[stream as usize];
        hasher.write(what.as_bytes());
        hasher.write(&record);
        self.events += 1;
        if self.tracing_on {
            let _entered = self.conn_span(port).entered();
            tracing::debug!(target: "fwsim::trace", t_us = now.total_micros(), "{what} bytes={bytes}");
        }
        if let Some(kept) = &mut self.kept {
            let at = now.total_micros();
            kept.push((at, stream, format!("{at} {what} port={port} bytes={bytes}")));
        }
    }

    pub(crate) fn record(
        &mut self,
        now: Instant,
        stream: Stream,
        source: &str,
        port: Option<u16>,
        args: std::fmt::Arguments<'_>,
    ) {
        self.line.clear();
        let _ = write!(self.line, "{} {} {}", now.total_micros(), source, args);
        let hasher = &mut self.hashers[stream as usize];
        hasher.write(self.line.as_bytes());
        hasher.write(b"\n");
        self.events += 1;
        if self.tracing_on {
            let span = match port {
                Some(p) => self.conn_span(p),
                None => self.run_span.clone(),
            };
            let _entered = span.entered();
            tracing::debug!(target: "fwsim::trace", t_us = now.total_micros(), "{} {}", source, args);
        }
        if let Some(kept) = &mut self.kept {
            kept.push((now.total_micros(), stream, self.line.clone()));
        }
    }

    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// The kept lines in time order; at equal times device, then peer, then run events, each
    /// stream in its own order. The same on every backend that keeps each host's timing.
    pub(crate) fn kept_lines(&mut self) -> Option<Vec<String>> {
        let mut kept = self.kept.take()?;
        // Stable: within one stream, events at one instant keep their order.
        kept.sort_by_key(|&(at, stream, _)| (at, stream));
        Some(kept.into_iter().map(|(_, _, line)| line).collect())
    }

    /// The hash of the three streams' hashes.
    pub(crate) fn hash(&self) -> String {
        let mut all = XxHash3_128::new();
        for hasher in &self.hashers {
            all.write(&hasher.finish_128().to_le_bytes());
        }
        format!("{:032x}", all.finish_128())
    }
}
