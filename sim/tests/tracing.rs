//! `RUST_LOG` output: events grouped in run and connection spans, the filter obeyed, and the
//! trace hash the same whether tracing is on or off. One test in its own binary: `tracing`
//! caches per call site whether anyone listens, which tests on other threads would race.

use std::io::Write;
use std::sync::{Arc, Mutex};

use sim::RunOptions;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::ErrorKind::Other)?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SCENARIO: &str = "name = \"t\"\n[device]\napp = \"forum\"\n[[peer]]\ncount = 2\n";

/// Runs the scenario with `filter`; returns what was logged and the trace hash.
fn run_with_filter(filter: &str) -> (String, String) {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let config = sim::scenario::parse("t.toml", SCENARIO, &[]).unwrap();
    let hash = tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        sim::run(&config, RunOptions::default()).unwrap().trace_hash
    });
    let bytes = out.0.lock().unwrap().clone();
    (String::from_utf8(bytes).unwrap(), hash)
}

#[test]
fn tracing_groups_events_obeys_the_filter_and_leaves_the_hash_alone() {
    let (debug, loud) = run_with_filter("fwsim=debug");
    assert!(debug.contains("run{scenario=t seed=1"), "{debug}");
    assert!(debug.contains("conn{port=40000}"), "{debug}");
    assert!(debug.contains("conn{port=40001}"));
    assert!(debug.contains("peer FinSent"));
    let (quiet_log, quiet) = run_with_filter("fwsim=warn");
    assert_eq!(quiet_log, "", "nothing below the filter");
    assert_eq!(quiet, loud, "the trace hash does not depend on tracing");
}
