#!/usr/bin/env bash
# Throughput and latency of api-warden against Envoy with no filter and Envoy's native filters,
# in one run, on loopback. Prints a table with each variant's ratio to "no filter".
#   make bench                      (DURATION=10 CONNECTIONS=16 CONCURRENCY=1 to change the load)
# Each variant: Envoy (--concurrency $CONCURRENCY) -> router -> a second Envoy listener that
# answers 200 directly, so the only difference between variants is the filter chain:
#   none            no filter
#   empty_wasm      a Rust proxy-wasm filter that does nothing (the floor of any wasm filter)
#   empty_wasm_cfg  the same empty filter under api-warden's own Envoy configuration block
#                   (vm_id, root_id, failure_policy FAIL_RELOAD, the plugin configuration):
#                   the floor for api-warden as it is deployed
#   native_api_key  Envoy's api_key_auth + local_ratelimit
#   native_api_key_full  the same native filters doing what api-warden does: client id forwarded,
#                   key hidden, identity headers added (header_mutation), rate-limit headers
#   warden_api_key  api-warden: API key, authorisation, local rate limit, identity headers
#   warden_api_key_lean  warden_api_key sending only x-client-id upstream and no rate-limit
#                   fields on admitted responses (upstream_identity_headers,
#                   rate_limiting.response_headers), as native_api_key does
#   native_jwt      Envoy's jwt_authn (HS256, local JWKS) + local_ratelimit
#   warden_jwt      api-warden: the same with a JWT
#   warden_threat   warden_api_key with threat protection on: address blocking, security events,
#                   behaviour profiles and abuse scoring (security_monitoring.abuse)
#   warden_redis    api-warden with an API key, counting in Redis through webdis (one callout
#                   per request; Redis and webdis on loopback, started here)
#   warden_batch    the same in batched mode (each worker reserves 20 admissions per callout)
#   warden_hmac_1k  api-warden with the seed's HMAC signatures over a 1 KiB POST body (each
#                   request signed here with its own nonce, so none is a replay);
#                   empty_wasm_1k: the empty filter under the same POSTs (the floor for it)
#   warden_rfc9421_1k  the same POSTs signed with RFC 9421 (hmac-sha256 over @method,
#                   @request-target and Content-Digest), the default signing scheme
#   warden_rls      api-warden with an API key, counting in a rate limit service over gRPC
#                   (tools/rls-server: limitador in the same Redis); native_rls: Envoy's
#                   api_key_auth + ratelimit filter asking the same service for the same count
#   warden_registry warden_api_key with the key and its client in the Redis client registry
#                   instead of the configuration (answers cached: no callout once warm)
#   warden_es256    api-warden with one ES256 token, sent again and again (its verified-token
#                   cache answers); native_es256: jwt_authn on the same token with its cache
#   warden_<alg>_distinct  for ES256, ES384, RS256, PS256 and EdDSA: api-warden with distinct
#                   tokens (minted here, more than any cache holds, each run from a random
#                   line): every request verifies a signature; native_<alg>_distinct:
#                   jwt_authn on the same tokens without a cache
#   host_calls_floor  a filter (bench/host-calls) that makes exactly the host calls api-warden
#                   makes for warden_api_key's requests, and nothing else: the floor of that
#                   call pattern, so api-warden's cost over it is its own code's;
#                   host_calls_floor_lean: the same for warden_api_key_lean's 9 calls;
#                   host_calls_floor_redis: the same for warden_redis's 19, with its one webdis
#                   call (the path api-warden sends: examples/redis_call.rs);
#                   host_calls_floor_rls: the same for warden_rls's 18, with its one gRPC call
#                   (the message api-warden sends: examples/rls_call.rs);
#                   host_calls_floor_hmac: the same for warden_hmac_1k's 22 (the headers held
#                   for the body, the body read, two CAS updates), under the same POSTs
#   call_<kind>     with CALL_COSTS=1 (instead of the variants above): one kind of host call
#                   20 times per request (CALL_REPEAT=n for another count), beside
#                   call_none; prints each call's Envoy CPU
#   baseline_api_key, baseline_jwt, baseline_es256, baseline_redis, baseline_hmac_1k,
#                   baseline_rfc9421_1k, baseline_<alg>_distinct with BASELINE_WASM=path:
#                   warden_api_key, warden_jwt, warden_es256, warden_redis, warden_hmac_1k,
#                   warden_rfc9421_1k and warden_<alg>_distinct on
#                   another build, in the same interleaved rounds (to
#                   compare a change with what it replaces)
# ONLY="none empty_wasm warden_api_key" runs a subset. Each round after the first restarts every
# variant's Envoy (FRESH=0: one process each for the whole run); PIN=1 pins Envoy to CPU 0 and
# wrk to CPU 1; PACE_MS (default 10) is the mean pause (random, exponential) of the paced latency
# runs of empty_wasm_cfg, warden_api_key, warden_redis, the two host-call floors and the two RLS
# variants (PACED="..." names other variants for them), which also time webdis alone under the
# same load.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY=${ENVOY_BIN:-.venv/bin/envoy}
WASM=${WASM:-$PWD/target/wasm32-wasip1/release/api_warden.wasm}
EMPTY_WASM=$PWD/bench/empty-filter/target/wasm32-wasip1/release/empty_filter.wasm
HOST_CALLS_WASM=$PWD/bench/host-calls/target/wasm32-wasip1/release/host_calls.wasm
cargo build --quiet --release --target wasm32-wasip1 --manifest-path bench/empty-filter/Cargo.toml
cargo build --quiet --release --target wasm32-wasip1 --manifest-path bench/host-calls/Cargo.toml
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
CONCURRENCY=${CONCURRENCY:-1}
KEY=ak_demo_marketing_key_0000000000000001
JWT_SECRET=demo-jwt-secret-change-me-0123456789abcdef
HMAC_SECRET=bench-marketing-hmac-secret-0123456789
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

JWT=$(python3 - "$JWT_SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
now = int(time.time())
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"client_id": "marketing", "aud": "email-api", "iat": now, "exp": now + 3600}).encode())
s = b(hmac.new(sys.argv[1].encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
PY
)
JWK_K=$(python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.argv[1].encode()).rstrip(b"=").decode())' "$JWT_SECRET")
KEY_SHA=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)

warden_config() { # $1: extra JSON members
  cat <<JSON
{"clients": [{"client_id": "marketing", "name": "Marketing Team", "allowed_endpoints": ["/api/send/*"],
  "api_keys": ["$KEY_SHA"], "rate_limits": {"requests_per_minute": 1000000000, "requests_per_hour": 1000000000,
  "requests_per_day": 1000000000, "burst_limit": 1000000000}}],
 $1}
JSON
}

