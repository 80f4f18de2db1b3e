//! The `fwsim` binary on bad and edge inputs: every case ends in a clear error or a verdict
//! that is true, never a panic, an abort, or "no silent loss" for a run that tested nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scenario(name: &str) -> String {
    root()
        .join("scenarios")
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

fn fwsim(args: &[&str]) -> Output {
    fwsim_in(&root(), args)
}

fn fwsim_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fwsim"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("fwsim runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Exit status and all output; panics on a signal (an abort).
fn status(o: &Output) -> i32 {
    o.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {}", text(o)))
}

/// Asserts exit 2 with an error naming each of `needles`.
fn assert_error(args: &[&str], needles: &[&str]) {
    let o = fwsim(args);
    let t = text(&o);
    assert_eq!(status(&o), 2, "{args:?}: {t}");
    assert!(!t.contains("no silent loss"), "{args:?}: {t}");
    for n in needles {
        assert!(t.contains(n), "{args:?} should mention {n:?}: {t}");
    }
}

fn forum_with(extra: &[&str]) -> Vec<String> {
    let mut v = vec!["run".to_string(), scenario("forum")];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn limits_that_test_nothing_are_errors_or_exit_2() {
    for (set, needles) in [
        (
            "max_duration_ms=0",
            vec!["--set 'max_duration_ms=0'", "out of range"],
        ),
        (
            "max_duration_ms=20000000000000000",
            vec!["max_duration_ms", "out of range"],
        ),
        (
            "peer.0.count=0",
            vec!["--set 'peer.0.count=0'", "nothing would connect"],
        ),
        ("max_duration_ms=50", vec!["NOTHING TESTED"]),
    ] {
        assert_error(&args(&forum_with(&["--set", set])), &needles);
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "name = \"t\"\nmax_duration_ms = 10000000000000000\n[device]\napp = \"forum\"\n[[peer]]\n",
    )
    .unwrap();
    let path = file.path().display().to_string();
    assert_error(&["run", &path], &[&format!("{path}:2:"), "max_duration_ms"]);
}

#[test]
fn sweeps_that_test_nothing_exit_2() {
    let forum = scenario("forum");
    assert_error(&["sweep", &forum, "--seeds", "0"], &["--seeds"]);
    assert_error(
        &[
            "sweep",
            &forum,
            "--seeds",
            "2",
            "--set",
            "max_duration_ms=50",
        ],
        &["tested nothing"],
    );
}

#[test]
fn seeds_beyond_i64_work_with_every_flag() {
    let forum = scenario("forum");
    for extra in [
        vec!["--policy", "fixed"],
        vec!["--set", "peer.0.count=2"],
        vec!["--backend", "turmoil"],
        vec!["--inject", "syn-burst"],
    ] {
        let mut a = vec![
            "run",
            &forum,
            "--seed",
            "18446744073709551615",
            "--set",
            "peer.0.count=2",
        ];
        a.extend(extra);
        let o = fwsim(&a);
        assert!(matches!(status(&o), 0 | 1), "{a:?}: {}", text(&o));
    }
    let regression = root().join("scenarios/regressions/late-data-acked-before-rst.toml");
    let regression = regression.display().to_string();
    let o = fwsim(&["run", &regression, "--policy", "fixed"]);
    assert_eq!(status(&o), 0, "{}", text(&o));
    let o = fwsim(&["sweep", &regression, "--seeds", "1", "--policy", "fixed"]);
    assert_eq!(status(&o), 0, "{}", text(&o));
}

#[test]
fn huge_counts_neither_allocate_nor_abort() {
    let o = fwsim(&args(&forum_with(&[
        "--policy",
        "fixed",
        "--set",
        "peer.0.count=4294967295",
        "--set",
        "max_duration_ms=3000",
    ])));
    // Fixed loses nothing; a connection in flight at the limit is unfinished (exit 3).
    assert!(matches!(status(&o), 0 | 3), "{}", text(&o));
    assert!(text(&o).contains("hit max_duration_ms"), "{}", text(&o));
}

#[test]
fn many_peer_tables_run() {
    let mut s = String::from(
        "name = \"many\"\nmax_duration_ms = 60000\n[device]\napp = \"forum\"\npolicy = \"fixed\"\n",
    );
    for i in 0..2000 {
        s.push_str(&format!("[[peer]]\nstart_ms = {}\n", 100 + 20 * i));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), s).unwrap();
    let o = fwsim(&["run", &file.path().display().to_string(), "--json"]);
    assert!(matches!(status(&o), 0 | 1), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["connections"], 2000);
}

