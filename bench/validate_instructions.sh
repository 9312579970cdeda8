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
. bench/callgrind_lib.sh
# A GET the validating rule accepts: every run is ready once it answers 200.
READY_PATH="/small?limit=5"

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
    local name=$1 extra=$2 path=$3 gw; shift 3
    gw=$(port)
    { config_head "$(port)" "$gw"; cat <<YAML
---
apiVersion: gatehouse.dev/v1alpha1
kind: Route
metadata: {name: all}
spec:
  rules:
    - backends: [{backend: up}]$extra
YAML
    } > "$D/$name.yaml"
    callgrind_run "$name" "$gw" "$path" "$@"
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
