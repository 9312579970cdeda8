#!/usr/bin/env bash
# Runs every Gatehouse test. Installs what the build and the tests use (nginx, curl, dnsmasq, etcd,
# protoc, python3) when it is missing, so it passes on a bare Debian machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v curl >/dev/null 2>&1 || need+=(curl)
# DNS discovery tests ask a real dnsmasq (the binary alone: dnsmasq-base has no service).
[ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
# etcd discovery tests run a real etcd.
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
# The Kubernetes discovery test runs a stand-in API server written in Python.
command -v python3 >/dev/null 2>&1 || need+=(python3)
# The etcd-client crate compiles etcd's .proto files at build time: protoc and its well-known types.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    # Debian must not start the servers it installs: the tests start their own on loopback.
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
    $SUDO rm -f /usr/sbin/policy-rc.d
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
cargo test --workspace --locked
