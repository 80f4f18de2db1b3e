//! The live tests' harness: a private network namespace per test (removed even when the test
//! fails), `fwsim serve` inside it, and clients that run only inside it. Every wait is bounded.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::live::{ClientRecord, LiveEvent};

/// The field report's message: `echo -e "\xaa\x05\xfe\x93\x00\x00\x01\x41"` (with echo's
/// newline), as hex.
pub const FIELD_HEX: &str = "aa05fe93000001410a";

/// The device's address in every test namespace.
pub const DEVICE: &str = "10.77.0.2";

/// Why live tests cannot run here, if they cannot: found out once per test process (the
/// tests run in parallel and would otherwise share the probe namespace's name).
pub fn unavailable() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON.get_or_init(probe).clone()
}

fn probe() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    if uid.as_deref() != Some("0") {
        return Some("not root: creating network namespaces and TUN interfaces needs root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    for (tool, args) in [
        ("ip", &["-V"][..]),
        ("nc", &["-h"][..]),
        ("python3", &["-V"][..]),
        ("bash", &["--version"][..]),
        ("timeout", &["--version"][..]),
    ] {
        let ran = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if ran.is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let probe = format!("fwsim-probe-{}", std::process::id());
    match Netns::create(&probe) {
        Ok(_) => None,
        Err(e) => Some(format!("network namespaces do not work here: {e}")),
    }
}

/// Held by the test that loads the machine (thousands of connections) and by the one whose
/// checks depend on timing (the vendor client's memory checks after closing), so the two
/// never run at once. A test that panicked leaves it usable.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prints a line that `cargo test` shows without `--nocapture` (written to the process's
/// stderr directly): the live tests' counts belong in CI logs.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Says visibly that a test was skipped, and why: written to the process's stderr directly,
/// so `cargo test` shows it without `--nocapture`.
pub fn skipped(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
}

/// A network namespace, deleted when dropped (also when the test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Netns, String> {
        // A namespace left by a killed earlier run would make `add` fail.
        let _ = run("ip", &["netns", "del", name]);
        run("ip", &["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args` inside the namespace; its stdout, or why it failed.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| e.to_string())?;
        check(args, out)
    }

    /// The interfaces in the namespace.
    pub fn links(&self) -> String {
        self.run(&["ip", "-o", "link", "show"]).unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

fn check(args: &[&str], out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    let mut all = vec![program];
    all.extend_from_slice(args);
    check(&all, out)
}

/// A namespace name unique to this process and test.
pub fn ns_name(test: &str) -> String {
    format!("fwsim-{}-{test}", std::process::id())
}

/// `fwsim serve` running inside a namespace; killed when dropped.
pub struct Serve {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

/// What a stopped `serve` printed: its events and its final report, and its exit status.
pub struct Served {
    pub events: Vec<LiveEvent>,
    pub report: Value,
    pub code: Option<i32>,
}

impl Serve {
    /// Starts `fwsim serve --json ARGS` in `ns` and waits (at most 10 s) for its interface.
    pub fn start(ns: &Netns, tun: &str, args: &[&str]) -> Serve {
        Serve::start_with(ns, tun, args, None)
    }

    /// Starts it with its stdout on a pipe the test reads (and may close, as `head` does).
    pub fn start_piped(ns: &Netns, tun: &str, args: &[&str]) -> (Serve, ChildStdout) {
        let mut serve = Serve::start_with(ns, tun, args, Some(Stdio::piped()));
        let stdout = serve.child.stdout.take().unwrap();
        (serve, stdout)
    }

    fn start_with(ns: &Netns, tun: &str, args: &[&str], stdout: Option<Stdio>) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let stdout_path = dir.path().join("serve.out");
        let stderr = dir.path().join("serve.err");
        let stdout = stdout.unwrap_or_else(|| File::create(&stdout_path).unwrap().into());
        let child = ns
            .command(env!("CARGO_BIN_EXE_fwsim"))
            .args([
                "serve",
                "--json",
                "--tun",
                tun,
                "--addr",
                &format!("{DEVICE}/24"),
            ])
            .args(args)
            .stdout(stdout)
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child,
            stdout: stdout_path,
            stderr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ns.links().contains(&format!(": {tun}:")) {
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("serve exited with {status}: {}", serve.stderr_text());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not create {tun} in 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        serve
    }

    /// What serve wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its resident memory (VmRSS), in KiB: `ip netns exec` runs serve in its own process.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("serve's /proc status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Waits (at most 10 s, saying `why` otherwise) for serve to exit; its exit code.
    pub fn wait(&mut self, why: &str) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "{why}: {}", self.stderr_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it with SIGTERM (as a user's Ctrl-C would); its exit code.
    fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait("serve ignored SIGTERM for 10 s")
    }

    /// Kills it with SIGKILL: nothing of its own runs after.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Stops it with SIGTERM and reads what it printed.
    pub fn stop(mut self) -> Served {
        let code = self.terminate();
        let text = std::fs::read_to_string(&self.stdout).unwrap();
        let mut events = Vec::new();
        let mut report = Value::Null;
        for line in text.lines() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("serve printed a line that is not JSON ({e}): {line}"));
            match value.get("report") {
                Some(r) => report = r.clone(),
                None => events.push(serde_json::from_value(value).unwrap()),
            }
        }
        let stderr = self.stderr_text();
        assert!(!report.is_null(), "serve printed no report: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        Served {
            events,
            report,
            code,
        }
    }

    /// Stops it with SIGTERM; its exit code and its report (the events are not read).
    pub fn stop_report(mut self) -> (Option<i32>, Value) {
        let code = self.terminate();
        let text = std::fs::read_to_string(&self.stdout).unwrap();
        let last = text.lines().last().expect("serve printed nothing");
        let value: Value = serde_json::from_str(last).unwrap();
        (code, value["report"].clone())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The client script.
fn client_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/live/client.py")
}

fn records(text: &str) -> Vec<ClientRecord> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record ({e}): {l}")))
        .collect()
}

/// The field report's command, `count` times, one every `interval_ms` (plus nc's own time):
/// `echo -e "\xaa\x05\xfe\x93\x00\x00\x01\x41" | nc -N ADDR PORT`. Each run is bounded by
/// `timeout 5`; a record per run says what nc's exit status reported.
pub fn nc_loop(ns: &Netns, port: u16, count: u32, interval_ms: u32) -> Vec<ClientRecord> {
    let script = format!(
        r#"for i in $(seq 1 {count}); do
  s=$(date +%s%6N)
  echo -e "\xaa\x05\xfe\x93\x00\x00\x01\x41" | timeout 5 nc -N {DEVICE} {port} >/dev/null 2>&1
  rc=$?
  e=$(date +%s%6N)
  ok=false; [ $rc -eq 0 ] && ok=true
  up=false; [ $rc -eq 0 -o $rc -eq 124 ] && up=true
  gave=false; [ $rc -eq 124 ] && gave=true
  acked=0; [ $rc -eq 0 ] && acked=9
  echo "{{\"client\":\"nc\",\"start_unix_us\":$s,\"end_unix_us\":$e,\"sent_hex\":\"{FIELD_HEX}\",\"connected\":$up,\"acked\":$acked,\"gave_up\":$gave,\"ok\":$ok}}"
  sleep {interval}
done"#,
        interval = f64::from(interval_ms) / 1000.0
    );
    let out = ns
        .run(&["timeout", "900", "bash", "-c", &script])
        .expect("nc loop");
    records(&out)
}

/// Runs the Python client (`client.py ARGS`) inside the namespace, bounded by `limit_s`
/// seconds; what it printed.
fn python(ns: &Netns, limit_s: u32, args: &[&str]) -> String {
    let script = client_py();
    let limit = limit_s.to_string();
    let head = ["timeout", &limit, "python3", script.to_str().unwrap()];
    ns.run(&[&head[..], args].concat())
        .unwrap_or_else(|e| panic!("python client {args:?}: {e}"))
}

/// The Python client: `count` connections sending `hex`, one every `interval_ms`.
pub fn python_send(
    ns: &Netns,
    port: u16,
    count: u32,
    interval_ms: u32,
    hex: &str,
) -> Vec<ClientRecord> {
    let (port, count, interval) = (port.to_string(), count.to_string(), interval_ms.to_string());
    records(&python(
        ns,
        900,
        &["send", DEVICE, &port, &count, &interval, hex],
    ))
}

/// One echo exchange through the Python client: what came back, hex.
pub fn python_echo(ns: &Netns, port: u16, hex: &str) -> Value {
    let out = python(ns, 30, &["echo", DEVICE, &port.to_string(), hex]);
    serde_json::from_str(out.trim()).unwrap()
}

/// POSTs a control request to `serve --control` inside the namespace; the reply object.
pub fn control(ns: &Netns, url: &str, body: &str) -> Value {
    let out = python(ns, 30, &["post", url, body]);
    serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("control reply is not JSON ({e}): {out}"))
}

/// `count` connections through the Python client, as fast as `threads` threads open them;
/// how many completed.
pub fn python_many(ns: &Netns, port: u16, count: u32, threads: u32, hex: &str) -> u64 {
    let (port, count, threads) = (port.to_string(), count.to_string(), threads.to_string());
    let out = python(ns, 900, &["many", DEVICE, &port, &count, &threads, hex]);
    let counts: Value = serde_json::from_str(out.trim()).unwrap();
    counts["completed"].as_u64().unwrap()
}

/// A Python client that connects, sends `hex` and waits (at most `seconds`) for the device
/// to end the connection, in the background: its first line says it sent, its last how the
/// connection ended.
pub fn python_hold(ns: &Netns, port: u16, hex: &str, seconds: u32) -> Child {
    let script = client_py();
    ns.command("timeout")
        .args([
            &(seconds + 10).to_string(),
            "python3",
            script.to_str().unwrap(),
            "hold",
            DEVICE,
            &port.to_string(),
            hex,
            &seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}
