//! Replays every committed fuzz input on stable: the seed corpora in `fuzz/corpus/TARGET/` and
//! the crash files kept as regressions in `fuzz/regressions/TARGET/`, through the same bodies the
//! cargo-fuzz targets call (`sim::fuzz`).

use std::fs;
use std::path::{Path, PathBuf};

use sim::fuzz::{self, ScenarioOutcome};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.is_file() {
                let data = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((p, data));
            }
        }
    }
    out
}

fn replay(target: &str, body: fn(&[u8])) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no committed inputs for {target}");
    for (path, data) in all {
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(
            result.is_ok(),
            "{} fails; reproduce with: cd fuzz && cargo fuzz run -s none {target} {}",
            path.display(),
            path.display()
        );
    }
}

#[test]
fn scenario_corpus_loses_nothing_under_fixed() {
    replay("scenario", fuzz::scenario);
}

/// Liveness under the fixed rules: across the scenario corpus, connections reach verdicts and
/// none stalls (no progress for the fuzz's `liveness_ms` while waiting on the device).
#[test]
fn scenario_corpus_never_stalls_under_fixed() {
    let (mut tested, mut runs) = (0, 0);
    for (path, data) in inputs("scenario") {
        match fuzz::run_scenario(&data, "fixed") {
            ScenarioOutcome::Clean(s) => {
                tested += s.tested();
                runs += 1;
            }
            ScenarioOutcome::Rejected => {}
            other => panic!("{} fails under fixed: {other:?}", path.display()),
        }
    }
    assert!(
        runs > 0 && tested > 0,
        "{runs} runs, {tested} connections tested"
    );
}

#[test]
fn ingress_corpus_never_panics() {
    replay("ingress", fuzz::ingress);
}

#[test]
fn wiring_ops_corpus_keeps_byte_order() {
    replay("wiring_ops", fuzz::wiring_ops);
}

#[test]
fn scenario_file_corpus_never_panics() {
    replay("scenario_file", fuzz::scenario_file);
}

/// The legacy target's seeds are clean under the legacy rules (so finding the bug takes a
/// search), while the forum seeds, left out of it, do show the field bug.
#[test]
fn legacy_seeds_are_clean_and_forum_inputs_lose() {
    for (path, data) in inputs("scenario_legacy") {
        assert!(
            matches!(
                fuzz::run_scenario(&data, "legacy"),
                ScenarioOutcome::Clean(_)
            ),
            "{} loses under legacy: regenerate with `cargo run -p sim --example gen_corpus`",
            path.display()
        );
    }
    let forum: Vec<_> = inputs("scenario")
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("forum-nc"))
        })
        .collect();
    assert!(!forum.is_empty());
    for (path, data) in forum {
        assert!(
            matches!(
                fuzz::run_scenario(&data, "legacy"),
                ScenarioOutcome::SilentLoss { .. }
            ),
            "{} should lose under legacy",
            path.display()
        );
    }
}

/// `scenario_legacy` crashes kept by `fwsim from-crash` are examples of the field bug, not
/// regressions: each loses under the legacy rules and nothing under the fixed ones.
#[test]
fn legacy_bug_examples_lose_under_legacy_not_under_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/bug-examples/scenario_legacy");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        assert!(
            matches!(
                fuzz::run_scenario(&data, "legacy"),
                ScenarioOutcome::SilentLoss { .. }
            ),
            "{} no longer shows the bug under legacy",
            path.display()
        );
        assert!(
            matches!(
                fuzz::run_scenario(&data, "fixed"),
                ScenarioOutcome::Clean(_)
            ),
            "{} loses under fixed",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "no example in {}", dir.display());
}

/// `fwsim from-crash` writes the scenario an input stands for: running that file gives the
/// same verdict as the fuzz body did.
#[test]
fn crash_inputs_convert_to_equivalent_scenario_files() {
    for (path, data) in inputs("scenario").into_iter().take(8) {
        for policy in ["legacy", "fixed"] {
            let toml = fuzz::input_to_toml(&data, policy).unwrap();
            let config = sim::scenario::parse("crash.toml", &toml, &[]).unwrap();
            let from_file = sim::run(&config, sim::RunOptions::default()).unwrap();
            let direct = match fuzz::run_scenario(&data, policy) {
                ScenarioOutcome::Clean(s)
                | ScenarioOutcome::SilentLoss { summary: s, .. }
                | ScenarioOutcome::Stalled { summary: s, .. } => s,
                ScenarioOutcome::Rejected => panic!("{} rejected", path.display()),
            };
            assert_eq!(
                from_file.summary,
                direct,
                "{} under {policy}",
                path.display()
            );
        }
    }
}
