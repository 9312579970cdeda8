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

. bench/install.sh
install_missing valgrind:valgrind nginx:nginx-light h2load:nghttp2-client
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${GATEHOUSE_BIN:-}" ]; then
    cargo build --release -p gatehouse
    GATEHOUSE_BIN=target/release/gatehouse
fi

D=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port [header]
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "${2:-x-none: 1}" "http://127.0.0.1:$1/small")" = 200 ] && return 0
        sleep 0.1
    done
    echo "nothing answered 200 on port $1" >&2; exit 1
}

UP=$(port)
mkdir -p "$D/up"
cat > "$D/up/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $D/up/nginx.pid; error_log $D/up/error.log error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $D/up/b; proxy_temp_path $D/up/p; fastcgi_temp_path $D/up/f; uwsgi_temp_path $D/up/u; scgi_temp_path $D/up/s;
  server { listen 127.0.0.1:$UP; location = /small { return 200 "hello from upstream\n"; } } }
NGINX
"$NGINX" -p "$D/up" -c "$D/up/nginx.conf" & PIDS+=($!)
wait_port "$UP"

# Runs Gatehouse with `$2` added to the rule (YAML fields, indented as the rule's) and the Policy
# spec `$3` (used by the rule when given) under callgrind; prints instructions per request.
measure() { # name rule-fields policy
    local name=$1 fields=$2 policy=$3 gw admin uses=""
    gw=$(port); admin=$(port)
    if [ -n "$policy" ]; then uses=$'\n      policies: [p]'; else policy="{requestLimits: {maxBodySize: 1GiB}}"; fi
    cat > "$D/$name.yaml" <<YAML
apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {name: bench}
spec: {admin: {address: "127.0.0.1:$admin"}, workers: 1, accessLog: {enabled: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:$gw", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: up}
spec: {endpoints: ["127.0.0.1:$UP"]}
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
    GATEHOUSE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$D/$name.out" \
        "$GATEHOUSE_BIN" run -c "$D/$name.yaml" >/dev/null 2>&1 &
    local pid=$!
    wait_port "$gw"
    h2load --h1 -n "$N" -c 10 "http://127.0.0.1:$gw/small" | grep -E '^requests:' >&2
    kill -INT "$pid"; wait "$pid" || true
    local total
    total=$(grep -E '^(summary|totals):' "$D/$name.out" | head -1 | awk '{print $2}')
    echo $((total / N))
}

open=$(measure open "" "")
limit=$(measure limit "" "{rateLimit: {requests: 1000000000, per: 1s, key: {clientAddress: true}, scope: local}}")
retry=$(measure retry $'\n      retry: {attempts: 3, on: [connect-failure, reset, gateway-error]}' "")
printf '%-8s %8s instructions/request (/small, %s requests, h2load --h1 -c 10)\n' open "$open" "$N"
printf '%-8s %8s instructions/request (local rate limit, never triggered)\n' limit "$limit"
printf '%-8s %8s instructions/request (retry configured, never needed)\n' retry "$retry"
python3 -c "print(f'limit/open  {$limit/$open:6.3f}'); print(f'retry/open  {$retry/$open:6.3f}')"
