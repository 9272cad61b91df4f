#!/usr/bin/env bash
# How much rate-limit traffic one Redis carries: the numbers behind the README's capacity model.
#   make capacity                  (SECONDS_EACH=5 CLIENTS=10000 BATCH=20 to change them)
# Starts a Redis and a webdis on loopback, then drives api-warden's own rate-limit script (the
# text in src/ratelimit/redis.rs, by EVALSHA as the filter sends it) at random clients:
#   1. straight into Redis with redis-benchmark (what Redis alone can decide),
#   2. through webdis with wrk (the filter's real path: one HTTP call per decision),
# and reads Redis' own CPU time per decision from INFO, which bounds one Redis (one core) at
# 1 s / that time. It prints decisions per second, Redis CPU per decision, and what that means in
# admitted requests per second for plain mode, batched mode (BATCH admissions per decision), and
# Envoys carried at a given per-Envoy rate.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${SECONDS_EACH:-5}
CLIENTS=${CLIENTS:-10000}
BATCH=${BATCH:-20}
PER_ENVOY=${PER_ENVOY:-5000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PORT=$(port)
WEBDIS_PORT=$(port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no > "$work/redis.log" 2>&1 &
printf '{"redis_host":"127.0.0.1","redis_port":%s,"http_host":"127.0.0.1","http_port":%s,"threads":2,"daemonize":false,"database":0,"verbosity":1,"logfile":"%s"}' \
  "$REDIS_PORT" "$WEBDIS_PORT" "$work/webdis.log" > "$work/webdis.json"
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
webdis "$work/webdis.json" > "$work/webdis.out" 2>&1 &
for _ in $(seq 50); do curl -sf "127.0.0.1:$WEBDIS_PORT/PING" >/dev/null 2>&1 && break; sleep 0.1; done

# The script exactly as the filter sends it.
python3 - > "$work/script.lua" <<'PY'
src = open("src/ratelimit/redis.rs").read()
start = src.index('pub const SCRIPT: &str = r#"') + len('pub const SCRIPT: &str = r#"')
print(src[start:src.index('"#;', start)], end="")
PY
SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "$(cat "$work/script.lua")")
NOW_MS=$(($(date +%s) * 1000))
BIG=1000000000
# One decision for one of CLIENTS clients: its four keys, limits never reached, now, bucket TTL.
args() { # $1: client placeholder
  echo "4 aw:{$1:r}:m:0 aw:{$1:r}:h:0 aw:{$1:r}:d:0 aw:{$1:r}:b $BIG $BIG $BIG $BIG $NOW_MS 61000 1"
}
redis_cpu_us() { redis-cli -p "$REDIS_PORT" INFO cpu | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.0f", s * 1e6}'; }
redis_calls() { redis-cli -p "$REDIS_PORT" INFO commandstats | awk -F'[=,]' '/^cmdstat_evalsha:/ {print $2}'; }

echo "api-warden capacity: one Redis $(redis-server --version | grep -o 'v=[0-9.]*'), $(nproc) cores, ${SECONDS_EACH}s each, $CLIENTS clients"
# 1. Redis alone.
n=$((SECONDS_EACH * 40000))
cpu0=$(redis_cpu_us); calls0=$(redis_calls || echo 0)
# shellcheck disable=SC2046
direct=$(redis-benchmark -p "$REDIS_PORT" -c 50 -n "$n" -r "$CLIENTS" -q EVALSHA "$SHA" $(args c__rand_int__) 2>/dev/null |
  tr '\r' '\n' | awk '/requests per second/ {for (i = 2; i <= NF; i++) if ($i == "requests") v = $(i - 1)} END {print v}')
cpu1=$(redis_cpu_us); calls1=$(redis_calls)
cpu_direct=$(python3 -c "print(f'{($cpu1 - $cpu0) / max(1, $calls1 - ${calls0:-0}):.1f}')")

# 2. Through webdis, as the filter calls it (a GET with the arguments in the path).
cat > "$work/webdis.lua" <<LUA
math.randomseed(os.time())
request = function()
  local c = "c" .. math.random(1, $CLIENTS)
  local k = function(s) return "aw%3A%7B" .. c .. "%3Ar%7D%3A" .. s end
  return wrk.format("GET", "/EVALSHA/$SHA/4/" .. k("m%3A0") .. "/" .. k("h%3A0") .. "/" ..
    k("d%3A0") .. "/" .. k("b") .. "/$BIG/$BIG/$BIG/$BIG/$NOW_MS/61000/1")
end
LUA
cpu0=$(redis_cpu_us); calls0=$(redis_calls)
out=$(wrk -t2 -c32 -d"${SECONDS_EACH}s" --latency -s "$work/webdis.lua" "http://127.0.0.1:$WEBDIS_PORT")
cpu1=$(redis_cpu_us); calls1=$(redis_calls)
via_webdis=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
cpu_webdis=$(python3 -c "print(f'{($cpu1 - $cpu0) / max(1, $calls1 - $calls0):.1f}')")
errors=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
[[ -z $errors ]] || { echo "webdis answered $errors non-2xx responses" >&2; exit 1; }

bound=$(python3 -c "print(int(1e6 / max($cpu_direct, $cpu_webdis)))")
printf '\n%-44s %14s\n' measurement value
printf '%-44s %14s\n' "decisions/s, redis-benchmark -c50 (Redis alone)" "$direct"
printf '%-44s %14s\n' "decisions/s through webdis, wrk -c32" "$via_webdis"
printf '%-44s %14s\n' "latency through webdis, p50 / p99" "$p50 / $p99"
printf '%-44s %14s\n' "Redis CPU per decision, us (alone / webdis)" "$cpu_direct / $cpu_webdis"
printf '%-44s %14s\n' "one Redis core's bound, decisions/s" "$bound"
python3 - "$via_webdis" "$bound" "$BATCH" "$PER_ENVOY" <<'PY'
import sys
measured, bound, batch, per_envoy = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ceiling = min(measured, bound)
print(f"\nCapacity model (the lower of the webdis measurement and Redis' CPU bound: {ceiling:,.0f} decisions/s)")
print(f"{'mode':<34} {'Redis calls per admitted request':>34} {'admitted requests/s':>20} {'Envoys at ' + format(per_envoy, ',') + '/s':>16}")
rows = [("redis (every request asks)", 1.0), (f"redis, batch_size {batch}", 1.0 / batch)]
for name, calls in rows:
    admitted = ceiling / calls
    print(f"{name:<34} {calls:>34.3f} {admitted:>20,.0f} {admitted / per_envoy:>16.1f}")
print("local (shared data)                                                 0      no Redis: per-proxy only")
print("Batched figures are upper bounds: give-backs of unused reservations add calls, and a hot")
print("client's reservations run out sooner than a cold one's.")
PY
