-- wrk: each request is a POST of a 1 KiB body, signed with its own nonce, carrying the next line
-- of a file (given after `--`): "<timestamp> <nonce> <signature>" (bench/mint_signed.py), from
-- a random line, so a run never sends a signature twice (each is accepted once). With a second
-- argument, the body's Content-Digest, the signature is RFC 9421's; without, the seed's.
local lines = {}
local i = 0
local body = string.rep("x", 1024)
local digest = nil

function init(args)
  for line in io.lines(args[1]) do
    local ts, nonce, sig = line:match("^(%S+) (%S+) (%S+)$")
    lines[#lines + 1] = { ts, nonce, sig }
  end
  digest = args[2]
  math.randomseed(os.time())
  i = math.random(#lines)
end

function request()
  i = i % #lines + 1
  local l = lines[i]
  if digest then
    return wrk.format("POST", nil, {
      ["Content-Digest"] = digest,
      ["Signature-Input"] = 'sig1=("@method" "@request-target" "content-digest");created=' .. l[1]
        .. ';keyid="marketing";alg="hmac-sha256";nonce="' .. l[2] .. '"',
      ["Signature"] = "sig1=:" .. l[3] .. ":",
      ["Content-Type"] = "application/octet-stream",
    }, body)
  end
  return wrk.format("POST", nil, {
    ["X-Client-ID"] = "marketing",
    ["X-Timestamp"] = l[1],
    ["X-Nonce"] = l[2],
    ["X-Signature"] = l[3],
    ["Content-Type"] = "application/octet-stream",
  }, body)
end
