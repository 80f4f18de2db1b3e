//! The turmoil backend: the same firmware and peers, hosts in a turmoil simulation.
//! Failures name the seed; replay with the `fwsim run ... --set backend=turmoil` in the message.

use fwsim_tests::{load, seeds, sim_of};
use sim::scenario::Backend;
use sim::Scenario as RunConfig;
use sim::{RunOptions, Verdict};

fn on(backend: Backend, mut c: RunConfig) -> RunConfig {
    c.backend = backend;
    c
}

#[test]
fn forum_on_turmoil_legacy_loses_and_fixed_does_not() {
    let legacy = sim::run(
        &on(Backend::Turmoil, load("forum", &["peer.0.count=10"])),
        RunOptions::default(),
    )
    .unwrap();
    assert!(legacy.summary.silently_lost > 0, "{:?}", legacy.summary);
    let fixed = sim::run(
        &on(
            Backend::Turmoil,
            load("forum", &["peer.0.count=10", "device.policy=fixed"]),
        ),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(fixed.summary.violations(), 0, "{:?}", fixed.rows);
    // A full backlog refuses with RST (F4): visible, so fixed keeps its promise.
    let s = fixed.summary;
    assert_eq!(s.delivered + s.refused_visible, 10, "{s:?}");
    assert!(s.delivered >= 5, "{s:?}");
}

#[test]
fn turmoil_runs_are_deterministic() {
    let c = on(Backend::Turmoil, load("multi-client", &["peer.0.count=5"]));
    let a = sim::run(&c, RunOptions::default()).unwrap();
    let b = sim::run(&c, RunOptions::default()).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    let mut other = c.clone();
    other.seed += 1;
    assert_ne!(
        a.trace_hash,
        sim::run(&other, RunOptions::default()).unwrap().trace_hash
    );
}

/// Parity at the default tick: on every link with a minimum one-way delay the turmoil tick is
/// that delay, no packet can arrive inside the step it was sent in, and both backends run the
/// same events at the same microseconds: identical trace hashes and reports, seed by seed, on
/// the field scenarios (shortened), every WLAN preset and both policies. Loss fractions are
/// then equal with zero tolerance.
#[test]
fn backends_agree_exactly_at_the_default_tick() {
    let cases: [(&str, &[&str], usize); 3] = [
        // One nc message per seed: 200 seeds give 200 connections per cell.
        ("forum", &["peer.0.count=1", "drain_ms=300"], 200),
        (
            "multi-client",
            &["peer.0.count=4", "peer.0.interval_ms=100", "drain_ms=300"],
            25,
        ),
        (
            "server-closes",
            &["peer.0.count=3", "peer.0.interval_ms=100", "drain_ms=300"],
            25,
        ),
    ];
    for (name, sets, n_seeds) in cases {
        for preset in ["wlan-good", "wlan-busy", "wlan-bad"] {
            for policy in ["legacy", "fixed"] {
                let sim = sim_of(name, sets)
                    .set(&format!("device.policy={policy}"))
                    .unwrap()
                    .set(&format!("link.preset={preset}"))
                    .unwrap();
                let lo = sim
                    .clone()
                    .backend(Backend::Loopback)
                    .sweep(seeds(n_seeds as u64))
                    .unwrap();
                let tu = sim
                    .backend(Backend::Turmoil)
                    .sweep(seeds(n_seeds as u64))
                    .unwrap();
                assert!(lo.tested() > 0, "{name} {preset} {policy}: tested nothing");
                for (a, b) in lo.runs.iter().zip(&tu.runs) {
                    assert!(b.exact_timing(), "{name} {preset}: {:?}", b.timing_note());
                    assert_eq!(
                        (&a.trace_hash, &a.summary, a.sim_time_us, a.uplink, a.downlink),
                        (&b.trace_hash, &b.summary, b.sim_time_us, b.uplink, b.downlink),
                        "{name} {preset} {policy}: backends differ\nreplay: {}\nand: {} --backend turmoil",
                        a.replay,
                        a.replay
                    );
                }
                assert_eq!(lo.violations(), tu.violations());
            }
        }
    }
}

/// The `ideal` link has no minimum delay, so no tick is exact there: the device's packets reach
/// the peer up to one (100 us) tick late, the report says so, and loss fractions agree only
/// statistically: within four standard errors of their difference over 200 seeds.
#[test]
fn ideal_link_is_approximate_and_agrees_statistically() {
    let sim = sim_of("forum", &["peer.0.count=2", "drain_ms=300"])
        .set("link.preset=ideal")
        .unwrap();
    let lo = sim
        .clone()
        .backend(Backend::Loopback)
        .sweep(seeds(200))
        .unwrap();
    let tu = sim.backend(Backend::Turmoil).sweep(seeds(200)).unwrap();
    assert!(tu
        .runs
        .iter()
        .all(|r| !r.exact_timing() && r.timing_note().is_some()));
    let fraction = |s: &sim::SweepReport| (s.violations() as f64 / s.tested() as f64, s.tested());
    let ((p1, n1), (p2, n2)) = (fraction(&lo), fraction(&tu));
    let p = (p1 * n1 as f64 + p2 * n2 as f64) / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    assert!(p1 > 0.2, "legacy loses on ideal: {p1}");
    assert!(
        (p1 - p2).abs() <= 4.0 * se,
        "loss fraction: loopback {p1:.3} (n={n1}) vs turmoil {p2:.3} (n={n2}), se {se:.3}"
    );
}

/// The 10 MiB stream of the field report: the same bytes in the same simulated time.
#[test]
fn stream_transfer_agrees_exactly() {
    let sim = sim_of("stream", &["link.preset=wlan-good"])
        .set("device.policy=fixed")
        .unwrap()
        .seed(2);
    let lo = sim.clone().backend(Backend::Loopback).run().unwrap();
    let tu = sim.backend(Backend::Turmoil).run().unwrap();
    assert_eq!(
        lo.summary.bytes_delivered,
        10 * 1024 * 1024,
        "{}",
        lo.replay
    );
    assert!(!lo.timed_out && !tu.timed_out);
    assert_eq!(
        (&lo.trace_hash, &lo.summary, lo.sim_time_us),
        (&tu.trace_hash, &tu.summary, tu.sim_time_us),
        "replay: {} and with --backend turmoil",
        lo.replay
    );
}

#[test]
fn partition_during_a_transfer_loses_nothing_under_fixed() {
    for &seed in &seeds(10) {
        let mut c = load("partition", &["peer.0.stream_bytes=262144"]);
        c.seed = seed;
        let r = sim::run(&c, RunOptions::default()).unwrap();
        assert_eq!(r.summary.violations(), 0, "seed {seed}: {:?}", r.rows);
        assert_eq!(r.rows[0].verdict, Verdict::Delivered, "seed {seed}");
    }
}

#[test]
fn device_restart_is_visible_never_silent_under_fixed() {
    for &seed in &seeds(10) {
        let mut c = load("device-restart", &[]);
        c.seed = seed;
        let r = sim::run(
            &c,
            RunOptions {
                keep_trace: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.summary.violations(), 0, "seed {seed}: {:?}", r.rows);
        let lines = r.trace_lines.unwrap();
        assert!(
            lines.iter().any(|l| l.contains("device rebooted")),
            "the device restarted"
        );
        // The stream was cut by the crash: its peer saw the reset, and the connection counts
        // as visible to the peer, not delivered (the transfer did not complete).
        let stream = r.rows.iter().find(|row| row.bytes_sent > 1000).unwrap();
        assert!(stream.reset_seen, "seed {seed}: {stream:?}");
        assert_eq!(
            stream.verdict,
            Verdict::RefusedVisibly,
            "seed {seed}: {stream:?}"
        );
        assert!(r.summary.refused_visible >= 1);
    }
}

#[test]
fn faults_need_the_turmoil_backend() {
    let c = on(Backend::Loopback, load("partition", &[]));
    let e = sim::run(&c, RunOptions::default()).unwrap_err();
    assert!(e.to_string().contains("turmoil"), "{e}");
}

/// The link model applies on both backends alike: with the exact tick, the same preset gives
/// the same packet statistics, packet for packet, on a long lossy run.
#[test]
fn link_statistics_agree_across_backends() {
    let c = load(
        "forum",
        &[
            "link.preset=wlan-bad",
            "peer.0.count=300",
            "peer.0.interval_ms=30",
            "device.policy=fixed",
        ],
    );
    let lo = sim::run(&on(Backend::Loopback, c.clone()), RunOptions::default()).unwrap();
    let tu = sim::run(&on(Backend::Turmoil, c), RunOptions::default()).unwrap();
    assert!(
        lo.downlink.lost > 10 && lo.uplink.lost > 10,
        "{:?}",
        lo.downlink
    );
    assert_eq!((lo.uplink, lo.downlink), (tu.uplink, tu.downlink));
}

/// The time of the first trace line of `who` containing `what`.
fn first_event_us(lines: &[String], who_what: &str) -> Option<u64> {
    lines
        .iter()
        .find(|l| l.contains(who_what))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

/// The peer runs first in every turmoil step, so its packets reach the device at their exact
/// link-model time whatever the tick: the first SYN arrives at the same microsecond as on the
/// loopback backend. (With the device first, a 7 ms or 20 ms tick would hold the SYN until the
/// next step boundary.)
#[test]
fn uplink_is_exact_at_any_tick() {
    let c = load("forum", &["peer.0.count=1", "device.policy=fixed"]);
    let syn_at = |c: &RunConfig| {
        let r = sim::run(
            c,
            RunOptions {
                keep_trace: true,
                ..Default::default()
            },
        )
        .unwrap();
        let lines = r.trace_lines.unwrap();
        let opened = first_event_us(&lines, "peer Opened").unwrap();
        let syn = first_event_us(&lines, "device SynReceived").unwrap();
        (opened, syn)
    };
    let (opened, syn) = syn_at(&on(Backend::Loopback, c.clone()));
    assert!(syn > opened, "the uplink has a delay: {opened} {syn}");
    for tick_us in [1_000, 7_000, 20_000] {
        let mut t = on(Backend::Turmoil, c.clone());
        t.turmoil_tick_us = tick_us;
        assert_eq!(syn_at(&t), (opened, syn), "tick {tick_us} us");
    }
}

/// A user's simulation stepping by another tick than the scenario's is a harness bug, caught
/// at once rather than silently running the hosts' events at the wrong times.
#[test]
fn mismatched_tick_is_caught() {
    let c = load("forum", &["peer.0.count=1", "turmoil_tick_us=20000"]);
    let mut sim = sim::backend::turmoil::sim_builder(&c)
        .tick_duration(std::time::Duration::from_millis(1))
        .build();
    let _hosts = sim::backend::turmoil::FwsimHosts::add_to(
        &mut sim,
        &c,
        RunOptions::default(),
        "device",
        "peer",
    );
    let err = sim.run().expect_err("the mismatch stops the simulation");
    assert!(err.to_string().contains("turmoil_tick_us"), "{err}");
}
