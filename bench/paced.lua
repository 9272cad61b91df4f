-- wrk: each connection waits a random pause between requests, exponentially distributed with a
-- mean of PACE ms (given after `--`, default 10), so the load stays below what the variant
-- sustains and the latencies are each request's own, not time spent queueing behind the others
-- (at saturation, a closed loop's latency is only connections / throughput). The pause is random
-- because a fixed one keeps the connections in step (they start together and each waits the
-- same time), so the proxy gets bursts of up to 16 requests and the latencies measure the
-- bursts' queue.
local pace = 10

function init(args)
  if args[1] then
    pace = tonumber(args[1])
  end
  math.randomseed(os.time())
end

function delay()
  return math.floor(-math.log(1 - math.random()) * pace + 0.5)
end
