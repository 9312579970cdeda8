#!/usr/bin/env bash
# CPU time (user + system, from /proc) per request of the Gatehouse process, natively, for
# `/small` through the open route and through a route with an `apiKey` policy (inline SHA-256),
# and optionally a route with `retry` configured that is never needed. All gateways run at once,
# pinned to CPU 0 (one worker each), the upstream nginx and h2load on CPU 1; each round sends the
# same fixed number of requests (`h2load --h1 -n N -c 10`, a closed loop) to each route in turn,
# so that drifting machine load falls on every case alike. Prints per-round CPU per request and
# ratio to the open route, then the median and range of the per-round ratios.
# Unlike `auth_instructions.sh` (callgrind), this counts the kernel's share and runs the SHA
# extensions natively; it is as noisy as the machine is busy.
# Usage: bench/auth_cpu.sh [requests per run, default 50000] [rounds, default 11]
# GATEHOUSE_BIN=path measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50000}
ROUNDS=${2:-11}
NATIVE=1
UP_CPU=1
. bench/callgrind_lib.sh
# CPU seconds (user + system) of process $1, from /proc/PID/stat (fields 14 and 15).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

KEY=bench-key-0123456789
KEY_SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
declare -A GW_PORT GW_PID HEADER
# Starts the gateway of case $1 with rule fields $2 (YAML, indented as the rule's).
start() { # name rule-fields header
    local name=$1 gw
    gw=$(port)
    { config_head "$(port)" "$gw"; cat <<YAML
---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: key}
spec: {apiKey: {keys: [{consumer: bench, sha256: "$KEY_SHA"}]}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: all}
spec:
  rules:
    - backends: [{backend: up}]$2
YAML
    } > "$D/$name.yaml"
    GATEHOUSE_LOG=warn taskset -c 0 "$GATEHOUSE_BIN" run -c "$D/$name.yaml" >/dev/null 2>&1 &
    GW_PID[$name]=$!
    PIDS+=($!)
    GW_PORT[$name]=$gw
    HEADER[$name]=$3
    wait_port "$gw" "$3"
}
CASES=(open apikey ${WITH_RETRY:+retry})
start open "" "x-none: 1"
start apikey $'\n      policies: [key]' "x-api-key: $KEY"
[ -n "${WITH_RETRY:-}" ] && start retry $'\n      retry: {attempts: 3, on: [connect-failure, reset, gateway-error]}' "x-none: 1"

# One run: N requests to case $1; prints its CPU microseconds per request.
run() {
    local name=$1 c0 c1
    c0=$(cpu "${GW_PID[$name]}")
    taskset -c 1 h2load --h1 -n "$N" -c 10 -H "${HEADER[$name]}" "http://127.0.0.1:${GW_PORT[$name]}/small" \
        | grep -q "succeeded, 0 failed" || { echo "errors in $name" >&2; exit 1; }
    c1=$(cpu "${GW_PID[$name]}")
    python3 -c "print(f'{($c1 - $c0) * 1e6 / $N:.2f}')"
}
for name in "${CASES[@]}"; do run "$name" >/dev/null; done # warm-up
for r in $(seq "$ROUNDS"); do
    line="round $r"
    for name in "${CASES[@]}"; do line+=" $name=$(run "$name")"; done
    echo "$line" | tee -a "$D/rounds"
done
python3 - "$D/rounds" <<'PY'
import statistics, sys
rows = [dict(kv.split("=") for kv in l.split()[2:]) for l in open(sys.argv[1])]
for case in rows[0]:
    if case == "open":
        continue
    ratios = sorted(float(r[case]) / float(r["open"]) for r in rows)
    print(f"{case}/open CPU per request: median {statistics.median(ratios):.3f}, range {ratios[0]:.3f}-{ratios[-1]:.3f} over {len(ratios)} rounds")
print(f"open: median {statistics.median(float(r['open']) for r in rows):.2f} us CPU per request")
PY
