#!/usr/bin/env python3
"""Memory under a flood of unfinished request heads (issue 13 item 4).

Starts the release `gatehouse` with one HTTP listener (a direct response, no upstream), opens N
connections that each send HEAD_SIZE bytes of one header and never finish the head, and reads the
gateway's RSS (VmRSS, and the peak VmHWM) from /proc: idle, once every connection has sent all it
could, and after the connections are closed. With `--limit` the listener's
`limits.maxRequestHeadersSize` is set; `--limit 408KiB` approximates hyper's default ~400 KiB read
buffer, i.e. the behaviour before the limit existed.

    python3 bench/head_flood.py                         # 1000 connections x 400 KB, default limit
    python3 bench/head_flood.py --limit 408KiB          # as before the limit
    MALLOC_ARENA_MAX=2 python3 bench/head_flood.py      # glibc tunables reach the gateway too
    python3 bench/head_flood.py --preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2   # another allocator
"""

import argparse
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(ROOT, "target", "release", "gatehouse")


def rss_kib(pid):
    """VmRSS and VmHWM of `pid`, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def config(limit, workers):
    limits = f", limits: {{maxRequestHeadersSize: {limit}, maxConnections: 100000}}" if limit else \
        ", limits: {maxConnections: 100000}"
    return f"""apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {{name: g}}
spec: {{admin: {{address: "127.0.0.1:0"}}, workers: {workers}, accessLog: {{enabled: false}}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {{name: web}}
spec: {{address: "127.0.0.1:0", protocol: HTTP{limits}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {{name: r}}
spec:
  rules:
    - directResponse: {{status: 200, body: "ok"}}
"""


def start(binary, limit, workers, preload):
    d = tempfile.mkdtemp(prefix="head-flood-")
    with open(os.path.join(d, "gatehouse.yaml"), "w") as f:
        f.write(config(limit, workers))
    env = {**os.environ, "GATEHOUSE_LOG": "info"}
    if preload:
        env["LD_PRELOAD"] = preload
    proc = subprocess.Popen([binary, "run", "-c", d], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"address=(\S+).*listening|listening.*address=(\S+)", line)
        if "default/web" in line and m:
            addr = (m.group(1) or m.group(2)).strip()
            host, port = addr.rsplit(":", 1)
            return proc, (host, int(port))
    proc.kill()
    sys.exit("gatehouse did not report its listener")


def flood(addr, connections, head_size):
    """Opens the connections and sends each an unfinished head; returns the sockets."""
    head = b"GET / HTTP/1.1\r\nHost: flood\r\nX-Big: " + b"a" * head_size
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(addr)
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, [0])
    pending = connections
    deadline = time.time() + 60
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s, sent = key.fileobj, key.data
            try:
                n = s.send(head[sent[0]:sent[0] + 65536])
                sent[0] += n
                done = sent[0] >= len(head)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # answered 431 and closed: the head was refused
                done = True
            if done:
                sel.unregister(s)
                pending -= 1
    return socks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.environ.get("GATEHOUSE_BIN", DEFAULT_BIN))
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--head-size", type=int, default=400_000)
    ap.add_argument("--limit", default=None, help="limits.maxRequestHeadersSize (default: the built-in 64KiB)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--preload", default=None, help="an allocator to LD_PRELOAD into the gateway")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * args.connections + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    proc, addr = start(args.binary, args.limit, args.workers, args.preload)
    try:
        time.sleep(0.5)  # settle after start; measuring, not synchronising
        idle, _ = rss_kib(proc.pid)
        t0 = time.time()
        socks = flood(addr, args.connections, args.head_size)
        sent_in = time.time() - t0
        time.sleep(1.0)  # let the gateway read what is in flight
        during, peak = rss_kib(proc.pid)
        for s in socks:
            s.close()
        after = []
        for wait in (1, 3, 10):
            time.sleep(wait - (after[-1][0] if after else 0))
            after.append((wait, rss_kib(proc.pid)[0]))
        mib = lambda k: f"{k / 1024:.1f}"
        print(f"limit={args.limit or 'default(64KiB)'} connections={args.connections} "
              f"head={args.head_size}B workers={args.workers} sent_in={sent_in:.1f}s "
              f"allocator={os.path.basename(args.preload) if args.preload else 'glibc'}")
        print(f"  RSS MiB: idle {mib(idle)}  during {mib(during)}  peak(VmHWM) {mib(peak)}  "
              + "  ".join(f"after {w}s {mib(r)}" for w, r in after))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
