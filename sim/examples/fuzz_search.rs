//! Runs the `scenario` fuzz body over deterministic pseudo-random inputs, without libFuzzer:
//! a quick search for silent loss under the fixed rules (and its rate under the legacy rules).
//!
//! Run: `cargo run --release -p sim --example fuzz_search -- [INPUTS]`

use sim::fuzz::{run_scenario, ScenarioOutcome};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut x: u64 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let start = std::time::Instant::now();
    let (mut fixed, mut legacy) = (0, 0);
    for i in 0..n {
        let data: Vec<u8> = (0..256).map(|_| next() as u8).collect();
        if let ScenarioOutcome::SilentLoss { summary, toml } = run_scenario(&data, "fixed") {
            fixed += 1;
            let path = std::env::temp_dir().join(format!("fwsim-fixed-loss-{i}.toml"));
            let _ = std::fs::write(&path, toml);
            println!(
                "fixed silent loss, input {i}: {summary:?} -> {}",
                path.display()
            );
        }
        if let ScenarioOutcome::SilentLoss { .. } = run_scenario(&data, "legacy") {
            legacy += 1;
        }
    }
    println!(
        "{n} inputs in {:.2?}: fixed lost silently in {fixed}, legacy in {legacy}",
        start.elapsed()
    );
}
