-- wrk: each request is a POST of a 1 KiB body signed with the seed's scheme, carrying the next
-- line of a file (given after `--`): "<timestamp> <nonce> <signature>", from a random line, so a
-- run never sends a signature twice (each is accepted once).
local lines = {}
local i = 0
local body = string.rep("x", 1024)

function init(args)
  for line in io.lines(args[1]) do
    local ts, nonce, sig = line:match("^(%S+) (%S+) (%S+)$")
    lines[#lines + 1] = { ts, nonce, sig }
  end
  math.randomseed(os.time())
  i = math.random(#lines)
end

function request()
  i = i % #lines + 1
  local l = lines[i]
  return wrk.format("POST", nil, {
    ["X-Client-ID"] = "marketing",
    ["X-Timestamp"] = l[1],
    ["X-Nonce"] = l[2],
    ["X-Signature"] = l[3],
    ["Content-Type"] = "application/octet-stream",
  }, body)
end