#[test]
fn unwritable_outputs_are_errors_naming_the_path() {
    assert_error(
        &args(&forum_with(&["--pcap", "/no/such/dir/x.pcap"])),
        &["/no/such/dir/x.pcap"],
    );
    if Path::new("/dev/full").exists() {
        assert_error(
            &args(&forum_with(&[
                "--set",
                "peer.0.count=2",
                "--pcap",
                "/dev/full",
            ])),
            &["/dev/full", "pcap", "No space left"],
        );
        for flag in ["--trace", "--timeline", "--save-scenario"] {
            assert_error(
                &args(&forum_with(&["--set", "peer.0.count=2", flag, "/dev/full"])),
                &["/dev/full", "No space left"],
            );
        }
    }
    let o = fwsim(&[
        "sweep",
        &scenario("forum"),
        "--seeds",
        "2",
        "--vary",
        "device.loop_period_us=500,1000",
        "--plot",
        "/no/such/dir/x.svg",
    ]);
    assert_eq!(status(&o), 2);
    let t = text(&o);
    assert!(t.contains("/no/such/dir/x.svg"), "{t}");
    assert!(!t.contains("runs lost"), "failed before the sweep ran: {t}");
}

/// The air capture opens in tshark with the device's and the peer's interfaces, and comments
/// exactly the packets the link statistics count as lost, on both backends.
#[test]
fn the_air_capture_comments_every_packet_the_link_dropped() {
    let tshark = Command::new("tshark").arg("-v").output();
    if !tshark.is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), ".ci/run installs tshark");
        eprintln!("SKIPPED: `tshark` is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for backend in ["loopback", "turmoil"] {
        let file = dir.path().join(format!("{backend}.pcapng"));
        let file = file.to_str().unwrap();
        let o = fwsim(&args(&forum_with(&[
            "--set",
            "link.loss_p=0.05",
            "--backend",
            backend,
            "--pcap-air",
            file,
            "--json",
        ])));
        assert_ne!(status(&o), 2, "{}", text(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let stat = |link: &str, field: &str| report[link][field].as_u64().unwrap();
        let o = Command::new("tshark")
            .args(["-r", file, "-T", "fields", "-e", "frame.interface_name"])
            .args(["-e", "frame.comment"])
            .output()
            .unwrap();
        assert!(o.status.success(), "tshark: {}", text(&o));
        let lines = String::from_utf8(o.stdout).unwrap();
        let count = |side: &str, dropped: bool| {
            let on_side = |l: &&str| l.split('\t').next() == Some(side);
            let lines = lines.lines().filter(on_side);
            lines
                .filter(|l| !dropped || l.contains("dropped by the link"))
                .count() as u64
        };
        let sent_and_got = |sent: &str, got: &str| stat(sent, "enqueued") + stat(got, "delivered");
        assert_eq!(count("device", false), sent_and_got("uplink", "downlink"));
        assert_eq!(count("peer", false), sent_and_got("downlink", "uplink"));
        assert!(
            stat("uplink", "lost") > 0 && stat("downlink", "lost") > 0,
            "a lossy run"
        );
        assert_eq!(count("device", true), stat("uplink", "lost"), "{backend}");
        assert_eq!(count("peer", true), stat("downlink", "lost"), "{backend}");
    }
    assert_error(
        &args(&forum_with(&["--pcap-air", "/no/such/dir/x.pcapng"])),
        &["/no/such/dir/x.pcapng"],
    );
    if Path::new("/dev/full").exists() {
        assert_error(
            &args(&forum_with(&["--pcap-air", "/dev/full"])),
            &["/dev/full", "air capture", "No space left"],
        );
    }
}

#[test]
fn errors_name_their_true_origin() {
    let forum = scenario("forum");
    assert_error(
        &[
            "sweep",
            &forum,
            "--seeds",
            "1",
            "--vary",
            "device.bogus=1,2",
        ],
        &["--vary device.bogus=1", "unknown field"],
    );
    assert_error(
        &["run", &forum, "--set", "link.loss_p=2"],
        &["--set 'link.loss_p=2'", "probability"],
    );
    assert_error(
        &["run", &forum, "--set", "drain_ms=18446744073709551615"],
        &["--set 'drain_ms=18446744073709551615'", "out of range"],
    );
}

#[test]
fn the_saved_scenario_reruns_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved.toml").display().to_string();
    let o = fwsim(&args(&forum_with(&[
        "--seed",
        "5",
        "--policy",
        "fixed",
        "--inject",
        "fin-before-drain",
        "--set",
        "peer.0.count=5",
        "--save-scenario",
        &saved,
        "--json",
    ])));
    let first: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = fwsim(&["run", &saved, "--json"]);
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(first["trace_hash"], again["trace_hash"]);
    assert_eq!(again["seed"], 5);
    let o = fwsim(&["run", &saved, "--seed", "6", "--json"]);
    let other: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(first["trace_hash"], other["trace_hash"]);
}

