//! [`Sim`]: the library API. A builder in the spirit of turmoil's: a scenario (a file or a typed
//! value), any firmware app, a seed and a backend, then `run()` or `sweep()`.
//!
//! ```no_run
//! use firmware_core::app::ForumSketch;
//! let report = sim::Sim::from_file("scenarios/forum.toml")?
//!     .set("device.policy=\"fixed\"")?
//!     .app(|port| ForumSketch::new(port))
//!     .seed(7)
//!     .run()?;
//! report.assert_no_silent_loss();
//! # Ok::<(), sim::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use firmware_core::app::App;
use firmware_core::Policy;

use crate::run::{AppFactory, Prepared, Replay, RunOptions, RunReport};
use crate::scenario::{self, Backend, PolicyName, Scenario, Set, SetFlag};
use crate::Error;

/// A simulation to run: the scenario, its changes, the app and the options.
#[derive(Clone)]
pub struct Sim {
    /// The scenario with every change applied.
    scenario: Scenario,
    /// The scenario before the changes, when it was built in code (file scenarios reload).
    base: Option<Scenario>,
    replay: Replay,
    app: Option<AppFactory>,
    rules: Option<Policy>,
}

impl Sim {
    /// A simulation of a scenario file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Sim, Error> {
        Sim::from_file_with(path, &[])
    }

    /// A simulation of a scenario file with changes (`--set` and the flags that stand for one).
    pub fn from_file_with(path: impl AsRef<Path>, sets: &[Set]) -> Result<Sim, Error> {
        let file = PathBuf::from(path.as_ref());
        let scenario = scenario::load(&file, sets)?;
        Ok(Sim {
            scenario,
            base: None,
            replay: Replay {
                file: Some(file),
                sets: sets.to_vec(),
                custom_app: false,
            },
            app: None,
            rules: None,
        })
    }

    /// A simulation of a scenario built in code.
    pub fn new(scenario: Scenario) -> Sim {
        Sim {
            base: Some(scenario.clone()),
            scenario,
            replay: Replay::default(),
            app: None,
            rules: None,
        }
    }

    /// Changes one field, as `--set KEY=VALUE` does (`KEY+=VALUE` appends to a list).
    pub fn set(self, assignment: &str) -> Result<Sim, Error> {
        self.with(Set::parse(SetFlag::Set, assignment)?)
    }

    /// Applies one change and reloads, so its checks and defaults apply as in a file.
    pub fn with(mut self, set: Set) -> Result<Sim, Error> {
        self.replay.sets.push(set);
        self.scenario = match (&self.base, &self.replay.file) {
            (Some(base), _) => scenario::parse("scenario", &base.to_toml(), &self.replay.sets)?,
            (None, Some(file)) => scenario::load(file, &self.replay.sets)?,
            (None, None) => unreachable!("a Sim has a file or a base scenario"),
        };
        Ok(self)
    }

    /// The seed of every random draw.
    pub fn seed(mut self, seed: u64) -> Sim {
        self.scenario.seed = seed;
        if let Some(base) = &mut self.base {
            base.seed = seed;
        }
        self.replay.sets.retain(|s| s.key != "seed");
        self.replay.sets.push(Set {
            flag: SetFlag::Set,
            key: "seed".into(),
            value: seed.to_string(),
            append: false,
        });
        self
    }

    /// The backend.
    pub fn backend(self, backend: Backend) -> Sim {
        let name = match backend {
            Backend::Loopback => "loopback",
            Backend::Turmoil => "turmoil",
        };
        self.with(Set::flag(SetFlag::Backend, name))
            .expect("a backend name always loads")
    }

    /// The device's socket rules (the policy's device defaults apply to knobs left unset).
    pub fn policy(self, policy: PolicyName) -> Sim {
        self.with(Set::flag(SetFlag::Policy, policy.name()))
            .expect("a policy name always loads")
    }

    /// Runs `app` on the device instead of the app the scenario names: `build` makes one for
    /// the server port (again after a device reboot).
    pub fn app<A, F>(mut self, build: F) -> Sim
    where
        A: App + 'static,
        F: Fn(u16) -> A + Send + Sync + 'static,
    {
        let factory: AppFactory = Arc::new(move |port| Box::new(build(port)) as Box<dyn App>);
        self.app = Some(factory);
        self.replay.custom_app = true;
        self
    }

    /// Runs the device under these socket rules instead of the scenario's policy (one rule
    /// switched back, say): a file cannot name them, so only this code replays the run.
    pub fn rules(mut self, rules: Policy) -> Sim {
        self.rules = Some(rules);
        self.replay.custom_app = true;
        self
    }

    /// The same simulation (app, rules, replay) of another scenario: what shrinking tries.
    pub(crate) fn with_scenario(&self, scenario: Scenario) -> Sim {
        Sim {
            base: Some(scenario.clone()),
            scenario,
            replay: self.replay.clone(),
            app: self.app.clone(),
            rules: self.rules,
        }
    }

    /// The scenario as it will run (every change applied, injectors not yet).
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The one command that replays a run of this simulation with `seed`.
    pub fn replay(&self, seed: u64) -> String {
        self.replay.command(seed)
    }

    /// Runs once.
    pub fn run(&self) -> Result<RunReport, Error> {
        self.run_with(RunOptions::default())
    }

    /// Runs once with options (capture, kept trace).
    pub fn run_with(&self, options: RunOptions) -> Result<RunReport, Error> {
        let prep = Prepared::new(
            &self.scenario,
            self.app.clone(),
            self.rules,
            self.replay.clone(),
        )?;
        let report = match prep.scenario.backend {
            Backend::Loopback => crate::backend::loopback::run(&prep, options)?,
            Backend::Turmoil => crate::backend::turmoil::run(&prep, options)?,
        };
        Ok(report)
    }

    /// Runs once per seed (`FWSIM_SEED=N` runs only N, `FWSIM_SEEDS=K` the first K of them),
    /// on every core; the reports are in seed order whatever the thread count.
    pub fn sweep(&self, seeds: impl IntoIterator<Item = u64>) -> Result<SweepReport, Error> {
        use rayon::prelude::*;
        let seeds = seeds_from_env(seeds.into_iter().collect());
        let mut runs = seeds
            .par_iter()
            .map(|&seed| self.clone().seed(seed).run())
            .collect::<Result<Vec<_>, _>>()?;
        // The replay names the caller's test, which only this thread knows.
        for run in &mut runs {
            run.replay = self.replay(run.seed);
        }
        Ok(SweepReport { runs })
    }
}

