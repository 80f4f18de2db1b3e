//! Legacy rules that cannot lose data on their own (issue 13, item 7; the rules that can are
//! timed by `fuzz/time_to_bug.sh`, see docs/performance.md, "Time to bug").
//!
//! Each test runs the `scenario` fuzz body with exactly one legacy rule switched on over the
//! fixed rules (`sim::fuzz::LegacyRule::policy`, what the `scenario_rule` target runs) over
//! every committed scenario input (one per app, peer program and injector, the field-bug
//! examples) and deterministic random inputs, with the device knobs of either firmware, and
//! asserts that nothing is lost silently. It also asserts
//! that the rule did what it does in some of those runs (its event, or a run that differs from
//! the same input under fixed): a rule that never acted would prove nothing.
//!
//! Why the fixed rules keep such a rule harmless (fixed itself loses nothing: the `scenario`
//! target and `fixed_never_loses_silently`): under F5 every place where the device throws away
//! bytes it acknowledged tells the peer. `stop()` with unread bytes (stack or Wiring buffer)
//! resets; bytes arriving after `stop()` are reset before they are acknowledged; the HAL's close
//! on the worker's flag (only under L3/L4) resets when anything is unread; a pool slot is
//! reclaimed (with RST) only from a socket the application already closed. So a rule that
//! discards nothing itself, and takes no completed connection away from the application, or
//! discards only through those paths, cannot lose data silently. L7 is the one rule that can:
//! it replaces F5's RST by a FIN.
//!
//! Cases: `FWSIM_RULE_CASES=N` random inputs per rule (default 500: 3-9 s for all the rules
//! on 2 shared cores in the test profile).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use firmware_core::{DeviceEvent, Policy};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sim::fuzz::{run_input, LegacyRule, RuleChoice, ScenarioOutcome, MIN_SCENARIO_INPUT};
use sim::{ObservedEvent, RunOptions, RunReport, Sim};

/// Every committed input of the scenario targets: seeds, regressions, field-bug examples.
fn committed_inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let dirs = [
        "corpus/scenario",
        "corpus/scenario_legacy",
        "regressions/scenario",
        "bug-examples/scenario_legacy",
        "bug-examples/scenario_rule",
    ];
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.is_file()) {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p, data));
        }
    }
    out
}

/// The device knobs (pool, backlog, buffers) of both firmwares: a rule that cannot lose must
/// not depend on them (the `scenario_rule` target uses the fixed firmware's).
const KNOBS: [&str; 2] = ["fixed", "legacy"];

/// The input under `rules` with `knobs`' device, with its events; `None`: no scenario.
fn run(data: &[u8], knobs: &str, rules: Policy) -> Option<(RunReport, Sim)> {
    let options = RunOptions {
        keep_events: true,
        ..RunOptions::default()
    };
    run_input(data, knobs, Some(rules), options)
}

/// True if the run's device reported an event `matches` picks.
fn device_saw(report: &RunReport, matches: fn(&DeviceEvent) -> bool) -> bool {
    report.events.iter().flatten().any(|e| match &e.event {
        ObservedEvent::Device(d) => matches(d),
        _ => false,
    })
}

