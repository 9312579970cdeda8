#!/usr/bin/env bash
# User-space instructions per request of the auth policies beside the open route, under valgrind's
# callgrind (see instructions.sh for why instruction counts): the same `/small` through a rule
# without policies, through a `jwt` policy (RS256, key from a JWKS file, the same token on every
# request: the cached-key, remembered-token path) and through an `apiKey` policy (inline SHA-256),
# whose SHA-256 of the presented key is also shown apart (see the end).
# Usage: bench/auth_instructions.sh [requests, default 20000]
# GATEHOUSE_BIN=path measures that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
. bench/callgrind_lib.sh
mkdir -p "$D/keys"

# An RSA key, its JWKS and an RS256 token valid for a day, made with openssl.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$D/keys/k.pem" 2>/dev/null
TOKEN=$(python3 - "$D/keys" <<'PY'
import base64, json, subprocess, sys, time
d = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
mod = subprocess.run(["openssl", "rsa", "-noout", "-modulus", "-in", f"{d}/k.pem"], capture_output=True, text=True).stdout
n = bytes.fromhex(mod.strip().split("=", 1)[1])
json.dump({"keys": [{"kty": "RSA", "kid": "k", "n": b64(n), "e": "AQAB"}]}, open(f"{d}/jwks.json", "w"))
head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k"}).encode())
body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 86400}).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{d}/k.pem"], input=f"{head}.{body}".encode(), capture_output=True).stdout
print(f"{head}.{body}.{b64(sig)}")
PY
)
KEY=bench-key-0123456789
KEY_SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)

# Runs Gatehouse with the rule's policy spec $2 (empty: no policy on the rule) under callgrind,
# every request carrying header $3; prints instructions per request.
measure() { # name policy header
    local name=$1 policy=$2 header=$3 gw uses=""
    gw=$(port)
    if [ -n "$policy" ]; then uses=$'\n      policies: [auth]'; else policy="{requestLimits: {maxBodySize: 1GiB}}"; fi
    { config_head "$(port)" "$gw"; cat <<YAML
---
apiVersion: gatehouse.dev/v1alpha1
kind: Policy
metadata: {name: auth}
spec: $policy
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: all}
spec:
  rules:
    - backends: [{backend: up}]$uses
YAML
    } > "$D/$name.yaml"
    READY_HEADER=$header callgrind_run "$name" "$gw" /small -H "$header"
}

open=$(measure open "" "x-none: 1")
jwt=$(measure jwt "{jwt: {jwks: {file: \"$D/keys/jwks.json\"}}}" "authorization: Bearer $TOKEN")
key=$(measure apikey "{apiKey: {keys: [{consumer: bench, sha256: \"$KEY_SHA\"}]}}" "x-api-key: $KEY")
printf '%-8s %8s instructions/request (/small, %s requests, h2load --h1 -c 10)\n' open "$open" "$N"
printf '%-8s %8s instructions/request (RS256, key from a JWKS file, one token)\n' jwt "$jwt"
# The SHA-256 of the presented key, separated: ring's digest, inclusive. Valgrind cannot run
# the SHA extensions, so ring takes its AVX path here; natively (sha_ni) it costs far less.
sha=$(callgrind_annotate --inclusive=yes "$D/apikey.out" 2>/dev/null \
    | awk -v n="$N" '/:ring::digest::digest \[/ {gsub(",", "", $1); print int($1 / n); exit}')
printf '%-8s %8s instructions/request (inline SHA-256 key)\n' apikey "$key"
printf '%-8s %8s instructions/request of it in ring::digest::digest (SHA-256 of the key)\n' "" "${sha:-0}"
python3 -c "print(f'jwt/open    {$jwt/$open:6.3f}'); print(f'apikey/open {$key/$open:6.3f}'); print(f'apikey without SHA-256 / open {($key - ${sha:-0})/$open:6.3f}')"
