//! One legacy rule switched on over the fixed rules: the body of the `scenario_rule` target,
//! which `fuzz/time_to_bug.sh` times rule by rule (how fast fuzzing finds each way of losing
//! data), and which the tests use to show that a rule cannot lose data on its own.

use firmware_core::{ConnectedRule, Policy, RxCopy, StopWithUnread, SynOverflow};

use super::{run_scenario_with, ScenarioOutcome};

/// The environment variable that chooses the rules of the `scenario_rule` target (`L1`..`L7`
/// or `legacy`); the target reads it once, at start-up.
pub const RULE_ENV: &str = "FWSIM_FUZZ_RULE";

/// One rule of the legacy model (`legacy-model.md`), named as there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyRule {
    /// `available()` copies from one received packet per call (F7: drain all).
    L1,
    /// `connected()` is `status() || bufferCount() > 0`, probing `available()` once (F2).
    L2,
    /// The peer's FIN frees an accepted socket's unread data (F1: it stays readable).
    L3,
    /// A connection closed while queued is handed out dead, its data freed (F3).
    L4,
    /// A SYN beyond the backlog is dropped silently (F4: refused with RST).
    L5,
    /// A closed connection keeps its pool slot through TIME-WAIT (F8: freed at once).
    L6,
    /// `stop()` with unread data sends FIN (F5: RST), and late data is acknowledged.
    L7,
}

impl LegacyRule {
    /// Every rule, in order.
    pub const ALL: [LegacyRule; 7] = [
        LegacyRule::L1,
        LegacyRule::L2,
        LegacyRule::L3,
        LegacyRule::L4,
        LegacyRule::L5,
        LegacyRule::L6,
        LegacyRule::L7,
    ];

    /// `"L1"`..`"L7"`.
    pub fn name(self) -> &'static str {
        ["L1", "L2", "L3", "L4", "L5", "L6", "L7"][self as usize]
    }

    /// [`Policy::FIXED`] with this rule's field set as [`Policy::LEGACY`] has it.
    pub fn policy(self) -> Policy {
        let mut p = Policy::FIXED;
        // Spelled out rather than copied from LEGACY field by field, so that a new field in
        // `Policy` cannot silently join a rule here.
        match self {
            LegacyRule::L1 => p.rx_copy = RxCopy::OnePacketPerCall,
            LegacyRule::L2 => p.connected_rule = ConnectedRule::StatusOrBuffered,
            LegacyRule::L3 => p.fin_frees_unread_data = true,
            LegacyRule::L4 => p.accept_hands_out_dead = true,
            LegacyRule::L5 => p.syn_overflow = SynOverflow::DropSilently,
            LegacyRule::L6 => p.time_wait_holds_slot = true,
            LegacyRule::L7 => p.stop_with_unread = StopWithUnread::Fin,
        }
        p
    }
}

/// The rules a `scenario_rule` run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleChoice {
    /// The fixed scenario (its device knobs too) with one legacy rule switched on.
    One(LegacyRule),
    /// The legacy preset with its device knobs: exactly what `scenario_legacy` runs, as the
    /// benchmark's reference.
    Legacy,
}

impl RuleChoice {
    /// Every choice: each rule alone, then the legacy preset.
    pub fn all() -> impl Iterator<Item = RuleChoice> {
        LegacyRule::ALL
            .into_iter()
            .map(RuleChoice::One)
            .chain([RuleChoice::Legacy])
    }

    /// `"L1"`..`"L7"` or `"legacy"`.
    pub fn name(self) -> &'static str {
        match self {
            RuleChoice::One(rule) => rule.name(),
            RuleChoice::Legacy => "legacy",
        }
    }

    /// The choice called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<RuleChoice> {
        RuleChoice::all().find(|c| c.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The choice [`RULE_ENV`] names, or why there is none.
    pub fn from_env() -> Result<RuleChoice, String> {
        let names: Vec<&str> = RuleChoice::all().map(RuleChoice::name).collect();
        let value = std::env::var(RULE_ENV)
            .map_err(|_| format!("set {RULE_ENV} to one of {}", names.join(", ")))?;
        RuleChoice::from_name(&value).ok_or_else(|| {
            format!(
                "{RULE_ENV}={value:?} names no rule; one of {}",
                names.join(", ")
            )
        })
    }

    /// The scenario policy (device knobs) and the socket rules that replace its rules.
    pub fn policy(self) -> (&'static str, Option<Policy>) {
        match self {
            RuleChoice::One(rule) => ("fixed", Some(rule.policy())),
            RuleChoice::Legacy => ("legacy", None),
        }
    }

    /// Runs the scenario `data` stands for under these rules.
    pub fn run(self, data: &[u8]) -> ScenarioOutcome {
        let (policy, rules) = self.policy();
        run_scenario_with(data, policy, rules)
    }
}

/// The `scenario_rule` target: a silent loss under `rule` is the finding (the time-to-bug
/// benchmark times how long the fuzzer takes to make one).
pub fn scenario_rule(data: &[u8], rule: RuleChoice) {
    if let ScenarioOutcome::SilentLoss { summary, toml } = rule.run(data) {
        let how = match rule {
            RuleChoice::One(r) => format!(
                "fixed with legacy rule {} switched on (the file runs under fixed; replay the \
                 input with {RULE_ENV}={})",
                r.name(),
                r.name()
            ),
            RuleChoice::Legacy => "legacy".into(),
        };
        panic!("silent loss under {how}: {summary:?}\nscenario:\n{toml}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_differs_from_fixed_in_one_field_towards_legacy() {
        for rule in LegacyRule::ALL {
            let p = rule.policy();
            assert_ne!(p, Policy::FIXED, "{rule:?}");
            // Switching the same rule on over legacy changes nothing: the field is legacy's.
            let fields = |q: &Policy| {
                [
                    q.rx_copy == Policy::LEGACY.rx_copy,
                    q.connected_rule == Policy::LEGACY.connected_rule,
                    q.fin_frees_unread_data == Policy::LEGACY.fin_frees_unread_data,
                    q.accept_hands_out_dead == Policy::LEGACY.accept_hands_out_dead,
                    q.syn_overflow == Policy::LEGACY.syn_overflow,
                    q.time_wait_holds_slot == Policy::LEGACY.time_wait_holds_slot,
                    q.stop_with_unread == Policy::LEGACY.stop_with_unread,
                ]
            };
            let legacy_fields: Vec<usize> = (0..7).filter(|&i| fields(&p)[i]).collect();
            assert_eq!(legacy_fields, vec![rule as usize], "{rule:?}");
        }
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for choice in RuleChoice::all() {
            assert_eq!(RuleChoice::from_name(choice.name()), Some(choice));
        }
        assert_eq!(
            RuleChoice::from_name("l3"),
            Some(RuleChoice::One(LegacyRule::L3))
        );
        assert_eq!(RuleChoice::from_name("L8"), None);
        assert_eq!(RuleChoice::from_name(""), None);
        assert_eq!(RuleChoice::all().count(), 8);
    }
}
