//! Sweeps: one scenario over many seeds, presets, policies and values of one parameter.
//! Seeds run one after another, so a sweep is as deterministic as a run.

use std::path::Path;

use serde::Serialize;

use crate::scenario::{Set, SetFlag};
use crate::{Error, Sim};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
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
#[derive(Debug, Clone, Default, Serialize)]
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
    /// Bytes the peer saw acknowledged.
    pub bytes_acked: u64,
    /// Of those, bytes the application read.
    pub bytes_delivered: u64,
    /// Seeds that showed silent loss (at most 20 kept).
    pub failing_seeds: Vec<u64>,
    /// The command that replays the first failing seed.
    pub replay: Option<String>,
}

impl Cell {
    /// Share of connections silently lost.
    pub fn loss_fraction(&self) -> f64 {
        if self.connections == 0 {
            0.0
        } else {
            self.violations as f64 / self.connections as f64
        }
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

fn or_none(list: &[String]) -> Vec<Option<String>> {
    if list.is_empty() {
        vec![None]
    } else {
        list.iter().cloned().map(Some).collect()
    }
}

/// Runs the sweep; `progress` is called after each run with (done, total). Every cell's
/// scenario is loaded before the first run, so a bad value fails at once.
pub fn run_sweep(
    path: &Path,
    spec: &SweepSpec,
    mut progress: impl FnMut(u64, u64),
) -> Result<Vec<Cell>, Error> {
    let values = match &spec.vary {
        Some((_, vs)) => vs.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    let mut cells = Vec::new();
    for value in &values {
        for preset in or_none(&spec.presets) {
            for policy in or_none(&spec.policies) {
                let cell = Cell {
                    policy: policy.clone(),
                    preset: preset.clone(),
                    value: value.clone(),
                    ..Cell::default()
                };
                let sim = Sim::from_file_with(path, &cell.sets(spec))?;
                cells.push((cell, sim));
            }
        }
    }
    let total = (spec.seeds.len() * cells.len()) as u64;
    let mut done = 0;
    for (cell, sim) in &mut cells {
        for &seed in &spec.seeds {
            let r = sim.clone().seed(seed).run()?;
            let s = &r.summary;
            cell.runs += 1;
            cell.connections += s.connections;
            cell.tested += r.tested();
            cell.violations += s.violations();
            cell.bytes_acked += s.bytes_acked;
            cell.bytes_delivered += s.bytes_delivered;
            if s.violations() > 0 {
                cell.runs_with_loss += 1;
                if cell.failing_seeds.is_empty() {
                    cell.replay = Some(r.replay.clone());
                }
                if cell.failing_seeds.len() < 20 {
                    cell.failing_seeds.push(seed);
                }
            }
            done += 1;
            progress(done, total);
        }
    }
    Ok(cells.into_iter().map(|(c, _)| c).collect())
}

/// The most seeds one sweep runs (a longer list is an error, not an allocation).
pub const MAX_SEEDS: u64 = 10_000_000;

/// Why a `--seeds` list is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedsError {
    /// Not `N`, `A..B` or `a,b,c`.
    Malformed(String),
    /// No seed at all.
    Empty(String),
    /// More than [`MAX_SEEDS`].
    TooMany(String),
}

impl std::fmt::Display for SeedsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedsError::Malformed(t) => write!(f, "--seeds {t:?}: expected N, A..B or a,b,c"),
            SeedsError::Empty(t) => write!(f, "--seeds {t:?}: a sweep runs at least one seed"),
            SeedsError::TooMany(t) => {
                write!(f, "--seeds {t:?}: a sweep runs at most {MAX_SEEDS} seeds")
            }
        }
    }
}

impl std::error::Error for SeedsError {}

