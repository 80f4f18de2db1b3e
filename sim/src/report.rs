//! Reports: a per-connection table and a summary for people, one JSON object for tools, and
//! always the command that replays the run.

use std::fmt::Write as _;

use serde_json::json;

use crate::run::{Outcome, RunReport};

/// The human report: a row per connection (losses and the first ten; `all_rows`: every one),
/// the summary, the verdict and the replay command.
pub fn human(report: &RunReport, all_rows: bool) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let l = &report.label;
    let _ = writeln!(
        out,
        "scenario {} | policy {} | link {} | backend {} | seed {} | {:.3} s simulated{}",
        l.scenario,
        l.policy,
        l.preset,
        l.backend,
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
    let _ = writeln!(out, "verdict: {}", report.verdict_line());
    let _ = writeln!(out, "replay: {}", report.replay);
    out
}

/// The JSON report.
pub fn json(report: &RunReport) -> serde_json::Value {
    let s = &report.summary;
    let l = &report.label;
    json!({
        "scenario": l.scenario,
        "policy": l.policy,
        "preset": l.preset,
        "backend": l.backend,
        "seed": report.seed,
        "outcome": match report.outcome() {
            Outcome::NoSilentLoss => "no_silent_loss",
            Outcome::SilentLoss => "silent_loss",
            Outcome::NothingTested => "nothing_tested",
        },
        "connections": s.connections,
        "tested": report.tested(),
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
        "replay": report.replay,
    })
}

impl RunReport {
    /// Panics unless the run tested something and lost nothing silently; the message is the
    /// per-connection table and the command that replays the run.
    pub fn assert_no_silent_loss(&self) {
        if self.outcome() != Outcome::NoSilentLoss {
            panic!("{}", human(self, false));
        }
    }
}
