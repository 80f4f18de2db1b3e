//! Sweeps across machines: shard K of N runs the jobs whose number is K-1 modulo N and writes
//! them to a file; [`merge`] folds the files of all N shards into exactly the cells the whole
//! sweep gives in one process.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{fold, Cell, RunResult, SweepSpec};

/// Shard `index` (1-based) of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard, `1..=of`.
    pub index: u64,
    /// How many shards the sweep is split into.
    pub of: u64,
}

impl Shard {
    /// Parses `K/N` with `1 <= K <= N`.
    pub fn parse(text: &str) -> Result<Shard, MergeError> {
        let bad = || MergeError::BadShard(text.into());
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, of) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || index > of {
            return Err(bad());
        }
        Ok(Shard { index, of })
    }

    /// True if job `job` belongs to this shard.
    pub fn has(self, job: u64) -> bool {
        job % self.of == self.index - 1
    }
}

/// What a shard writes: the sweep it belongs to, which shard it is, and its jobs' results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFile {
    /// The whole sweep (every shard of one sweep carries the same).
    pub spec: SweepSpec,
    /// Jobs in the whole sweep.
    pub jobs: u64,
    /// This shard.
    pub shard: Shard,
    /// This shard's results, in job order.
    pub results: Vec<RunResult>,
}

/// Why shard files do not merge into one sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeError {
    /// `--shard` is not `K/N` with `1 <= K <= N`.
    BadShard(String),
    /// No file given.
    Nothing,
    /// The files belong to different sweeps.
    OtherSweep(String),
    /// A shard is missing, or given twice.
    Shards(String),
    /// A job's result is missing, or given twice.
    Jobs(String),
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::BadShard(t) => write!(f, "--shard {t:?}: expected K/N with 1 <= K <= N"),
            MergeError::Nothing => f.write_str("no shard file to merge"),
            MergeError::OtherSweep(m) | MergeError::Shards(m) | MergeError::Jobs(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for MergeError {}

/// Folds the files of every shard of one sweep into its cells: the same cells, intervals,
/// failing seeds and replays as the unsharded sweep.
pub fn merge(files: Vec<ShardFile>) -> Result<(SweepSpec, Vec<Cell>), MergeError> {
    let first = files.first().ok_or(MergeError::Nothing)?;
    let (spec, jobs, of) = (first.spec.clone(), first.jobs, first.shard.of);
    let mut seen_shards = vec![false; of as usize];
    let mut seen_jobs = vec![false; jobs as usize];
    let mut results = Vec::new();
    for f in files {
        if f.spec != spec || f.jobs != jobs || f.shard.of != of {
            return Err(MergeError::OtherSweep(format!(
                "shard {}/{} belongs to another sweep than shard {}/{of}",
                f.shard.index,
                f.shard.of,
                first_index(&seen_shards)
            )));
        }
        let slot = &mut seen_shards[(f.shard.index - 1) as usize];
        if std::mem::replace(slot, true) {
            return Err(MergeError::Shards(format!(
                "shard {}/{of} given twice",
                f.shard.index
            )));
        }
        for r in f.results {
            let ok = r.job < jobs && f.shard.has(r.job);
            if !ok || std::mem::replace(&mut seen_jobs[r.job as usize], true) {
                return Err(MergeError::Jobs(format!(
                    "job {} does not belong here",
                    r.job
                )));
            }
            results.push(r);
        }
    }
    if let Some(i) = seen_shards.iter().position(|s| !s) {
        return Err(MergeError::Shards(format!(
            "shard {}/{of} is missing",
            i + 1
        )));
    }
    if let Some(j) = seen_jobs.iter().position(|s| !s) {
        return Err(MergeError::Jobs(format!(
            "the result of job {j} is missing"
        )));
    }
    let cells = fold(&spec, results);
    Ok((spec, cells))
}

fn first_index(seen: &[bool]) -> usize {
    seen.iter().position(|s| *s).map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition_the_jobs() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, of: 3 }));
        for bad in ["0/3", "4/3", "x", "1-3", "/"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (1..=3).map(|index| Shard { index, of: 3 }).collect();
        for job in 0..30 {
            assert_eq!(shards.iter().filter(|s| s.has(job)).count(), 1);
        }
    }

    #[test]
    fn merging_refuses_missing_or_doubled_shards() {
        let spec = SweepSpec {
            scenario: "x.toml".into(),
            seeds: vec![1],
            policies: Vec::new(),
            presets: Vec::new(),
            vary: None,
            sets: Vec::new(),
        };
        let file = |index| ShardFile {
            spec: spec.clone(),
            jobs: 1,
            shard: Shard { index, of: 2 },
            results: Vec::new(),
        };
        assert!(matches!(merge(vec![file(1)]), Err(MergeError::Shards(_))));
        assert!(matches!(
            merge(vec![file(1), file(1)]),
            Err(MergeError::Shards(_))
        ));
        assert!(matches!(
            merge(vec![file(1), file(2)]),
            Err(MergeError::Jobs(_))
        ));
        assert_eq!(merge(Vec::new()), Err(MergeError::Nothing));
    }
}
