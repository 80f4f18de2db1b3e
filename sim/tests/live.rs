//! Live mode against real clients: `fwsim serve` in a private network namespace, the field
//! report's `nc` command and a Python client inside it, their records joined with the
//! device's events through the oracle. Where namespaces or TUN interfaces are unavailable
//! (not root, no /dev/net/tun), each test says "SKIPPED: <reason>" on stderr and returns.

#[path = "live/harness.rs"]
mod harness;

use harness::{
    control, nc_loop, ns_name, python_echo, python_hold, python_many, python_send, say, skipped,
    Netns, Serve,
};
use serde_json::json;
use sim::live::join;
use sim::{Summary, Verdict};

/// The namespace of one live test, or `None` (after saying why) when live tests cannot run.
fn namespace(test: &str) -> Option<Netns> {
    if let Some(reason) = harness::unavailable() {
        skipped(test, &reason);
        return None;
    }
    Some(Netns::create(&ns_name(test)).expect("network namespace"))
}

/// The namespace of a live test that reads captures with tshark, or `None` (after saying why)
/// when it cannot run.
fn namespace_with_tshark(test: &str) -> Option<Netns> {
    let ns = namespace(test)?;
    let tshark = std::process::Command::new("tshark").arg("-v").output();
    if tshark.is_err() {
        skipped(test, "`tshark` is not installed");
        return None;
    }
    Some(ns)
}

/// The report's rows, as counts per verdict, for messages.
fn table(rows: &[sim::oracle::ConnReport]) -> String {
    let s = Summary::of(rows);
    format!(
        "{} connections: {} delivered, {} silently lost, {} never accepted, {} visible",
        s.connections, s.delivered, s.silently_lost, s.never_accepted, s.refused_visible
    )
}

/// Legacy, forum app, 100 `nc` sends at about 10 per second: the data of some is thrown away
/// although `nc` reported success; the oracle counts them from nc's records and the device's
/// events, and `serve`'s own report (the host's side from the wire) agrees.
#[test]
fn legacy_loses_nc_messages_silently() {
    let Some(ns) = namespace("legacy_loses_nc_messages_silently") else {
        return;
    };
    let serve = Serve::start(&ns, "fwl0", &["--app", "forum", "--policy", "legacy"]);
    let records = nc_loop(&ns, 6000, 100, 100);
    let served = serve.stop();
    assert_eq!(records.len(), 100);
    assert_eq!(served.code, Some(1), "silent loss exits 1, as `run` does");
    let rows = join(&records, &served.events).unwrap();
    let s = Summary::of(&rows);
    say(&format!("live legacy, 100 nc sends: {}", table(&rows)));
    assert!(
        s.silently_lost > 0,
        "legacy lost nothing silently: {}",
        table(&rows)
    );
    // Every lost message was acknowledged to nc, which exited 0.
    for r in rows
        .iter()
        .filter(|r| r.verdict == Verdict::DataSilentlyLost)
    {
        assert_eq!(r.bytes_acked, 9);
        assert_eq!(r.device.bytes_read, 0);
    }
    let wire_lost = served.report["silently_lost"].as_u64().unwrap();
    assert!(wire_lost > 0, "serve's report: {}", served.report);
}

/// Legacy, multi-client app, 60 `nc` sends at about 10 per second: both failure shapes of the
/// report's section 2, data freed unread from an accepted client, and a dead client handed
/// out by accept (never accepted). The loop takes 3 ms (a sketch with more work per
/// iteration), which makes both shapes frequent; at the default 1 ms the dead client is
/// rarer (the simulator, same sends, ideal link: 19 lost and 8 never accepted at 1 ms, 37
/// and 22 at 3 ms).
#[test]
fn legacy_multi_client_shows_both_failure_shapes() {
    let Some(ns) = namespace("legacy_multi_client_shows_both_failure_shapes") else {
        return;
    };
    let args = ["--app", "multi-client", "--policy", "legacy"];
    let args = [&args[..], &["--set", "device.loop_period_us=3000"]].concat();
    let serve = Serve::start(&ns, "fwm0", &args);
    let records = nc_loop(&ns, 6000, 60, 100);
    let served = serve.stop();
    assert_eq!(served.code, Some(1));
    let rows = join(&records, &served.events).unwrap();
    let s = Summary::of(&rows);
    say(&format!(
        "live legacy multi-client, 60 nc sends: {}",
        table(&rows)
    ));
    assert!(s.silently_lost > 0, "{}", table(&rows));
    assert!(s.never_accepted > 0, "{}", table(&rows));
}

