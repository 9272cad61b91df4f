#!/usr/bin/env bash
# Sign a request for api-warden with openssl and send it with curl (the README's recipe).
#   CLIENT_ID=marketing CLIENT_SECRET=... API_URL=http://127.0.0.1:10000 \
#     examples/sign-and-send.sh POST '/api/send/bulk?campaign=7' '{"subject":"hello"}'
# The signature covers METHOD, the request target (path and query), the body and the timestamp,
# one per line, with no newline after the timestamp.
set -euo pipefail
method=$1 target=$2 body=${3-}
ts=$(date +%s)
sig=$(printf '%s\n%s\n%s\n%s' "$method" "$target" "$body" "$ts" \
  | openssl dgst -sha256 -hmac "$CLIENT_SECRET" -r | cut -d' ' -f1)
# shellcheck disable=SC2086 # EXTRA_CURL_ARGS is a list of arguments
exec curl -sS -X "$method" "${API_URL:-http://127.0.0.1:10000}$target" \
  -H "X-Client-Id: $CLIENT_ID" -H "X-Timestamp: $ts" -H "X-Signature: $sig" \
  --data-binary "$body" ${EXTRA_CURL_ARGS:-}