/// The seeds a sweep runs: `FWSIM_SEED=N` that one, `FWSIM_SEEDS=K` the first K of `seeds`,
/// else all of them.
pub fn seeds_from_env(seeds: Vec<u64>) -> Vec<u64> {
    if let Some(seed) = std::env::var("FWSIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    match std::env::var("FWSIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(k) => seeds.into_iter().take(k).collect(),
        None => seeds,
    }
}

/// The runs of a sweep, one per seed.
#[derive(Debug, Clone)]
pub struct SweepReport {
    /// The runs, in seed order.
    pub runs: Vec<RunReport>,
}

impl SweepReport {
    /// Connections tested (reached a verdict) over all runs.
    pub fn tested(&self) -> u64 {
        self.runs.iter().map(RunReport::tested).sum()
    }

    /// Connections silently lost over all runs.
    pub fn violations(&self) -> u64 {
        self.runs.iter().map(|r| r.summary.violations()).sum()
    }

    /// Connections that stalled or were unfinished over all runs.
    pub fn liveness_failures(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| r.summary.liveness_failures())
            .sum()
    }

    /// Panics unless the sweep tested something, no run lost anything silently and every
    /// connection finished (none stalled, none unfinished); the message holds the first
    /// failing run's table and the command that replays each failing seed.
    pub fn assert_no_silent_loss(&self) {
        assert!(
            self.tested() > 0,
            "the sweep tested nothing: {} runs, no connection reached a verdict",
            self.runs.len()
        );
        let failing: Vec<&RunReport> = self
            .runs
            .iter()
            .filter(|r| r.summary.violations() + r.summary.liveness_failures() > 0)
            .collect();
        if let Some(first) = failing.first() {
            let replays: Vec<&str> = failing.iter().map(|r| r.replay.as_str()).collect();
            panic!(
                "silent loss or liveness failure in {} of {} runs\n{}\nreplay each:\n  {}",
                failing.len(),
                self.runs.len(),
                crate::report::human(first, false),
                replays.join("\n  ")
            );
        }
    }
}
