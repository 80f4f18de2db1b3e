//! Sweeps: one scenario over many seeds, presets, policies and values of one parameter.
//!
//! A sweep is a list of jobs (cell x seed) numbered in a fixed order. Jobs run on any number of
//! threads ([`Sweep::run`] with `threads`) and any split across machines ([`Shard`]); their
//! results are folded back in job order ([`fold`]), so the cells, intervals, failing seeds and
//! replay commands are the same whatever the threads or shards.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::scenario::{Set, SetFlag};
use crate::{Error, Sim};

mod plot;
mod seeds;
mod shard;

pub use plot::{plot_svg, PlotError};
pub use seeds::{parse_seeds, SeedsError, MAX_SEEDS};
pub use shard::{merge, MergeError, Shard, ShardFile};

/// What to sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepSpec {
    /// The scenario file.
    pub scenario: PathBuf,
    /// The seeds each cell runs.
    pub seeds: Vec<u64>,
    /// Policy names (`legacy`, `fixed`); empty: the scenario's.
    pub policies: Vec<String>,
    /// Preset names; empty: the scenario's.
    pub presets: Vec<String>,
    /// One scenario key and the values it takes (`device.loop_period_us`, [500, 1000]).
    pub vary: Option<(String, Vec<String>)>,
    /// Changes applied to every run (`--set`, `--inject`, `--backend`).
    pub sets: Vec<Set>,
}

/// Totals of one cell (policy x preset x varied value).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cell {
    /// The policy, if the sweep set one.
    pub policy: Option<String>,
    /// The preset, if the sweep set one.
    pub preset: Option<String>,
    /// The varied field's value, if any.
    pub value: Option<String>,
    /// Runs in the cell.
    pub runs: u64,
    /// Runs with at least one violation.
    pub runs_with_loss: u64,
    /// Connections opened.
    pub connections: u64,
    /// Connections that reached a verdict.
    pub tested: u64,
    /// Connections silently lost.
    pub violations: u64,
    /// Connections that stalled (no progress for `liveness_ms`).
    pub stalled: u64,
    /// Connections still running when their run stopped.
    pub unfinished: u64,
    /// Bytes the peer saw acknowledged.
    pub bytes_acked: u64,
    /// Of those, bytes the application read.
    pub bytes_delivered: u64,
    /// Seeds that showed silent loss (the first 20, in seed order).
    pub failing_seeds: Vec<u64>,
    /// The command that replays the first failing seed.
    pub replay: Option<String>,
    /// Runs with a liveness failure (a stalled or unfinished connection) and no silent loss.
    pub runs_hung: u64,
    /// Seeds of those runs (the first 20, in seed order).
    pub hung_seeds: Vec<u64>,
    /// The command that replays the first of them.
    pub hung_replay: Option<String>,
}

impl Cell {
    /// The cell's name in reports: `policy / preset`, then ` / value` when a field varies
    /// (`(file)` for what the scenario file decides).
    pub fn label(&self) -> String {
        let name = |v: &Option<String>| v.clone().unwrap_or_else(|| "(file)".into());
        let mut label = format!("{} / {}", name(&self.policy), name(&self.preset));
        if let Some(v) = &self.value {
            label.push_str(" / ");
            label.push_str(v);
        }
        label
    }

    /// Share of connections silently lost.
    pub fn loss_fraction(&self) -> f64 {
        if self.connections == 0 {
            0.0
        } else {
            self.violations as f64 / self.connections as f64
        }
    }

    /// The 95% Wilson score interval of the loss fraction, over connections. Connections of one
    /// run share its timing, so the interval is a floor on the uncertainty, not a ceiling.
    pub fn loss_interval(&self) -> (f64, f64) {
        wilson_95(self.violations, self.connections)
    }

    /// The changes that make this cell from the scenario.
    pub fn sets(&self, spec: &SweepSpec) -> Vec<Set> {
        let mut sets = spec.sets.clone();
        if let Some(p) = &self.preset {
            sets.push(Set::flag(SetFlag::Preset, p));
        }
        if let Some(p) = &self.policy {
            sets.push(Set::flag(SetFlag::Policy, p));
        }
        if let (Some((key, _)), Some(v)) = (&spec.vary, &self.value) {
            sets.push(Set {
                flag: SetFlag::Vary,
                key: key.clone(),
                value: v.clone(),
                append: false,
            });
        }
        sets
    }
}