/// Fixed, forum app: 100 `nc` sends and 50 Python sends at about 10 per second, no loss.
#[test]
fn fixed_loses_nothing_from_nc_or_python() {
    let Some(ns) = namespace("fixed_loses_nothing_from_nc_or_python") else {
        return;
    };
    let serve = Serve::start(&ns, "fwf0", &["--app", "forum", "--policy", "fixed"]);
    let mut records = nc_loop(&ns, 6000, 100, 100);
    records.extend(python_send(&ns, 6000, 50, 100, "68656c6c6f0a"));
    let served = serve.stop();
    assert_eq!(served.code, Some(0));
    let rows = join(&records, &served.events).unwrap();
    let s = Summary::of(&rows);
    say(&format!(
        "live fixed, 100 nc + 50 python sends: {}",
        table(&rows)
    ));
    assert_eq!(s.connections, 150);
    assert_eq!(s.violations(), 0, "{}", table(&rows));
    assert_eq!(s.delivered, 150, "{}", table(&rows));
    // The Python client knew its port and saw the bytes acknowledged.
    assert!(rows[100..]
        .iter()
        .all(|r| r.bytes_acked == 6 && r.peer_port != 0));
    assert_eq!(served.report["silently_lost"], 0, "{}", served.report);
}

/// The issue's long run: fixed, 300 `nc` sends at about 10 per second (about 35 s).
#[test]
#[ignore = "35 s; run with --ignored"]
fn fixed_loses_nothing_over_300_nc_sends() {
    let Some(ns) = namespace("fixed_loses_nothing_over_300_nc_sends") else {
        return;
    };
    let serve = Serve::start(&ns, "fwh0", &["--app", "forum", "--policy", "fixed"]);
    let records = nc_loop(&ns, 6000, 300, 100);
    let served = serve.stop();
    assert_eq!(served.code, Some(0));
    let rows = join(&records, &served.events).unwrap();
    say(&format!("live fixed, 300 nc sends: {}", table(&rows)));
    assert_eq!(rows.len(), 300);
    assert_eq!(Summary::of(&rows).violations(), 0, "{}", table(&rows));
    assert_eq!(Summary::of(&rows).delivered, 300, "{}", table(&rows));
}

