#!/usr/bin/env bash
# User-space instructions per proxied request, Gatehouse beside nginx, under valgrind's callgrind.
# Unlike req/s on a shared machine, instruction counts repeat to within a fraction of a percent, so
# this is the number to compare when changing the hot path. It does not see the kernel (about three
# quarters of all CPU here) or cache misses.
# Usage: bench/instructions.sh [requests, default 20000] [path: small or 16k] [lr]
# With `lr`, both proxies balance over three upstream endpoints (the upstream nginx on three ports) by
# least request: Gatehouse `loadBalancer: {policy: LeastRequest}`, nginx `least_conn`.
# GATEHOUSE_BIN=path measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
P=${2:-small}
LR=${3:-}

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
wait_port() {
    for _ in $(seq 300); do
        curl -s -o /dev/null "http://127.0.0.1:$1/$P" && return 0
        sleep 0.1
    done
    echo "nothing answered on port $1" >&2; exit 1
}
nginx_conf() { # dir port body
    mkdir -p "$1"
    cat > "$1/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $1/nginx.pid; error_log $1/error.log error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $1/b; proxy_temp_path $1/p; fastcgi_temp_path $1/f; uwsgi_temp_path $1/u; scgi_temp_path $1/s;
  server { listen 127.0.0.1:$2; $3 } }
EOF
}

UP=$(port)
ENDPOINTS=("$UP")
if [ "$LR" = lr ]; then ENDPOINTS=("$(port)" "$(port)" "$(port)"); fi
mkdir -p "$D/www"
head -c 16384 /dev/zero | tr '\0' x > "$D/www/16k"
EXTRA=""
for e in "${ENDPOINTS[@]}"; do [ "$e" = "$UP" ] || EXTRA+="listen 127.0.0.1:$e; "; done
nginx_conf "$D/up" "$UP" "${EXTRA}location = /small { return 200 \"hello from upstream\\n\"; } location / { root $D/www; }"
"$NGINX" -p "$D/up" -c "$D/up/nginx.conf" & PIDS+=($!)
for e in "$UP" "${ENDPOINTS[@]}"; do wait_port "$e"; done

# Runs the proxy command under callgrind, sends N requests, prints instructions per request.
measure() { # name port command...
    local name=$1 port=$2; shift 2
    valgrind --tool=callgrind --callgrind-out-file="$D/$name.out" "$@" >/dev/null 2>&1 &
    local pid=$!
    wait_port "$port"
    h2load --h1 -n "$N" -c 10 "http://127.0.0.1:$port/$P" | grep -E '^requests:' >&2
    kill -INT "$pid"; wait "$pid" || true
    local total
    total=$(grep -E '^(summary|totals):' "$D/$name.out" | head -1 | awk '{print $2}')
    echo "$name $((total / N))"
}

GW=$(port); ADMIN=$(port)
GEPS=$(printf '"127.0.0.1:%s", ' "${ENDPOINTS[@]}"); GEPS=${GEPS%, }
LB=""; NLB=""
if [ "$LR" = lr ]; then LB=", loadBalancer: {policy: LeastRequest}"; NLB="least_conn; "; fi
NSERVERS=$(printf 'server 127.0.0.1:%s; ' "${ENDPOINTS[@]}")
cat > "$D/gatehouse.yaml" <<EOF
apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {name: bench}
spec: {admin: {address: "127.0.0.1:$ADMIN"}, workers: 1, accessLog: {enabled: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:$GW", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: up}
spec: {endpoints: [$GEPS]$LB}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: all}
spec:
  rules:
    - backends: [{backend: up}]
EOF
g=$(GATEHOUSE_LOG=warn measure gatehouse "$GW" "$GATEHOUSE_BIN" run -c "$D/gatehouse.yaml")

NP=$(port)
nginx_conf "$D/proxy" "$NP" "location / { proxy_pass http://127.0.0.1:$UP; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
# nginx keeps upstream connections alive only through an upstream block.
sed -i "s|proxy_pass http://127.0.0.1:$UP;|proxy_pass http://up;|; s|http { |http { upstream up { $NLB${NSERVERS}keepalive 128; } |" "$D/proxy/nginx.conf"
n=$(measure nginx "$NP" "$NGINX" -p "$D/proxy" -c "$D/proxy/nginx.conf")

gi=${g#* }; ni=${n#* }
printf '%-10s %8s instructions/request (%s, %s requests, h2load --h1 -c 10%s)\n' gatehouse "$gi" "/$P" "$N" "${LR:+, least request over ${#ENDPOINTS[@]} endpoints}"
printf '%-10s %8s instructions/request\n' nginx "$ni"
python3 -c "print(f'ratio      {$gi/$ni:8.2f}')"
