#!/usr/bin/env bash
# User-space instructions per request with 1, 1,000 and 10,000 routes (bench/scale.py's three
# shapes: a host per route, prefixes on one host, prefixes with every 20th rule a regex), requests
# to the last declared route, under callgrind. Issue 15 asks for < 3 % throughput loss from 1 to
# 10,000 routes; on a shared machine req/s moves by more than that between runs of one config,
# while instruction counts repeat to a fraction of a percent. Counting starts once the gateway
# answers (`callgrind_control --zero`) and ends before shutdown (`--dump`), so neither parsing nor
# freeing 10,000 routes is spread over the requests.
# What this cannot see: cache misses of a larger route table (the trie's nodes touched per
# request do not grow with the rule count, but they may be colder).
# Usage: bench/scale_instructions.sh [requests, default 20000] [sizes, default 1,1000,10000]
# GATEHOUSE_BIN=path measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
SIZES=${2:-1,1000,10000}
. bench/callgrind_lib.sh
# Loading 10,000 routes under valgrind takes minutes on a loaded machine.
WAIT_TRIES=6000
install_missing callgrind_control:valgrind

# Counts instructions of N requests to the last route of SHAPE with COUNT routes.
measure() { # shape count
    local shape=$1 n=$2 gw admin host path pid total
    gw=$(port)
    admin=$(port)
    read -r host path < <(python3 - "$shape" "$n" "$gw" "$admin" "$UP" "$D/$shape-$n.yaml" <<'PY'
import sys
sys.path.insert(0, "bench")
import scale
shape, n, gw, admin, up, out = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), sys.argv[6]
open(out, "w").write(scale.gatehouse_config(gw, admin, up, shape, n))
print(*scale.target(shape, n))
PY
)
    GATEHOUSE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$D/$shape-$n.out" \
        "$GATEHOUSE_BIN" run -c "$D/$shape-$n.yaml" >/dev/null 2>&1 &
    pid=$!
    # This runs in a command substitution's subshell: its own trap stops the gateway when it
    # never answers (the parent's cleanup does not know this pid).
    CG_PID=$pid
    trap 'kill "${CG_PID:-}" 2>/dev/null || true' EXIT
    wait_port "$gw" "host: $host" "$path"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    h2load --h1 -n "$N" -c 10 -H ":authority: $host" "http://127.0.0.1:$gw$path" \
        | grep -E '^(requests|status codes):' | tr '\n' ' ' >&2
    echo >&2
    # Dumped before stopping: shutdown frees every route, which is not a request's cost.
    callgrind_control --dump "$pid" >/dev/null 2>&1
    kill -INT "$pid"; wait "$pid" || true
    total=$(grep -hE '^(summary|totals):' "$D/$shape-$n.out".* | head -1 | awk '{print $2}')
    echo $((total / N))
}

printf '%-6s %7s %14s %8s\n' shape routes instr/request 'vs 1'
for shape in hosts paths mix; do
    base=""
    for n in ${SIZES//,/ }; do
        v=$(measure "$shape" "$n")
        base=${base:-$v}
        printf '%-6s %7s %14s %8s\n' "$shape" "$n" "$v" "$(python3 -c "print(f'{$v/$base:.3f}')")"
    done
done
