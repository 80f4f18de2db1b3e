//! `fwsim fit`: find where a timing parameter no source pins down makes a scenario show a
//! field figure. One or two free parameters, each over a range; a grid of runs per point (every
//! seed), refined where the loss fraction crosses the target band (one parameter); the region
//! whose 95% interval overlaps the band, and the point nearest the band's middle.

use std::fmt;

use serde::Serialize;

use crate::scenario::{Set, SetFlag};
use crate::sweep::{fold, wilson_95, Sweep, SweepSpec};
use crate::Error;

/// A free parameter: a numeric scenario field and its range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Free {
    /// The field (`device.worker_delay_max_us`).
    pub key: String,
    /// Lowest value tried.
    pub lo: f64,
    /// Highest value tried.
    pub hi: f64,
    /// Whole numbers only (both bounds were written as integers).
    pub integer: bool,
}

/// Why a fit cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FitError {
    /// `--free` is not `KEY=LO..HI` with numbers, `LO < HI`.
    BadFree(String),
    /// `--target` is not `loss_fraction=LO..HI` within 0..=1, `LO <= HI`.
    BadTarget(String),
    /// One or two free parameters, not more.
    Count(usize),
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitError::BadFree(t) => {
                write!(f, "--free {t:?}: expected KEY=LO..HI with numbers, LO < HI")
            }
            FitError::BadTarget(t) => {
                write!(
                    f,
                    "--target {t:?}: expected loss_fraction=LO..HI within 0..1, LO <= HI"
                )
            }
            FitError::Count(n) => write!(f, "{n} --free parameters: fit one or two"),
        }
    }
}

impl std::error::Error for FitError {}

impl Free {
    /// Parses `KEY=LO..HI`.
    pub fn parse(text: &str) -> Result<Free, FitError> {
        let bad = || FitError::BadFree(text.into());
        let (key, range) = text.split_once('=').ok_or_else(bad)?;
        let (lo, hi) = range.split_once("..").ok_or_else(bad)?;
        let integer = lo.trim().parse::<i64>().is_ok() && hi.trim().parse::<i64>().is_ok();
        let (lo, hi): (f64, f64) = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
        if key.trim().is_empty() || !lo.is_finite() || !hi.is_finite() || lo >= hi {
            return Err(bad());
        }
        Ok(Free {
            key: key.trim().into(),
            lo,
            hi,
            integer,
        })
    }

    /// The value as the scenario takes it.
    fn value(&self, x: f64) -> String {
        if self.integer {
            format!("{}", x.round() as i64)
        } else {
            format!("{x}")
        }
    }

    /// `n` evenly spaced values over the range (distinct, as the field takes them).
    fn grid(&self, lo: f64, hi: f64, n: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for i in 0..n {
            let v = self.value(lo + (hi - lo) * i as f64 / (n.max(2) - 1) as f64);
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

/// The target band of the loss fraction.
pub fn parse_target(text: &str) -> Result<(f64, f64), FitError> {
    let bad = || FitError::BadTarget(text.into());
    let range = text.strip_prefix("loss_fraction=").ok_or_else(bad)?;
    let (lo, hi) = range.split_once("..").ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// One point of the fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// The free parameters' values, in `--free` order.
    pub values: Vec<String>,
    /// Connections over all seeds.
    pub connections: u64,
    /// Of those, connections that reached a verdict.
    pub tested: u64,
    /// Of those, silently lost.
    pub violations: u64,
    /// Connections that stalled or were unfinished (liveness failures).
    pub liveness_failures: u64,
    /// The command that replays the first run with a liveness failure.
    pub hung_replay: Option<String>,
    /// Loss fraction.
    pub loss: f64,
    /// Its 95% Wilson interval.
    pub interval: (f64, f64),
    /// The point can be chosen ([`Point::ineligible`] is `None`) and its interval overlaps
    /// the target band.
    pub in_region: bool,
}

/// Why a point's loss fraction says nothing about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ineligible {
    /// No connection at the point reached a verdict: its loss of 0 is no measurement.
    NothingTested,
    /// A connection at the point stalled or was unfinished: the model hung there, and a loss
    /// fraction over connections that never ended is no measurement either.
    LivenessFailure,
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ineligible::NothingTested => "nothing tested",
            Ineligible::LivenessFailure => "liveness failure",
        })
    }
}

impl Point {
    /// Why this point can be neither in the region nor chosen; `None` if it can. The one test
    /// of eligibility: the region, the choice, the refinement and the table all ask it.
    pub fn ineligible(&self) -> Option<Ineligible> {
        if self.tested == 0 {
            return Some(Ineligible::NothingTested);
        }
        if self.liveness_failures > 0 {
            return Some(Ineligible::LivenessFailure);
        }
        None
    }
}

