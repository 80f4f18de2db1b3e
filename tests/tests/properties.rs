//! Properties over generated scenarios (proptest). Case counts: `PROPTEST_CASES=N`.
//! A failure prints the shrunk input; replay it through `sim::fuzz::run_scenario`.

use firmware_core::Policy;
use fwsim_tests::{load, sim_of};
use proptest::prelude::*;
use sim::fuzz::{run_scenario, ScenarioOutcome, MIN_SCENARIO_INPUT};
use sim::scenario::Injector;
use sim::RunOptions;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The fixed rules never lose silently and never stall, whatever the peers, links and
    /// loop timing (inputs decode like the `scenario` fuzz target's).
    #[test]
    fn fixed_never_loses_silently_nor_stalls(data in proptest::collection::vec(any::<u8>(), MIN_SCENARIO_INPUT..400)) {
        match run_scenario(&data, "fixed") {
            ScenarioOutcome::SilentLoss { summary, toml } => {
                prop_assert!(false, "silent loss under fixed: {summary:?}\n{toml}");
            }
            ScenarioOutcome::Stalled { summary, toml } => {
                prop_assert!(false, "a stall under fixed: {summary:?}\n{toml}");
            }
            ScenarioOutcome::Clean(_) | ScenarioOutcome::Rejected => {}
        }
    }

    /// The `fin-before-drain` injector on the forum sketch: the application loop stalls when the
    /// FIN arrives, longer than the worker thread's notice. Under the legacy rules the oracle
    /// must flag every connection whose FIN came before the application drained it (ground
    /// truth from the device, which the oracle's verdicts do not use): its sensitivity, tested.
    #[test]
    fn legacy_fin_before_drain_is_always_detected(
        payload_len in 1usize..200,
        close_delay_us in 0u64..300,
        loop_period_us in 200u64..5000,
        count in 1u32..5,
        interval_ms in 50u64..500,
        preset in prop::sample::select(vec!["ideal", "wlan-good"]),
        seed in any::<u64>(),
    ) {
        let payload: String = (0..payload_len).map(|i| format!("{:02x}", i as u8)).collect();
        let sets = [
            format!("link.preset={preset}"),
            format!("peer.0.payload_hex={payload}"),
            format!("peer.0.close_delay_us={close_delay_us}"),
            format!("device.loop_period_us={loop_period_us}"),
            format!("peer.0.count={count}"),
            format!("peer.0.interval_ms={interval_ms}"),
            "inject+=\"fin-before-drain\"".to_string(),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let mut c = load("forum", &sets);
        c.seed = seed;
        let r = sim::run(&c, RunOptions::default()).unwrap();
        // (How often the injector makes the situation is tested in `injectors.rs`: with a
        // fast loop on a jittery link the application can drain before the FIN comes.)
        // Ground truth: the device freed bytes the peer saw acknowledged, or never handed out
        // a connection whose handshake completed. (A FIN before the drain alone is not a loss:
        // the application may still read everything before the worker thread's notice.)
        let discarded = |row: &&sim::oracle::ConnReport| {
            row.device.bytes_freed_unread > 0 || (row.established && !row.device.accepted)
        };
        for row in r.rows.iter().filter(discarded) {
            let visible = row.reset_seen || row.peer_gave_up;
            prop_assert!(visible || row.verdict.is_violation(), "{:?}", row);
        }
    }

    /// Every injector, alone or combined, on every app and preset: the fixed rules never lose
    /// silently.
    #[test]
    fn fixed_never_loses_under_injectors(
        mask in 1u8..64,
        app in prop::sample::select(vec!["forum", "multi-client", "server-closes"]),
        preset in prop::sample::select(vec!["ideal", "wlan-good", "wlan-busy", "wlan-bad"]),
        seed in any::<u64>(),
    ) {
        let mut sets = vec![
            format!("link.preset={preset}"),
            "device.policy=fixed".to_string(),
            "peer.0.count=4".to_string(),
            "peer.0.interval_ms=300".to_string(),
        ];
        sets.extend(Injector::from_mask(mask).iter().map(|i| format!("inject+=\"{i}\"")));
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let mut c = load(app, &sets);
        c.seed = seed;
        let r = sim::run(&c, RunOptions::default()).unwrap();
        prop_assert_eq!(r.summary.violations(), 0, "{:?}", r.rows);
    }
}

/// The fixes that prevent the field bug work together: F1 keeps data read after the FIN, F3
/// keeps data of connections closed while queued, and F5 makes any loss left visible (RST
/// before the delayed ACK). Switching F1 or F3 back together with F5 brings silent loss back,
/// so the properties above can fail; F1 alone turns loss into visible resets.
#[test]
fn disabling_fixes_brings_the_loss_back() {
    use firmware_core::StopWithUnread;
    // Each rule's situation made certain by its injector: the FIN before the drain (F1), and
    // data and FIN before the accept (F3).
    let forum = |inject: &str| {
        sim_of(
            "forum",
            &[
                "device.policy=fixed",
                "peer.0.count=10",
                &format!("inject+=\"{inject}\""),
            ],
        )
    };
    let run = |inject: &str, policy: Policy| forum(inject).rules(policy).run().unwrap().summary;
    let legacy_stop = StopWithUnread::Fin;
    for (rule, inject, policy) in [
        (
            "F1 and F5",
            "fin-before-drain",
            Policy {
                fin_frees_unread_data: true,
                stop_with_unread: legacy_stop,
                ..Policy::FIXED
            },
        ),
        (
            "F3 and F5",
            "data-fin-before-accept",
            Policy {
                accept_hands_out_dead: true,
                stop_with_unread: legacy_stop,
                ..Policy::FIXED
            },
        ),
    ] {
        assert_eq!(run(inject, Policy::FIXED).violations(), 0, "{inject}");
        let s = run(inject, policy);
        assert!(
            s.violations() > 0,
            "{rule} switched back should lose silently: {s:?}"
        );
    }
    let run = |policy: Policy| run("fin-before-drain", policy);
    let f1_only = run(Policy {
        fin_frees_unread_data: true,
        ..Policy::FIXED
    });
    assert_eq!(
        f1_only.violations(),
        0,
        "F5 keeps the loss visible: {f1_only:?}"
    );
}
