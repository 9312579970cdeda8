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

# Counts instructions of N requests to the last route of SHAPE with COUNT routes.
measure() { # shape count
    local shape=$1 n=$2 gw admin host path
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
    READY_HEADER="host: $host" FROM_READY=1 callgrind_run "$shape-$n" "$gw" "$path" \
        -H ":authority: $host"
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
