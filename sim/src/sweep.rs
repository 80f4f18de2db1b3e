//! Sweeps: one scenario over many seeds, presets, policies and values of one parameter.
//! Seeds run one after another, so a sweep is as deterministic as a run.

use std::path::Path;

use serde::Serialize;

use crate::scenario::{self, ScenarioError};
use crate::RunOptions;

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepSpec {
    pub seeds: Vec<u64>,
    pub policies: Vec<String>,
    pub presets: Vec<String>,
    /// One scenario key and the values it takes (`device.loop_period_us`, [500, 1000]).
    pub vary: Option<(String, Vec<String>)>,
    /// `--set` overrides applied to every run.
    pub sets: Vec<String>,
}

/// Totals of one cell (policy x preset x varied value).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cell {
    pub policy: String,
    pub preset: String,
    pub value: Option<String>,
    pub runs: u64,
    pub runs_with_loss: u64,
    pub connections: u64,
    pub violations: u64,
    pub bytes_acked: u64,
    pub bytes_delivered: u64,
    /// Seeds that showed silent loss (at most 20 kept).
    pub failing_seeds: Vec<u64>,
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

    /// The `--set` overrides that reproduce this cell.
    pub fn sets(&self, spec: &SweepSpec) -> Vec<String> {
        let mut sets = spec.sets.clone();
        sets.push(format!("device.policy={}", self.policy));
        sets.push(format!("link.preset={}", self.preset));
        if let (Some((key, _)), Some(v)) = (&spec.vary, &self.value) {
            sets.push(format!("{key}={v}"));
        }
        sets
    }
}

/// Runs the sweep; `progress` is called after each run with (done, total).
pub fn run_sweep(
    path: &Path,
    spec: &SweepSpec,
    mut progress: impl FnMut(u64, u64),
) -> Result<Vec<Cell>, ScenarioError> {
    let values: Vec<Option<String>> = match &spec.vary {
        Some((_, vs)) => vs.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    let total = (spec.seeds.len() * spec.policies.len() * spec.presets.len() * values.len()) as u64;
    let mut done = 0;
    let mut cells = Vec::new();
    for value in &values {
        for preset in &spec.presets {
            for policy in &spec.policies {
                let mut cell = Cell {
                    policy: policy.clone(),
                    preset: preset.clone(),
                    value: value.clone(),
                    ..Cell::default()
                };
                let config = scenario::load(path, &cell.sets(spec))?;
                for &seed in &spec.seeds {
                    let mut c = config.clone();
                    c.seed = seed;
                    let r =
                        crate::run(&c, RunOptions::default()).map_err(|message| ScenarioError {
                            origin: path.display().to_string(),
                            position: None,
                            message: message.to_string(),
                        })?;
                    let s = &r.summary;
                    cell.runs += 1;
                    cell.connections += s.connections;
                    cell.violations += s.violations();
                    cell.bytes_acked += s.bytes_acked;
                    cell.bytes_delivered += s.bytes_delivered;
                    if s.violations() > 0 {
                        cell.runs_with_loss += 1;
                        if cell.failing_seeds.len() < 20 {
                            cell.failing_seeds.push(seed);
                        }
                    }
                    done += 1;
                    progress(done, total);
                }
                cells.push(cell);
            }
        }
    }
    Ok(cells)
}

/// Parses `A..B` (inclusive), `N` (1..=N) or `a,b,c`.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds {text:?}: expected N, A..B or a,b,c");
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
        return Ok((a..=b).collect());
    }
    if text.contains(',') {
        return text
            .split(',')
            .map(|s| s.trim().parse().map_err(|_| bad()))
            .collect();
    }
    let n: u64 = text.trim().parse().map_err(|_| bad())?;
    Ok((1..=n).collect())
}

/// Draws loss fraction against the varied value, one line per policy x preset, as SVG.
pub fn plot_svg(cells: &[Cell], key: &str, out: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let values: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for c in cells {
            if let Some(x) = &c.value {
                if !v.contains(x) {
                    v.push(x.clone());
                }
            }
        }
        v
    };
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
    let mut series: Vec<(String, String)> = Vec::new();
    for c in cells {
        let k = (c.policy.clone(), c.preset.clone());
        if !series.contains(&k) {
            series.push(k);
        }
    }
    for (i, (policy, preset)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(usize, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(xi, v)| {
                cells
                    .iter()
                    .find(|c| {
                        &c.policy == policy && &c.preset == preset && c.value.as_ref() == Some(v)
                    })
                    .map(|c| (xi, c.loss_fraction() * 100.0))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{policy} / {preset}"))
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
    }
}
