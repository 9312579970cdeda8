#!/usr/bin/env bash
# User-space instructions per request of traffic policies that never act, beside the open route,
# under valgrind's callgrind (see instructions.sh for why instruction counts): the same `/small`
# through a rule without policies, through a `scope: local` rate limit that never triggers (10^9
# requests/s by client address) and through a rule with `retry` configured that is never needed.
# Targets (issue 8): at most 3 % for the limit; no measurable cost for the retry policy.
# Usage: bench/policy_instructions.sh [requests, default 20000]
# GATEHOUSE_BIN=path measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
. bench/callgrind_lib.sh

# Runs Gatehouse with `$2` added to the rule (YAML fields, indented as the rule's) and the Policy
# spec `$3` (used by the rule when given) under callgrind; prints instructions per request.
measure() { # name rule-fields policy
    local name=$1 fields=$2 policy=$3 gw uses=""
    gw=$(port)
    if [ -n "$policy" ]; then uses=$'\n      policies: [p]'; else policy="{requestLimits: {maxBodySize: 1GiB}}"; fi
    { config_head "$(port)" "$gw"; cat <<YAML
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
retry=$(measure retry $'\n      retry: {attempts: 3, on: [connect-failure, reset, gateway-error]}' "")
printf '%-8s %8s instructions/request (/small, %s requests, h2load --h1 -c 10)\n' open "$open" "$N"
printf '%-8s %8s instructions/request (local rate limit, never triggered)\n' limit "$limit"
printf '%-8s %8s instructions/request (retry configured, never needed)\n' retry "$retry"
python3 -c "print(f'limit/open  {$limit/$open:6.3f}'); print(f'retry/open  {$retry/$open:6.3f}')"