/// A repository to keep crashes in: a folder with `fuzz/`.
fn scratch_repo() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("fuzz")).unwrap();
    repo
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Inputs that do not fail their target, or that it skips, are refused (exit 2) and nothing
/// is written: corpus files, 1 MiB of random bytes, an empty file, too short, not text.
#[test]
fn from_crash_refuses_inputs_that_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let repo = scratch_repo();
    let corpus = root().join("fuzz/corpus");
    let random = dir.path().join("random");
    let mut bytes = Vec::with_capacity(1 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < 1 << 20 {
        // xorshift: any bytes do, the same each time.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&random, bytes).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"0123456789").unwrap();
    let out = dir.path().join("never.toml").display().to_string();
    for (target, input, needle) in [
        (
            "scenario",
            corpus.join("scenario/echo-nc-1"),
            "does not fail",
        ),
        ("scenario", random.clone(), "does not fail"),
        ("scenario", empty.clone(), "empty"),
        ("scenario", short, "10 bytes"),
        (
            "scenario_legacy",
            corpus.join("scenario_legacy/echo-hold-1"),
            "does not fail",
        ),
        ("ingress", corpus.join("ingress/random-0"), "does not fail"),
        ("ingress", empty.clone(), "empty"),
        (
            "wiring_ops",
            corpus.join("wiring_ops/random-0"),
            "does not fail",
        ),
        ("wiring_ops", empty.clone(), "empty"),
        (
            "scenario_file",
            corpus.join("scenario_file/forum"),
            "does not fail",
        ),
        ("scenario_file", random.clone(), "UTF-8"),
    ] {
        assert!(input.exists(), "no input {}", input.display());
        let input = input.display().to_string();
        let repo_arg = repo.path().display().to_string();
        let mut a = vec![
            "from-crash",
            &input,
            "--target",
            target,
            "--repo",
            &repo_arg,
        ];
        if target.starts_with("scenario") && target != "scenario_file" {
            a.extend(["--out", &out]);
        }
        let o = fwsim_in(dir.path(), &a);
        let t = text(&o);
        assert_eq!(status(&o), 2, "{target} {input}: {t}");
        assert!(t.contains(needle), "{target} {input}: {needle:?} in {t}");
        assert!(!t.contains("no silent loss"), "{t}");
        assert!(files_under(repo.path()).is_empty(), "{target}: {t}");
        assert!(!Path::new(&out).exists(), "{target}: {t}");
        assert!(!dir.path().join("fuzz").exists(), "{target}: {t}");
    }
    assert_error(
        &[
            "from-crash",
            &corpus.join("scenario/forum-nc-1").display().to_string(),
            "--target",
            "scenario_legacy",
            "--out",
            &out,
            "--repo",
            &dir.path().display().to_string(),
        ],
        &["no fwsim repository", "--repo"],
    );
}

/// A crash is kept in the repository (`--repo`, else the one fwsim was built from), not under
/// the current folder, and its absolute path is printed.
#[test]
fn from_crash_keeps_a_crash_in_the_repository() {
    let elsewhere = tempfile::tempdir().unwrap();
    let repo = scratch_repo();
    let out = elsewhere.path().join("legacy.toml").display().to_string();
    let input = root().join("fuzz/corpus/scenario/forum-nc-1");
    let input_arg = input.display().to_string();
    let repo_arg = repo.path().display().to_string();
    let o = fwsim_in(
        elsewhere.path(),
        &[
            "from-crash",
            &input_arg,
            "--target",
            "scenario_legacy",
            "--out",
            &out,
            "--repo",
            &repo_arg,
        ],
    );
    let t = text(&o);
    assert_eq!(status(&o), 1, "the legacy example loses: {t}");
    assert!(t.contains("example of the field bug"), "{t}");
    let kept = repo
        .path()
        .canonicalize()
        .unwrap()
        .join("fuzz/bug-examples/scenario_legacy/forum-nc-1");
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        std::fs::read(&input).unwrap()
    );
    assert!(
        t.contains(&kept.display().to_string()),
        "absolute path: {t}"
    );
    assert!(Path::new(&out).exists());
    assert!(!elsewhere.path().join("fuzz").exists(), "{t}");
    // Without --repo: the repository fwsim was built from. The input is the example already
    // kept there, so the repository ends as it was.
    let example = root().join("fuzz/bug-examples/scenario_legacy/forum-nc-1");
    let before = std::fs::read(&example).unwrap();
    let example_arg = example.display().to_string();
    let o = fwsim_in(
        elsewhere.path(),
        &[
            "from-crash",
            &example_arg,
            "--target",
            "scenario_legacy",
            "--out",
            &out,
        ],
    );
    let t = text(&o);
    assert_eq!(status(&o), 1, "{t}");
    let kept = example.canonicalize().unwrap();
    assert!(t.contains(&format!("copied to {}", kept.display())), "{t}");
    assert_eq!(std::fs::read(&example).unwrap(), before);
    assert!(!elsewhere.path().join("fuzz").exists(), "{t}");
}

