//! `[device.rules]`: single socket rules switched away from the stack preset's value, by the
//! name of the [`Policy`] field (`fin_past_hole_accepted = true`,
//! `connected_rule = "open-only"`). Unknown names and values fail when the file loads.

use firmware_core::{
    ConnectedRule, EofRule, Policy, PoolOverflow, RxCopy, StopWithUnread, SynOverflow,
};
use serde::{Deserialize, Serialize};

/// Rules a scenario switches on top of its preset; a rule left out keeps the preset's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverrides {
    /// L1 / F7: `one-packet-per-call` or `drain-all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_copy: Option<RxCopy>,
    /// L2 / F2 / R2: `status-or-buffered`, `any-unread-data` or `open-only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_rule: Option<ConnectedRule>,
    /// L3 / F1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin_frees_unread_data: Option<bool>,
    /// L4 / F3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_hands_out_dead: Option<bool>,
    /// L5 / F4 (R9): `drop-silently` or `reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_overflow: Option<SynOverflow>,
    /// L6 / F8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_wait_holds_slot: Option<bool>,
    /// L7 / F5: `fin` or `rst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_with_unread: Option<StopWithUnread>,
    /// F6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_after_peer_fin: Option<bool>,
    /// R1 / R6: `after-data`, `at-peer-fin` or `at-close-notice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eof_rule: Option<EofRule>,
    /// R3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_accept_data_discarded: Option<bool>,
    /// R5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin_answered_with_rst: Option<bool>,
    /// R7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin_past_hole_accepted: Option<bool>,
    /// R8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_frees_unread_data: Option<bool>,
    /// R10: `refuse` or `evict-oldest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_overflow: Option<PoolOverflow>,
}

impl RuleOverrides {
    /// `base` with every rule this table names switched.
    pub fn apply(&self, base: Policy) -> Policy {
        let mut p = base;
        let o = self;
        p.rx_copy = o.rx_copy.unwrap_or(p.rx_copy);
        p.connected_rule = o.connected_rule.unwrap_or(p.connected_rule);
        p.fin_frees_unread_data = o.fin_frees_unread_data.unwrap_or(p.fin_frees_unread_data);
        p.accept_hands_out_dead = o.accept_hands_out_dead.unwrap_or(p.accept_hands_out_dead);
        p.syn_overflow = o.syn_overflow.unwrap_or(p.syn_overflow);
        p.time_wait_holds_slot = o.time_wait_holds_slot.unwrap_or(p.time_wait_holds_slot);
        p.stop_with_unread = o.stop_with_unread.unwrap_or(p.stop_with_unread);
        p.write_after_peer_fin = o.write_after_peer_fin.unwrap_or(p.write_after_peer_fin);
        p.eof_rule = o.eof_rule.unwrap_or(p.eof_rule);
        p.pre_accept_data_discarded = o
            .pre_accept_data_discarded
            .unwrap_or(p.pre_accept_data_discarded);
        p.fin_answered_with_rst = o.fin_answered_with_rst.unwrap_or(p.fin_answered_with_rst);
        p.fin_past_hole_accepted = o.fin_past_hole_accepted.unwrap_or(p.fin_past_hole_accepted);
        p.rst_frees_unread_data = o.rst_frees_unread_data.unwrap_or(p.rst_frees_unread_data);
        p.pool_overflow = o.pool_overflow.unwrap_or(p.pool_overflow);
        p
    }

    /// True when the table switches nothing.
    pub fn is_empty(&self) -> bool {
        *self == RuleOverrides::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_rule_switches_only_that_rule() {
        let o: RuleOverrides = toml::from_str("fin_past_hole_accepted = true").unwrap();
        let p = o.apply(Policy::FIXED);
        assert!(p.fin_past_hole_accepted);
        assert_eq!(
            Policy {
                fin_past_hole_accepted: false,
                ..p
            },
            Policy::FIXED
        );
        let o: RuleOverrides = toml::from_str("connected_rule = \"open-only\"").unwrap();
        assert_eq!(
            o.apply(Policy::FIXED).connected_rule,
            ConnectedRule::OpenOnly
        );
        assert!(RuleOverrides::default().is_empty());
        assert_eq!(
            RuleOverrides::default().apply(Policy::LEGACY),
            Policy::LEGACY
        );
    }

    #[test]
    fn unknown_rules_and_values_fail() {
        let e = toml::from_str::<RuleOverrides>("fin_past_hole = true").unwrap_err();
        assert!(
            e.to_string().contains("unknown field `fin_past_hole`"),
            "{e}"
        );
        let e = toml::from_str::<RuleOverrides>("eof_rule = \"never\"").unwrap_err();
        assert!(e.to_string().contains("never"), "{e}");
    }
}
