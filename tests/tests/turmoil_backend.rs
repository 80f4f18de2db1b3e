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
    assert_eq!(fixed.summary.delivered, 10);
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

/// Both backends agree on every seed: Legacy loses in the forum and multi-client scenarios,
/// nothing else loses, Fixed never loses. (Section-3 scenarios on the report's clean link.)
#[test]
fn both_backends_give_the_same_verdict_class() {
    let cases: [(&str, &[&str], bool); 4] = [
        (
            "forum",
            &["peer.0.count=10", "peer.0.interval_ms=200"],
            true,
        ),
        (
            "multi-client",
            &["peer.0.count=10", "peer.0.interval_ms=200"],
            true,
        ),
        (
            "server-closes",
            &["peer.0.count=10", "link.loss_p=0"],
            false,
        ),
        (
            "stream",
            &["peer.0.stream_bytes=32768", "link.loss_p=0"],
            false,
        ),
    ];
    for &seed in &seeds(200) {
        for (name, sets, legacy_loses) in cases {
            for policy in ["legacy", "fixed"] {
                let mut all: Vec<&str> = sets.to_vec();
                let p = format!("device.policy={policy}");
                all.push(&p);
                let sim = sim_of(name, &all).seed(seed);
                let expected = policy == "legacy" && legacy_loses;
                for backend in [Backend::Loopback, Backend::Turmoil] {
                    let r = sim.clone().backend(backend).run().unwrap();
                    let got = r.summary.violations() > 0;
                    assert_eq!(
                        got, expected,
                        "{name} {policy} {backend:?} seed {seed}: lost={got}\nreplay: {}",
                        r.replay
                    );
                }
            }
        }
    }
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

/// The link model applies on both backends: the same preset gives the same packet statistics
/// within tolerance. Counts differ a little (different draws, retransmissions, and turmoil
/// rounds times to its tick), so the test compares loss rates over many connections.
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
    for (name, a, b) in [
        ("downlink", lo.downlink, tu.downlink),
        ("uplink", lo.uplink, tu.uplink),
    ] {
        let loss = |s: sim::link::LinkStats| s.lost as f64 / s.enqueued.max(1) as f64;
        assert!(a.enqueued > 400 && b.enqueued > 400, "{name}: {a:?} {b:?}");
        let ratio = a.enqueued as f64 / b.enqueued as f64;
        assert!(
            (0.7..1.4).contains(&ratio),
            "{name} packets: {a:?} vs {b:?}"
        );
        // wlan-bad: about 6% in bursts; both backends within 4 points of each other.
        assert!(
            (loss(a) - loss(b)).abs() < 0.04,
            "{name} loss: {a:?} vs {b:?}"
        );
        assert!(
            loss(a) > 0.02 && loss(b) > 0.02,
            "{name}: the preset's loss applies"
        );
    }
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