#[test]
fn help_and_logs_read_well() {
    let short = text(&fwsim(&["-h"]));
    let long = text(&fwsim(&["--help"]));
    assert_eq!(short.lines().next(), long.lines().next(), "one tagline");
    let o = Command::new(env!("CARGO_BIN_EXE_fwsim"))
        .args(["run", &scenario("forum"), "--set", "peer.0.count=1"])
        .env("RUST_LOG", "fwsim=debug")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("peer Opened"), "{log}");
    assert!(!log.contains('\u{1b}'), "no colour codes when piped");
}

#[test]
fn the_sweep_table_keeps_its_columns_with_vary() {
    let o = fwsim(&[
        "sweep",
        &scenario("forum"),
        "--seeds",
        "1",
        "--vary",
        "device.loop_period_us=500,100000",
    ]);
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = t.lines().take(5).collect();
    assert_eq!(lines.len(), 5, "{t}");
    // Right-aligned columns: every row ends where the header does, value under its name.
    for row in &lines[1..] {
        assert_eq!(row.len(), lines[0].len(), "{t}");
    }
    let col = lines[0].find("device.loop_period_us").unwrap() + "device.loop_period_us".len();
    assert!(lines[4][..col].ends_with("100000"), "{t}");
}

#[test]
fn sweeps_give_the_same_cells_on_any_threads_and_shards() {
    let forum = scenario("forum");
    let sweep = |extra: &[&str]| {
        let mut a = vec!["sweep", &forum, "--seeds", "6", "--set", "peer.0.count=4"];
        a.extend(extra);
        let o = fwsim(&a);
        assert_eq!(status(&o), 1, "legacy loses: {}", text(&o));
        o.stdout
    };
    let one = sweep(&["--json", "--jobs", "1"]);
    assert_eq!(one, sweep(&["--json", "--jobs", "2"]));
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = (1..=3)
        .map(|k| {
            dir.path()
                .join(format!("shard-{k}.json"))
                .display()
                .to_string()
        })
        .collect();
    for (k, file) in files.iter().enumerate() {
        let shard = format!("{}/3", k + 1);
        let mut a = vec!["sweep", &forum, "--seeds", "6", "--set", "peer.0.count=4"];
        a.extend(["--shard", &shard, "--out", file]);
        let o = fwsim(&a);
        assert_eq!(status(&o), 0, "{}", text(&o));
    }
    let mut merge = vec!["merge", "--json"];
    merge.extend(files.iter().map(String::as_str));
    let o = fwsim(&merge);
    assert_eq!(status(&o), 1, "{}", text(&o));
    assert_eq!(o.stdout, one, "the merged shards are the whole sweep");
    assert_error(&["merge", &files[0], &files[1]], &["shard 3/3 is missing"]);
    assert_error(&["merge", &files[0], &files[0], &files[1]], &["twice"]);
}