/// Parses `A..B` (inclusive), `N` (1..=N) or `a,b,c`.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, SeedsError> {
    let bad = || SeedsError::Malformed(text.into());
    if let Some((a, b)) = text.split_once("..") {
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b
            .trim()
            .trim_start_matches('=')
            .parse()
            .map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        if b - a >= MAX_SEEDS {
            return Err(SeedsError::TooMany(text.into()));
        }
        return Ok((a..=b).collect());
    }
    if text.contains(',') {
        return text
            .split(',')
            .map(|s| s.trim().parse().map_err(|_| bad()))
            .collect();
    }
    let n: u64 = text.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(SeedsError::Empty(text.into()));
    }
    if n > MAX_SEEDS {
        return Err(SeedsError::TooMany(text.into()));
    }
    Ok((1..=n).collect())
}

/// Why a plot could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlotError {
    /// The sweep varied nothing: there is no axis.
    NoVary,
    /// Drawing or writing the file failed.
    Draw {
        /// The file.
        path: std::path::PathBuf,
        /// What the drawing backend said.
        message: String,
    },
}

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlotError::NoVary => f.write_str("--plot draws loss against --vary values"),
            PlotError::Draw { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for PlotError {}

/// Draws loss fraction against the varied value, one line per policy x preset, as SVG.
pub fn plot_svg(cells: &[Cell], key: &str, out: &Path) -> Result<(), PlotError> {
    if cells.iter().all(|c| c.value.is_none()) {
        return Err(PlotError::NoVary);
    }
    plot(cells, key, out).map_err(|message| PlotError::Draw {
        path: out.into(),
        message,
    })
}

/// The varied values of the cells, in first-seen order (the x axis).
fn varied_values(cells: &[Cell]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for c in cells {
        if let Some(x) = &c.value {
            if !v.contains(x) {
                v.push(x.clone());
            }
        }
    }
    v
}

/// One plotted line: the cells' `(policy, preset)`, `None` for the scenario's own.
type SeriesKey = (Option<String>, Option<String>);

/// The `(policy, preset)` pairs of the cells, in first-seen order: one line each.
fn series_keys(cells: &[Cell]) -> Vec<SeriesKey> {
    let mut series: Vec<SeriesKey> = Vec::new();
    for c in cells {
        let k = (c.policy.clone(), c.preset.clone());
        if !series.contains(&k) {
            series.push(k);
        }
    }
    series
}

/// The points of one line: `(index into values, % of connections silently lost)`, for the
/// values that have a cell of this `(policy, preset)`.
fn series_points(
    cells: &[Cell],
    values: &[String],
    (policy, preset): &SeriesKey,
) -> Vec<(usize, f64)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(xi, v)| {
            cells
                .iter()
                .find(|c| &c.policy == policy && &c.preset == preset && c.value.as_ref() == Some(v))
                .map(|c| (xi, c.loss_fraction() * 100.0))
        })
        .collect()
}

/// Draws one line per `(policy, preset)` of the loss share over the varied values.
fn plot(cells: &[Cell], key: &str, out: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let values = varied_values(cells);
    if values.is_empty() {
        return Err("--plot needs --vary".into());
    }
    let root = SVGBackend::new(out, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("silently lost connections vs {key}"),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0..values.len().saturating_sub(1).max(1), 0.0..100.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(key)
        .y_desc("% of connections silently lost")
        .x_labels(values.len())
        .x_label_formatter(&|i| values.get(*i).cloned().unwrap_or_default())
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, series) in series_keys(cells).iter().enumerate() {
        let (policy, preset) = series;
        let color = Palette99::pick(i).to_rgba();
        let points = series_points(cells, &values, series);
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!(
                "{} / {}",
                policy.as_deref().unwrap_or("scenario's policy"),
                preset.as_deref().unwrap_or("scenario's link")
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_parse() {
        assert_eq!(parse_seeds("3").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_seeds("5..7").unwrap(), vec![5, 6, 7]);
        assert_eq!(parse_seeds("9,2").unwrap(), vec![9, 2]);
        assert!(parse_seeds("7..5").is_err());
        assert!(parse_seeds("x").is_err());
        assert_eq!(
            parse_seeds("1..18446744073709551615"),
            Err(SeedsError::TooMany("1..18446744073709551615".into())),
            "a range too long to run is an error, not an allocation"
        );
        assert!(
            parse_seeds("0").is_err(),
            "a sweep of no seed tests nothing"
        );
    }
}