/// The 95% Wilson score interval of `k` successes in `n` trials (`(0, 1)` for none).
pub fn wilson_95(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// What one run added to its cell: enough to fold the cells again from any split of the jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// The job's number: cell index times the seed count, plus the seed's position.
    pub job: u64,
    /// The run's seed.
    pub seed: u64,
    /// Connections opened.
    pub connections: u64,
    /// Connections that reached a verdict.
    pub tested: u64,
    /// Connections silently lost.
    pub violations: u64,
    /// Connections that stalled.
    pub stalled: u64,
    /// Connections still running when the run stopped.
    pub unfinished: u64,
    /// Bytes the peer saw acknowledged.
    pub bytes_acked: u64,
    /// Of those, bytes the application read.
    pub bytes_delivered: u64,
    /// The replay command, for a run that lost something or hung.
    pub replay: Option<String>,
}

/// The cells a spec makes, empty, in job order (varied value, then preset, then policy).
pub fn cells_of(spec: &SweepSpec) -> Vec<Cell> {
    let or_none = |list: &[String]| -> Vec<Option<String>> {
        if list.is_empty() {
            vec![None]
        } else {
            list.iter().cloned().map(Some).collect()
        }
    };
    let values = match &spec.vary {
        Some((_, vs)) => vs.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    let mut cells = Vec::new();
    for value in &values {
        for preset in or_none(&spec.presets) {
            for policy in or_none(&spec.policies) {
                cells.push(Cell {
                    policy: policy.clone(),
                    preset: preset.clone(),
                    value: value.clone(),
                    ..Cell::default()
                });
            }
        }
    }
    cells
}

/// Folds results (of every job, any order) into the spec's cells.
pub fn fold(spec: &SweepSpec, mut results: Vec<RunResult>) -> Vec<Cell> {
    results.sort_by_key(|r| r.job);
    let mut cells = cells_of(spec);
    let per_cell = spec.seeds.len().max(1) as u64;
    for r in results {
        let Some(cell) = cells.get_mut((r.job / per_cell) as usize) else {
            continue;
        };
        cell.runs += 1;
        cell.connections += r.connections;
        cell.tested += r.tested;
        cell.violations += r.violations;
        cell.stalled += r.stalled;
        cell.unfinished += r.unfinished;
        cell.bytes_acked += r.bytes_acked;
        cell.bytes_delivered += r.bytes_delivered;
        let (runs, seeds, replay) = if r.violations > 0 {
            (
                &mut cell.runs_with_loss,
                &mut cell.failing_seeds,
                &mut cell.replay,
            )
        } else if r.stalled + r.unfinished > 0 {
            (
                &mut cell.runs_hung,
                &mut cell.hung_seeds,
                &mut cell.hung_replay,
            )
        } else {
            continue;
        };
        *runs += 1;
        if seeds.is_empty() {
            *replay = r.replay.clone();
        }
        if seeds.len() < 20 {
            seeds.push(r.seed);
        }
    }
    cells
}

/// A sweep ready to run: every cell's scenario loaded (so a bad value fails before any run).
pub struct Sweep {
    spec: SweepSpec,
    sims: Vec<Sim>,
}

impl Sweep {
    /// Loads every cell of `spec`.
    pub fn plan(spec: SweepSpec) -> Result<Sweep, Error> {
        let sims = cells_of(&spec)
            .iter()
            .map(|cell| Sim::from_file_with(&spec.scenario, &cell.sets(&spec)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sweep { spec, sims })
    }

    /// Jobs in the whole sweep.
    pub fn jobs(&self) -> u64 {
        (self.sims.len() * self.spec.seeds.len()) as u64
    }

    /// What shard `shard` writes for [`merge`], with its `results`: the sweep, and the
    /// scenario it ran (the first cell's, and a digest of every cell's), so that shards of an
    /// edited scenario do not merge.
    pub fn shard_file(&self, shard: Shard, results: Vec<RunResult>) -> ShardFile {
        // Each run takes its seed from the sweep, so the file's seed is no part of it.
        let resolved = |sim: &Sim| {
            let mut scenario = sim.scenario().clone();
            scenario.seed = 0;
            scenario.to_toml()
        };
        let mut digest = Sha256::new();
        for sim in &self.sims {
            let toml = resolved(sim);
            // Length first, so no two lists of cells hash alike.
            digest.update((toml.len() as u64).to_le_bytes());
            digest.update(toml.as_bytes());
        }
        let scenarios_sha256 = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ShardFile {
            spec: self.spec.clone(),
            scenario: self.sims.first().map(resolved).unwrap_or_default(),
            scenarios_sha256,
            jobs: self.jobs(),
            shard,
            results,
        }
    }

    /// Runs the jobs of `shard` (all of them with `None`) on `threads` threads; `progress` is
    /// called after each run with (done, total). Results come in job order.
    pub fn run(
        &self,
        shard: Option<Shard>,
        threads: usize,
        progress: impl Fn(u64, u64) + Sync,
    ) -> Result<Vec<RunResult>, Error> {
        let jobs: Vec<u64> = (0..self.jobs())
            .filter(|j| shard.is_none_or(|s| s.has(*j)))
            .collect();
        let total = jobs.len() as u64;
        let done = AtomicU64::new(0);
        let run = |job: &u64| {
            let r = self.run_job(*job);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            r
        };
        match rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
        {
            Ok(pool) => pool.install(|| jobs.par_iter().map(run).collect()),
            // No threads to be had: the same jobs, one after another.
            Err(_) => jobs.iter().map(run).collect(),
        }
    }

    fn run_job(&self, job: u64) -> Result<RunResult, Error> {
        let per_cell = self.spec.seeds.len() as u64;
        let seed = self.spec.seeds[(job % per_cell) as usize];
        let sim = self.sims[(job / per_cell) as usize].clone().seed(seed);
        let r = sim.run()?;
        let s = &r.summary;
        Ok(RunResult {
            job,
            seed,
            connections: s.connections,
            tested: s.tested(),
            violations: s.violations(),
            stalled: s.stalled,
            unfinished: s.unfinished,
            bytes_acked: s.bytes_acked,
            bytes_delivered: s.bytes_delivered,
            replay: (s.violations() + s.liveness_failures() > 0).then_some(r.replay),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_hold_the_estimate_and_narrow_with_n() {
        let (lo, hi) = wilson_95(5, 10);
        assert!(
            lo < 0.5 && 0.5 < hi && (lo - 0.2366).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo2, hi2) = wilson_95(500, 1000);
        assert!(hi2 - lo2 < hi - lo);
        assert_eq!(wilson_95(0, 0), (0.0, 1.0));
        assert_eq!(wilson_95(0, 20).0, 0.0);
        assert_eq!(wilson_95(20, 20).1, 1.0);
    }

    fn spec() -> SweepSpec {
        SweepSpec {
            scenario: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scenarios/forum.toml"),
            seeds: vec![1, 2, 3],
            policies: vec!["legacy".into(), "fixed".into()],
            presets: Vec::new(),
            vary: None,
            sets: vec![Set::parse(SetFlag::Set, "peer.0.count=4").unwrap()],
        }
    }

    #[test]
    fn threads_and_shards_fold_to_the_same_cells() {
        let sweep = Sweep::plan(spec()).unwrap();
        let one = fold(&spec(), sweep.run(None, 1, |_, _| {}).unwrap());
        let two = fold(&spec(), sweep.run(None, 2, |_, _| {}).unwrap());
        assert_eq!(one, two);
        let mut parts = Vec::new();
        for index in 1..=4 {
            let shard = Shard { index, of: 4 };
            parts.extend(sweep.run(Some(shard), 2, |_, _| {}).unwrap());
        }
        parts.reverse();
        assert_eq!(fold(&spec(), parts), one);
        assert!(one[0].violations > 0 && one[1].violations == 0, "{one:?}");
    }
}