/// What a fit found.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    /// Every point run, sorted by value.
    pub points: Vec<Point>,
    /// The point in the region nearest the band's middle, if any point's interval overlaps.
    pub chosen: Option<Point>,
}

impl Fit {
    /// The points where no connection reached a verdict: a fit with any is no fit (exit 2).
    pub fn nothing_tested(&self) -> impl Iterator<Item = &Point> {
        self.points
            .iter()
            .filter(|p| p.ineligible() == Some(Ineligible::NothingTested))
    }

    /// The points where a connection stalled or was unfinished: a fit with any fails as a
    /// liveness failure (exit 3), whatever it chose.
    pub fn liveness_failures(&self) -> impl Iterator<Item = &Point> {
        self.points
            .iter()
            .filter(|p| p.ineligible() == Some(Ineligible::LivenessFailure))
    }
}

/// Runs the fit: `base` is the sweep (scenario, seeds, changes) without the free parameters.
pub fn fit(
    base: &SweepSpec,
    free: &[Free],
    target: (f64, f64),
    points: usize,
    refine: usize,
    threads: usize,
) -> Result<Fit, Error> {
    let mut runs: Vec<Point> = Vec::new();
    match free {
        [one] => {
            let (mut lo, mut hi) = (one.lo, one.hi);
            for round in 0..=refine {
                let values = one.grid(lo, hi, points);
                let fresh: Vec<String> = values
                    .into_iter()
                    .filter(|v| !runs.iter().any(|p| p.values[0] == *v))
                    .collect();
                runs.extend(measure(base, one, &fresh, &[], target, threads)?);
                sort(&mut runs);
                // Finer than 1/50 of the range, noise decides the crossing, not the parameter.
                let fine_enough = (one.hi - one.lo) / 50.0;
                match bracket(&runs, target) {
                    Some((a, b)) if round < refine && b - a > fine_enough => (lo, hi) = (a, b),
                    _ => break,
                }
            }
        }
        [first, second] => {
            for v in first.grid(first.lo, first.hi, points) {
                let set = vary_set(&first.key, &v);
                let inner = second.grid(second.lo, second.hi, points);
                for mut p in measure(base, second, &inner, &[set], target, threads)? {
                    p.values.insert(0, v.clone());
                    runs.push(p);
                }
            }
            sort(&mut runs);
        }
        _ => {
            return Err(Error::Scenario(crate::ScenarioError {
                origin: "--free".into(),
                position: None,
                message: FitError::Count(free.len()).to_string(),
            }))
        }
    }
    let middle = (target.0 + target.1) / 2.0;
    let chosen = runs
        .iter()
        .filter(|p| p.in_region)
        .min_by(|a, b| (a.loss - middle).abs().total_cmp(&(b.loss - middle).abs()))
        .cloned();
    Ok(Fit {
        points: runs,
        chosen,
    })
}

fn vary_set(key: &str, value: &str) -> Set {
    Set {
        flag: SetFlag::Vary,
        key: key.into(),
        value: value.into(),
        append: false,
    }
}

