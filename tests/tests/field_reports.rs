//! The field-report library (`scenarios/field/`): each report from another embedded stack, run
//! over 50 seeds under its stack's buggy preset, shows the failure the field saw; under the
//! fixed rules it loses nothing. Replay one seed with `FWSIM_SEED=N cargo test -p fwsim-tests
//! --test field_reports NAME`.

use std::collections::HashMap;

use sim::oracle::ConnReport;
use sim::peer::PeerEvent;
use sim::scenario::PolicyName;
use sim::{ObservedEvent, RunOptions, Sim, SweepReport, Verdict};

const SEEDS: std::ops::RangeInclusive<u64> = 1..=50;

fn scenario(name: &str) -> Sim {
    let path = format!(
        "{}/../scenarios/field/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    Sim::from_file(path).expect("the field scenario loads")
}

/// A sweep of `name` under `policy` over the 50 seeds, with `sets` applied.
fn sweep(name: &str, policy: PolicyName, sets: &[&str]) -> SweepReport {
    let mut sim = scenario(name).policy(policy);
    for set in sets {
        sim = sim.set(set).expect("a valid change");
    }
    sim.sweep(SEEDS).expect("the sweep runs")
}

fn rows(report: &SweepReport) -> impl Iterator<Item = &ConnReport> {
    report.runs.iter().flat_map(|r| r.rows.iter())
}

fn count(report: &SweepReport, verdict: Verdict) -> usize {
    rows(report).filter(|r| r.verdict == verdict).count()
}

/// esp8266/Arduino #2569: data and FIN before the sketch polls `server.available()` vanish
/// (R3: acknowledged, freed, the FIN answered by a close); a connection taken before its FIN
/// has the FIN answered with RST (R5), though the data is kept.
#[test]
fn esp8266_2569_data_vanishes_before_the_poll() {
    let buggy = sweep("esp8266-2569", PolicyName::Esp8266Arduino26, &[]);
    let never = count(&buggy, Verdict::NeverAccepted);
    assert!(
        never * 10 >= buggy.tested() as usize * 8,
        "most connections close before the 100 ms poll: {never} of {}",
        buggy.tested()
    );
    let reset_after_poll = rows(&buggy).filter(|r| r.device.accepted && r.reset_seen);
    assert!(
        reset_after_poll.count() > 0,
        "R5: a taken connection's FIN gets an RST"
    );
    sweep("esp8266-2569", PolicyName::Fixed, &[]).assert_no_silent_loss();
}

/// esp8266/Arduino #6701: `while (c.connected())` stops at the first check after the FIN; the
/// bytes received but not yet consumed are lost, every time the consumer is slower than the
/// sender.
#[test]
fn esp8266_6701_connected_loop_loses_the_tail() {
    let buggy = sweep("esp8266-6701", PolicyName::Esp8266Arduino27, &[]);
    for r in rows(&buggy) {
        assert_eq!(r.verdict, Verdict::DataSilentlyLost, "{r:?}");
        assert!(
            r.device.bytes_read > 0 && r.device.bytes_read < 2048,
            "{r:?}"
        );
    }
    sweep("esp8266-6701", PolicyName::Fixed, &[]).assert_no_silent_loss();
}

/// espressif/arduino-esp32 #8042: three clients at once, served one at a time; the second and
/// third are dequeued after their FIN, `if (client)` is false, their data is never read.
#[test]
fn esp32_8042_only_the_first_client_is_processed() {
    let buggy = sweep("esp32-8042", PolicyName::Esp32Arduino20, &[]);
    let lost = count(&buggy, Verdict::NeverAccepted) + count(&buggy, Verdict::DataSilentlyLost);
    let tested = buggy.tested() as usize;
    assert!(
        lost * 2 >= tested,
        "clients 2-3 of each burst: {lost} of {tested}"
    );
    assert!(
        count(&buggy, Verdict::Delivered) > 0,
        "the first one is served"
    );
    sweep("esp32-8042", PolicyName::Fixed, &[]).assert_no_silent_loss();
}

/// particle-iot/device-os #896: the remote-close notice overtakes the reader; the bytes still
/// in the modem are never returned. The reader got the first part, not the last.
#[test]
fn electron_896_the_last_chunk_is_dropped() {
    let buggy = sweep("electron-896", PolicyName::Electron05, &[]);
    let lost: Vec<&ConnReport> = rows(&buggy)
        .filter(|r| r.verdict == Verdict::DataSilentlyLost)
        .collect();
    let truncated = lost.iter().filter(|r| r.device.bytes_read > 0).count();
    assert!(
        truncated * 2 > lost.len(),
        "mostly the first part arrives, the tail does not: {truncated} of {}",
        lost.len()
    );
    sweep("electron-896", PolicyName::Fixed, &[]).assert_no_silent_loss();
}

/// particle-iot/device-os #660: six clients at once against a serial server on the Photon:
/// some messages are handled, others lost without a trace, some peers time out.
#[test]
fn photon_660_simultaneous_clients_lose_messages() {
    let buggy = sweep("photon-660", PolicyName::Photon04, &[]);
    assert!(buggy.violations() > 0);
    assert!(count(&buggy, Verdict::Delivered) > 0);
    assert!(
        count(&buggy, Verdict::RefusedVisibly) > 0,
        "some peers time out"
    );
    // PR #1350's pool of 10, and a backlog that holds the burst.
    let fixed = sweep("photon-660", PolicyName::Fixed, &["device.backlog=9"]);
    fixed.assert_no_silent_loss();
    assert_eq!(count(&fixed, Verdict::Delivered), fixed.tested() as usize);
}

/// smoltcp-rs/smoltcp #111: a FIN that overtakes data moves the socket to CLOSE-WAIT; the
/// reader gets the first segment, then end of stream.
#[test]
fn smoltcp_111_fin_past_a_hole_ends_the_stream_early() {
    let buggy = sweep("smoltcp-111", PolicyName::Smoltcp04, &[]);
    let lost: Vec<&ConnReport> = rows(&buggy).filter(|r| r.verdict.is_violation()).collect();
    assert!(!lost.is_empty());
    for r in lost {
        assert!(r.device.bytes_read < r.bytes_sent, "{r:?}");
        assert!(
            r.device.app_disconnected,
            "the reader saw end of stream: {r:?}"
        );
    }
    let fixed = sweep("smoltcp-111", PolicyName::Fixed, &[]);
    fixed.assert_no_silent_loss();
    assert_eq!(count(&fixed, Verdict::Delivered), fixed.tested() as usize);
}

/// Each connection's handshake time (the peer's connect to established, in microseconds) by
/// seed and peer port, and the runs.
fn handshake_times(sim: &Sim) -> (HashMap<(u64, u16), i64>, SweepReport) {
    let mut times = HashMap::new();
    let mut runs = Vec::new();
    for seed in sim::seeds_from_env(SEEDS.collect()) {
        let options = RunOptions {
            keep_events: true,
            ..RunOptions::default()
        };
        let report = sim.clone().seed(seed).run_with(options).expect("runs");
        let mut opened = HashMap::new();
        for e in report.events.iter().flatten() {
            match &e.event {
                ObservedEvent::Peer(PeerEvent::Opened { port, .. }) => {
                    opened.insert(*port, e.at_us);
                }
                ObservedEvent::Peer(PeerEvent::Established { port }) => {
                    if let Some(t) = opened.get(port) {
                        times.insert((seed, *port), e.at_us - t);
                    }
                }
                _ => {}
            }
        }
        runs.push(report);
    }
    (times, SweepReport { runs })
}

/// OpenBK7231T_App PR #2191: with a backlog of 1, SYNs of a browser's parallel connections are
/// dropped without answer; nothing is lost silently, but each such connection waits for the
/// SYN retransmission (1 s, then 2 s, ...). With the PR's backlog every handshake takes one
/// round trip.
#[test]
fn bk72xx_2191_dropped_syns_add_a_second() {
    let sim = scenario("bk72xx-2191").policy(PolicyName::Bk72xxBacklog0);
    let (times, buggy) = handshake_times(&sim);
    buggy.assert_no_silent_loss();
    let mut delayed = 0;
    for run in &buggy.runs {
        for r in run
            .rows
            .iter()
            .filter(|r| r.device.syn_dropped > 0 && r.established)
        {
            let t = times[&(run.seed, r.peer_port)];
            assert!(
                t >= 1_000_000,
                "a dropped SYN costs its retransmission: {t} us"
            );
            delayed += 1;
        }
    }
    assert!(delayed > 0, "some SYNs find the backlog full");
    let fixed = scenario("bk72xx-2191")
        .policy(PolicyName::Fixed)
        .set("device.backlog=9")
        .unwrap();
    let (times, fixed) = handshake_times(&fixed);
    fixed.assert_no_silent_loss();
    assert!(rows(&fixed).all(|r| r.device.syn_dropped == 0));
    assert!(
        times.values().all(|t| *t < 20_000),
        "one round trip (5 ms): {times:?}"
    );
}