/// Runs `rule` alone over the committed inputs and `FWSIM_RULE_CASES` random ones: no silent
/// loss in any; returns in how many runs `acted` held (the rule did something).
fn never_loses_alone(rule: LegacyRule, acted: fn(&RunReport, &RunReport) -> bool) -> usize {
    let (acted_in, runs) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let check = |data: &[u8], what: &str| {
        for knobs in KNOBS {
            let Some((with_rule, sim)) = run(data, knobs, rule.policy()) else {
                return;
            };
            assert_eq!(
                with_rule.summary.violations(),
                0,
                "{what}: silent loss with {} alone over fixed ({knobs} device knobs): {:?}\n{}",
                rule.name(),
                with_rule.summary,
                sim.scenario().to_toml()
            );
            let Some((fixed, _)) = run(data, knobs, Policy::FIXED) else {
                return;
            };
            runs.fetch_add(1, Ordering::Relaxed);
            if acted(&with_rule, &fixed) {
                acted_in.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    for (path, data) in committed_inputs() {
        check(&data, &path.display().to_string());
    }
    let cases = std::env::var("FWSIM_RULE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    // A fixed generator: the same inputs every run, so the "rule acted" count cannot flake.
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let inputs = proptest::collection::vec(any::<u8>(), MIN_SCENARIO_INPUT..300);
    let result = TestRunner::new_with_rng(config, rng).run(&inputs, |data| {
        check(&data, &format!("random input {data:02x?}"));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let acted = acted_in.into_inner();
    // Shown with --nocapture: how much of the evidence exercised the rule.
    println!(
        "{} acted in {acted} of {} runs, none lost silently",
        rule.name(),
        runs.into_inner()
    );
    acted
}

/// The run differs from the same input under fixed (trace or totals).
fn differs(with_rule: &RunReport, fixed: &RunReport) -> bool {
    with_rule.trace_hash != fixed.trace_hash || with_rule.summary != fixed.summary
}

/// L1 (`available()` copies from one received packet per call) only changes how many bytes one
/// call moves out of the stack: it discards nothing. Bytes it leaves stay in the stack, where
/// F2's `connected()` counts them (so the application keeps reading) and F5's `stop()` resets
/// if the application gives up before reading them.
#[test]
fn l1_alone_cannot_lose_data() {
    let acted = never_loses_alone(LegacyRule::L1, differs);
    assert!(acted > 0, "L1 changed no run: the test proves nothing");
}

/// L2 (`connected()` = `status() || bufferCount() > 0`, probing `available()` once) turns false
/// only when the peer closed, the Wiring buffer is empty, and the probe found nothing: under F7
/// the probe copies whatever the stack holds (up to the buffer's size), so it returns 0 only
/// when nothing is unread anywhere, and the `stop()` that follows discards nothing. (Its harm
/// in the field is the probe's side effect under L3: it triggers the free.)
#[test]
fn l2_alone_cannot_lose_data() {
    let acted = never_loses_alone(LegacyRule::L2, differs);
    assert!(acted > 0, "L2 changed no run: the test proves nothing");
}

/// L3 (the peer's FIN frees an accepted socket's unread stack data) discards data, but the HAL
/// closes that socket by F5's rule: RST when anything was unread, so the peer sees a reset
/// (visible, not silent). The Wiring buffer is not freed and stays readable (F2 counts it).
/// Losing silently takes L3 with L7 together: the field bug.
#[test]
fn l3_alone_cannot_lose_data() {
    let freed = |r: &RunReport, _: &RunReport| {
        device_saw(
            r,
            |e| matches!(e, DeviceEvent::UnreadDataFreed { bytes, .. } if *bytes > 0),
        )
    };
    let acted = never_loses_alone(LegacyRule::L3, freed);
    assert!(
        acted > 0,
        "L3 never freed unread data: the test proves nothing"
    );
}

/// L4 (a connection closed while in the accept queue is handed out dead, its data freed) goes
/// through the same close as L3: RST when anything was unread. The application still accepts
/// the connection, so it is not "never accepted" either.
#[test]
fn l4_alone_cannot_lose_data() {
    let freed_queued = |r: &RunReport, _: &RunReport| {
        device_saw(
            r,
            |e| matches!(e, DeviceEvent::MarkedClosed { while_queued, .. } if *while_queued),
        ) && device_saw(
            r,
            |e| matches!(e, DeviceEvent::UnreadDataFreed { bytes, .. } if *bytes > 0),
        )
    };
    let acted = never_loses_alone(LegacyRule::L4, freed_queued);
    assert!(
        acted > 0,
        "L4 never freed a queued connection's data: the test proves nothing"
    );
}

/// L5 (a SYN beyond the backlog is dropped silently) acts before the handshake: the peer holds
/// no acknowledged byte and no completed connection, only a SYN it retransmits, until it gets
/// in or its connect fails (visible). A retransmitted SYN of a handshake already in progress is
/// answered by that handshake's socket, never dropped.
#[test]
fn l5_alone_cannot_lose_data() {
    let dropped = |r: &RunReport, _: &RunReport| {
        device_saw(r, |e| matches!(e, DeviceEvent::SynDropped { .. }))
    };
    let acted = never_loses_alone(LegacyRule::L5, dropped);
    assert!(acted > 0, "L5 never dropped a SYN: the test proves nothing");
}

/// L6 (a closed connection keeps its pool slot through TIME-WAIT) holds only slots of sockets
/// the application already closed. A full pool then makes a new SYN reclaim such a slot (RST to
/// that finished connection) or, with none to reclaim, the stack answers the SYN with RST (no
/// socket listens): no connection is accepted by the stack and then left unserved.
#[test]
fn l6_alone_cannot_lose_data() {
    let acted = never_loses_alone(LegacyRule::L6, differs);
    assert!(acted > 0, "L6 changed no run: the test proves nothing");
}

/// The counterpart, so the tests above are not blind: L7 alone does lose data (the oracle sees
/// it through the same body), on the input `fuzz/bug-examples/scenario_rule/L7-*` that
/// `scenario_rule` found in about a second.
#[test]
fn l7_alone_loses_data_on_a_committed_input() {
    let losing = committed_inputs().into_iter().any(|(_, data)| {
        matches!(
            RuleChoice::One(LegacyRule::L7).run(&data),
            ScenarioOutcome::SilentLoss { .. }
        )
    });
    assert!(losing, "no committed input loses under L7 alone");
}
