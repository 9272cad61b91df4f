-- wrk: each connection waits PACE ms (given after `--`, default 10) before its next request,
-- so the load stays below what the variant sustains and the latencies are each request's own,
-- not time spent queueing behind the others (at saturation, a closed loop's latency is only
-- connections / throughput).
local pace = 10

function init(args)
  if args[1] then
    pace = tonumber(args[1])
  end
end

function delay()
  return pace
end