/// The timeline is valid SVG with a row per connection; under legacy it marks freed unread
/// bytes on the lost rows, and under fixed none.
#[test]
fn the_timeline_shows_why_a_connection_lost_its_data() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, loses) in [("legacy", true), ("fixed", false)] {
        let svg = dir.path().join(format!("{policy}.svg"));
        let svg_arg = svg.display().to_string();
        let o = fwsim(&args(&forum_with(&[
            "--policy",
            policy,
            "--set",
            "peer.0.count=8",
            "--timeline",
            &svg_arg,
        ])));
        assert_eq!(status(&o), u8::from(loses) as i32, "{}", text(&o));
        let xml = std::fs::read_to_string(&svg).unwrap();
        let doc = roxmltree::Document::parse(&xml).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        for mark in ["SYN in", "data in", "FIN in", "accept", "FREED UNREAD"] {
            assert!(texts.contains(&mark), "legend has {mark}");
        }
        let lost_rows = texts
            .iter()
            .filter(|t| t.ends_with("DATA SILENTLY LOST"))
            .count();
        assert_eq!(lost_rows > 0, loses, "{texts:?}");
        // Freed bytes are drawn as rings in the freed colour; reads as cyan dots.
        let rings = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "circle")
            .filter(|n| {
                n.attribute("stroke") == Some("#D62728") && n.attribute("fill") == Some("none")
            })
            .count();
        assert_eq!(
            rings > 1,
            loses,
            "a ring per lost row besides the legend's: {rings}"
        );
        let reads = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "circle" && n.attribute("fill") == Some("#17BECF"))
            .count();
        assert!(reads > 1 || loses, "fixed reads every connection: {reads}");
    }
}

/// Shrinking the forum's legacy run leaves one connection that still loses its data.
#[test]
fn shrink_finds_one_connection_that_still_loses() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("min.toml").display().to_string();
    let o = fwsim(&[
        "shrink",
        &scenario("forum"),
        "--policy",
        "legacy",
        "--out",
        &out,
    ]);
    assert_eq!(status(&o), 1, "{}", text(&o));
    let shrunk: sim::Scenario = toml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(shrunk.peer.len(), 1);
    assert_eq!(shrunk.peer[0].count, 1);
    let o = fwsim(&["run", &out]);
    assert_eq!(
        status(&o),
        1,
        "the shrunk scenario still loses: {}",
        text(&o)
    );
    assert!(text(&o).contains("DATA SILENTLY LOST"));
    assert_error(
        &[
            "shrink",
            &scenario("forum"),
            "--policy",
            "fixed",
            "--out",
            &out,
        ],
        &["nothing to shrink"],
    );
}

/// A shrink that finds nothing neither creates `--out` nor empties it, and leaves no
/// temporary file; a fit that fails leaves an existing plot as it was.
#[test]
fn failed_commands_leave_output_files_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.toml");
    std::fs::write(&kept, "# mine\n").unwrap();
    let fresh = dir.path().join("fresh.toml");
    for out in [&kept, &fresh] {
        let out_arg = out.display().to_string();
        let shrink = [
            "shrink",
            &scenario("forum"),
            "--policy",
            "fixed",
            "--set",
            "peer.0.count=3",
            "--out",
            &out_arg,
        ];
        assert_error(&shrink, &["nothing to shrink"]);
    }
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "# mine\n");
    assert!(!fresh.exists());
    let plot = dir.path().join("fit.svg");
    std::fs::write(&plot, "<svg/>").unwrap();
    let plot_arg = plot.display().to_string();
    assert_error(
        &[
            "fit",
            &scenario("forum"),
            "--target",
            "loss_fraction=0.4..0.5",
            "--free",
            "device.bogus=1..2",
            "--plot",
            &plot_arg,
        ],
        &["bogus"],
    );
    assert_eq!(std::fs::read_to_string(&plot).unwrap(), "<svg/>");
    let left: Vec<PathBuf> = files_under(dir.path());
    assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
}

