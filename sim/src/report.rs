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
    if let Some(line) = report.timing_note() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "{:>6} {:>10} {:>5} {:>6} {:>6} {:>6} {:>6}  verdict",
        "port", "opened_ms", "est", "acked", "read", "freed", "reset"
    );
    let mut shown = 0;
    for r in &report.rows {
        let failed = r.verdict.is_violation() || r.verdict.is_liveness_failure();
        if !all_rows && !failed && shown >= 10 {
            continue;
        }
        shown += 1;
        let _ = writeln!(
            out,
            "{:>6} {:>10.3} {:>5} {:>6} {:>6} {:>6} {:>6}  {}{}{}",
            r.peer_port,
            r.opened_at_us as f64 / 1000.0,
            if r.established { "yes" } else { "no" },
            r.bytes_acked,
            r.device.bytes_read,
            r.device.bytes_freed_unread,
            if r.reset_seen { "yes" } else { "no" },
            r.verdict.label(),
            match r.stalled_at_us {
                Some(t) => format!(" (no progress from {:.3} s)", t as f64 / 1e6),
                None => String::new(),
            },
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
            "  ... {} passing rows not shown (--all)",
            report.rows.len() - shown
        );
    }
    let unkept = s.connections.saturating_sub(report.rows.len() as u64);
    if unkept > 0 {
        // Live mode keeps the violations and the first rows of the others.
        let _ = writeln!(out, "  ... {unkept} more rows not kept");
    }
    let _ = writeln!(
        out,
        "summary: {} connections: {} delivered, {} data silently lost, {} never accepted, {} corrupted, {} visible to peer, {} aborted by peer, {} stalled, {} unfinished | bytes acked {} delivered {} | loss {:.1}% | trace {}",
        s.connections, s.delivered, s.silently_lost, s.never_accepted, s.corrupted, s.refused_visible, s.aborted_by_peer, s.stalled, s.unfinished,
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
        "outcome": report.outcome().name(),
        "connections": s.connections,
        "tested": report.tested(),
        "delivered": s.delivered,
        "silently_lost": s.silently_lost,
        "never_accepted": s.never_accepted,
        "corrupted": s.corrupted,
        "refused_visible": s.refused_visible,
        "stalled": s.stalled,
        "unfinished": s.unfinished,
        "aborted_by_peer": s.aborted_by_peer,
        "bytes_acked": s.bytes_acked,
        "bytes_delivered": s.bytes_delivered,
        "loss_fraction": s.loss_fraction,
        "trace_hash": report.trace_hash,
        "trace_events": report.trace_events,
        "sim_time_us": report.sim_time_us,
        "timed_out": report.timed_out,
        "turmoil_tick_us": report.turmoil_tick.map(|t| t.tick_us),
        "exact_timing": report.exact_timing(),
        "late_packets": report.uplink.late + report.downlink.late,
        "uplink": report.uplink,
        "downlink": report.downlink,
        "rows": report.rows,
        "replay": report.replay,
    })
}

impl RunReport {
    /// Every packet kept its link-model time: always on the loopback backend; on turmoil when
    /// the tick is no larger than the link's minimum one-way delay and nothing came late.
    pub fn exact_timing(&self) -> bool {
        self.turmoil_tick.is_none_or(|t| t.exact) && self.uplink.late + self.downlink.late == 0
    }

    /// A line saying how the turmoil backend approximated, if it did.
    pub fn timing_note(&self) -> Option<String> {
        let tick = self.turmoil_tick?;
        let late = self.uplink.late + self.downlink.late;
        (!self.exact_timing()).then(|| {
            format!(
                "approximate timing: turmoil tick {} us; {late} packets reached the peer up to one \
                 tick late (a tick no larger than the link's minimum one-way delay is exact: \
                 turmoil_tick_us = 0 picks it when the link has one)",
                tick.tick_us
            )
        })
    }

    /// Panics unless the run tested something, lost nothing silently and every connection
    /// finished; the message is the per-connection table and the command that replays the run.
    pub fn assert_no_silent_loss(&self) {
        if self.outcome() != Outcome::NoSilentLoss {
            panic!("{}", human(self, false));
        }
    }
}
