#!/usr/bin/env bash
# Instructions of one file-watcher reload of a large config, under valgrind's callgrind (counts do
# not depend on the machine's load). Only what runs inside `Gateway::reload` (and the blocking
# task it starts to load the files) is counted, so start-up and idle tasks are not.
#
#   python3 bench/scale.py --write-config /tmp/cfgs --sizes 10000
#   bench/scale_reload_callgrind.sh target/release/gatehouse /tmp/cfgs/gatehouse-paths-10000{,-changed}.yaml
#
# The configs of `--write-config` put the admin API on 127.0.0.1:18081. Prints the total; the
# profile is left in callgrind.out.reload for callgrind_annotate.
set -euo pipefail
bin=$1 base=$2 changed=$3
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
cp "$base" "$dir/gatehouse.yaml"
GATEHOUSE_LOG=warn valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect='gatehouse_gateway::gateway::Gateway::reload*' \
    --toggle-collect='gatehouse_gateway::gateway::ConfigSource::load' \
    --callgrind-out-file=callgrind.out.reload "$bin" run -c "$dir/gatehouse.yaml" \
    >/dev/null 2>"${VALGRIND_LOG:-$dir/valgrind.log}" &
pid=$!
version() { curl -sf http://127.0.0.1:18081/backends | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])'; }
for _ in $(seq 600); do v=$(version 2>/dev/null) && break; sleep 0.5; done
echo "serving version $v" >&2
cp "$changed" "$dir/next.yaml" && mv "$dir/next.yaml" "$dir/gatehouse.yaml"
for _ in $(seq 600); do
    now=$(version 2>/dev/null || true)
    [ -n "$now" ] && [ "$now" != "$v" ] && break
    sleep 0.5
done
echo "serving version $now" >&2
kill "$pid"; wait "$pid" 2>/dev/null || true
callgrind_annotate callgrind.out.reload 2>/dev/null | grep -m1 "PROGRAM TOTALS"