fn sort(points: &mut [Point]) {
    let num = |v: &String| v.parse::<f64>().unwrap_or(f64::NAN);
    points.sort_by(|a, b| {
        a.values
            .iter()
            .map(num)
            .zip(b.values.iter().map(num))
            .map(|(x, y)| x.total_cmp(&y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// The values between which the loss crosses the band's middle (one parameter), among the
/// points that measured something.
fn bracket(points: &[Point], target: (f64, f64)) -> Option<(f64, f64)> {
    let middle = (target.0 + target.1) / 2.0;
    let eligible: Vec<&Point> = points.iter().filter(|p| p.ineligible().is_none()).collect();
    eligible.windows(2).find_map(|w| {
        let crosses = (w[0].loss - middle).signum() != (w[1].loss - middle).signum();
        let (a, b) = (w[0].values[0].parse().ok()?, w[1].values[0].parse().ok()?);
        crosses.then_some((a, b))
    })
}

/// Runs every seed of `base` at each value of `free` (with `extra` changes) and reports each.
fn measure(
    base: &SweepSpec,
    free: &Free,
    values: &[String],
    extra: &[Set],
    target: (f64, f64),
    threads: usize,
) -> Result<Vec<Point>, Error> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let mut spec = base.clone();
    spec.sets.extend(extra.iter().cloned());
    spec.vary = Some((free.key.clone(), values.to_vec()));
    let sweep = Sweep::plan(spec.clone())?;
    let cells = fold(&spec, sweep.run(None, threads, |_, _| {})?);
    Ok(cells
        .into_iter()
        .map(|c| {
            let interval = wilson_95(c.violations, c.connections);
            let mut point = Point {
                values: vec![c.value.clone().unwrap_or_default()],
                connections: c.connections,
                tested: c.tested,
                violations: c.violations,
                liveness_failures: c.stalled + c.unfinished,
                hung_replay: c.hung_replay.clone(),
                loss: c.loss_fraction(),
                interval,
                in_region: false,
            };
            point.in_region =
                point.ineligible().is_none() && interval.0 <= target.1 && interval.1 >= target.0;
            point
        })
        .collect())
}

/// Draws the fit: the loss against one parameter with its intervals and the target band, or a
/// heat map of the loss over two (region cells outlined): the SVG text.
pub fn plot_svg(
    fit: &Fit,
    free: &[Free],
    target: (f64, f64),
) -> Result<String, crate::sweep::PlotError> {
    let mut svg = String::new();
    match free {
        [one] => plot_curve(fit, one, target, &mut svg),
        [a, b] => plot_heat(fit, a, b, &mut svg),
        _ => Err("fit plots one or two parameters".into()),
    }
    .map_err(crate::sweep::PlotError::Draw)?;
    Ok(svg)
}

fn plot_curve(fit: &Fit, free: &Free, target: (f64, f64), out: &mut String) -> Result<(), String> {
    use plotters::prelude::*;
    let pts: Vec<(f64, f64, f64, f64)> = fit
        .points
        .iter()
        .filter(|p| p.ineligible().is_none())
        .filter_map(|p| {
            let x = p.values[0].parse().ok()?;
            Some((x, p.loss, p.interval.0, p.interval.1))
        })
        .collect();
    let root = SVGBackend::with_string(out, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("loss fraction against {}", free.key),
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(free.lo..free.hi, 0.0..1.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(free.key.as_str())
        .y_desc("share of connections silently lost")
        .draw()
        .map_err(|e| e.to_string())?;
    let band = GREEN.mix(0.15).filled();
    chart
        .draw_series([Rectangle::new(
            [(free.lo, target.0), (free.hi, target.1)],
            band,
        )])
        .map_err(|e| e.to_string())?
        .label("target")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 16, y + 5)], GREEN.mix(0.3).filled())
        });
    chart
        .draw_series(
            pts.iter()
                .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], BLACK.mix(0.5))),
        )
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.1)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label("loss (95% interval)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.1), 3, BLUE.filled())),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn plot_heat(fit: &Fit, a: &Free, b: &Free, out: &mut String) -> Result<(), String> {
    use plotters::prelude::*;
    let mut xs: Vec<String> = Vec::new();
    let mut ys: Vec<String> = Vec::new();
    for p in &fit.points {
        if !xs.contains(&p.values[0]) {
            xs.push(p.values[0].clone());
        }
        if !ys.contains(&p.values[1]) {
            ys.push(p.values[1].clone());
        }
    }
    let root = SVGBackend::with_string(out, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("loss fraction over {} x {}", a.key, b.key),
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0..xs.len(), 0..ys.len())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(a.key.as_str())
        .y_desc(b.key.as_str())
        .x_label_formatter(&|i| xs.get(*i).cloned().unwrap_or_default())
        .y_label_formatter(&|i| ys.get(*i).cloned().unwrap_or_default())
        .draw()
        .map_err(|e| e.to_string())?;
    for p in &fit.points {
        let (Some(i), Some(j)) = (
            xs.iter().position(|x| *x == p.values[0]),
            ys.iter().position(|y| *y == p.values[1]),
        ) else {
            continue;
        };
        // Grey: the point measured nothing (or cannot be chosen), whatever its loss says.
        let shade = match p.ineligible() {
            Some(_) => RGBColor(190, 190, 190),
            None => RGBColor(
                255,
                (255.0 * (1.0 - p.loss)) as u8,
                (255.0 * (1.0 - p.loss)) as u8,
            ),
        };
        chart
            .draw_series([Rectangle::new([(i, j), (i + 1, j + 1)], shade.filled())])
            .map_err(|e| e.to_string())?;
        if p.in_region {
            chart
                .draw_series([Rectangle::new(
                    [(i, j), (i + 1, j + 1)],
                    BLACK.stroke_width(3),
                )])
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_parameters_and_targets_parse_or_say_why() {
        let f = Free::parse("device.worker_delay_max_us=100..5000").unwrap();
        assert!(f.integer && f.lo == 100.0 && f.hi == 5000.0);
        assert_eq!(f.grid(f.lo, f.hi, 3), vec!["100", "2550", "5000"]);
        assert!(!Free::parse("link.loss_p=0.0..0.1").unwrap().integer);
        for bad in ["x", "k=5..1", "k=1..1", "k=a..b", "=1..2", "k=1"] {
            assert!(Free::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_target("loss_fraction=0.4..0.5"), Ok((0.4, 0.5)));
        for bad in [
            "loss=0.4..0.5",
            "loss_fraction=0.6..0.5",
            "loss_fraction=0..2",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
