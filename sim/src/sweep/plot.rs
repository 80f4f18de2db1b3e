//! The sweep's plot: loss against the varied field, one line per policy x preset, as SVG.

use super::Cell;

/// Why a plot could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlotError {
    /// The sweep varied nothing: there is no axis.
    NoVary,
    /// Drawing failed: what the drawing backend said.
    Draw(String),
}

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlotError::NoVary => f.write_str("--plot draws loss against --vary values"),
            PlotError::Draw(message) => write!(f, "cannot draw the plot: {message}"),
        }
    }
}

impl std::error::Error for PlotError {}

/// Draws loss fraction against the varied value, one line per policy x preset: the SVG text.
pub fn plot_svg(cells: &[Cell], key: &str) -> Result<String, PlotError> {
    if cells.iter().all(|c| c.value.is_none()) {
        return Err(PlotError::NoVary);
    }
    let mut svg = String::new();
    plot(cells, key, &mut svg).map_err(PlotError::Draw)?;
    Ok(svg)
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
fn plot(cells: &[Cell], key: &str, out: &mut String) -> Result<(), String> {
    use plotters::prelude::*;
    let values = varied_values(cells);
    if values.is_empty() {
        return Err("--plot needs --vary".into());
    }
    let root = SVGBackend::with_string(out, (900, 540)).into_drawing_area();
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