#[test]
fn fit_finds_the_region_and_says_why_when_it_cannot() {
    let forum = scenario("forum");
    let fit = |extra: &[&str]| {
        let mut a = vec!["fit", &forum, "--policy", "legacy", "--seeds", "8"];
        a.extend(extra);
        fwsim(&a)
    };
    let args = [
        "--target",
        "loss_fraction=0.40..0.50",
        "--free",
        "device.worker_delay_max_us=100..10000",
        "--json",
    ];
    let o = fit(&args);
    assert_eq!(status(&o), 0, "{}", text(&o));
    assert_eq!(o.stdout, fit(&args).stdout, "deterministic");
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let chosen = &out["fit"]["chosen"];
    let (lo, hi) = (
        chosen["interval"][0].as_f64().unwrap(),
        chosen["interval"][1].as_f64().unwrap(),
    );
    assert!(lo <= 0.50 && hi >= 0.40, "{chosen}");
    for (extra, needle) in [
        (
            vec![
                "--target",
                "loss_fraction=0.4..0.5",
                "--free",
                "device.bogus=1..2",
            ],
            "bogus",
        ),
        (
            vec![
                "--target",
                "loss_fraction=0.4..0.5",
                "--free",
                "device.loop_period_us=9..3",
            ],
            "LO < HI",
        ),
        (
            vec![
                "--target",
                "loss=0.4..0.5",
                "--free",
                "device.loop_period_us=100..900",
            ],
            "--target",
        ),
        (
            vec![
                "--target",
                "loss_fraction=0.4..0.5",
                "--free",
                "device.app=1..2",
            ],
            "device.app",
        ),
        (
            vec![
                "--target",
                "loss_fraction=0.99..1",
                "--free",
                "device.worker_delay_max_us=5000..10000",
            ],
            "no point",
        ),
    ] {
        let o = fit(&extra);
        assert_eq!(status(&o), 2, "{extra:?}: {}", text(&o));
        assert!(
            text(&o).contains(needle),
            "{extra:?} should mention {needle}: {}",
            text(&o)
        );
    }
}

/// A point where nothing was tested is shown as such, never in the region, never chosen, and
/// the fit exits 2, whether no point or some points tested something.
#[test]
fn fit_points_that_tested_nothing_fail_the_fit() {
    let fit = |extra: &[&str]| {
        let mut a = vec![
            "fit",
            "--policy",
            "legacy",
            "--seeds",
            "3",
            "--points",
            "3",
            "--refine",
            "1",
            "--target",
            "loss_fraction=0..1",
            "--set",
            "peer.0.count=4",
        ];
        let forum = scenario("forum");
        a.insert(1, &forum);
        a.extend(extra);
        fwsim(&a)
    };
    let o = fit(&[
        "--free",
        "device.worker_delay_max_us=100..10000",
        "--set",
        "max_duration_ms=50",
    ]);
    let t = text(&o);
    assert_eq!(status(&o), 2, "{t}");
    assert!(t.contains("nothing tested"), "{t}");
    assert!(t.contains("3 of 3 points tested nothing"), "{t}");
    assert!(!t.contains("in region") && !t.contains("chosen"), "{t}");
    let o = fit(&["--free", "max_duration_ms=50..20000", "--json"]);
    assert_eq!(status(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("1 of 3 points tested nothing"),
        "{}",
        text(&o)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let points = out["fit"]["points"].as_array().unwrap();
    let untested: Vec<&serde_json::Value> = points.iter().filter(|p| p["tested"] == 0).collect();
    assert_eq!(untested.len(), 1, "{points:?}");
    assert_eq!(untested[0]["values"][0], "50");
    assert_eq!(untested[0]["in_region"], false);
    assert!(
        out["fit"]["chosen"]["tested"].as_u64().unwrap() > 0,
        "{out}"
    );
}

/// Shards of one scenario path whose file was edited between them do not merge; shards of
/// the same content at other paths do.
#[test]
fn merge_refuses_shards_of_an_edited_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(scenario("forum")).unwrap();
    assert!(original.contains("count = 30\n"));
    let file = dir.path().join("forum.toml");
    let shard = |k: usize, scenario: &Path| {
        let out = dir.path().join(format!("shard-{k}.json"));
        let (scenario, out_arg) = (scenario.display().to_string(), out.display().to_string());
        let shard = format!("{k}/2");
        let o = fwsim(&[
            "sweep", &scenario, "--seeds", "2", "--policy", "fixed", "--shard", &shard, "--out",
            &out_arg,
        ]);
        assert_eq!(status(&o), 0, "{}", text(&o));
        out_arg
    };
    std::fs::write(&file, &original).unwrap();
    let first = shard(1, &file);
    std::fs::write(&file, original.replace("count = 30\n", "count = 5\n")).unwrap();
    let edited = shard(2, &file);
    assert_error(
        &["merge", &first, &edited],
        &[&first, &edited, "peer[0].count is 30", "5 in"],
    );
    let moved = dir.path().join("moved.toml");
    std::fs::write(&moved, &original).unwrap();
    let second = shard(2, &moved);
    let o = fwsim(&["merge", &first, &second]);
    assert_eq!(
        status(&o),
        0,
        "the same content elsewhere merges: {}",
        text(&o)
    );
}

/// A number beyond TOML's integers, or written as a float, is told the field's range.
#[test]
fn numbers_beyond_toml_integers_are_told_the_field_range() {
    for value in ["10000000000000000000", "1e19", "-10000000000000000000"] {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            format!(
                "name = \"t\"\nmax_duration_ms = {value}\n[device]\napp = \"forum\"\n[[peer]]\n"
            ),
        )
        .unwrap();
        let path = file.path().display().to_string();
        let o = fwsim(&["run", &path]);
        let t = text(&o);
        assert_eq!(status(&o), 2, "{t}");
        assert!(
            t.contains(&format!("{path}:2:")) && t.contains("expected 1..=86400000"),
            "{value}: {t}"
        );
        assert!(!t.contains("9223372036854775807"), "{value}: {t}");
    }
    assert_error(
        &args(&forum_with(&[
            "--set",
            "peer.0.stream_bytes=18446744073709551615",
        ])),
        &["18446744073709551615 is out of range: expected 0..=1099511627776"],
    );
}

