#!/usr/bin/env bash
# User-space instructions per request of OpenAPI request validation (`openapi: {validateRequests:
# true}`) beside the open route, under valgrind's callgrind (see instructions.sh for why
# instruction counts): the same nginx `/small` through a rule without a document, a GET with two
# query parameters checked against their schemas, and a POST whose 84-byte JSON body is read
# whole, checked against an object schema (required, types, enum, nested object, array) and
# forwarded from what was kept.
# Usage: bench/validate_instructions.sh [requests, default 20000]
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
wait_port() { # port
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/small?limit=5")" = 200 ] && return 0
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

cat > "$D/api.yaml" <<'YAML'
openapi: 3.1.0
info: {title: Bench, version: "1"}
paths:
  /small:
    get:
      parameters:
        - {name: limit, in: query, required: true, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: state, in: query, schema: {type: string, enum: [open, done]}}
      responses: {"200": {description: ok}}
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [title]
              properties:
                title: {type: string, maxLength: 100}
                priority: {type: string, enum: [low, high]}
                owner: {type: object, required: [id], properties: {id: {type: integer}}}
                tags: {type: array, items: {type: string}}
      responses: {"200": {description: ok}}
YAML
printf '%s' '{"title": "write the report", "priority": "high", "owner": {"id": 3}, "tags": ["a"]}' > "$D/body.json"

# Runs Gatehouse with the rule's extra line $2 under callgrind, sends N requests to path $3 with
# h2load arguments $4...; prints instructions per request.
measure() { # name rule-extra path h2load-args...
    local name=$1 extra=$2 path=$3 gw admin; shift 3
    gw=$(port); admin=$(port)
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
kind: Route
metadata: {name: all}
spec:
  rules:
    - backends: [{backend: up}]$extra
YAML
    GATEHOUSE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$D/$name.out" \
        "$GATEHOUSE_BIN" run -c "$D/$name.yaml" >/dev/null 2>&1 &
    local pid=$!
    wait_port "$gw"
    local status
    status=$(h2load --h1 -n "$N" -c 10 "$@" "http://127.0.0.1:$gw$path" | grep -E '^(requests|status codes):')
    echo "$name: $status" | tr '\n' ' ' >&2; echo >&2
    kill -INT "$pid"; wait "$pid" || true
    local total
    total=$(grep -E '^(summary|totals):' "$D/$name.out" | head -1 | awk '{print $2}')
    echo $((total / N))
}

V=$'\n      openapi: {file: api.yaml, validateRequests: true}'
Q="/small?limit=5&state=open"
JSON=(-d "$D/body.json" -H "content-type: application/json")
open=$(measure open "" "$Q")
get=$(measure get "$V" "$Q")
openpost=$(measure open-post "" /small "${JSON[@]}")
post=$(measure post "$V" /small "${JSON[@]}")
printf '%-10s %8s instructions/request (GET %s, no document; %s requests, h2load --h1 -c 10)\n' open "$open" "$Q" "$N"
printf '%-10s %8s instructions/request (the same GET, its two query parameters validated)\n' get "$get"
printf '%-10s %8s instructions/request (POST, %s-byte JSON body, no document)\n' open-post "$openpost" "$(wc -c < "$D/body.json")"
printf '%-10s %8s instructions/request (the same POST, body read whole and validated)\n' post "$post"
python3 -c "print(f'get-open   {$get-$open:8d}'); print(f'post-open  {$post-$openpost:8d}')"
