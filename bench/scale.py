#!/usr/bin/env python3
"""Routing at scale: Gatehouse and nginx with 1, 1,000 and 10,000 routes.

Configs (requests always go to the LAST declared route, the worst case for a linear scan):
  hosts  N routes, each its own host `h{i}.example.com` with prefix `/`
         (nginx: N `server` blocks with `server_name`);
  paths  N routes on one host, route i prefix `/svc{i}` (nginx: N `location ^~ /svc{i}/` blocks);
  mix    as `paths`, every 20th route a regex `/re{i}/[0-9]+` instead, 5 % regex rules
         (nginx: `location ~ ^/re{i}/[0-9]+$`; prefixes stay `^~`, so like Gatehouse a prefix hit
         never consults the regexes).
Reported per case: req/s (wrk, 50 connections, HTTP/1.1), user+system CPU per request of the proxy
process tree, idle RSS after start, RSS after the load and after reloads, `gatehouse check` wall
time, `POST /reload` wall time (no change; and one route changed), the CPU seconds each of those
three took (`chk cpu`, `rld cpu`, `chg cpu`: on a shared machine the wall time mostly measures the
wait for a core), and the throughput ratio to the 1-route case of the same config shape.

Placement as in bench.py: each proxy pinned to CPU 0 with one worker; upstream nginx and wrk on CPU 1.
Keep runs short on a shared machine: `bench/scale.py --duration 3`.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (  # noqa: E402
    GATEHOUSE,
    LOAD_CPU,
    NGINX,
    PROXY_CPU,
    cpu_seconds,
    free_port,
    mem_kib,
    nginx_conf,
    wait_port,
)

SIZES = [1, 1000, 10000]
SHAPES = ["hosts", "paths", "mix"]


def route_path(shape, i):
    """(kind, pattern) of route i."""
    if shape == "mix" and i % 20 == 7:
        return "regex", f"/re{i}/[0-9]+"
    if shape == "hosts":
        return "prefix", "/"
    return "prefix", f"/svc{i}"


def target(shape, n):
    """(host, path) of a request to the last declared route."""
    i = n - 1
    kind, _ = route_path(shape, i)
    if shape == "hosts":
        return f"h{i}.example.com", "/small"
    if kind == "regex":
        return "api.example.com", f"/re{i}/42"
    return "api.example.com", f"/svc{i}/small"


def gatehouse_routes(shape, n, changed=None):
    out = []
    for i in range(n):
        kind, pattern = route_path(shape, i)
        if i == changed:
            pattern += "x" if kind == "prefix" else "x?"
        host = f"h{i}.example.com" if shape == "hosts" else "api.example.com"
        out.append(f"""---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {{name: r{i}}}
spec:
  hosts: ["{host}"]
  rules:
    - match: {{path: {{{kind}: "{pattern}"}}}}
      backends: [{{backend: up}}]
""")
    return "".join(out)


def gatehouse_config(port, admin, up_port, shape, n, changed=None):
    return f"""apiVersion: gatehouse.dev/v1alpha1
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
spec: {{endpoints: ["127.0.0.1:{up_port}"]}}
""" + gatehouse_routes(shape, n, changed)


def nginx_body(shape, n, up_port):
    proxy = 'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
    head = f"upstream up {{ server 127.0.0.1:{up_port}; keepalive 128; }}\n"
    if shape == "hosts":
        # One server block per host, as in a virtual-host-per-service setup.
        servers = "".join(
            f"  server {{ listen 127.0.0.1:PORT; server_name h{i}.example.com; location / {{ {proxy} }} }}\n"
            for i in range(n)
        )
        return head + "  server_names_hash_max_size 32768; server_names_hash_bucket_size 128;\n" + servers
    locs = []
    for i in range(n):
        kind, pattern = route_path(shape, i)
        if kind == "regex":
            locs.append(f"    location ~ ^{pattern}$ {{ {proxy} }}\n")
        else:
            locs.append(f"    location ^~ {pattern}/ {{ {proxy} }}\n")
    return head + "  server {\n    listen 127.0.0.1:PORT;\n    server_name api.example.com;\n" + "".join(locs) + "  }"


class Upstream:
    """nginx answering every path with 200 and a short body, on CPU 1."""

    def __init__(self, d):
        self.port = free_port()
        body = 'server { listen 127.0.0.1:PORT; location / { return 200 "hello from upstream\\n"; } }'
        conf = os.path.join(d, "upstream.conf")
        open(conf, "w").write(nginx_conf(d, self.port, body))
        self.proc = subprocess.Popen(["taskset", "-c", LOAD_CPU, NGINX, "-p", d, "-c", conf])
        wait_port(self.port, self.proc)


def run_wrk(port, host, path, duration):
    out = subprocess.run(
        ["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c50", f"-d{duration}s", "-H", f"Host: {host}",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk failed:\n{out}")
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return float(m.group(1)), reqs, int(errs.group(1)) if errs else 0


def timed(f):
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def child_cpu():
    """User+system CPU seconds of the children waited for so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed_check(path):
    """Wall and CPU seconds of `gatehouse check`: on a loaded machine the wall time mostly says
    how long the process waited for a core, the CPU time what it cost."""
    cpu0 = child_cpu()
    wall, _ = timed(lambda: subprocess.run([GATEHOUSE, "check", path], capture_output=True, check=True))
    return wall, child_cpu() - cpu0