/// The vendor's TCP server test app through the control endpoint: an echo server on 1234
/// echoes; five servers run at once on five ports (a sixth is refused, as WICED's limit);
/// stopping one frees its port for a new one; bad requests get the app's `error`.
#[test]
fn control_endpoint_runs_the_vendor_test_servers() {
    let Some(ns) = namespace("control_endpoint_runs_the_vendor_test_servers") else {
        return;
    };
    let url = "http://127.0.0.1:7070/";
    let serve = Serve::start(
        &ns,
        "fwc0",
        &[
            "--app",
            "tcp-server",
            "--policy",
            "fixed",
            "--control",
            "127.0.0.1:7070",
        ],
    );
    let post = |body: serde_json::Value| control(&ns, url, &body.to_string());
    let start = |id: &str, kind: &str, port: u16| {
        post(json!({"cmd": "startServer", "id": id, "type": kind, "port": port}))
    };
    assert_eq!(
        post(json!({"cmd": "getNetworkStatus"})),
        json!({"connected": true, "address": harness::DEVICE})
    );
    assert_eq!(start("echo", "EchoServer", 1234), json!({}));
    let echoed = python_echo(&ns, 1234, "68656c6c6f2c206669726d77617265");
    assert_eq!(
        echoed["echoed_hex"], "68656c6c6f2c206669726d77617265",
        "{echoed}"
    );
    for (i, port) in [2001, 2002, 2003, 2004].into_iter().enumerate() {
        assert_eq!(start(&format!("s{i}"), "EchoServer", port), json!({}));
    }
    for port in [1234, 2001, 2002, 2003, 2004] {
        let hex = format!("{port:04x}");
        assert_eq!(python_echo(&ns, port, &hex)["echoed_hex"], hex.as_str());
    }
    assert_eq!(
        start("s5", "EchoServer", 2005),
        json!({"error": "Unable to start server"})
    );
    assert_eq!(post(json!({"cmd": "stopServer", "id": "s0"})), json!({}));
    let refused = python_echo(&ns, 2001, "00");
    assert_eq!(refused["connected"], false, "{refused}");
    assert_eq!(start("again", "SimpleServer", 2001), json!({}));
    assert_eq!(python_echo(&ns, 2001, "00")["connected"], true);
    assert_eq!(
        start("x", "NoSuchServer", 3000),
        json!({"error": "Unknown server type: NoSuchServer"})
    );
    assert_eq!(
        post(json!({"cmd": "stopServer", "id": "nope"})),
        json!({"error": "Unknown server ID: nope"})
    );
    assert_eq!(
        start("echo", "EchoServer", 3001),
        json!({"error": "Server is already running: echo"})
    );
    let bad = control(&ns, url, "{not json");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed request JSON"),
        "{bad}"
    );
    assert!(
        post(json!({"cmd": "getFreeMemory"}))["bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(post(json!({"cmd": "disconnectFromNetwork"})), json!({}));
    assert_eq!(
        post(json!({"cmd": "getNetworkStatus"})),
        json!({"connected": false})
    );
    assert_eq!(
        post(json!({"cmd": "connectToNetwork"})),
        json!({"address": harness::DEVICE})
    );
    assert_eq!(post(json!({"cmd": "stopServers"})), json!({}));
    assert_eq!(serve.stop().code, Some(0), "the echoes were delivered");
}

/// Bad input exits 2 with an error naming the flag, and leaves no interface behind.
#[test]
fn bad_input_is_an_error_and_leaves_nothing_behind() {
    let Some(ns) = namespace("bad_input_is_an_error_and_leaves_nothing_behind") else {
        return;
    };
    let fwsim = env!("CARGO_BIN_EXE_fwsim");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--tun", "lo"],
            "--tun lo: an interface of that name exists",
        ),
        (
            &["--tun", "bad/name"],
            "--tun \"bad/name\": not an interface name",
        ),
        (
            &["--tun", "fwb0", "--addr", "127.0.0.1/8"],
            "--addr: 127.0.0.1 is already assigned",
        ),
        (
            &["--tun", "fwb0", "--control", "10.0.0.1:80"],
            "--control 10.0.0.1:80: the control endpoint listens on loopback",
        ),
        (
            &["--tun", "fwb0", "--set", "device.loop_period_us=0"],
            "--set 'device.loop_period_us=0': device.loop_period_us: 0 is out of range",
        ),
        (
            &["--tun", "fwb0", "--pcap", "/nonexistent-dir/x.pcap"],
            "--pcap /nonexistent-dir/x.pcap:",
        ),
    ];
    let before = ns.links();
    for (args, needle) in cases {
        let out = ns.command(fwsim).arg("serve").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(ns.links(), before, "{args:?} left an interface behind");
    }
    // Without root: no permission, said so.
    if std::process::Command::new("runuser")
        .arg("--version")
        .output()
        .is_err()
    {
        skipped("serve as nobody", "`runuser` is not available");
        return;
    }
    let out = ns
        .command("runuser")
        .args(["-u", "nobody", "--", fwsim, "serve", "--tun", "fwb1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no permission to create a TUN interface"),
        "{err}"
    );
    assert_eq!(ns.links(), before);
}