# The seed's HMAC signatures, with a replay table big enough for a whole round's signatures
# (each round's Envoy starts empty): 4096 x 256, against about 130k a round at 12k requests/s
# with the upstream kept alive, so no slot fills (a full slot is a 503, and the run stops).
warden_hmac_config() {
  cat <<JSON
{"auth_methods": ["hmac_signature"], "hmac": {"replay_cache_slots": 4096, "replay_slot_entries": 256},
 "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"], "client_secret": "$HMAC_SECRET",
  "seed_signatures": true, "rate_limits": {"requests_per_minute": 1000000000, "requests_per_hour": 1000000000,
  "requests_per_day": 1000000000, "burst_limit": 1000000000}}]}
JSON
}

# RFC 9421 signatures (http_signature, the default scheme) from the same client, with the same
# replay table (both schemes record their signatures in it).
warden_rfc9421_config() {
  cat <<JSON
{"auth_methods": ["http_signature"], "hmac": {"replay_cache_slots": 4096, "replay_slot_entries": 256},
 "clients": [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"], "client_secret": "$HMAC_SECRET",
  "rate_limits": {"requests_per_minute": 1000000000, "requests_per_hour": 1000000000,
  "requests_per_day": 1000000000, "burst_limit": 1000000000}}]}
JSON
}
# bench/signed.lua's body's RFC 9530 digest, for the RFC 9421 variant's Content-Digest.
BODY_DIGEST=$(python3 -c 'import base64, hashlib; print("sha-256=:" + base64.b64encode(hashlib.sha256(b"x" * 1024).digest()).decode() + ":")')

filters_none=""
filters_empty() {
  cat <<YAML
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: $EMPTY_WASM } }
YAML
}

filters_warden() { # $1: plugin configuration JSON, $2: the .wasm (default $WASM)
  local wasm=${2:-$WASM}
  local json; json=$(printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')
  cat <<YAML
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: api_warden
                root_id: api_warden
                failure_policy: FAIL_RELOAD
                allow_on_headers_stop_iteration: true
                vm_config:
                  vm_id: api_warden
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: $wasm } }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: $json
YAML
}
# Envoy's local rate limit with limits never reached, as api-warden's are in this benchmark.
native_ratelimit=$(cat <<YAML
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: bench
              token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
              filter_enabled: { default_value: { numerator: 100, denominator: HUNDRED } }
              filter_enforced: { default_value: { numerator: 100, denominator: HUNDRED } }
YAML
)
native_key_auth=$(cat <<YAML
          - name: envoy.filters.http.api_key_auth
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth
              credentials:
              - { key: "$KEY", client: marketing }
              key_sources:
              - header: "X-API-Key"
YAML
)
filters_native_key="$native_key_auth
$native_ratelimit"
# The native filters doing what api-warden does on an admitted API-key request: the client's id
# forwarded and the key hidden (api_key_auth), the other identity headers added
# (header_mutation), and rate-limit fields on the response (local_ratelimit's draft-03 headers).
filters_native_key_full=$(cat <<YAML
$native_key_auth
              forwarding: { header: x-client-id, hide_credentials: true }
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - append: { header: { key: x-client-name, value: "Marketing Team" }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
                - append: { header: { key: x-auth-method, value: api_key }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
                - append: { header: { key: x-security-level, value: standard }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
$native_ratelimit
              enable_x_ratelimit_headers: DRAFT_VERSION_03
YAML
)
filters_native_jwt=$(cat <<YAML
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                demo:
                  audiences: [email-api]
                  local_jwks:
                    inline_string: '{"keys":[{"kty":"oct","alg":"HS256","k":"$JWK_K"}]}'
              rules:
              - match: { prefix: "/" }
                requires: { provider_name: demo }
$native_ratelimit
YAML
)

# The upstream's filters before its router: for POSTs, a buffer filter, so it answers once the
# whole request is in. Its direct response would otherwise go out after the headers alone, and
# an HTTP/1.1 server that answers before the request is complete closes the connection: every
# POST would then open a new upstream connection (about 100 us of Envoy CPU each, measured),
# and that churn, not the filters, would fill the 1 KiB variants' figures.
upstream_filters() { # $1: the variant's request header ("signed" or "signed_rfc9421" for the POSTs)
  [[ $1 == signed* ]] || return 0
  cat <<YAML
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 65536
YAML
}

render() { # $1: listener port, $2: admin port, $3: upstream port, $4: filters, $5: upstream's
  cat <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } }
static_resources:
  listeners:
  - name: api
    address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: api
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route:
                  cluster: upstream
                  rate_limits: [{ actions: [{ generic_key: { descriptor_key: client_id, descriptor_value: marketing } }] }]
          http_filters:
$4
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  - name: upstream
    address: { socket_address: { address: 127.0.0.1, port_value: $3 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: upstream
              domains: ["*"]
              routes: [{ match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "ok" } } }]
          http_filters:
${5:-}
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: webdis
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: webdis
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $WEBDIS_PORT } } } }] }]
  - name: ratelimit
    connect_timeout: 1s
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: ratelimit
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $RLS_PORT } } } }] }]
  - name: upstream
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $3 } } } }] }]
YAML
}

declare -A PORT ADMIN HEADER FILTERS PID RPS P50 P99 CPU TOKEN_FILE SIGNED PACED_RPS PACED_P50 PACED_P99
# PIN=1: Envoy on CPU 0 and wrk on CPU 1, so the scheduler cannot place each Envoy process
# differently (unpinned, two processes of one build differ by about 5 us per request).
ENVOY_PIN=() WRK=(wrk)
if [[ ${PIN:-0} == 1 ]]; then ENVOY_PIN=(taskset -c 0) WRK=(taskset -c 1 wrk); fi

