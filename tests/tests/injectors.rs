//! Each injector creates its situation (shown from device-side ground truth the oracle does not
//! use for its verdicts), the fixed rules lose nothing under it, and where the legacy rules lose,
//! the oracle says so. Seeds: `FWSIM_SEEDS=K` or `FWSIM_SEED=N`; a failure prints its replay.

use fwsim_tests::{load, seeds, sim_of};
use sim::oracle::ConnReport;
use sim::scenario::Injector;
use sim::{RunOptions, RunReport, Set, SetFlag, Verdict};

/// Runs `scenarios/NAME.toml` with `sets`, the injector, the policy and the seed.
fn run(name: &str, sets: &[&str], injector: &str, policy: &str, seed: u64) -> (RunReport, String) {
    let keep_trace = RunOptions {
        keep_trace: true,
        ..Default::default()
    };
    let r = sim_of(name, sets)
        .with(Set::flag(SetFlag::Inject, injector))
        .and_then(|s| s.with(Set::flag(SetFlag::Policy, policy)))
        .unwrap()
        .seed(seed)
        .run_with(keep_trace)
        .unwrap();
    let replay = r.replay.clone();
    (r, replay)
}

/// The oracle's sensitivity: a connection whose acknowledged data the device freed unread, while
/// the peer saw no reset, did not hang waiting and did not abort, must be judged a violation.
fn assert_freed_data_is_flagged(rows: &[ConnReport], replay: &str) {
    for row in rows {
        if row.device.bytes_freed_unread > 0
            && !row.reset_seen
            && !row.peer_gave_up
            && row.verdict != Verdict::AbortedByPeer
            && row.verdict != Verdict::Unfinished
        {
            assert!(row.verdict.is_violation(), "{row:?}\nreplay: {replay}");
        }
    }
}

/// F3: every completed handshake reaches the application with its data (the rest, if any, was
/// refused visibly: a full backlog answers RST).
fn assert_every_handshake_delivered(rows: &[ConnReport], replay: &str) {
    for row in rows {
        assert!(!row.verdict.is_violation(), "{row:?}\nreplay: {replay}");
        if row.established {
            assert_eq!(row.verdict, Verdict::Delivered, "{row:?}\nreplay: {replay}");
        }
    }
}

#[test]
fn fin_before_drain_loses_under_legacy_and_is_always_detected() {
    for &seed in &seeds(10) {
        let sets = ["peer.0.count=10", "peer.0.interval_ms=300"];
        let (legacy, replay) = run("forum", &sets, "fin-before-drain", "legacy", seed);
        let made = legacy
            .rows
            .iter()
            .filter(|r| r.device.fin_before_drain)
            .count();
        assert!(
            made >= 5,
            "the injector made {made} of 10\nreplay: {replay}"
        );
        assert!(legacy.summary.silently_lost > 0, "replay: {replay}");
        assert_freed_data_is_flagged(&legacy.rows, &replay);
        let (fixed, replay) = run("forum", &sets, "fin-before-drain", "fixed", seed);
        assert_every_handshake_delivered(&fixed.rows, &replay);
    }
}

#[test]
fn data_and_fin_before_accept_are_handed_out_under_fixed() {
    for &seed in &seeds(10) {
        for app in ["forum", "multi-client"] {
            let sets = ["peer.0.count=10", "peer.0.interval_ms=300"];
            let (fixed, replay) = run(app, &sets, "data-fin-before-accept", "fixed", seed);
            let made = fixed
                .rows
                .iter()
                .filter(|r| r.device.fin_before_accept)
                .count();
            assert!(
                made >= 5,
                "the injector made {made} of 10\nreplay: {replay}"
            );
            assert_every_handshake_delivered(&fixed.rows, &replay);
            let (legacy, replay) = run(app, &sets, "data-fin-before-accept", "legacy", seed);
            assert!(legacy.summary.violations() > 0, "replay: {replay}");
            assert_freed_data_is_flagged(&legacy.rows, &replay);
        }
    }
}

