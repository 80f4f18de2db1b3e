#!/usr/bin/env python3
"""Simulation per peer host profile against live mode's Linux kernel peer (docs/peer-hosts.md).

sim WORKLOAD HOST SEEDS [--fwsim PATH]
    Runs the workload's scenario with `--set peer.0.host=HOST` for seeds 1..=SEEDS; one JSON
    line per connection: its verdict, bytes acknowledged and read, and its times at the device.
live WORKLOAD COUNT [--fwsim PATH] [--keep FILE]
    (root) A private network namespace, `fwsim serve` on a TUN inside it with the same app,
    rules and link preset as the scenario, and COUNT connections of the real client (OpenBSD
    nc, or Python's socket module on the kernel's TCP); one JSON line per connection from
    serve's report and events (`--keep` copies serve's JSON lines to FILE). The namespace is
    deleted at the end, also on errors.
retransmitted WORKLOAD SEEDS [--fwsim PATH]
    How many connections needed the peer to retransmit its data or FIN (the peer's FIN reached
    the device more than 200 ms after it was sent; one-way delays are milliseconds), with their
    verdicts: the connections whose timing the peer's retransmission timer decides. Counts
    only connections whose FIN the device saw as the first close (`nc`).
table FILE...
    The comparison table (Markdown) of the lines in FILEs, one row per (source, workload).

Workloads (the field report's three shapes, each with its scenario file):
    nc      forum sketch, legacy, wlan-good: `echo ... | nc -N` send-and-close
    stream  multi-client, legacy, wlan-good: one 10 MiB counting stream, held 1 s, closed
    closes  server-closes (after 10 bytes), legacy, wlan-good: 10 connections a second,
            each holding 1 s after its 10 bytes are acknowledged

Times are measured the same way on both sides, each from the SYN reaching the device: hs_ms to
the handshake's completion, rx_ms to the first data, queued_ms to the Wi-Fi worker queueing it
for accept, accept_ms to the application's accept and free_ms to the connection's slot freed
(device events); fin_ms to the peer sending its FIN (the
simulated peer's event; in live mode the FIN leaving the kernel, as serve's wire view sees it).
Every wait is bounded; traffic stays inside the namespace.
"""
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEVICE = "10.77.0.2"

WORKLOADS = {
    "nc": {"scenario": "scenarios/forum.toml",
           "serve": ["--app", "forum", "--policy", "legacy", "--link", "wlan-good"]},
    "stream": {"scenario": "scenarios/stream.toml",
               "serve": ["--app", "multi-client", "--policy", "legacy", "--link", "wlan-good"]},
    "closes": {"scenario": "scenarios/server-closes.toml",
               "serve": ["--app", "server-closes", "--policy", "legacy", "--link", "wlan-good",
                         "--set", "device.close_after=10"]},
}

# A trace line: "<t_us> device <Event> { ... port: <port> ... }", "<t_us> device rx port=<port>"
# or "<t_us> peer FinSent { port: <port> }"; the names serve's JSON lines give the same events.
TRACE_EVENT = re.compile(r"^(\d+) (device|peer) (\w+)\b.*?port(?:: |=)(\d+)")
TRACE_NAMES = {("device", "SynReceived"): "syn_received",
               ("device", "HandshakeCompleted"): "handshake_completed",
               ("device", "rx"): "data_received", ("device", "Accepted"): "accepted",
               ("device", "SlotFreed"): "slot_freed", ("device", "AcceptQueued"): "accept_queued",
               ("peer", "FinSent"): "fin_sent"}
LIVE_NAMES = {("device", "syn_received"), ("device", "handshake_completed"),
              ("device", "data_received"), ("device", "accepted"), ("device", "slot_freed"),
              ("device", "accept_queued"), ("wire", "fin_sent")}
# The record's times and the event each ends at.
TIMES = {"hs_ms": "handshake_completed", "rx_ms": "data_received", "fin_ms": "fin_sent",
         "queued_ms": "accept_queued", "accept_ms": "accepted", "free_ms": "slot_freed"}


