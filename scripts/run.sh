#!/usr/bin/env bash
# Runs Gatehouse from source: `scripts/run.sh` serves the built-in quickstart, `scripts/run.sh gw/`
# a config directory (any `gatehouse run` arguments pass through). Installs what the build needs
# beyond a Rust toolchain when it is missing: the etcd discovery client compiles etcd's .proto files
# at build time, which takes `protoc` and its well-known types (Debian: protobuf-compiler,
# libprotobuf-dev).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
exec cargo run --release -p gatehouse -- run "$@"
