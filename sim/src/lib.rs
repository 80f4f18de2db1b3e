//! fwsim's simulator: everything around the firmware device.
//!
//! - [`link`]: the seeded WLAN link model (netem semantics, presets).
//! - [`peer`]: peer programs (`nc`, hold, stream, reset, bursts) on their own smoltcp stack.
//! - [`run`]: the run core (observer, phases, limits, report), shared by the backends.
//! - [`backend`]: the drivers that move packets and time: `loopback` and `turmoil`.
//! - [`oracle`]: the no-silent-loss verdict per connection.
//! - [`scenario`]: TOML scenario files and `--set` overrides.
//! - [`report`]: human and JSON reports.

pub mod backend;
pub mod capture;
pub mod fuzz;
pub mod inject;
pub mod link;
mod node;
mod observer;
pub mod oracle;
pub mod peer;
mod phy;
pub mod report;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod sweep;
mod trace;

use std::path::Path;

pub use node::DEVICE_ADDR;
pub use oracle::{Summary, Verdict};
pub use run::{Outcome, RunError, RunOptions, RunReport};
pub use scenario::{RunConfig, ScenarioError};

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
    let report = run(&config, options).map_err(|e| e.to_string())?;
    Ok((config, report))
}

/// Runs a resolved scenario on its backend.
pub fn run(config: &RunConfig, options: RunOptions) -> Result<RunReport, RunError> {
    match config.backend {
        scenario::Backend::Loopback => backend::loopback::run(config, options),
        scenario::Backend::Turmoil => backend::turmoil::run(config, options),
    }
}