def timed_reload(admin, pid):
    """Wall and CPU seconds (of the gateway process) of one `POST /reload`, and its answer."""
    cpu0 = cpu_seconds(pid)
    wall, out = timed(lambda: reload(admin))
    return wall, cpu_seconds(pid) - cpu0, out


def reload(admin):
    req = urllib.request.Request(f"http://127.0.0.1:{admin}/reload", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def version(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/routes?limit=0", timeout=30) as r:
        return json.loads(r.read())["version"]


def settled_rss(pid):
    """RSS once it stops moving: the file watcher reloads on its own after the write above (after
    its debounce), and a reading taken while that reload holds two configs says nothing about
    what stays."""
    last = mem_kib(pid, "VmRSS")
    for _ in range(20):
        time.sleep(0.5)
        now = mem_kib(pid, "VmRSS")
        if abs(now - last) < 256:
            return now
        last = now
    return last


def bench_gatehouse(d, up, shape, n, duration):
    port, admin = free_port(), free_port()
    cdir = os.path.join(d, f"gh-{shape}-{n}")
    os.makedirs(cdir, exist_ok=True)
    path = os.path.join(cdir, "gatehouse.yaml")
    open(path, "w").write(gatehouse_config(port, admin, up.port, shape, n))
    check_s, check_cpu = timed_check(path)
    proc = subprocess.Popen(["taskset", "-c", PROXY_CPU, GATEHOUSE, "run", "-c", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GATEHOUSE_LOG": "warn"})
    try:
        wait_port(port, proc, timeout=60)
        wait_port(admin, proc, timeout=60)
        idle = mem_kib(proc.pid, "VmRSS")
        host, rpath = target(shape, n)
        cpu0 = cpu_seconds(proc.pid)
        rps, reqs, errors = run_wrk(port, host, rpath, duration)
        cpu = (cpu_seconds(proc.pid) - cpu0) / max(reqs, 1) * 1e6
        loaded = mem_kib(proc.pid, "VmRSS")
        same_s, same_cpu, _ = timed_reload(admin, proc.pid)
        # One route changed: the file watcher may pick the write up first; either way the new
        # version is served once the POST returns.
        v0 = version(admin)
        open(path, "w").write(gatehouse_config(port, admin, up.port, shape, n, changed=n // 2))
        one_s, one_cpu, out = timed_reload(admin, proc.pid)
        assert out.get("ok") and out["version"] != v0, out
        for _ in range(3):
            reload(admin)
        after = settled_rss(proc.pid)
        return dict(rps=rps, cpu=cpu, idle=idle, loaded=loaded, after=after, check=check_s,
                    reload_same=same_s, reload_one=one_s, errors=errors, check_cpu=check_cpu,
                    same_cpu=same_cpu, one_cpu=one_cpu)
    finally:
        proc.terminate()
        proc.wait()


def bench_nginx(d, up, shape, n, duration):
    port = free_port()
    sub = os.path.join(d, f"nginx-{shape}-{n}")
    os.makedirs(sub, exist_ok=True)
    conf = os.path.join(sub, "nginx.conf")
    open(conf, "w").write(nginx_conf(sub, port, nginx_body(shape, n, up.port)))
    cpu0 = child_cpu()
    check_s, _ = timed(lambda: subprocess.run([NGINX, "-t", "-q", "-p", sub, "-c", conf], capture_output=True, check=True))
    check_cpu = child_cpu() - cpu0
    proc = subprocess.Popen(["taskset", "-c", PROXY_CPU, NGINX, "-p", sub, "-c", conf])
    try:
        wait_port(port, proc, timeout=60)
        idle = mem_kib(proc.pid, "VmRSS")
        host, rpath = target(shape, n)
        cpu0 = cpu_seconds(proc.pid)
        rps, reqs, errors = run_wrk(port, host, rpath, duration)
        cpu = (cpu_seconds(proc.pid) - cpu0) / max(reqs, 1) * 1e6
        loaded = mem_kib(proc.pid, "VmRSS")
        return dict(rps=rps, cpu=cpu, idle=idle, loaded=loaded, after=0, check=check_s,
                    reload_same=0, reload_one=0, errors=errors, check_cpu=check_cpu,
                    same_cpu=0, one_cpu=0)
    finally:
        proc.terminate()
        proc.wait()


def write_atomically(path, text):
    """Replaces the file in one rename, so the file watcher never reads half of it."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def wait_version(admin, old, timeout=60):
    """Waits until the gateway serves a config version other than `old` (the file watcher's reload)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        # `/backends` (one backend here) costs the gateway next to nothing; `/routes` builds rows.
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/backends", timeout=30) as r:
            v = json.loads(r.read())["version"]
        if v != old:
            return v
        time.sleep(0.02)
    raise RuntimeError("the file watcher did not reload")


def config_cpu(shapes, sizes, rounds):
    """CPU milliseconds of `gatehouse check` (median of ROUNDS), of `POST /reload` of an unchanged
    config and of the file watcher's reload of a config with one route changed (each averaged over
    ROUNDS; the gateway process's user+system ticks, so the average is good to 10/ROUNDS ms)."""
    print(f"{'config':6} {'routes':>6} {'check ms':>8} {'reload ms':>9} {'1-chg ms':>8}")
    with tempfile.TemporaryDirectory() as d:
        for shape in shapes:
            for n in sizes:
                port, admin, up = free_port(), free_port(), free_port()
                path = os.path.join(d, f"gh-{shape}-{n}.yaml")
                write_atomically(path, gatehouse_config(port, admin, up, shape, n))
                checks = sorted(timed_check(path)[1] for _ in range(rounds))
                proc = subprocess.Popen([GATEHOUSE, "run", "-c", path], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env={**os.environ, "GATEHOUSE_LOG": "warn"})
                try:
                    wait_port(admin, proc, timeout=60)
                    v = version(admin)
                    cpu0 = cpu_seconds(proc.pid)
                    for _ in range(rounds):
                        assert reload(admin).get("ok")
                    same = (cpu_seconds(proc.pid) - cpu0) / rounds
                    cpu0 = cpu_seconds(proc.pid)
                    for r in range(rounds):
                        changed = n // 2 if r % 2 == 0 else None
                        write_atomically(path, gatehouse_config(port, admin, up, shape, n, changed))
                        v = wait_version(admin, v)
                    one = (cpu_seconds(proc.pid) - cpu0) / rounds
                finally:
                    proc.terminate()
                    proc.wait()
                print(f"{shape:6} {n:>6} {checks[len(checks) // 2] * 1e3:8.0f} {same * 1e3:9.0f} {one * 1e3:8.0f}",
                      flush=True)


def write_configs(d, shapes, sizes):
    """The configs the benchmark runs, without running it (ports fixed: nothing listens)."""
    os.makedirs(d, exist_ok=True)
    for shape in shapes:
        for n in sizes:
            for suffix, changed in (("", None), ("-changed", n // 2)):
                with open(os.path.join(d, f"gatehouse-{shape}-{n}{suffix}.yaml"), "w") as f:
                    f.write(gatehouse_config(18080, 18081, 18082, shape, n, changed))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--only", default="gatehouse,nginx")
    ap.add_argument("--config-cpu", type=int, metavar="ROUNDS",
                    help="only the CPU of `check` and of reloads (ROUNDS of each, averaged) at each size: "
                         "no load, no nginx")
    ap.add_argument("--write-config", metavar="DIR",
                    help="only write gatehouse-SHAPE-N.yaml (and -changed.yaml, route N/2 changed) for "
                         "each shape and size into DIR, for `perf stat`/callgrind of `gatehouse check`")
    a = ap.parse_args()
    shapes, sizes = a.shapes.split(","), [int(s) for s in a.sizes.split(",")]
    proxies = a.only.split(",")
    if a.write_config:
        write_configs(a.write_config, shapes, sizes)
        return
    if a.config_cpu:
        config_cpu(shapes, sizes, a.config_cpu)
        return
    with tempfile.TemporaryDirectory() as d:
        up = Upstream(d)
        try:
            print(f"{'proxy':10} {'config':6} {'routes':>6} {'req/s':>8} {'vs 1':>6} {'cpu us/req':>10} "
                  f"{'idle MiB':>8} {'load MiB':>8} {'rld MiB':>8} {'check s':>7} {'reload s':>8} {'1-chg s':>7} "
                  f"{'chk cpu':>7} {'rld cpu':>7} {'chg cpu':>7}")
            for shape in shapes:
                for p in proxies:
                    base = None
                    for n in sizes:
                        f = bench_gatehouse if p == "gatehouse" else bench_nginx
                        r = f(d, up, shape, n, a.duration)
                        base = base or r["rps"]
                        print(f"{p:10} {shape:6} {n:>6} {r['rps']:8.0f} {r['rps'] / base:6.3f} {r['cpu']:10.1f} "
                              f"{r['idle'] / 1024:8.1f} {r['loaded'] / 1024:8.1f} {r['after'] / 1024:8.1f} "
                              f"{r['check']:7.3f} {r['reload_same']:8.3f} {r['reload_one']:7.3f} "
                              f"{r['check_cpu']:7.3f} {r['same_cpu']:7.3f} {r['one_cpu']:7.3f}"
                              + (f"  ERRORS {r['errors']}" if r["errors"] else ""), flush=True)
        finally:
            up.proc.terminate()
            up.proc.wait()


if __name__ == "__main__":
    main()
