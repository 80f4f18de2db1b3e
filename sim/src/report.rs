//! Reports: a per-connection table and a summary for people, one JSON object for tools, and
//! always the command that replays the run.

use std::fmt::Write as _;

use serde_json::json;

use crate::run::RunReport;
use crate::scenario::RunConfig;

/// The command that replays a run exactly.
pub fn replay_command(scenario_path: &str, config: &RunConfig, sets: &[String]) -> String {
    let mut cmd = format!(
        "cargo run --release -p sim --bin fwsim -- run {scenario_path} --seed {} --policy {}",
        config.seed,
        config.policy.name()
    );
    for s in sets.iter().filter(|s| !s.starts_with("device.policy=")) {
        if let Some(b) = s.strip_prefix("backend=") {
            let _ = write!(cmd, " --backend {b}");
            continue;
        }
        let _ = write!(cmd, " --set '{s}'");
    }
    cmd
}

/// The human report.
pub fn human(config: &RunConfig, report: &RunReport, replay: &str, all_rows: bool) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let _ = writeln!(
        out,
        "scenario {} | policy {} | link {} | seed {} | {:.3} s simulated{}",
        config.name,
        config.policy.name(),
        config.preset,
        report.seed,
        report.sim_time_us as f64 / 1e6,
        if report.timed_out {
            " (hit max_duration_ms)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:>6} {:>10} {:>5} {:>6} {:>6} {:>6} {:>6}  verdict",
        "port", "opened_ms", "est", "acked", "read", "freed", "reset"
    );
    let mut shown = 0;
    for r in &report.rows {
        if !all_rows && !r.verdict.is_violation() && shown >= 10 {
            continue;
        }
        shown += 1;
        let _ = writeln!(
            out,
            "{:>6} {:>10.3} {:>5} {:>6} {:>6} {:>6} {:>6}  {}{}",
            r.peer_port,
            r.opened_at_us as f64 / 1000.0,
            if r.established { "yes" } else { "no" },
            r.bytes_acked,
            r.device.bytes_read,
            r.device.bytes_freed_unread,
            if r.reset_seen { "yes" } else { "no" },
            r.verdict.label(),
            if r.device.accepted {
                ""
            } else {
                " (app never accepted)"
            },
        );
    }
    if shown < report.rows.len() {
        let _ = writeln!(
            out,
            "  ... {} delivered rows not shown (--all)",
            report.rows.len() - shown
        );
    }
    let _ = writeln!(
        out,
        "summary: {} connections: {} delivered, {} data silently lost, {} never accepted, {} corrupted, {} visible to peer, {} aborted by peer, {} unfinished | bytes acked {} delivered {} | loss {:.1}% | trace {}",
        s.connections, s.delivered, s.silently_lost, s.never_accepted, s.corrupted, s.refused_visible, s.aborted_by_peer, s.unfinished,
        s.bytes_acked, s.bytes_delivered, s.loss_fraction * 100.0, report.trace_hash
    );
    let verdict = if s.violations() > 0 {
        "SILENT LOSS"
    } else {
        "no silent loss"
    };
    let _ = writeln!(out, "verdict: {verdict}");
    let _ = writeln!(out, "replay: {replay}");
    out
}

/// The JSON report.
pub fn json(config: &RunConfig, report: &RunReport, replay: &str) -> serde_json::Value {
    let s = &report.summary;
    json!({
        "scenario": config.name,
        "policy": config.policy.name(),
        "preset": config.preset,
        "backend": format!("{:?}", config.backend).to_lowercase(),
        "seed": report.seed,
        "connections": s.connections,
        "delivered": s.delivered,
        "silently_lost": s.silently_lost,
        "never_accepted": s.never_accepted,
        "corrupted": s.corrupted,
        "refused_visible": s.refused_visible,
        "unfinished": s.unfinished,
        "aborted_by_peer": s.aborted_by_peer,
        "bytes_acked": s.bytes_acked,
        "bytes_delivered": s.bytes_delivered,
        "loss_fraction": s.loss_fraction,
        "trace_hash": report.trace_hash,
        "trace_events": report.trace_events,
        "sim_time_us": report.sim_time_us,
        "timed_out": report.timed_out,
        "rows": report.rows,
        "replay": replay,
    })
}
