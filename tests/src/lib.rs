//! fwsim's cross-crate test suite. The tests live in `tests/`; this library holds helpers they
//! share.

use firmware_core::app::{App, RecordedKind};
use firmware_core::testkit::{bench_config, Bench};
use firmware_core::Policy;

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
    let mut b = Bench::new(policy, bench_config(&policy), app);
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

/// A scenario file of the repository's `scenarios/` folder.
pub fn scenario_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.toml"))
}

/// `--set` changes from `KEY=VALUE` strings; panics on a malformed one.
pub fn sets(list: &[&str]) -> Vec<sim::Set> {
    list.iter()
        .map(|s| sim::Set::parse(sim::SetFlag::Set, s).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Loads `scenarios/NAME.toml` with `--set` changes; panics with the scenario error.
pub fn load(name: &str, changes: &[&str]) -> sim::Scenario {
    sim::scenario::load(&scenario_path(name), &sets(changes)).unwrap_or_else(|e| panic!("{e}"))
}

/// A [`sim::Sim`] of `scenarios/NAME.toml` with `--set` changes (its failures replay with
/// `fwsim run`); panics with the scenario error.
pub fn sim_of(name: &str, changes: &[&str]) -> sim::Sim {
    sim::Sim::from_file_with(scenario_path(name), &sets(changes)).unwrap_or_else(|e| panic!("{e}"))
}

/// Seeds of a sweep: `FWSIM_SEED=N` runs that one seed, `FWSIM_SEEDS=K` the first K, else
/// the first `default`.
pub fn seeds(default: u64) -> Vec<u64> {
    let n = std::env::var("FWSIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    sim::seeds_from_env((1..=n).collect())
}
