#![no_main]
// The body lives in sim::fuzz::scenario_rule so that `cargo test` replays it on stable. The rule
// comes from FWSIM_FUZZ_RULE, read once: a bad value ends the process before any input runs (a
// panic would be taken for a finding).
use std::sync::OnceLock;

use sim::fuzz::RuleChoice;

static RULE: OnceLock<RuleChoice> = OnceLock::new();

libfuzzer_sys::fuzz_target!(
    init: {
        match RuleChoice::from_env() {
            Ok(rule) => {
                let _ = RULE.set(rule);
            }
            Err(e) => {
                eprintln!("scenario_rule: {e}");
                std::process::exit(2);
            }
        }
    },
    |data: &[u8]| {
        if let Some(&rule) = RULE.get() {
            sim::fuzz::scenario_rule(data, rule);
        }
    }
);
