//! fwsim's simulator: everything around the firmware device.
//!
//! - [`link`]: the seeded WLAN link model (netem semantics, presets).
//! - [`peer`]: peer programs (`nc`, hold, stream, bursts) on their own smoltcp stack.
//! - [`world`]: the loopback backend, an event-driven loop on a virtual clock, with the event
//!   trace (hashed), pcap capture and `tracing` output.
//! - [`turmoil_backend`]: the same device and peers as turmoil hosts, packets over turmoil UDP,
//!   network faults as turmoil actions.
//! - [`oracle`]: the no-silent-loss verdict per connection.
//! - [`scenario`]: TOML scenario files and `--set` overrides.
//! - [`report`]: human and JSON reports.

pub mod fuzz;
pub mod inject;
pub mod link;
pub mod oracle;
pub mod peer;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod turmoil_backend;
pub mod world;

use std::path::Path;

pub use oracle::{Summary, Verdict};
pub use scenario::{RunConfig, ScenarioError};
pub use world::{run_loopback, RunOptions, RunReport};

/// Loads a scenario, applies `overrides`, and runs it once on its backend with `seed`
/// (the file's seed when `None`).
pub fn run_file(
    path: &Path,
    overrides: &[String],
    seed: Option<u64>,
    options: RunOptions,
) -> Result<(RunConfig, RunReport), String> {
    let mut config = scenario::load(path, overrides).map_err(|e| e.to_string())?;
    if let Some(seed) = seed {
        config.seed = seed;
    }
    let report = run(&config, options)?;
    Ok((config, report))
}

/// Runs a resolved scenario on its backend.
pub fn run(config: &RunConfig, options: RunOptions) -> Result<RunReport, String> {
    match config.backend {
        scenario::Backend::Loopback => run_loopback(config, options),
        scenario::Backend::Turmoil => turmoil_backend::run_turmoil(config, options),
    }
}
