//! Properties over generated scenarios (proptest). Case counts: `PROPTEST_CASES=N`.
//! A failure prints the shrunk input; replay it through `sim::fuzz::run_scenario`.

use firmware_core::Policy;
use fwsim_tests::load;
use proptest::prelude::*;
use sim::fuzz::{run_scenario, ScenarioOutcome, MIN_SCENARIO_INPUT};
use sim::RunOptions;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The fixed rules never lose silently, whatever the peers, links and loop timing
    /// (inputs decode like the `scenario` fuzz target's).
    #[test]
    fn fixed_never_loses_silently(data in proptest::collection::vec(any::<u8>(), MIN_SCENARIO_INPUT..400)) {
        match run_scenario(&data, "fixed") {
            ScenarioOutcome::SilentLoss { summary, toml } => {
                prop_assert!(false, "silent loss under fixed: {summary:?}\n{toml}");
            }
            ScenarioOutcome::Clean(_) | ScenarioOutcome::Rejected => {}
        }
    }

    /// FIN-before-drain injector: data and FIN reach the device, the worker thread flags the
    /// socket, and the forum sketch only reads one loop iteration after accepting, which is
    /// longer than the worst FIN-plus-worker delay. Under the legacy rules every connection
    /// loses its data, and the oracle must report every one (its sensitivity, tested).
    #[test]
    fn legacy_fin_before_drain_is_always_detected(
        payload_len in 1usize..200,
        close_delay_us in 0u64..300,
        loop_period_us in 1500u64..5000,
        count in 1u32..5,
        interval_ms in 50u64..500,
        seed in any::<u64>(),
    ) {
        let payload: String = (0..payload_len).map(|i| format!("{:02x}", i as u8)).collect();
        let sets = [
            "link.preset=ideal".to_string(),
            format!("peer.0.payload_hex={payload}"),
            format!("peer.0.close_delay_us={close_delay_us}"),
            format!("device.loop_period_us={loop_period_us}"),
            format!("peer.0.count={count}"),
            format!("peer.0.interval_ms={interval_ms}"),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let mut c = load("forum", &sets);
        c.seed = seed;
        let r = sim::run(&c, RunOptions::default()).unwrap();
        prop_assert_eq!(r.summary.connections, u64::from(count));
        prop_assert_eq!(r.summary.silently_lost, u64::from(count), "{:?}", r.rows);
    }
}

/// The fixes that prevent the field bug work together: F1 keeps data read after the FIN, F3
/// keeps data of connections closed while queued, and F5 makes any loss left visible (RST
/// before the delayed ACK). Switching F1 or F3 back together with F5 brings silent loss back,
/// so the properties above can fail; F1 alone turns loss into visible resets.
#[test]
fn disabling_fixes_brings_the_loss_back() {
    use firmware_core::StopWithUnread;
    let fixed = load("forum", &["device.policy=fixed", "peer.0.count=10"]);
    let run = |policy: Policy| {
        let mut c = fixed.clone();
        c.policy = policy;
        sim::run(&c, RunOptions::default()).unwrap().summary
    };
    assert_eq!(run(Policy::FIXED).violations(), 0);
    let legacy_stop = StopWithUnread::Fin;
    for (rule, policy) in [
        (
            "F1 and F5",
            Policy {
                fin_frees_unread_data: true,
                stop_with_unread: legacy_stop,
                ..Policy::FIXED
            },
        ),
        (
            "F3 and F5",
            Policy {
                accept_hands_out_dead: true,
                stop_with_unread: legacy_stop,
                ..Policy::FIXED
            },
        ),
    ] {
        let s = run(policy);
        assert!(
            s.violations() > 0,
            "{rule} switched back should lose silently: {s:?}"
        );
    }
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
