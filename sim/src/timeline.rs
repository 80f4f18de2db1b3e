//! `fwsim run --timeline FILE.svg`: one row per connection, time since the peer opened it on
//! the x axis, a mark for each thing that happened to it: SYN, handshake done, data and FIN
//! reaching the device, the Wi-Fi worker thread's notices, accept, each read, stop/close, RST,
//! and bytes freed unread. The race behind a loss shows at a glance: a FIN mark before the
//! first read, then "freed unread".

use std::collections::BTreeMap;

use firmware_core::app::RecordedKind;
use firmware_core::DeviceEvent;
use plotters::prelude::*;

use crate::observer::{Observed, ObservedEvent};
use crate::peer::PeerEvent;
use crate::run::RunReport;
use crate::sweep::PlotError;

/// The kinds of marks, in legend order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// The peer's SYN reached the device.
    Syn,
    /// The device's stack completed the handshake.
    Handshake,
    /// Data reached the device's stack.
    Data,
    /// The peer's FIN reached the device's stack.
    Fin,
    /// The Wi-Fi worker thread acted (connection queued for accept, socket flagged closed).
    Worker,
    /// The application accepted the connection.
    Accept,
    /// The application read bytes.
    Read,
    /// The application stopped or closed the connection, or saw it end.
    Close,
    /// A reset: from the peer, or seen by it.
    Rst,
    /// The device freed received bytes the application never read.
    FreedUnread,
}

impl Mark {
    const ALL: [Mark; 10] = [
        Mark::Syn,
        Mark::Handshake,
        Mark::Data,
        Mark::Fin,
        Mark::Worker,
        Mark::Accept,
        Mark::Read,
        Mark::Close,
        Mark::Rst,
        Mark::FreedUnread,
    ];

    /// The legend's name.
    pub fn name(self) -> &'static str {
        match self {
            Mark::Syn => "SYN in",
            Mark::Handshake => "handshake done",
            Mark::Data => "data in",
            Mark::Fin => "FIN in",
            Mark::Worker => "worker notice",
            Mark::Accept => "accept",
            Mark::Read => "read",
            Mark::Close => "stop/close",
            Mark::Rst => "RST",
            Mark::FreedUnread => "FREED UNREAD",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Mark::Syn => RGBColor(120, 120, 120),
            Mark::Handshake => RGBColor(60, 60, 60),
            Mark::Data => RGBColor(31, 119, 180),
            Mark::Fin => RGBColor(255, 127, 14),
            Mark::Worker => RGBColor(148, 103, 189),
            Mark::Accept => RGBColor(44, 160, 44),
            Mark::Read => RGBColor(23, 190, 207),
            Mark::Close => RGBColor(140, 86, 75),
            Mark::Rst => RGBColor(227, 119, 194),
            Mark::FreedUnread => RGBColor(214, 39, 40),
        }
    }
}

/// The mark an event makes, and the peer port of its connection.
fn mark_of(event: &ObservedEvent) -> Option<(u16, Mark)> {
    Some(match event {
        ObservedEvent::Device(d) => {
            let mark = match d {
                DeviceEvent::SynReceived { .. } | DeviceEvent::SynDropped { .. } => Mark::Syn,
                DeviceEvent::HandshakeCompleted { .. } => Mark::Handshake,
                DeviceEvent::DataReceived { .. } => Mark::Data,
                DeviceEvent::PeerClosed { reset: false, .. } => Mark::Fin,
                DeviceEvent::PeerClosed { reset: true, .. } => Mark::Rst,
                DeviceEvent::AcceptQueued { .. } | DeviceEvent::MarkedClosed { .. } => Mark::Worker,
                DeviceEvent::Stopped { .. } => Mark::Close,
                DeviceEvent::UnreadDataFreed { bytes, .. }
                | DeviceEvent::DataAfterClose { bytes, .. }
                    if *bytes > 0 =>
                {
                    Mark::FreedUnread
                }
                _ => return None,
            };
            (d.peer_port(), mark)
        }
        ObservedEvent::App(conn, kind, _) => {
            let mark = match kind {
                RecordedKind::Accepted => Mark::Accept,
                RecordedKind::Read => Mark::Read,
                RecordedKind::Disconnected | RecordedKind::Closed => Mark::Close,
                _ => return None,
            };
            (conn.remote.port, mark)
        }
        ObservedEvent::Peer(PeerEvent::ResetSeen { port } | PeerEvent::ResetSent { port }) => {
            (*port, Mark::Rst)
        }
        ObservedEvent::Peer(_) => return None,
    })
}

/// One row: the connection's label, when it opened, and its marks (µs since it opened).
struct Row {
    label: String,
    violation: bool,
    opened_us: i64,
    marks: Vec<(Mark, i64)>,
}

/// At most this many rows: every violation, then the first other connections.
const MAX_ROWS: usize = 60;

