//! fwsim's simulator: everything around the firmware device.
//!
//! Start with [`Sim`]: a scenario (file or typed [`Scenario`]), optionally your own
//! `firmware_core::app::App`, a seed and a backend; `run()` gives a [`RunReport`] whose
//! [`RunReport::assert_no_silent_loss`] fails a test with the per-connection table and the
//! command that replays it.
//!
//! - [`scenario`]: the typed scenario, its TOML files and `--set` changes.
//! - [`link`]: the seeded WLAN link model (netem semantics, presets).
//! - [`peer`]: peer programs (`nc`, hold, stream, reset, bursts) on their own smoltcp stack.
//! - [`mod@run`]: the run core (observer, phases, limits, report), shared by the backends.
//! - [`backend`]: the drivers that move packets and time: `loopback` and `turmoil`.
//! - [`oracle`]: the no-silent-loss verdict per connection.
//! - [`live`]: live mode, the firmware core on a TUN interface on the wall clock (`fwsim serve`).
//! - [`report`]: human and JSON reports.
//! - [`output`]: output files written whole or not at all.
#![warn(missing_docs)]

mod air;
pub mod backend;
mod builder;
mod capture;
mod error;
pub mod fit;
pub mod fuzz;
mod inject;
pub mod link;
pub mod live;
mod node;
mod observer;
pub mod oracle;
pub mod output;
pub mod peer;
mod phy;
pub mod report;
pub mod run;
pub mod scenario;
mod seed;
pub mod shrink;
pub mod sweep;
pub mod timeline;
mod trace;

pub use builder::{seeds_from_env, Sim, SweepReport};
pub use error::Error;
pub use node::DEVICE_ADDR;
pub use observer::{Observed, ObservedEvent};
pub use oracle::{Summary, Verdict};
pub use run::{AppFactory, Outcome, RunError, RunOptions, RunProgress, RunReport};
pub use scenario::{Scenario, ScenarioError, Set, SetFlag};

/// Runs a scenario once on its backend with the app it names.
pub fn run(scenario: &Scenario, options: RunOptions) -> Result<RunReport, Error> {
    Sim::new(scenario.clone()).run_with(options)
}