def option(args, flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default


def fwsim_path(args):
    return option(args, "--fwsim",
                  os.environ.get("FWSIM", os.path.join(ROOT, "target", "debug", "fwsim")))


def device_times(events):
    """Per connection (in SYN order): its port and the times of its device events (us).
    `events` is (t_us, name, port) in time order; a port's events belong to the newest SYN."""
    conns, current = [], {}
    for t_us, name, port in events:
        if name == "syn_received":
            current[port] = {"port": port, "syn_received": t_us}
            conns.append(current[port])
        elif port in current and name not in current[port]:
            current[port][name] = t_us
    return conns


def record(source, workload, row, times):
    def since_syn(name):
        if times is None or name not in times:
            return None
        return (times[name] - times["syn_received"]) / 1000.0
    out = {"source": source, "workload": workload, "verdict": row["verdict"],
           "bytes_acked": row["bytes_acked"], "bytes_read": row["bytes_read"]}
    out.update({key: since_syn(name) for key, name in TIMES.items()})
    return out


def sim(workload, host, seeds, fwsim):
    spec = WORKLOADS[workload]
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace")
        for seed in range(1, seeds + 1):
            out = subprocess.run(
                [fwsim, "run", os.path.join(ROOT, spec["scenario"]), "--seed", str(seed),
                 "--set", f"peer.0.host={host}", "--json", "--trace", trace],
                capture_output=True, text=True, timeout=600)
            # Exit 2 with a report: the run tested nothing (a stalled stream); its rows count.
            try:
                report = json.loads(out.stdout)
            except json.JSONDecodeError:
                sys.exit(f"fwsim run exited {out.returncode}: {out.stderr}")
            events = []
            with open(trace) as f:
                for line in f:
                    m = TRACE_EVENT.match(line)
                    if m and (m[2], m[3]) in TRACE_NAMES:
                        events.append((int(m[1]), TRACE_NAMES[m[2], m[3]], int(m[4])))
            by_port = {c["port"]: c for c in device_times(events)}
            for row in report["rows"]:
                print(json.dumps(record(f"sim:{host}", workload, row,
                                        by_port.get(row["peer_port"]))), flush=True)


def retransmitted(workload, seeds, fwsim):
    spec = WORKLOADS[workload]
    counts, total = {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        trace = os.path.join(tmp, "trace")
        for seed in range(1, seeds + 1):
            out = subprocess.run(
                [fwsim, "run", os.path.join(ROOT, spec["scenario"]), "--seed", str(seed),
                 "--json", "--trace", trace], capture_output=True, text=True, timeout=600)
            rows = json.loads(out.stdout)["rows"]
            fin_sent, fin_in = {}, {}
            with open(trace) as f:
                for line in f:
                    m = re.match(r"^(\d+) (peer FinSent|device PeerClosed) .*?port: (\d+)", line)
                    if m:
                        side = fin_sent if m[2] == "peer FinSent" else fin_in
                        side.setdefault(int(m[3]), int(m[1]))
            for row in rows:
                port = row["peer_port"]
                if port not in fin_sent or port not in fin_in:
                    kind = "no FIN pair"  # the device closed first, or no FIN was sent
                elif fin_in[port] - fin_sent[port] > 200_000:
                    kind = "retransmitted"
                else:
                    kind = "not"
                key = (kind, row["verdict"])
                counts[key] = counts.get(key, 0) + 1
                total += 1
    print(json.dumps({"workload": workload, "seeds": seeds, "connections": total,
                      "counts": {f"{a}/{b}": n for (a, b), n in sorted(counts.items())}}))


def ns(name, *args, timeout=60, check=True):
    return subprocess.run(["ip", "netns", "exec", name, *args], capture_output=True, text=True,
                          timeout=timeout, check=check)


NC_LOOP = r"""for i in $(seq 1 {count}); do
  echo -e "\xaa\x05\xfe\x93\x00\x00\x01\x41" | timeout 5 nc -N {device} 6000 >/dev/null 2>&1
  sleep 0.3
done"""

PY_CLIENT = r"""
import fcntl, socket, struct, sys, termios, threading, time
kind, count, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def unacked(s):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, struct.pack("i", 0)))[0]
def one(data, port, hold_s, timeout_s):
    s = socket.create_connection((device, port), timeout=timeout_s)
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout_s
        while unacked(s) > 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(hold_s)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:
        pass
    finally:
        s.close()
if kind == "stream":
    data = bytes(i % 256 for i in range(10 * 1024 * 1024))
    for _ in range(count):
        one(data, 6000, 1.0, 300.0)
        time.sleep(1.0)
else:
    threads = []
    for _ in range(count):
        t = threading.Thread(target=one, args=(bytes(range(10)), 6000, 1.0, 10.0))
        t.start()
        threads.append(t)
        time.sleep(0.1)
    for t in threads:
        t.join(30)
"""


def live(workload, count, fwsim, keep):
    spec = WORKLOADS[workload]
    name = f"fwsim-hosts-{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    serve = None
    try:
        ns(name, "ip", "link", "set", "lo", "up")
        # Linux's default congestion control (this machine's may differ).
        ns(name, "sysctl", "-qw", "net.ipv4.tcp_congestion_control=cubic", check=False)
        with tempfile.TemporaryDirectory() as tmp:
            out_path = os.path.join(tmp, "serve.out")
            with open(out_path, "w") as out:
                serve = subprocess.Popen(
                    ["ip", "netns", "exec", name, fwsim, "serve", "--json", "--tun", "fwh0",
                     "--addr", f"{DEVICE}/24", *spec["serve"]],
                    stdout=out, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 10
            while "fwh0" not in ns(name, "ip", "-o", "link", "show").stdout:
                if time.monotonic() > deadline or serve.poll() is not None:
                    sys.exit(f"serve did not start: {serve.stderr.read()}")
                time.sleep(0.05)
            if workload == "nc":
                ns(name, "bash", "-c", NC_LOOP.format(count=count, device=DEVICE),
                   timeout=3600)
            else:
                ns(name, "python3", "-c", PY_CLIENT, workload, str(count), DEVICE,
                   timeout=3600)
            time.sleep(3)  # the device's last closes
            serve.terminate()
            serve.wait(timeout=30)
            report, events = None, []
            with open(out_path) as f:
                for line in f:
                    value = json.loads(line)
                    if "report" in value:
                        report = value["report"]
                    elif (value.get("source"), value.get("event")) in LIVE_NAMES:
                        events.append((value["t_us"], value["event"], value["port"]))
            if keep:
                shutil.copyfile(out_path, keep)
            if report is None:
                sys.exit("serve printed no report")
            by_port = {}
            for c in device_times(events):
                by_port.setdefault(c["port"], []).append(c)
            for row in report["rows"]:
                times = by_port.get(row["peer_port"], [])
                print(json.dumps(record("live", workload, row, times.pop(0) if times else None)),
                      flush=True)
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def wilson(k, n):
    if n == 0:
        return (0.0, 1.0)
    z = 1.959963984540054
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def quantile(values, f):
    values = sorted(v for v in values if v is not None)
    if not values:
        return "-"
    v = statistics.median(values) if f == 0.5 else values[min(len(values) - 1,
                                                               int(f * len(values)))]
    return f"{v / 1000:.1f} s" if v >= 10000 else f"{v:.1f}"


def table(files):
    rows = {}
    for path in files:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                rows.setdefault((r["workload"], r["source"]), []).append(r)
    print("| workload | peer | conns | delivered | silently lost | never accepted | visible "
          "| unfinished | loss % (95% CI) | from the SYN at the device, median ms: handshake / "
          "data / peer's FIN / queued for accept / accept / slot freed | peer's FIN, p90 "
          "| worker (handshake to queued), median / p90 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (workload, source), rs in sorted(rows.items()):
        n = len(rs)
        count = lambda v: sum(r["verdict"] == v for r in rs)
        shares = [count(v) for v in ("delivered", "data_silently_lost", "never_accepted",
                                     "refused_visibly", "unfinished")]
        lost = shares[1] + shares[2] + count("corrupted")
        lo, hi = wilson(lost, n)
        pct = lambda k: f"{k} ({100 * k / n:.1f}%)"
        medians = " / ".join(quantile((r.get(k) for r in rs), 0.5) for k in TIMES)
        worker = [r["queued_ms"] - r["hs_ms"] for r in rs
                  if r.get("queued_ms") is not None and r.get("hs_ms") is not None]
        tails = " / ".join(quantile(worker, f) for f in (0.5, 0.9, 0.99))
        print(f"| {workload} | {source} | {n} | " + " | ".join(pct(k) for k in shares)
              + f" | {100 * lost / n:.1f} ({100 * lo:.1f}-{100 * hi:.1f}) | {medians} | "
              + f"{quantile((r['fin_ms'] for r in rs), 0.9)} | {tails} |")


def main(argv):
    if len(argv) >= 4 and argv[0] == "sim" and argv[1] in WORKLOADS:
        sim(argv[1], argv[2], int(argv[3]), fwsim_path(argv))
    elif len(argv) >= 3 and argv[0] == "live" and argv[1] in WORKLOADS:
        live(argv[1], int(argv[2]), fwsim_path(argv), option(argv, "--keep"))
    elif len(argv) >= 3 and argv[0] == "retransmitted" and argv[1] in WORKLOADS:
        retransmitted(argv[1], int(argv[2]), fwsim_path(argv))
    elif len(argv) >= 2 and argv[0] == "table":
        table(argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