start_variant() { # $1: name, $2: filters YAML, $3: request header
  local p a u attempt
  # A port found free can be taken (an outgoing connection's source port) before Envoy binds
  # it: then again with other ports, so a long run is not lost to that race.
  for attempt in 1 2 3; do
    p=$(port); a=$(port); u=$(port)
    [[ $p != "$a" && $p != "$u" && $a != "$u" ]] || continue
    render "$p" "$a" "$u" "$2" "$(upstream_filters "$3")" > "$work/$1.yaml"
    "${ENVOY_PIN[@]}" "$ENVOY" -c "$work/$1.yaml" --concurrency "$CONCURRENCY" --disable-hot-restart -l error > "$work/$1.log" 2>&1 &
    PID[$1]=$!
    for _ in $(seq 100); do
      curl -sf "127.0.0.1:$a/ready" >/dev/null 2>&1 && curl -s -o /dev/null "127.0.0.1:$p/" && break
      kill -0 "${PID[$1]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "${PID[$1]}" 2>/dev/null && break
    grep -q 'Address already in use' "$work/$1.log" || break
    echo "variant $1: a port was taken before Envoy bound it (attempt $attempt); again with others" >&2
  done
  local code
  if [[ $3 == signed ]]; then
    # One signed POST, as bench/signed.lua sends them.
    .venv/bin/python bench/mint_signed.py "$HMAC_SECRET" 1 "$work/check.signed"
    read -r ts nonce sig < "$work/check.signed"
    code=$(head -c 1024 /dev/zero | tr '\0' x | curl -s -o /dev/null -w '%{http_code}' --data-binary @- \
      -H "X-Client-ID: marketing" -H "X-Timestamp: $ts" -H "X-Nonce: $nonce" -H "X-Signature: $sig" \
      -H "Content-Type: application/octet-stream" "127.0.0.1:$p/api/send/bulk" || true)
    SIGNED[$1]=seed
  elif [[ $3 == signed_rfc9421 ]]; then
    .venv/bin/python bench/mint_signed.py "$HMAC_SECRET" 1 "$work/check.signed" rfc9421
    read -r ts nonce sig < "$work/check.signed"
    code=$(head -c 1024 /dev/zero | tr '\0' x | curl -s -o /dev/null -w '%{http_code}' --data-binary @- \
      -H "Content-Digest: $BODY_DIGEST" -H "Signature: sig1=:$sig:" \
      -H "Signature-Input: sig1=(\"@method\" \"@request-target\" \"content-digest\");created=$ts;keyid=\"marketing\";alg=\"hmac-sha256\";nonce=\"$nonce\"" \
      -H "Content-Type: application/octet-stream" "127.0.0.1:$p/api/send/bulk" || true)
    SIGNED[$1]=rfc9421
  else
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "$3" "127.0.0.1:$p/api/send/bulk" || true)
  fi
  [[ $code == 200 ]] || { echo "variant $1 answers $code, not 200" >&2; cat "$work/$1.log" >&2; exit 1; }
  PORT[$1]=$p
  ADMIN[$1]=$a
  HEADER[$1]=$3
  FILTERS[$1]=$2
}

# A fresh Envoy process for the variant. Two processes of one build differ by up to about
# 10 us per request for their whole life (measured: an A/A run, pinned to CPUs or not), so each
# round gets new ones (FRESH=0: one process per variant for the whole run).
restart_variant() { # $1: name
  kill "${PID[$1]}" 2>/dev/null || true
  wait "${PID[$1]}" 2>/dev/null || true
  start_variant "$1" "${FILTERS[$1]}" "${HEADER[$1]}"
}

# CPU time (user + system, clock ticks) of a process and all its threads.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

measure() { # $1: name; appends requests/s, p99 and Envoy CPU microseconds per request
  local p=${PORT[$1]} h=${HEADER[$1]}
  # Distinct-token variants take each request's token from their file instead of one header.
  local load=(-H "$h") args=()
  [[ -n ${TOKEN_FILE[$1]:-} ]] && load=(-s bench/tokens.lua) && args=(-- "${TOKEN_FILE[$1]}")
  # Signed variants: fresh signatures each round (timestamps stay inside the window), more
  # than a round sends, so none is sent twice.
  if [[ -n ${SIGNED[$1]:-} ]]; then
    local scheme=${SIGNED[$1]} digest=()
    [[ $scheme == rfc9421 ]] && digest=("$BODY_DIGEST")
    .venv/bin/python bench/mint_signed.py "$HMAC_SECRET" 20000 "$work/$1.warm.signed" "$scheme"
    "${WRK[@]}" -t1 -c"$CONNECTIONS" -d1s -s bench/signed.lua "http://127.0.0.1:$p/api/send/bulk" -- "$work/$1.warm.signed" "${digest[@]}" >/dev/null
    .venv/bin/python bench/mint_signed.py "$HMAC_SECRET" $((30000 * (DURATION + 1))) "$work/$1.signed" "$scheme"
    load=(-s bench/signed.lua) args=(-- "$work/$1.signed" "${digest[@]}")
  else
    "${WRK[@]}" -t1 -c"$CONNECTIONS" -d1s "${load[@]}" "http://127.0.0.1:$p/api/send/bulk" "${args[@]}" >/dev/null
  fi
  local before; before=$(cpu_ticks "${PID[$1]}")
  local out; out=$("${WRK[@]}" -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${load[@]}" "http://127.0.0.1:$p/api/send/bulk" "${args[@]}")
  local after; after=$(cpu_ticks "${PID[$1]}")
  local requests; requests=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU[$1]+="$(python3 -c "print(f'{($after - $before) * 1e6 / $(getconf CLK_TCK) / $requests:.1f}')") "
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [[ -z $non2xx ]] || { echo "variant $1: $non2xx non-2xx responses" >&2; exit 1; }
  RPS[$1]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
  P50[$1]+="$(ms "$(awk '$1 == "50%" {print $2}' <<<"$out")") "
  P99[$1]+="$(ms "$(awk '$1 == "99%" {print $2}' <<<"$out")") "
}

# Latency below saturation: each connection pauses PACE_MS on average between requests
# (bench/paced.lua), so local and Redis modes see about the same request rate, which both
# sustain, and the p99 difference is the Redis round trip's own, not queueing.
PACE_MS=${PACE_MS:-10}
measure_paced() { # $1: name; appends requests/s, p50 and p99 under the paced load
  local target=(-H "${HEADER[$1]:-}" "http://127.0.0.1:${PORT[$1]:-}/api/send/bulk")
  # webdis_alone: the store's own round trip (api-warden's EVALSHA through webdis, no Envoy).
  [[ $1 == webdis_alone ]] && target=("http://127.0.0.1:$WEBDIS_PORT$REDIS_CALL_PATH")
  local out; out=$("${WRK[@]}" -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/paced.lua "${target[@]}" -- "$PACE_MS")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [[ -z $non2xx ]] || { echo "variant $1 (paced): $non2xx non-2xx responses" >&2; exit 1; }
  PACED_RPS[$1]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
  PACED_P50[$1]+="$(ms "$(awk '$1 == "50%" {print $2}' <<<"$out")") "
  PACED_P99[$1]+="$(ms "$(awk '$1 == "99%" {print $2}' <<<"$out")") "
}

# wrk prints latencies as 812.00us, 1.20ms or 1.01s: milliseconds.
ms() { python3 -c "v='$1'; print(f'{float(v[:-2])/1000:.3f}' if v.endswith('us') else f'{float(v[:-2]):.3f}' if v.endswith('ms') else f'{float(v[:-1])*1000:.3f}')"; }

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$0} END {print v[int((NR+1)/2)]}'; }