/// Counts a user types are checked: out of range is exit 2 naming the flag, never clamped.
#[test]
fn out_of_range_counts_are_usage_errors() {
    let forum = scenario("forum");
    let free = "device.worker_delay_max_us=100..5000";
    let target = "loss_fraction=0.4..0.5";
    let dir = tempfile::tempdir().unwrap();
    let never = dir.path().join("never.json").display().to_string();
    for (a, flag) in [
        (vec!["sweep", &forum, "--jobs", "0"], "--jobs"),
        (
            vec![
                "fit", &forum, "--target", target, "--free", free, "--points", "1",
            ],
            "--points",
        ),
        (
            vec![
                "fit", &forum, "--target", target, "--free", free, "--refine", "11",
            ],
            "--refine",
        ),
        (
            vec!["shrink", &forum, "--out", &never, "--max-runs", "0"],
            "--max-runs",
        ),
        (
            vec!["sweep", &forum, "--shard", "0/2", "--out", &never],
            "--shard",
        ),
    ] {
        assert_error(&a, &[flag]);
    }
    assert!(!Path::new(&never).exists(), "nothing half-written");
}

#[test]
fn stack_presets_and_rules_are_named_on_the_command_line() {
    let file = scenario("field/smoltcp-111");
    let run = |extra: &[&str]| {
        let mut a = vec!["run", file.as_str(), "--set", "peer.0.count=5"];
        a.extend_from_slice(extra);
        fwsim(&a)
    };
    let buggy = run(&["--policy", "smoltcp-0.4"]);
    assert_eq!(status(&buggy), 1, "{}", text(&buggy));
    assert!(
        text(&buggy).contains("policy smoltcp-0.4"),
        "{}",
        text(&buggy)
    );
    let fixed = run(&["--policy", "fixed"]);
    assert_eq!(status(&fixed), 0, "{}", text(&fixed));
    // The same rule switched by name on top of fixed.
    let switched = run(&[
        "--policy",
        "fixed",
        "--set",
        "device.rules.fin_past_hole_accepted=true",
    ]);
    assert_eq!(status(&switched), 1, "{}", text(&switched));
    assert!(
        text(&switched).contains("policy fixed+rules"),
        "{}",
        text(&switched)
    );
    assert_error(
        &["run", &file, "--set", "device.rules.fin_past_hole=true"],
        &["device.rules.fin_past_hole", "unknown field"],
    );
    assert_error(
        &["sweep", &file, "--policy", "esp32"],
        &["esp32-arduino-2.0", "smoltcp-0.4", "both"],
    );
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Liveness: a hang fails the run (exit 3) naming the connection and the instant its progress
/// stopped, in the table, the JSON and a sweep; the field's stream delivers every byte.
#[test]
fn a_hang_fails_with_stalled_and_the_field_stream_delivers() {
    let stream = root().join("scenarios/field/photon-stream.toml");
    let o = fwsim(&[
        "run",
        &stream.display().to_string(),
        "--seed",
        "2",
        "--json",
    ]);
    let j = json_of(&o);
    assert_eq!(status(&o), 0, "{}", text(&o));
    assert_eq!(
        (j["delivered"].as_u64(), j["stalled"].as_u64()),
        (Some(3), Some(0))
    );
    // A 118.5 s partition under the echo app: the stream waits on the device with no progress
    // for longer than liveness_ms, which must fail, not pass.
    let part = scenario("partition");
    let hang = ["--set", "device.app=echo", "--set", "fault.1.at_ms=120000"];
    let mut run = vec!["run", part.as_str()];
    run.extend(hang);
    let o = fwsim(&run);
    let t = text(&o);
    assert_eq!(status(&o), 3, "{t}");
    assert!(t.contains("STALLED (no progress from 1.5"), "{t}");
    assert!(t.contains("LIVENESS FAILURE: 1 stalled"), "{t}");
    assert!(t.contains("port 40000 made no progress from"), "{t}");
    assert!(!t.contains("no silent loss"), "{t}");
    run.push("--json");
    let j = json_of(&fwsim(&run));
    assert_eq!(j["outcome"], "liveness_failure");
    assert!(j["rows"][0]["stalled_at_us"].as_i64().unwrap() > 1_000_000);
    let mut sweep = vec![
        "sweep",
        part.as_str(),
        "--seeds",
        "1..=2",
        "--policy",
        "fixed",
    ];
    sweep.extend(hang);
    let o = fwsim(&sweep);
    let t = text(&o);
    assert_eq!(status(&o), 3, "{t}");
    assert!(
        t.contains("liveness failure (stalled or unfinished)"),
        "{t}"
    );
    assert!(t.contains("--seed 1"), "{t}");
    // netem's per-packet chain (loss_r_step_us = 0) holds seed 2's fade for tens of seconds:
    // the legacy stream stops at about 1 MB and the device frees 4 KiB it acknowledged, with
    // no reset. Safety beats liveness: silent loss (exit 1), though the peer never finished.
    let netem = [
        "run",
        &scenario("stream"),
        "--seed",
        "2",
        "--set",
        "link.loss_r_step_us=0",
    ];
    let o = fwsim(&netem);
    let t = text(&o);
    assert_eq!(status(&o), 1, "{t}");
    assert!(t.contains("DATA SILENTLY LOST (no progress from"), "{t}");
}

/// A run stopped by its time limit while connections still ran is a liveness failure when
/// others finished (exit 3), and nothing tested when none did (exit 2): never a pass.
#[test]
fn unfinished_connections_are_never_a_pass() {
    let full = json_of(&fwsim(&args(&forum_with(&["--policy", "fixed", "--json"]))));
    // Stop the run 1 ms after its third connection opened: two finished, one in flight.
    let third_ms = full["rows"][2]["opened_at_us"].as_i64().unwrap() / 1000 + 1;
    let limit = format!("max_duration_ms={third_ms}");
    let o = fwsim(&args(&forum_with(&["--policy", "fixed", "--set", &limit])));
    let t = text(&o);
    assert_eq!(status(&o), 3, "{t}");
    assert!(
        t.contains("LIVENESS FAILURE: 0 stalled, 1 unfinished"),
        "{t}"
    );
    assert!(t.contains("UNFINISHED"), "{t}");
    let first_ms = full["rows"][0]["opened_at_us"].as_i64().unwrap() / 1000 + 1;
    let limit = format!("max_duration_ms={first_ms}");
    let o = fwsim(&args(&forum_with(&["--policy", "fixed", "--set", &limit])));
    assert_eq!(status(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("NOTHING TESTED"), "{}", text(&o));
    // A stream cut after its first kilobytes: everything so far was read, yet it is not
    // delivered (exit 2: its only connection reached no verdict).
    let o = fwsim(&["run", &scenario("stream"), "--set", "max_duration_ms=1000"]);
    assert_eq!(status(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("UNFINISHED"), "{}", text(&o));
    // A sweep with a cell that tested nothing does not pass.
    let o = fwsim(&[
        "sweep",
        &scenario("forum"),
        "--seeds",
        "2",
        "--policy",
        "fixed",
        "--vary",
        "max_duration_ms=1,20000",
    ]);
    assert_eq!(status(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("tested nothing"), "{}", text(&o));
}
