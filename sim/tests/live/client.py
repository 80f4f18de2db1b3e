#!/usr/bin/env python3
"""Clients for fwsim's live tests, run inside the test's network namespace.

send ADDR PORT COUNT INTERVAL_MS HEX
    COUNT connections one after another, each sending HEX and closing its side; one JSON
    record per connection: what it sent and what the OS reported (connected, bytes
    acknowledged by the peer, reset, gave up waiting for the peer's close).
echo ADDR PORT HEX
    One connection: send HEX, read the same number of bytes back; one JSON object.
post URL JSON
    HTTP POST of JSON; prints the reply body.
many ADDR PORT COUNT THREADS HEX
    COUNT connections as fast as THREADS threads open them one after another (each sends HEX,
    closes its side and reads until the peer closes); one JSON object with the counts.
hold ADDR PORT HEX SECONDS
    One connection: send HEX, then wait (at most SECONDS) for the peer to end it; one JSON
    object saying how it ended (eof, reset or timeout).

Every wait is bounded; nothing here runs forever.
"""
import fcntl
import json
import socket
import struct
import sys
import termios
import threading
import time
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def now_us():
    return time.time_ns() // 1000


def unacked(sock):
    """Bytes the OS holds unacknowledged in the send queue (SIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


def one(addr, port, data):
    rec = {"client": "python", "start_unix_us": now_us(), "port": None,
           "sent_hex": data.hex(), "connected": False, "acked": 0,
           "reset": False, "gave_up": False}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect((addr, port))
        rec["connected"] = True
        rec["port"] = s.getsockname()[1]
        s.sendall(data)
        deadline = time.monotonic() + TIMEOUT_S
        while unacked(s) > 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        rec["acked"] = len(data) - unacked(s)
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        rec["reset"] = True
    except socket.timeout:
        rec["gave_up"] = rec["connected"]
    except OSError as e:
        rec["error"] = str(e)
    finally:
        s.close()
    rec["end_unix_us"] = now_us()
    return rec


def send(addr, port, count, interval_ms, hexdata):
    data = bytes.fromhex(hexdata)
    for _ in range(count):
        print(json.dumps(one(addr, port, data)), flush=True)
        time.sleep(interval_ms / 1000.0)


def echo(addr, port, hexdata):
    data = bytes.fromhex(hexdata)
    out = {"connected": False, "echoed_hex": "", "error": None}
    try:
        with socket.create_connection((addr, port), timeout=TIMEOUT_S) as s:
            out["connected"] = True
            s.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            out["echoed_hex"] = got.hex()
    except OSError as e:
        out["error"] = str(e)
    print(json.dumps(out), flush=True)


def quick(addr, port, data):
    """One connection of `many`: True if every byte was sent and the peer closed."""
    try:
        with socket.create_connection((addr, port), timeout=TIMEOUT_S) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
        return True
    except OSError:
        return False


def many(addr, port, count, threads, hexdata):
    data = bytes.fromhex(hexdata)
    done = [0] * threads

    def worker(i):
        for _ in range(count // threads + (1 if i < count % threads else 0)):
            done[i] += quick(addr, port, data)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print(json.dumps({"connections": count, "completed": sum(done)}), flush=True)


def hold(addr, port, hexdata, seconds):
    out = {"connected": False, "ended": "timeout"}
    try:
        with socket.create_connection((addr, port), timeout=TIMEOUT_S) as s:
            out["connected"] = True
            s.sendall(bytes.fromhex(hexdata))
            print(json.dumps({"sent": True}), flush=True)
            s.settimeout(seconds)
            while True:
                if not s.recv(4096):
                    out["ended"] = "eof"
                    break
    except ConnectionResetError:
        out["ended"] = "reset"
    except socket.timeout:
        pass
    except OSError as e:
        out["ended"] = str(e)
    print(json.dumps(out), flush=True)


def post(url, body):
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S * 3) as r:
            print(r.read().decode().strip(), flush=True)
    except urllib.error.HTTPError as e:
        print(e.read().decode().strip(), flush=True)


def main(argv):
    if argv[1] == "send":
        send(argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6])
    elif argv[1] == "echo":
        echo(argv[2], int(argv[3]), argv[4])
    elif argv[1] == "post":
        post(argv[2], argv[3])
    elif argv[1] == "many":
        many(argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6])
    elif argv[1] == "hold":
        hold(argv[2], int(argv[3]), argv[4], float(argv[5]))
    else:
        sys.exit("unknown mode " + argv[1])


if __name__ == "__main__":
    main(sys.argv)
