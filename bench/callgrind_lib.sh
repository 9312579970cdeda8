# Shared by the scripts that compare a route feature with the open route (callgrind:
# auth_instructions.sh, policy_instructions.sh, validate_instructions.sh, scale_instructions.sh;
# natively: auth_cpu.sh): tools, the binary to measure, a temp dir cleaned on exit, free ports,
# the upstream nginx answering `/small`, the Gateway/Listener/Backend documents every config
# starts with, and one measured callgrind run.
# Source it from the repository root with N (requests per run) set; NATIVE=1 skips valgrind,
# UP_CPU=n pins the upstream to CPU n.
. bench/install.sh
[ -n "${NATIVE:-}" ] || install_missing valgrind:valgrind
install_missing nginx:nginx-light h2load:nghttp2-client
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -z "${GATEHOUSE_BIN:-}" ]; then
    cargo build --release -p gatehouse
    GATEHOUSE_BIN=target/release/gatehouse
fi

D=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] && cp "$D"/*.out "$KEEP"/ 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until `http://127.0.0.1:PORT$PATH` answers 200 to a request with HEADER, trying
# WAIT_TRIES times (default 300) 0.1 s apart.
wait_port() { # port [header] [path]
    for _ in $(seq "${WAIT_TRIES:-300}"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -H "${2:-x-none: 1}" "http://127.0.0.1:$1${3:-/small}")" = 200 ] && return 0
        sleep 0.1
    done
    echo "nothing answered 200 on port $1" >&2; exit 1
}

# The upstream: nginx on port $UP answering `/small` with a fixed 20-byte body.
UP=$(port)
mkdir -p "$D/up"
cat > "$D/up/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $D/up/nginx.pid; error_log $D/up/error.log error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $D/up/b; proxy_temp_path $D/up/p; fastcgi_temp_path $D/up/f; uwsgi_temp_path $D/up/u; scgi_temp_path $D/up/s;
  server { listen 127.0.0.1:$UP; location = /small { return 200 "hello from upstream\n"; }
    location / { return 200 "hello from upstream\n"; } } }
NGINX
${UP_CPU:+taskset -c "$UP_CPU"} "$NGINX" -p "$D/up" -c "$D/up/nginx.conf" & PIDS+=($!)
wait_port "$UP"

# Prints the Gateway (one worker, no access log), Listener and Backend `up` documents.
config_head() { # admin-port listener-port
    cat <<YAML
apiVersion: gatehouse.dev/v1alpha1
kind: Gateway
metadata: {name: bench}
spec: {admin: {address: "127.0.0.1:$1"}, workers: 1, accessLog: {enabled: false}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec: {address: "127.0.0.1:$2", protocol: HTTP}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: up}
spec: {endpoints: ["127.0.0.1:$UP"]}
YAML
}

# Runs Gatehouse on $D/NAME.yaml (listening on GW) under callgrind, waits until READY_PATH
# (default PATH) answers 200 to a GET with READY_HEADER (default none), sends N requests with
# h2load (`--h1 -c 10` and the further arguments), stops it and prints its instructions per
# request. With FROM_READY=1 only what runs between readiness and shutdown is counted
# (`callgrind_control --zero`, then `--dump`): loading or freeing a large config is no request's.
callgrind_run() { # name gw path [h2load args...]
    local name=$1 gw=$2 path=$3 pid total out
    shift 3
    GATEHOUSE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$D/$name.out" \
        "$GATEHOUSE_BIN" run -c "$D/$name.yaml" >/dev/null 2>&1 &
    pid=$!
    # Called in a command substitution's subshell: its own trap stops the gateway when it never
    # answers (the parent's cleanup does not know this pid).
    CG_PID=$pid
    trap 'kill "${CG_PID:-}" 2>/dev/null || true' EXIT
    wait_port "$gw" "${READY_HEADER:-x-none: 1}" "${READY_PATH:-$path}"
    [ -z "${FROM_READY:-}" ] || callgrind_control --zero "$pid" >/dev/null 2>&1
    h2load --h1 -n "$N" -c 10 "$@" "http://127.0.0.1:$gw$path" \
        | grep -E '^(requests|status codes):' | tr '\n' ' ' >&2
    echo >&2
    out="$D/$name.out"
    if [ -n "${FROM_READY:-}" ]; then
        callgrind_control --dump "$pid" >/dev/null 2>&1
        out="$D/$name.out.1"
    fi
    kill -INT "$pid"; wait "$pid" || true
    total=$(grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}')
    echo $((total / N))
}