/// The rows of a run, from its kept events (`RunOptions::keep_events`).
fn rows(report: &RunReport, events: &[Observed]) -> Vec<Row> {
    let mut rows: Vec<Row> = report
        .rows
        .iter()
        .map(|r| Row {
            label: format!("{} {}", r.peer_port, r.verdict.label()),
            violation: r.verdict.is_violation(),
            opened_us: r.opened_at_us,
            marks: Vec::new(),
        })
        .collect();
    // A port names the connection the peer opened on it most recently.
    let mut current: BTreeMap<u16, usize> = BTreeMap::new();
    let mut opened = 0;
    for e in events {
        if let ObservedEvent::Peer(PeerEvent::Opened { port, .. }) = e.event {
            current.insert(port, opened);
            opened += 1;
        } else if let Some((port, mark)) = mark_of(&e.event) {
            if let Some(row) = current.get(&port).and_then(|&i| rows.get_mut(i)) {
                let since = e.at_us - row.opened_us;
                row.marks.push((mark, since));
            }
        }
    }
    let (mut shown, others): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| r.violation);
    shown.extend(others);
    shown.truncate(MAX_ROWS);
    shown
}

/// Draws the timeline of a run whose events were kept.
pub fn timeline_svg(report: &RunReport, events: &[Observed]) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw(&rows(report, events), report, &mut svg).map_err(PlotError::Draw)?;
    Ok(svg)
}

/// The marks' legend, in its own area beside the chart.
fn draw_legend(legend: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String> {
    for (i, mark) in Mark::ALL.iter().enumerate() {
        let y = 50 + 20 * i as i32;
        let style = if *mark == Mark::FreedUnread {
            mark.color().stroke_width(3)
        } else {
            mark.color().filled()
        };
        legend
            .draw(&Circle::new((10, y), 5, style))
            .map_err(|e| e.to_string())?;
        legend
            .draw(&Text::new(mark.name(), (22, y - 7), ("sans-serif", 13)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The chart of a timeline: log milliseconds against rows.
type TimelineChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// Each row's span and marks.
fn draw_rows(chart: &mut TimelineChart<'_, '_>, rows: &[Row]) -> Result<(), String> {
    // A connection's race takes microseconds to milliseconds, its end seconds: a log axis.
    let x = |us: i64| (us as f64 / 1000.0).max(FIRST_MS);
    // The first row at the top.
    let y = |i: usize| (rows.len() - 1 - i) as f64;
    for (i, r) in rows.iter().enumerate() {
        let span: Vec<f64> = r.marks.iter().map(|m| x(m.1)).collect();
        if let (Some(a), Some(b)) = (
            span.iter().copied().reduce(f64::min),
            span.iter().copied().reduce(f64::max),
        ) {
            let style = if r.violation {
                RED.mix(0.4)
            } else {
                BLACK.mix(0.15)
            };
            chart
                .draw_series(LineSeries::new(
                    [(a, y(i)), (b, y(i))],
                    style.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
    }
    for mark in Mark::ALL {
        let color = mark.color();
        let points: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.marks
                    .iter()
                    .filter(move |m| m.0 == mark)
                    .map(move |m| (x(m.1), y(i)))
            })
            .collect();
        // Freed bytes as a ring: the marks it lands on stay visible.
        let style = if mark == Mark::FreedUnread {
            color.stroke_width(3)
        } else {
            color.filled()
        };
        let size = if mark == Mark::FreedUnread { 8 } else { 4 };
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, size, style)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The earliest time the (logarithmic) axis shows: marks before it are drawn at it.
const FIRST_MS: f64 = 0.05;

fn draw(rows: &[Row], report: &RunReport, out: &mut String) -> Result<(), String> {
    let end_ms = rows
        .iter()
        .flat_map(|r| r.marks.iter().map(|m| m.1))
        .max()
        .unwrap_or(1000) as f64
        / 1000.0;
    // Tall enough for the legend too.
    let height = (120 + 22 * rows.len().max(1) as u32).max(280);
    let root = SVGBackend::with_string(out, (1150, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    // The legend beside the chart, where it hides no mark.
    let (root, legend) = root.split_horizontally(990);
    draw_legend(&legend)?;
    let l = &report.label;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} | {} | {} | seed {}: each connection from its opening",
                l.scenario, l.policy, l.preset, report.seed
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(200)
        .build_cartesian_2d(
            (FIRST_MS..(end_ms * 1.5).max(1.0)).log_scale(),
            -0.5f64..rows.len() as f64 - 0.5,
        )
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = rows.iter().rev().map(|r| r.label.clone()).collect();
    chart
        .configure_mesh()
        .x_desc("ms since the peer opened the connection (log scale)")
        .y_labels(rows.len().max(1))
        .y_label_formatter(&|y| {
            let i = y.round();
            (i >= 0.0 && (i - y).abs() < 0.01)
                .then(|| labels.get(i as usize).cloned())
                .flatten()
                .unwrap_or_default()
        })
        .disable_y_mesh()
        .draw()
        .map_err(|e| e.to_string())?;
    draw_rows(&mut chart, rows)?;
    root.present().map_err(|e| e.to_string())?;
    legend.present().map_err(|e| e.to_string())
}
