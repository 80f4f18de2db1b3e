//! A progress line for long runs: shown on a terminal only, and only once a run has taken a
//! second of wall time (short runs and pipes see nothing).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sim::run::ProgressFn;
use sim::RunProgress;

/// Wall time before the bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// The bar of one `fwsim run`, and the report closure the run calls.
pub(crate) fn run_bar() -> (ProgressBar, ProgressFn) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {msg} (simulated, of max_duration_ms)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let shown = bar.clone();
    let report = move |p: &RunProgress| {
        if shown.is_hidden() && terminal && started.elapsed() >= SHOW_AFTER {
            shown.set_draw_target(ProgressDrawTarget::stderr());
        }
        let ms = |us: i64| (us.max(0) / 1000) as u64;
        shown.set_length(ms(p.max_time_us));
        shown.set_position(ms(p.sim_time_us));
        shown.set_message(format!(
            "{:.1} s, {} connections opened, {} finished",
            p.sim_time_us as f64 / 1e6,
            p.opened,
            p.finished
        ));
    };
    (bar, Box::new(report))
}
