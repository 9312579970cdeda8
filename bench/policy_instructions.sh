#!/usr/bin/env bash
# User-space instructions per request of traffic policies that never act, beside the open route,
# under valgrind's callgrind (see instructions.sh for why instruction counts): the same `/small`
# through a rule without policies, through a `scope: local` rate limit that never triggers (10^9
# requests/s by client address), the same limit with `scope: global` (a redis-server started here;
# under valgrind the decisions rarely share a batch, so this is close to one script call a request:
# the worst case) and through a rule with `retry` configured that is never needed.
# Targets (issue 8): at most 3 % for the local limit; no measurable cost for the retry policy (the
# global limit's target is throughput under load: bench.py's `rl-global h1`).
# Usage: bench/policy_instructions.sh [requests, default 20000]
# GATEHOUSE_BIN=path measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
. bench/callgrind_lib.sh
install_missing redis-server:redis-server
trap cleanup EXIT # install_missing sets its own
RP=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$D" >/dev/null & PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done

# Runs Gatehouse with `$2` added to the rule (YAML fields, indented as the rule's) and the Policy
# spec `$3` (used by the rule when given) under callgrind; prints instructions per request.
measure() { # name rule-fields policy
    local name=$1 fields=$2 policy=$3 gw uses=""
    gw=$(port)
    if [ -n "$policy" ]; then uses=$'\n      policies: [p]'; else policy="{requestLimits: {maxBodySize: 1GiB}}"; fi
    { config_head "$(port)" "$gw" |
        sed "s|accessLog: {enabled: false}}|accessLog: {enabled: false}, redis: {url: \"redis://127.0.0.1:$RP\", timeout: 1s}}|"
      cat <<YAML
---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: p}
spec: $policy
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: all}
spec:
  rules:
    - backends: [{backend: up}]$uses$fields
YAML
    } > "$D/$name.yaml"
    callgrind_run "$name" "$gw" /small
}
open=$(measure open "" "")
limit=$(measure limit "" "{rateLimit: {requests: 1000000000, per: 1s, key: {clientAddress: true}, scope: local}}")
global=$(measure global "" "{rateLimit: {requests: 1000000000, per: 1s, key: {clientAddress: true}, scope: global}}")
retry=$(measure retry $'\n      retry: {attempts: 3, on: [connect-failure, reset, gateway-error]}' "")
printf '%-8s %8s instructions/request (/small, %s requests, h2load --h1 -c 10)\n' open "$open" "$N"
printf '%-8s %8s instructions/request (local rate limit, never triggered)\n' limit "$limit"
printf '%-8s %8s instructions/request (global rate limit, never triggered)\n' global "$global"
printf '%-8s %8s instructions/request (retry configured, never needed)\n' retry "$retry"
python3 -c "print(f'limit/open  {$limit/$open:6.3f}'); print(f'global/open {$global/$open:6.3f}'); print(f'retry/open  {$retry/$open:6.3f}')"
