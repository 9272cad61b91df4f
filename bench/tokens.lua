-- wrk: each request carries the next token of a file (given after `--`), starting at a random
-- line, so a run never repeats a token before cycling through more than any cache holds.
local tokens = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    tokens[#tokens + 1] = line
  end
  math.randomseed(os.time())
  i = math.random(#tokens)
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