# Redis and webdis for the distributed variant.
REDIS_PORT=$(port)
WEBDIS_PORT=$(port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no > "$work/redis.log" 2>&1 &
printf '{"redis_host":"127.0.0.1","redis_port":%s,"http_host":"127.0.0.1","http_port":%s,"threads":2,"daemonize":false,"database":0,"verbosity":1,"logfile":"%s"}' \
  "$REDIS_PORT" "$WEBDIS_PORT" "$work/webdis.log" > "$work/webdis.json"
sleep 0.3
webdis "$work/webdis.json" > "$work/webdis.out" 2>&1 &
for _ in $(seq 50); do curl -sf "127.0.0.1:$WEBDIS_PORT/PING" >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_MODE='"auth_methods": ["api_key"], "rate_limiting": {"mode": "redis", "redis": {"cluster": "webdis", "timeout_ms": 1000}}'
# The registry variant's client and key, as `api-warden create-client --redis` stores them.
REG_KEY=ak_bench_registry_key_000000000000001
REG_SHA=$(printf %s "$REG_KEY" | sha256sum | cut -d' ' -f1)
redis-cli -p "$REDIS_PORT" HSET api_clients registered '{"client_id": "registered", "allowed_endpoints": ["/api/send/*"], "rate_limits": {"requests_per_minute": 1000000000, "requests_per_hour": 1000000000, "requests_per_day": 1000000000, "burst_limit": 1000000000}}' >/dev/null
redis-cli -p "$REDIS_PORT" SET "api_key:$REG_SHA" registered >/dev/null

# The rate limit service for the RLS variants (make bench builds it), counting every request
# of the client in Redis under a limit never reached.
RLS_PORT=$(port)
RLS_SERVER=target/rls-server/release/rls-server

# Asymmetric tokens: more than the filter's verified-token cache holds (4096), cycled from a
# random line by bench/tokens.lua, so no request of a distinct variant is a cache hit.
TOKENS=${TOKENS:-20000}
ASYM_ALGS=(ES256 ES384 RS256 PS256 EdDSA)
for alg in "${ASYM_ALGS[@]}"; do
  .venv/bin/python bench/mint_tokens.py "$alg" "$TOKENS" "$work/$alg"
done
first_token() { head -n1 "$work/$1.tokens"; }
warden_asym() { # $1: alg
  warden_config "\"auth_methods\": [\"jwt\"], \"jwt\": {\"audience\": \"email-api\", \"jwks\": $(cat "$work/$1.jwks")}"
}
native_asym() { # $1: alg, $2: cache (yes/no)
  local cache=""
  [[ $2 == yes ]] && cache="jwt_cache_config: { jwt_cache_size: 1000 }"
  cat <<YAML
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                demo:
                  audiences: [email-api]
                  local_jwks:
                    inline_string: '$(cat "$work/$1.jwks")'
                  $cache
              rules:
              - match: { prefix: "/" }
                requires: { provider_name: demo }
$native_ratelimit
YAML
}

ROUNDS=${ROUNDS:-3}
ALL=(none empty_wasm empty_wasm_cfg native_api_key native_api_key_full warden_api_key warden_api_key_lean warden_threat native_jwt warden_jwt warden_redis warden_batch warden_registry
     warden_rls native_rls empty_wasm_1k warden_hmac_1k warden_rfc9421_1k
     warden_es256 native_es256 warden_es256_distinct native_es256_distinct warden_rs256_distinct native_rs256_distinct
     warden_es384_distinct native_es384_distinct warden_ps256_distinct native_ps256_distinct
     warden_eddsa_distinct native_eddsa_distinct host_calls_floor host_calls_floor_lean host_calls_floor_redis host_calls_floor_rls host_calls_floor_hmac)
[[ -n ${BASELINE_WASM:-} ]] && ALL+=(baseline_api_key baseline_jwt baseline_es256 baseline_redis baseline_hmac_1k baseline_rfc9421_1k baseline_es256_distinct baseline_es384_distinct
                                   baseline_rs256_distinct baseline_ps256_distinct baseline_eddsa_distinct)
CALL_KINDS=(clock header_get header_pairs header_set header_remove_absent metric shared_get shared_set property log_below_level sha256_1k)
CALL_REPEAT=${CALL_REPEAT:-20}
[[ -n ${CALL_COSTS:-} ]] && ALL=(none empty_wasm call_none "${CALL_KINDS[@]/#/call_}")
VARIANTS=()
for v in "${ALL[@]}"; do [[ -z ${ONLY:-} || " $ONLY " == *" $v "* ]] && VARIANTS+=("$v"); done
want() { [[ " ${VARIANTS[*]} " == *" $1 "* ]]; }
# The webdis requests api-warden sends in Redis mode for the bench's client, as the filter
# itself builds them (its EVAL first, which caches the script), so webdis alone and the Redis
# host-call floor ask exactly that; only when a variant needs them.
if want warden_redis || want host_calls_floor_redis; then
  warden_config "$REDIS_MODE" > "$work/redis-mode.json"
  mapfile -t REDIS_CALL < <(cargo run --quiet --example redis_call "$work/redis-mode.json" "$KEY" "$(date +%s%3N)")
  [[ ${#REDIS_CALL[@]} == 2 ]] || { echo "examples/redis_call printed ${#REDIS_CALL[@]} paths, not 2" >&2; exit 1; }
  curl -sf -o /dev/null "127.0.0.1:$WEBDIS_PORT${REDIS_CALL[0]}" || { echo "webdis refused the script" >&2; exit 1; }
  REDIS_CALL_PATH=${REDIS_CALL[1]}
fi
echo "api-warden benchmark: Envoy $("$ENVOY" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -1), --concurrency $CONCURRENCY, "${WRK[@]}" -t1 -c$CONNECTIONS -d${DURATION}s, median of $ROUNDS interleaved rounds, $(nproc) cores"
want none && start_variant none "$filters_none" "X-API-Key: $KEY"
want empty_wasm && start_variant empty_wasm "$(filters_empty)" "X-API-Key: $KEY"
want empty_wasm_cfg && start_variant empty_wasm_cfg "$(filters_warden "$(warden_config '"auth_methods": ["api_key"]')" "$EMPTY_WASM")" "X-API-Key: $KEY"
want native_api_key && start_variant native_api_key "$filters_native_key" "X-API-Key: $KEY"
want native_api_key_full && start_variant native_api_key_full "$filters_native_key_full" "X-API-Key: $KEY"
want warden_api_key && start_variant warden_api_key "$(filters_warden "$(warden_config '"auth_methods": ["api_key"]')")" "X-API-Key: $KEY"
want warden_api_key_lean && start_variant warden_api_key_lean "$(filters_warden "$(warden_config '"auth_methods": ["api_key"], "upstream_identity_headers": ["x-client-id"], "rate_limiting": {"response_headers": false}')")" "X-API-Key: $KEY"
want warden_threat && start_variant warden_threat "$(filters_warden "$(warden_config '"auth_methods": ["api_key"], "security_monitoring": {"abuse": {}}')")" "X-API-Key: $KEY"
want native_jwt && start_variant native_jwt "$filters_native_jwt" "Authorization: Bearer $JWT"
HS256_CONFIG="\"jwt\": {\"audience\": \"email-api\", \"keys\": [{\"alg\": \"HS256\", \"secret\": \"$JWT_SECRET\"}]}"
want warden_jwt && start_variant warden_jwt "$(filters_warden "$(warden_config "$HS256_CONFIG")")" "Authorization: Bearer $JWT"
want baseline_jwt && start_variant baseline_jwt "$(filters_warden "$(warden_config "$HS256_CONFIG")" "$BASELINE_WASM")" "Authorization: Bearer $JWT"
want warden_redis && start_variant warden_redis "$(filters_warden "$(warden_config "$REDIS_MODE")")" "X-API-Key: $KEY"
want warden_batch && start_variant warden_batch "$(filters_warden "$(warden_config '"auth_methods": ["api_key"], "rate_limiting": {"mode": "redis", "redis": {"cluster": "webdis", "timeout_ms": 1000, "batch_size": 20}}')")" "X-API-Key: $KEY"
RLS_MODE='"auth_methods": ["api_key"], "rate_limiting": {"mode": "rls", "rls": {"cluster": "ratelimit", "domain": "bench", "send_limits": false, "timeout_ms": 1000}}'
if want warden_rls || want native_rls || want host_calls_floor_rls; then
  echo '[{"namespace": "bench", "max_value": 1000000000, "seconds": 60, "variables": ["descriptors[0].client_id"]}]' > "$work/rls-limits.json"
  "$RLS_SERVER" --listen "127.0.0.1:$RLS_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" --limits "$work/rls-limits.json" > "$work/rls.log" 2>&1 &
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$RLS_PORT") 2>/dev/null && break; sleep 0.1; done
fi
filters_native_rls=$(cat <<YAML
          - name: envoy.filters.http.api_key_auth
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth
              credentials:
              - { key: "$KEY", client: marketing }
              key_sources:
              - header: "X-API-Key"
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: bench
              failure_mode_deny: true
              timeout: 1s
              rate_limit_service:
                transport_api_version: V3
                grpc_service: { envoy_grpc: { cluster_name: ratelimit } }
YAML
)
want empty_wasm_1k && start_variant empty_wasm_1k "$(filters_empty)" signed
want warden_hmac_1k && start_variant warden_hmac_1k "$(filters_warden "$(warden_hmac_config)")" signed
want baseline_hmac_1k && start_variant baseline_hmac_1k "$(filters_warden "$(warden_hmac_config)" "$BASELINE_WASM")" signed
want warden_rfc9421_1k && start_variant warden_rfc9421_1k "$(filters_warden "$(warden_rfc9421_config)")" signed_rfc9421
want baseline_rfc9421_1k && start_variant baseline_rfc9421_1k "$(filters_warden "$(warden_rfc9421_config)" "$BASELINE_WASM")" signed_rfc9421
want warden_rls && start_variant warden_rls "$(filters_warden "$(warden_config "$RLS_MODE")")" "X-API-Key: $KEY"
want native_rls && start_variant native_rls "$filters_native_rls" "X-API-Key: $KEY"
want warden_registry && start_variant warden_registry "$(filters_warden "$(warden_config '"auth_methods": ["api_key"], "registry": {"cluster": "webdis", "timeout_ms": 1000}')")" "X-API-Key: $REG_KEY"
want warden_es256 && start_variant warden_es256 "$(filters_warden "$(warden_asym ES256)")" "Authorization: Bearer $(first_token ES256)"
want baseline_es256 && start_variant baseline_es256 "$(filters_warden "$(warden_asym ES256)" "$BASELINE_WASM")" "Authorization: Bearer $(first_token ES256)"
want native_es256 && start_variant native_es256 "$(native_asym ES256 yes)" "Authorization: Bearer $(first_token ES256)"
for alg in "${ASYM_ALGS[@]}"; do
  lower=$(tr 'A-Z' 'a-z' <<<"$alg")
  want "warden_${lower}_distinct" && start_variant "warden_${lower}_distinct" "$(filters_warden "$(warden_asym "$alg")")" "Authorization: Bearer $(first_token "$alg")" && TOKEN_FILE[warden_${lower}_distinct]=$work/$alg.tokens
  want "baseline_${lower}_distinct" && start_variant "baseline_${lower}_distinct" "$(filters_warden "$(warden_asym "$alg")" "$BASELINE_WASM")" "Authorization: Bearer $(first_token "$alg")" && TOKEN_FILE[baseline_${lower}_distinct]=$work/$alg.tokens
  want "native_${lower}_distinct" && start_variant "native_${lower}_distinct" "$(native_asym "$alg" no)" "Authorization: Bearer $(first_token "$alg")" && TOKEN_FILE[native_${lower}_distinct]=$work/$alg.tokens
done
want host_calls_floor && start_variant host_calls_floor "$(filters_warden api_key_path "$HOST_CALLS_WASM")" "X-API-Key: $KEY"
want host_calls_floor_lean && start_variant host_calls_floor_lean "$(filters_warden api_key_lean_path "$HOST_CALLS_WASM")" "X-API-Key: $KEY"
want host_calls_floor_hmac && start_variant host_calls_floor_hmac "$(filters_warden hmac_body_path "$HOST_CALLS_WASM")" signed
want host_calls_floor_redis && start_variant host_calls_floor_redis "$(filters_warden "api_key_redis_path $REDIS_CALL_PATH" "$HOST_CALLS_WASM")" "X-API-Key: $KEY"
if want host_calls_floor_rls; then
  # The gRPC target and message api-warden sends in RLS mode, as the filter itself builds them.
  warden_config "$RLS_MODE" > "$work/rls-mode.json"
  mapfile -t RLS_CALL < <(cargo run --quiet --example rls_call "$work/rls-mode.json" "$KEY")
  [[ ${#RLS_CALL[@]} == 2 ]] || { echo "examples/rls_call printed ${#RLS_CALL[@]} lines, not 2" >&2; exit 1; }
  start_variant host_calls_floor_rls "$(filters_warden "api_key_rls_call ${RLS_CALL[0]} ${RLS_CALL[1]}" "$HOST_CALLS_WASM")" "X-API-Key: $KEY"
fi
for c in none "${CALL_KINDS[@]}"; do
  want "call_$c" && start_variant "call_$c" "$(filters_warden "$c:$CALL_REPEAT" "$HOST_CALLS_WASM")" "X-API-Key: $KEY"
done
want baseline_api_key && start_variant baseline_api_key "$(filters_warden "$(warden_config '"auth_methods": ["api_key"]')" "$BASELINE_WASM")" "X-API-Key: $KEY"
want baseline_redis && start_variant baseline_redis "$(filters_warden "$(warden_config "$REDIS_MODE")" "$BASELINE_WASM")" "X-API-Key: $KEY"
for round in $(seq "$ROUNDS"); do
  for v in "${VARIANTS[@]}"; do
    [[ $round -gt 1 && ${FRESH:-1} == 1 ]] && restart_variant "$v"
    measure "$v"
  done
  for v in ${PACED:-empty_wasm_cfg warden_api_key warden_redis host_calls_floor host_calls_floor_redis warden_rls native_rls}; do want "$v" && measure_paced "$v"; done
  want warden_redis && measure_paced webdis_alone
done

declare -A MED MEDCPU
for v in "${VARIANTS[@]}"; do MED[$v]=$(median <<<"${RPS[$v]}"); MEDCPU[$v]=$(median <<<"${CPU[$v]}"); done
printf '\n%-16s %11s %9s %9s %8s %14s %16s   %s\n' variant requests/s p50 p99 "vs none" "CPU us/request" "filter us/req" "requests/s by round"
for v in "${VARIANTS[@]}"; do
  printf '%-16s %11s %9s %9s %8s %14s %16s   %s\n' "$v" "${MED[$v]}" "$(median <<<"${P50[$v]}")ms" "$(median <<<"${P99[$v]}")ms" \
    "$(want none && python3 -c "print(f'{${MED[$v]}/${MED[none]}:.2f}')" || echo -)" "${MEDCPU[$v]}" \
    "$(want none && python3 -c "print(f'{${MEDCPU[$v]} - ${MEDCPU[none]}:+.1f}')" || echo -)" "${RPS[$v]}"
done
# VM memory per worker (the filter's gauge, sampled every 256 requests) with one client and
# with MEMORY_CLIENTS (default 10000) configured clients, each with its own key and limits.
vm_memory() { # $1: variant; sends enough requests for a sample, prints the gauge in bytes
  "${WRK[@]}" -t1 -c4 -d1s -H "${HEADER[$1]}" "http://127.0.0.1:${PORT[$1]}/api/send/bulk" >/dev/null
  curl -s "127.0.0.1:${ADMIN[$1]}/stats?filter=vm.memory_bytes" | awk -F': ' '{print $2; exit}'
}
MEMORY_CLIENTS=${MEMORY_CLIENTS:-10000}
if [[ $MEMORY_CLIENTS -gt 0 ]] && want warden_api_key; then
  many=$(python3 - "$MEMORY_CLIENTS" "$KEY_SHA" <<'PY'
import hashlib, json, sys
n, first = int(sys.argv[1]), sys.argv[2]
limits = {"requests_per_minute": 1000000000, "requests_per_hour": 1000000000,
          "requests_per_day": 1000000000, "burst_limit": 1000000000}
clients = [{"client_id": "marketing", "allowed_endpoints": ["/api/send/*"], "api_keys": [first],
            "rate_limits": limits}]
for i in range(1, n):
    key = hashlib.sha256(f"bench-client-{i}".encode()).hexdigest()
    clients.append({"client_id": f"client-{i}", "allowed_endpoints": ["/api/send/*"],
                    "api_keys": [key], "rate_limits": limits})
print(json.dumps({"auth_methods": ["api_key"], "clients": clients}))
PY
)
  start_variant "memory_$MEMORY_CLIENTS" "$(filters_warden "$many")" "X-API-Key: $KEY"
  one=$(vm_memory warden_api_key); lots=$(vm_memory "memory_$MEMORY_CLIENTS")
  printf 'VM memory per worker: %s MiB with 1 client, %s MiB with %s clients\n' \
    "$(python3 -c "print(f'{${one:-0}/1048576:.1f}')")" "$(python3 -c "print(f'{${lots:-0}/1048576:.1f}')")" "$MEMORY_CLIENTS"
fi

# The table as JSON too (BENCH_JSON, default target/bench.json), for tools and trends.
BENCH_JSON=${BENCH_JSON:-target/bench.json}
{
  printf '{"envoy": "%s", "concurrency": %s, "connections": %s, "duration_s": %s, "rounds": %s, "cores": %s, "variants": {' \
    "$("$ENVOY" --version 2>/dev/null | grep -o '[0-9]*\.[0-9]*\.[0-9]*' | head -1)" "$CONCURRENCY" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$(nproc)"
  sep=""
  for v in "${VARIANTS[@]}"; do
    paced=""
    [[ -n ${PACED_RPS[$v]:-} ]] && paced=$(printf ', "paced": {"pace_ms": %s, "requests_per_s": %s, "p50_ms": %s, "p99_ms": %s}' \
      "$PACE_MS" "$(median <<<"${PACED_RPS[$v]}")" "$(median <<<"${PACED_P50[$v]}")" "$(median <<<"${PACED_P99[$v]}")")
    printf '%s"%s": {"requests_per_s": %s, "p50_ms": %s, "p99_ms": %s, "envoy_cpu_us_per_request": %s, "rounds_requests_per_s": [%s]%s}' \
      "$sep" "$v" "${MED[$v]}" "$(median <<<"${P50[$v]}")" "$(median <<<"${P99[$v]}")" "${MEDCPU[$v]}" \
      "$(tr ' ' '\n' <<<"${RPS[$v]}" | grep -v '^$' | paste -sd, -)" "$paced"
    sep=", "
  done
  printf '}'
  [[ -n ${PACED_RPS[webdis_alone]:-} ]] && printf ', "webdis_alone_paced": {"pace_ms": %s, "requests_per_s": %s, "p50_ms": %s, "p99_ms": %s}' \
    "$PACE_MS" "$(median <<<"${PACED_RPS[webdis_alone]}")" "$(median <<<"${PACED_P50[webdis_alone]}")" "$(median <<<"${PACED_P99[webdis_alone]}")"
  printf '}\n'
} > "$BENCH_JSON"
python3 -m json.tool "$BENCH_JSON" >/dev/null && echo "(also written to $BENCH_JSON)"
# Host calls and heap allocations per request on each path, counted through the test host.
cargo test --quiet --lib host_calls_per_request -- --nocapture 2>/dev/null | grep -E '^(host calls per request|heap allocations per request|  )' || true
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
p99() { median <<<"${P99[$1]}"; }
if want empty_wasm; then
  for v in warden_api_key warden_threat warden_registry warden_jwt baseline_api_key; do
    want "$v" && printf 'Throughput %s / empty_wasm: %s\n' "$v" "$(ratio "${MED[$v]}" "${MED[empty_wasm]}")"
  done
fi
if want empty_wasm_cfg; then
  for v in warden_api_key warden_api_key_lean warden_jwt warden_es256; do
    want "$v" && printf 'Throughput %s / empty_wasm_cfg (the empty filter configured as api-warden is): %s\n' "$v" "$(ratio "${MED[$v]}" "${MED[empty_wasm_cfg]}")"
  done
fi
if want warden_threat && want warden_api_key; then
  printf 'Threat protection on an admitted request: throughput %s of warden_api_key, %+.1f us CPU\n' \
    "$(ratio "${MED[warden_threat]}" "${MED[warden_api_key]}")" \
    "$(python3 -c "print(${MEDCPU[warden_threat]} - ${MEDCPU[warden_api_key]})")"
fi
if want warden_registry && want warden_api_key; then
  printf 'A registry key instead of a configured one: throughput %s of warden_api_key, %+.1f us CPU\n' \
    "$(ratio "${MED[warden_registry]}" "${MED[warden_api_key]}")" \
    "$(python3 -c "print(${MEDCPU[warden_registry]} - ${MEDCPU[warden_api_key]})")"
fi
# A target's ratio of the medians, met or not, with the same ratio round by round (the two
# variants' processes side by side in each round): its lowest and highest are the noise around it.
target() { # $1: label, $2 $3: the variants (numerator, denominator), $4: target
  local r; r=$(ratio "${MED[$2]}" "${MED[$3]}")
  printf '%s: %s (rounds %s; target %s: %s)\n' "$1" "$r" "$(round_spread "$2" "$3")" "$4" \
    "$(python3 -c "print('met' if $r >= $4 else 'not met')")"
}
round_spread() { # $1 $2: variants; the lowest and highest of their throughput ratio by round
  python3 -c 'import sys; a, b = (list(map(float, x.split())) for x in sys.argv[1:3]); r = sorted(x / y for x, y in zip(a, b)); print(f"{r[0]:.2f}-{r[-1]:.2f}")' "${RPS[$1]}" "${RPS[$2]}"
}
# Two variants' paced p50 and p99 side by side, when both were timed paced.
paced_pair() { # $1 $2: the variants
  [[ -n ${PACED_P99[$1]:-} && -n ${PACED_P99[$2]:-} ]] || return 0
  printf '  paced (%s ms between requests), %s / %s: p50 %s against %s ms, p99 %s against %s ms (%sx)\n' \
    "$PACE_MS" "$1" "$2" "$(median <<<"${PACED_P50[$1]}")" "$(median <<<"${PACED_P50[$2]}")" \
    "$(median <<<"${PACED_P99[$1]}")" "$(median <<<"${PACED_P99[$2]}")" \
    "$(ratio "$(median <<<"${PACED_P99[$1]}")" "$(median <<<"${PACED_P99[$2]}")")"
}
# How api-warden's cost over empty_wasm_cfg splits: its host calls alone (the floor variant)
# and its own code over them.
floor_split() { # $1: the floor variant, $2: api-warden's variant
  want "$1" || return 0
  printf '  of which the host calls alone (%s / empty_wasm_cfg): %s, %+.1f us CPU; api-warden'"'"'s own code over them: %+.1f us CPU\n' \
    "$1" "$(ratio "${MED[$1]}" "${MED[empty_wasm_cfg]}")" \
    "$(python3 -c "print(${MEDCPU[$1]} - ${MEDCPU[empty_wasm_cfg]})")" \
    "$(python3 -c "print(${MEDCPU[$2]} - ${MEDCPU[$1]})")"
}
if want empty_wasm_cfg && want warden_api_key; then
  target "API key + local limits, api-warden / empty_wasm_cfg" warden_api_key empty_wasm_cfg 0.80
  floor_split host_calls_floor warden_api_key
  r=$(python3 -c "print(f'{$(p99 warden_api_key) / $(p99 empty_wasm_cfg):.2f}')")
  printf 'API key + local limits, p99 over empty_wasm_cfg'"'"'s: %sx (%s against %s ms; target at most 1.3x: %s)\n' \
    "$r" "$(p99 warden_api_key)" "$(p99 empty_wasm_cfg)" "$(python3 -c "print('met' if $r <= 1.3 else 'not met')")"
  # At saturation a closed loop's latency is connections over throughput, so that p99 ratio
  # mostly restates the throughput one; paced, it is the latency the filter adds to a request.
  paced_pair warden_api_key empty_wasm_cfg
  paced_pair host_calls_floor empty_wasm_cfg
fi
want warden_jwt && want empty_wasm_cfg &&
  target "JWT HS256 (verified-token cache), api-warden / empty_wasm_cfg" warden_jwt empty_wasm_cfg 0.80
if want empty_wasm_cfg && want warden_api_key_lean; then
  target "API key + local limits, lean headers, api-warden / empty_wasm_cfg" warden_api_key_lean empty_wasm_cfg 0.80
  floor_split host_calls_floor_lean warden_api_key_lean
fi
if want native_api_key_full && want warden_api_key; then
  printf 'API key, api-warden / the native filters doing the same (native_api_key_full): throughput %s, %+.1f us CPU\n' \
    "$(ratio "${MED[warden_api_key]}" "${MED[native_api_key_full]}")" \
    "$(python3 -c "print(${MEDCPU[warden_api_key]} - ${MEDCPU[native_api_key_full]})")"
fi
if want call_none; then
  printf '\nEnvoy CPU per host call (each kind %s times per request, over call_none):\n' "$CALL_REPEAT"
  for c in "${CALL_KINDS[@]}"; do
    want "call_$c" && printf '  %-22s %6.2f us\n' "$c" "$(python3 -c "print((${MEDCPU[call_$c]} - ${MEDCPU[call_none]}) / $CALL_REPEAT)")"
  done
fi
want warden_es256_distinct && want native_es256_distinct &&
  target "Distinct ES256 tokens, api-warden / native jwt_authn uncached" warden_es256_distinct native_es256_distinct 0.25
want warden_rs256_distinct && want native_rs256_distinct &&
  target "Distinct RS256 tokens, api-warden / native jwt_authn uncached" warden_rs256_distinct native_rs256_distinct 0.20
for alg in es384 ps256 eddsa; do
  want "warden_${alg}_distinct" && want "native_${alg}_distinct" &&
    printf 'Distinct %s tokens, api-warden / native jwt_authn uncached: %s (rounds %s; no target)\n' "$(sed 's/eddsa/EdDSA/; s/^[a-z]*[0-9]*$/\U&/' <<<"$alg")" \
      "$(ratio "${MED[warden_${alg}_distinct]}" "${MED[native_${alg}_distinct]}")" "$(round_spread "warden_${alg}_distinct" "native_${alg}_distinct")"
done
if want warden_redis && want warden_api_key; then
  extra=$(python3 -c "print(f'{$(p99 warden_redis) - $(p99 warden_api_key):.3f}')")
  printf 'Redis mode p99 - local mode p99, at saturation: %s ms (p50 %s against %s ms: latency there is connections / throughput)\n' \
    "$extra" "$(median <<<"${P50[warden_redis]}")" "$(median <<<"${P50[warden_api_key]}")"
  # The target is judged paced; without both paced runs (PACED names others) it is not judged.
  if [[ -n ${PACED_P99[warden_redis]:-} && -n ${PACED_P99[warden_api_key]:-} ]]; then
    paced=$(python3 -c "print(f'{$(median <<<"${PACED_P99[warden_redis]}") - $(median <<<"${PACED_P99[warden_api_key]}"):.3f}')")
    printf 'Redis mode p99 - local mode p99, paced (%s ms between requests; %s and %s requests/s): %s ms (p99 %s against %s ms, p50 %s against %s ms; target at most 1 ms: %s)\n' \
      "$PACE_MS" "$(median <<<"${PACED_RPS[warden_redis]}")" "$(median <<<"${PACED_RPS[warden_api_key]}")" "$paced" \
      "$(median <<<"${PACED_P99[warden_redis]}")" "$(median <<<"${PACED_P99[warden_api_key]}")" \
      "$(median <<<"${PACED_P50[warden_redis]}")" "$(median <<<"${PACED_P50[warden_api_key]}")" \
      "$(python3 -c "print('met' if $paced <= 1 else 'not met')")"
  else
    echo 'Redis mode p99 - local mode p99, paced: not measured (PACED leaves out warden_redis or warden_api_key)'
  fi
  printf '  of which the store: webdis alone under the same paced load (api-warden'"'"'s EVALSHA from wrk, no Envoy): p50 %s ms, p99 %s ms\n' \
    "$(median <<<"${PACED_P50[webdis_alone]}")" "$(median <<<"${PACED_P99[webdis_alone]}")"
  # The same comparison between the two host-call floors: what any filter making these calls
  # and this one callout adds, before any decision code.
  if [[ -n ${PACED_P99[host_calls_floor]:-} && -n ${PACED_P99[host_calls_floor_redis]:-} ]]; then
    printf '  the host calls and the callout alone (host_calls_floor_redis - host_calls_floor, paced): p99 %+.3f ms (%s against %s ms), p50 %+.3f ms\n' \
      "$(python3 -c "print($(median <<<"${PACED_P99[host_calls_floor_redis]}") - $(median <<<"${PACED_P99[host_calls_floor]}"))")" \
      "$(median <<<"${PACED_P99[host_calls_floor_redis]}")" "$(median <<<"${PACED_P99[host_calls_floor]}")" \
      "$(python3 -c "print($(median <<<"${PACED_P50[host_calls_floor_redis]}") - $(median <<<"${PACED_P50[host_calls_floor]}"))")"
  fi
  want host_calls_floor_redis &&
    printf 'Redis mode, Envoy CPU per request: api-warden %s us, its host calls and callout alone (host_calls_floor_redis) %s us: api-warden'"'"'s own code %+.1f us\n' \
      "${MEDCPU[warden_redis]}" "${MEDCPU[host_calls_floor_redis]}" "$(python3 -c "print(${MEDCPU[warden_redis]} - ${MEDCPU[host_calls_floor_redis]})")"
fi
# This build against BASELINE_WASM's, variant by variant.
for v in api_key jwt es256 redis hmac_1k rfc9421_1k es256_distinct es384_distinct rs256_distinct ps256_distinct eddsa_distinct; do
  want "baseline_$v" && want "warden_$v" &&
    printf 'warden_%s, this build / BASELINE_WASM: throughput %s (rounds %s), %+.1f us CPU per request\n' "$v" \
      "$(ratio "${MED[warden_$v]}" "${MED[baseline_$v]}")" "$(round_spread "warden_$v" "baseline_$v")" \
      "$(python3 -c "print(${MEDCPU[warden_$v]} - ${MEDCPU[baseline_$v]})")"
done
want warden_hmac_1k && want empty_wasm_1k &&
  target "HMAC over a 1 KiB body, api-warden / empty_wasm under the same POSTs" warden_hmac_1k empty_wasm_1k 0.70
want warden_hmac_1k && want empty_wasm_1k && want host_calls_floor_hmac &&
  printf '  of which the host calls alone (host_calls_floor_hmac / empty_wasm_1k): %s, %+.1f us CPU; api-warden'"'"'s own code over them: %+.1f us CPU\n' \
    "$(ratio "${MED[host_calls_floor_hmac]}" "${MED[empty_wasm_1k]}")" \
    "$(python3 -c "print(${MEDCPU[host_calls_floor_hmac]} - ${MEDCPU[empty_wasm_1k]})")" \
    "$(python3 -c "print(${MEDCPU[warden_hmac_1k]} - ${MEDCPU[host_calls_floor_hmac]})")"
want warden_rfc9421_1k && want empty_wasm_1k &&
  target "RFC 9421 (hmac-sha256) over a 1 KiB body, api-warden / empty_wasm under the seed's POSTs" warden_rfc9421_1k empty_wasm_1k 0.70
want warden_batch && want warden_api_key &&
  target "Batched Redis mode (20 per call) / local mode" warden_batch warden_api_key 0.70
want warden_rls && want native_rls &&
  printf 'RLS, api-warden / native ratelimit filter (same service, same Redis): throughput %s, p99 %s ms vs %s ms\n' \
    "$(ratio "${MED[warden_rls]}" "${MED[native_rls]}")" "$(p99 warden_rls)" "$(p99 native_rls)" &&
  paced_pair warden_rls native_rls
paced_pair warden_rls host_calls_floor_rls
want warden_rls && want host_calls_floor_rls &&
  printf 'RLS mode, Envoy CPU per request: api-warden %s us, its host calls and gRPC call alone (host_calls_floor_rls) %s us: api-warden'"'"'s own code %+.1f us%s\n' \
    "${MEDCPU[warden_rls]}" "${MEDCPU[host_calls_floor_rls]}" "$(python3 -c "print(${MEDCPU[warden_rls]} - ${MEDCPU[host_calls_floor_rls]})")" \
    "$(want native_rls && printf '; the native ratelimit filter %s us' "${MEDCPU[native_rls]}")"
want warden_es256 && want empty_wasm &&
  target "One ES256 token (verified-token cache), api-warden / empty_wasm" warden_es256 empty_wasm 0.80
want native_api_key && want native_jwt && want warden_api_key && want warden_jwt || exit 0
printf '\nEnvoy CPU per request, api-warden / native: api key + rate limit %s, jwt + rate limit %s\n' \
  "$(ratio "${MEDCPU[warden_api_key]}" "${MEDCPU[native_api_key]}")" "$(ratio "${MEDCPU[warden_jwt]}" "${MEDCPU[native_jwt]}")"
printf 'Throughput, api-warden / native: api key + rate limit %s, jwt + rate limit %s\n' \
  "$(ratio "${MED[warden_api_key]}" "${MED[native_api_key]}")" "$(ratio "${MED[warden_jwt]}" "${MED[native_jwt]}")"
