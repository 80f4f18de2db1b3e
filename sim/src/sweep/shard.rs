//! Sweeps across machines: shard K of N runs the jobs whose number is K-1 modulo N and writes
//! them to a file; [`merge`] folds the files of all N shards into exactly the cells the whole
//! sweep gives in one process.

use std::fmt;
use std::path::PathBuf;

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

/// What a shard writes: the sweep it belongs to, the scenario it ran, which shard it is, and
/// its jobs' results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFile {
    /// The whole sweep (every shard of one sweep carries the same, but for the scenario's
    /// path: shards run on other machines may find the file elsewhere).
    pub spec: SweepSpec,
    /// The scenario the sweep's first cell ran, resolved (file, defaults, changes) as
    /// `--save-scenario` writes it, seed 0 (each run takes a sweep seed): what names the
    /// field that differs when two shards ran different scenarios.
    pub scenario: String,
    /// SHA-256 (hex) of every cell's resolved scenario, in cell order: shards merge only if
    /// theirs are equal, so a file edited between shards is caught, whatever its path.
    pub scenarios_sha256: String,
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
    /// Two shards ran different scenarios (the file changed between them).
    OtherScenario {
        /// The first shard file given.
        first: PathBuf,
        /// The shard file that ran another scenario.
        other: PathBuf,
        /// The first field that differs, with its value in each file.
        difference: String,
    },
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
            MergeError::OtherScenario {
                first,
                other,
                difference,
            } => write!(
                f,
                "{} and {} ran different scenarios: {difference}; was the scenario edited \
                 between the shards? Run them all from one version",
                first.display(),
                other.display()
            ),
        }
    }
}

impl std::error::Error for MergeError {}

/// Folds the files of every shard of one sweep into its cells: the same cells, intervals,
/// failing seeds and replays as the unsharded sweep. Each file comes with its path, which
/// errors name.
pub fn merge(files: Vec<(PathBuf, ShardFile)>) -> Result<(SweepSpec, Vec<Cell>), MergeError> {
    let (first_path, first) = files.first().ok_or(MergeError::Nothing)?;
    let (first_path, spec, jobs, of) = (
        first_path.clone(),
        first.spec.clone(),
        first.jobs,
        first.shard.of,
    );
    let first_scenario = (first.scenario.clone(), first.scenarios_sha256.clone());
    let mut seen_shards = vec![false; of as usize];
    let mut seen_jobs = vec![false; jobs as usize];
    let mut results = Vec::new();
    for (path, f) in files {
        let same_spec = SweepSpec {
            scenario: spec.scenario.clone(),
            ..f.spec.clone()
        } == spec;
        if !same_spec || f.jobs != jobs || f.shard.of != of {
            return Err(MergeError::OtherSweep(format!(
                "{} (shard {}/{}) belongs to another sweep than {} (shard {}/{of}): other \
                 seeds, policies, presets, --vary or changes",
                path.display(),
                f.shard.index,
                f.shard.of,
                first_path.display(),
                first_index(&seen_shards)
            )));
        }
        if f.scenarios_sha256 != first_scenario.1 {
            let difference = match difference(&first_scenario.0, &f.scenario) {
                Some((field, a, b)) => format!(
                    "{field} is {a} in {}, {b} in {}",
                    first_path.display(),
                    path.display()
                ),
                // The first cells agree: another cell (a --vary value, policy or preset) reads
                // the changed part.
                None => "the SHA-256 of their resolved scenarios differ".into(),
            };
            return Err(MergeError::OtherScenario {
                first: first_path,
                other: path,
                difference,
            });
        }
        let slot = &mut seen_shards[(f.shard.index - 1) as usize];
        if std::mem::replace(slot, true) {
            return Err(MergeError::Shards(format!(
                "shard {}/{of} given twice ({})",
                f.shard.index,
                path.display()
            )));
        }
        for r in f.results {
            let ok = r.job < jobs && f.shard.has(r.job);
            if !ok || std::mem::replace(&mut seen_jobs[r.job as usize], true) {
                return Err(MergeError::Jobs(format!(
                    "{}: job {} does not belong here",
                    path.display(),
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

/// The first field in which two resolved scenarios (TOML) differ, and its two values.
fn difference(first: &str, other: &str) -> Option<(String, String, String)> {
    let parse = |t: &str| t.parse::<toml::Table>().map(toml::Value::Table).ok();
    first_difference(&parse(first)?, &parse(other)?, "")
}

/// The path and both values of the first place `a` and `b` differ (tables in key order).
fn first_difference(
    a: &toml::Value,
    b: &toml::Value,
    path: &str,
) -> Option<(String, String, String)> {
    let show = |v: Option<&toml::Value>| v.map_or("(absent)".into(), |v| v.to_string());
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(v), Some(w)) => first_difference(v, w, &at(k)),
                (v, w) => Some((at(k), show(v), show(w))),
            })
        }
        (toml::Value::Array(x), toml::Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, &format!("{path}[{i}]"))),
        (toml::Value::Array(x), toml::Value::Array(y)) => Some((
            path.into(),
            format!("a list of {}", x.len()),
            format!("a list of {}", y.len()),
        )),
        _ => (a != b).then(|| (path.into(), show(Some(a)), show(Some(b)))),
    }
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
        let file = |index| {
            let path = PathBuf::from(format!("shard-{index}.json"));
            let file = ShardFile {
                spec: spec.clone(),
                scenario: "count = 30\n".into(),
                scenarios_sha256: "a".into(),
                jobs: 1,
                shard: Shard { index, of: 2 },
                results: Vec::new(),
            };
            (path, file)
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
        let mut edited = file(2);
        edited.1.scenario = "count = 5\n".into();
        edited.1.scenarios_sha256 = "b".into();
        let e = merge(vec![file(1), edited]).unwrap_err().to_string();
        assert!(
            e.contains("count is 30 in shard-1.json, 5 in shard-2.json"),
            "{e}"
        );
        let mut moved = file(2);
        moved.1.spec.scenario = "elsewhere/x.toml".into();
        assert!(
            matches!(merge(vec![file(1), moved]), Err(MergeError::Jobs(_))),
            "the path alone does not make another sweep"
        );
    }

    #[test]
    fn the_first_difference_names_the_field_and_both_values() {
        let a = "name = \"f\"\n[[peer]]\ncount = 30\n[[peer]]\ncount = 2\n";
        let b = "name = \"f\"\n[[peer]]\ncount = 30\n[[peer]]\ncount = 3\n";
        assert_eq!(
            difference(a, b),
            Some(("peer[1].count".into(), "2".into(), "3".into()))
        );
        assert_eq!(difference(a, a), None);
        let c = "name = \"f\"\n[[peer]]\ncount = 30\n";
        assert_eq!(
            difference(a, c),
            Some(("peer".into(), "a list of 2".into(), "a list of 1".into()))
        );
    }
}