/// A live capture opens in tshark and shows the host's FIN reaching the device before the
/// application read the data (the field bug's race; under fixed the data is still read).
#[test]
fn live_pcap_shows_the_fin_before_the_read() {
    let Some(ns) = namespace_with_tshark("live_pcap_shows_the_fin_before_the_read") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("live.pcap");
    let pcap_arg = pcap.to_str().unwrap();
    let serve = Serve::start(&ns, "fwp0", &["--policy", "fixed", "--pcap", pcap_arg]);
    // Ten connections: in about half of them the FIN comes before the loop's next read.
    let records = nc_loop(&ns, 6000, 10, 100);
    let served = serve.stop();
    assert_eq!(served.code, Some(0));
    let out = std::process::Command::new("tshark")
        .args(["-r", pcap_arg, "-T", "fields", "-e", "frame.time_epoch"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags.fin",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The capture's clock is serve's: a packet's time is microseconds since serve started.
    let first_read_us = |port: u16| {
        served
            .events
            .iter()
            .find(|e| e.source == "app" && e.event == "read" && e.port == port)
            .map(|e| e.t_us)
    };
    // The first FIN of each connection (the host may retransmit it: the device's ACK waits
    // for its delayed-ACK time, longer than Linux's minimum RTO).
    let mut first_fin: std::collections::BTreeMap<u16, i64> = Default::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 || f[2] != "6000" || !matches!(f[3], "1" | "True") {
            continue;
        }
        let at_us = (f[0].parse::<f64>().unwrap() * 1e6) as i64;
        first_fin.entry(f[1].parse().unwrap()).or_insert(at_us);
    }
    let fins = first_fin.len();
    let fin_before_read = first_fin
        .iter()
        .filter(|&(&port, &at_us)| at_us < first_read_us(port).expect("fixed reads every message"))
        .count();
    let rows = join(&records, &served.events).unwrap();
    say(&format!(
        "live pcap: {fin_before_read} of {fins} FINs reached the device before the read"
    ));
    assert_eq!(Summary::of(&rows).delivered, 10, "{}", table(&rows));
    assert_eq!(
        fins, 10,
        "tshark shows each connection's FIN toward the device:\n{text}"
    );
    assert!(
        fin_before_read > 0,
        "no FIN reached the device before the read:\n{text}\n{:?}",
        served
            .events
            .iter()
            .filter(|e| e.source == "app")
            .collect::<Vec<_>>()
    );
}

/// Device OS's own TCP server test client (tests.js, ported to Python: `live/vendor_client.py`)
/// against the ported test app under fixed. Every test's result is printed; the ones listed
/// here must pass. The other three depend on the vendor's limits and timing, not on lost data:
/// `MaxConnectionsTest` and `ExtraConnectionTest` expect a sixth connection to wait (lwIP's 5
/// control blocks, a SYN beyond the backlog dropped silently and retried), while the fixed
/// preset has 10 blocks (PR #1350) and refuses a SYN beyond its backlog with RST (F4);
/// `StoppingServerWithActiveConnectionsTest` opens five connections faster than the loop
/// accepts them, so one may meet a full backlog.
#[test]
fn vendor_test_client_passes_under_fixed() {
    let Some(ns) = namespace("vendor_test_client_passes_under_fixed") else {
        return;
    };
    let _alone = harness::exclusive();
    let serve = Serve::start(
        &ns,
        "fwv0",
        &[
            "--app",
            "tcp-server",
            "--policy",
            "fixed",
            "--control",
            "127.0.0.1:7071",
        ],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/live/vendor_client.py");
    let url = "http://127.0.0.1:7071/";
    let out = ns
        .run(&["timeout", "900", "python3", script, url, "50"])
        .expect("vendor client");
    let served = serve.stop();
    assert_eq!(
        served.code,
        Some(0),
        "fixed loses nothing: {}",
        served.report
    );
    let results: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &results {
        say(&format!("live vendor test under fixed: {r}"));
    }
    assert_eq!(results.len(), 9, "{out}");
    for name in [
        "EchoTest",
        "MaxServersTest",
        "NoServerSocketLeakOnNetworkDisconnectTest",
        "StoppedServerDoesntAffectOtherServersTest",
        "TcpClientClosesOnDestructionTest",
        "StressTest",
    ] {
        let r = results.iter().find(|r| r["test"] == name).unwrap();
        assert_eq!(r["passed"], true, "{r}");
    }
}

/// `serve` exits as `run` does: stopped before any connection, it tested nothing (exit 2).
#[test]
fn serve_that_tested_nothing_exits_2() {
    let Some(ns) = namespace("serve_that_tested_nothing_exits_2") else {
        return;
    };
    let served = Serve::start(&ns, "fwn0", &["--policy", "fixed"]).stop();
    assert_eq!(served.code, Some(2));
    assert_eq!(served.report["outcome"], "nothing_tested");
}

/// 20,000 connections: each is judged and dropped once its verdict is final, so serve's
/// memory after all of them stays within twice what it was after the first 1,000 (when every
/// event was kept for the end, it grew by about 1.1 KB per connection). The report still
/// counts every connection and keeps the first ten rows.
#[test]
fn memory_stays_bounded_over_20000_connections() {
    let Some(ns) = namespace("memory_stays_bounded_over_20000_connections") else {
        return;
    };
    let _alone = harness::exclusive();
    // Room for 20,000 client ports: each stays in TIME-WAIT for a minute.
    ns.run(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"])
        .unwrap();
    // A fast loop and Wi-Fi worker: 20,000 connections in seconds rather than minutes.
    let fast = [
        "--policy",
        "fixed",
        "--set",
        "device.loop_period_us=100",
        "--set",
        "device.worker_delay_max_us=50",
    ];
    let serve = Serve::start(&ns, "fwr0", &fast);
    let first = python_many(&ns, 6000, 1_000, 4, harness::FIELD_HEX);
    let rss_first_kib = serve.rss_kib();
    let rest = python_many(&ns, 6000, 19_000, 4, harness::FIELD_HEX);
    let rss_all_kib = serve.rss_kib();
    let (code, report) = serve.stop_report();
    say(&format!(
        "live memory: VmRSS {rss_first_kib} KiB after 1,000 connections, {rss_all_kib} KiB after \
         20,000; {} delivered",
        report["delivered"]
    ));
    assert_eq!(first + rest, 20_000, "every client connection completed");
    assert!(
        rss_all_kib <= 2 * rss_first_kib,
        "VmRSS grew from {rss_first_kib} KiB to {rss_all_kib} KiB"
    );
    assert_eq!(report["connections"], 20_000);
    assert_eq!(report["delivered"], 20_000);
    assert_eq!(report["rows"].as_array().unwrap().len(), 10);
    assert_eq!(code, Some(0));
}

/// The ports of the connections whose SYN toward port 6000 a capture shows, as tshark reads
/// it; tshark's error if it cannot read the file.
fn captured_syns(pcap: &str) -> Result<Vec<u16>, String> {
    let out = std::process::Command::new("tshark")
        .args(["-r", pcap, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0"])
        .args(["-T", "fields", "-e", "tcp.srcport"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// A killed serve leaves a readable capture: the file is written through every half second,
/// a whole packet at a time, so while serve runs and after SIGKILL tshark reads every
/// connection (the capture used to be written only at the end: 0 bytes after a kill).
#[test]
fn a_killed_serve_leaves_a_readable_pcap() {
    let Some(ns) = namespace_with_tshark("a_killed_serve_leaves_a_readable_pcap") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("killed.pcap");
    let pcap = pcap.to_str().unwrap();
    let serve = Serve::start(&ns, "fwk0", &["--policy", "fixed", "--pcap", pcap]);
    let records = python_send(&ns, 6000, 5, 0, "68656c6c6f0a");
    let ports: Vec<u16> = records.iter().map(|r| r.port.unwrap()).collect();
    let all_shown = |syns: &[u16]| ports.iter().all(|p| syns.contains(p));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Read while serve writes: the last packet may be cut, so a failure is retried.
        if captured_syns(pcap).is_ok_and(|syns| all_shown(&syns)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve's capture does not show the 5 connections while it runs: {:?}",
            captured_syns(pcap)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    serve.kill();
    let syns = captured_syns(pcap).expect("tshark reads the capture of a killed serve");
    assert!(all_shown(&syns), "ports {ports:?}, SYNs {syns:?}");
}

/// A capture that cannot be written (`/dev/full`) stops serve at its first write-through:
/// the report, then the error naming the file, exit 2; no panic.
#[test]
fn a_capture_that_cannot_be_written_stops_serve() {
    let Some(ns) = namespace("a_capture_that_cannot_be_written_stops_serve") else {
        return;
    };
    let mut serve = Serve::start(&ns, "fwd0", &["--pcap", "/dev/full"]);
    let code = serve.wait("serve went on without its capture");
    let stderr = serve.stderr_text();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("fwsim: --pcap /dev/full: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `serve --json | head`: once stdout is closed, serve stops as on Ctrl-C: no panic, the
/// report on stderr, the exit status from the report (the held connection is unfinished),
/// and the host's open connection reset rather than left hanging.
#[test]
fn a_closed_stdout_ends_serve_cleanly() {
    use std::io::{BufRead, BufReader};

    let Some(ns) = namespace("a_closed_stdout_ends_serve_cleanly") else {
        return;
    };
    let (mut serve, stdout) = Serve::start_piped(&ns, "fwo0", &["--policy", "fixed"]);
    let mut held = python_hold(&ns, 6000, "68656c6c6f0a", 30);
    let mut held_lines = BufReader::new(held.stdout.take().unwrap()).lines();
    let sent: serde_json::Value = serde_json::from_str(&held_lines.next().unwrap().unwrap())
        .expect("the held client's first line");
    assert_eq!(sent["sent"], true, "{sent}");
    // Read serve's events until the app read the held connection's data, then close the pipe.
    let mut lines = BufReader::new(stdout).lines();
    let read_line = lines.by_ref().map(Result::unwrap).find(|l| {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        e["source"] == "app" && e["event"] == "read"
    });
    assert!(read_line.is_some(), "serve printed no app read");
    drop(lines);
    // A second client's connection makes serve write again: the write fails, serve stops.
    python_send(&ns, 6000, 1, 0, "00");
    let code = serve.wait("serve did not end after its stdout closed");
    let stderr = serve.stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("fwsim serve: stdout:"), "{stderr}");
    // The held connection was still open when serve stopped: unfinished, as in a run that
    // stops with a connection in flight, so never a pass: a liveness failure (exit 3), or
    // nothing tested (exit 2) when the second connection had not finished either.
    assert!(
        stderr.contains("summary: "),
        "the report goes to stderr: {stderr}"
    );
    assert!(stderr.contains("UNFINISHED"), "{stderr}");
    assert!(!stderr.contains("no silent loss"), "{stderr}");
    assert!(matches!(code, Some(2 | 3)), "{stderr}");
    let ended: serde_json::Value = serde_json::from_str(&held_lines.next().unwrap().unwrap())
        .expect("the held client's last line");
    assert_eq!(ended["ended"], "reset", "{ended}");
    held.wait().unwrap();
}
