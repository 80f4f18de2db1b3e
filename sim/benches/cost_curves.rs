//! Cost curves: how the simulator's cost grows with the work, as ratios measured in this run
//! (no absolute targets, no timed tests). Goals: time per connection and per byte within 2x
//! across each range; memory does not grow with a peer's `count`.
//!
//! 1. peak memory against `count` (10^2 .. 10^8 scheduled connections, the run cut at 2 s);
//! 2. connections: 1, 8, 64, 512, 4096 `nc` connections (forum, fixed rules, ideal link);
//! 3. streams: 1 KiB to 10 MiB (fixed rules, ideal link);
//! 4. peer tables: 1 to 100,000 `[[peer]]` tables of one connection each.
//!
//! Run: `cargo bench -p sim --bench cost_curves`.

use std::path::Path;
use std::time::Instant as WallClock;

use sim::{Scenario, Set, SetFlag, Sim};

fn scenario(name: &str, sets: &[&str]) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{name}.toml"));
    let mut all = vec![
        Set::flag(SetFlag::Policy, "fixed"),
        Set::flag(SetFlag::Preset, "ideal"),
    ];
    all.extend(
        sets.iter()
            .map(|s| Set::parse(SetFlag::Set, s).expect("set")),
    );
    sim::scenario::load(&path, &all).expect("scenario")
}

/// Wall seconds of one run, and the report's connection count.
fn timed(s: &Scenario) -> (f64, u64) {
    let t = WallClock::now();
    let r = Sim::new(s.clone()).run().expect("run");
    (t.elapsed().as_secs_f64(), r.summary.connections)
}

/// The process's peak resident memory so far, in KiB (Linux), or 0.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Prints each point's cost per unit and the spread (largest over smallest).
fn curve(name: &str, unit: &str, points: &[(String, f64)]) {
    for (label, per_unit) in points {
        println!("{name}: {label:>12} -> {:.3} us per {unit}", per_unit * 1e6);
    }
    let max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let min = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    println!("{name}: spread {:.2}x (goal <= 2x)", max / min);
}

fn memory_against_count() {
    let mut rows = Vec::new();
    for exp in [2u32, 4, 6, 8] {
        let count = 10u64.pow(exp).to_string();
        let s = scenario(
            "forum",
            &[
                &format!("peer.0.count={count}"),
                "peer.0.interval_ms=100",
                "max_duration_ms=2000",
            ],
        );
        timed(&s);
        rows.push((count, peak_rss_kib()));
    }
    for (count, kib) in &rows {
        println!("memory: count {count:>10} -> peak RSS {kib} KiB");
    }
    let growth = rows.last().map_or(0, |r| r.1) as f64 / rows[0].1.max(1) as f64;
    println!("memory: peak grows {growth:.2}x from 10^2 to 10^8 scheduled connections (goal ~1x)");
}

fn connections() {
    let mut points = Vec::new();
    for n in [1u64, 8, 64, 512, 4096] {
        let s = scenario(
            "forum",
            &[
                &format!("peer.0.count={n}"),
                "peer.0.interval_ms=50",
                "peer.0.interval_jitter_ms=0",
            ],
        );
        let reps = (4096 / n).clamp(1, 50);
        let wall: f64 = (0..reps).map(|_| timed(&s).0).sum::<f64>() / reps as f64;
        points.push((format!("{n} conns"), wall / n as f64));
    }
    curve("connections", "connection", &points);
}

fn streams() {
    let mut points = Vec::new();
    for kib in [1u64, 16, 256, 1024, 10240] {
        let bytes = kib * 1024;
        let s = scenario(
            "stream",
            &[
                &format!("peer.0.stream_bytes={bytes}"),
                "peer.0.hold_ms=0",
                "drain_ms=0",
            ],
        );
        let reps = (10240 / kib).clamp(1, 20);
        let wall: f64 = (0..reps).map(|_| timed(&s).0).sum::<f64>() / reps as f64;
        points.push((format!("{kib} KiB"), wall / bytes as f64));
    }
    curve("streams", "byte", &points);
}

fn peer_tables() {
    let mut points = Vec::new();
    for n in [1usize, 10, 100, 1000, 10_000, 100_000] {
        let mut text = String::from(
            "name = \"tables\"\nmax_duration_ms = 3600000\n[device]\napp = \"forum\"\npolicy = \"fixed\"\n",
        );
        for i in 0..n {
            text.push_str(&format!("[[peer]]\nstart_ms = {}\n", 100 + 20 * i));
        }
        let t = WallClock::now();
        let s = sim::scenario::parse("tables.toml", &text, &[]).expect("tables");
        let (_, conns) = timed(&s);
        assert_eq!(conns, n as u64);
        points.push((format!("{n} tables"), t.elapsed().as_secs_f64() / n as f64));
    }
    curve("peer tables", "table (parse + run)", &points);
}

fn main() {
    memory_against_count();
    connections();
    streams();
    peer_tables();
}
