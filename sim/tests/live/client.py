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

Every wait is bounded; nothing here runs forever.
"""
import fcntl
import json
import socket
import struct
import sys
import termios
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
    else:
        sys.exit("unknown mode " + argv[1])


if __name__ == "__main__":
    main(sys.argv)