/// RST before accept: the reset connections are the peer's own doing (no violation), and they
/// must not block the accept queue: plain nc connections afterwards are all delivered.
#[test]
fn rst_before_accept_never_blocks_later_connections() {
    for &seed in &seeds(10) {
        // The injector turns the workload into resets; the later nc workload is added after.
        let mut c = load(
            "forum",
            &[
                "peer.0.count=5",
                "peer.0.interval_ms=400",
                "device.policy=\"fixed\"",
                // A lost segment retransmits after smoltcp's 1 s RTO, past the injector's
                // longest hold: on a lossless link the situation happens every time.
                "link.loss_p=0",
            ],
        );
        c.seed = seed;
        // The injector applies to the reset peers only; plain nc peers follow.
        Injector::RstBeforeAccept.apply(&mut c);
        let mut nc = c.peer[0].clone();
        nc.kind = sim::peer::ProgramKind::Nc;
        nc.start_ms = 3_000;
        nc.count = 5;
        c.peer.push(nc);
        let replay = format!(
            "FWSIM_SEED={seed} cargo test -p fwsim-tests --test injectors rst_before_accept"
        );
        let r = sim::run(&c, RunOptions::default()).unwrap();
        let resets: Vec<&ConnReport> = r.rows.iter().filter(|r| r.workload == 0).collect();
        let made = resets
            .iter()
            .filter(|r| r.device.reset_before_accept)
            .count();
        assert!(
            made == 5,
            "the injector made {made} of 5\n{}replay: {replay}",
            sim::report::human(&r, true)
        );
        assert_eq!(r.summary.violations(), 0, "{:?}\nreplay: {replay}", r.rows);
        for row in r.rows.iter().filter(|r| r.workload == 1) {
            assert_eq!(row.verdict, Verdict::Delivered, "{row:?}\nreplay: {replay}");
        }
    }
}

/// Several SYNs inside one application loop iteration: the device sees SYNs of different
/// connections less than a loop period apart; nothing is lost silently under fixed.
#[test]
fn syn_bursts_arrive_within_one_loop_and_fixed_loses_nothing() {
    for &seed in &seeds(10) {
        for app in ["forum", "multi-client"] {
            let sets = ["peer.0.count=8", "peer.0.interval_ms=500"];
            let (fixed, replay) = run(app, &sets, "syn-burst", "fixed", seed);
            assert_eq!(fixed.summary.violations(), 0, "replay: {replay}");
            let syn_times: Vec<u64> = fixed
                .trace_lines
                .as_ref()
                .unwrap()
                .iter()
                .filter(|l| l.contains("device SynReceived"))
                .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                .collect();
            let close_pairs = syn_times.windows(2).filter(|w| w[1] - w[0] < 1_000).count();
            assert!(close_pairs >= 2, "SYNs at {syn_times:?}\nreplay: {replay}");
        }
    }
}

/// Connect while every slot is busy: holders fill the pool first; the fixed device refuses the
/// overflow visibly and delivers everything it accepted.
#[test]
fn connect_while_slots_busy_is_refused_visibly_under_fixed() {
    for &seed in &seeds(10) {
        for app in ["forum", "multi-client"] {
            let sets = ["peer.0.count=6", "peer.0.interval_ms=100"];
            let (fixed, replay) = run(app, &sets, "slots-busy", "fixed", seed);
            assert_eq!(
                fixed.summary.violations(),
                0,
                "{:?}\nreplay: {replay}",
                fixed.rows
            );
            // The holders (workload 1) were in when the workload connected.
            let holders: Vec<&ConnReport> = fixed.rows.iter().filter(|r| r.workload == 1).collect();
            assert_eq!(
                holders.len(),
                9,
                "fixed: 10 sockets, 1 for the cloud\nreplay: {replay}"
            );
            let first_nc = fixed
                .rows
                .iter()
                .filter(|r| r.workload == 0)
                .map(|r| r.opened_at_us)
                .min()
                .unwrap();
            assert!(holders.iter().all(|h| h.opened_at_us < first_nc));
            let turned_away = fixed
                .rows
                .iter()
                .filter(|r| r.connect_failed || r.reset_seen || r.device.syn_dropped > 0)
                .count();
            assert!(
                turned_away > 0,
                "no connection met a full device\nreplay: {replay}"
            );
        }
    }
}

/// FINs overtake data on the way to the device (proven from the capture in
/// `sim_scenarios::fin_overtaking_data_loses_nothing_under_fixed`); here: fixed on every app.
#[test]
fn fin_overtaking_data_loses_nothing_under_fixed_on_every_app() {
    for &seed in &seeds(10) {
        for app in ["forum", "multi-client", "server-closes"] {
            let sets = ["peer.0.count=10", "peer.0.interval_ms=200"];
            let (fixed, replay) = run(app, &sets, "fin-overtakes-data", "fixed", seed);
            assert_eq!(
                fixed.summary.violations(),
                0,
                "{:?}\nreplay: {replay}",
                fixed.rows
            );
        }
    }
}
