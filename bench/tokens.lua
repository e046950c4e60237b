-- wrk script: GET with the session cookie of the next token in a file
-- (one access token per line), cycling: `wrk ... -s tokens.lua URL -- FILE
-- [START]`, from line START + 1 (a warm-up in several runs carries on where
-- the last one stopped).
-- Requests are formatted once, up front: formatting a fresh one per
-- request made the client, not the server, the limit. The single-token
-- baseline runs the same script on a one-line file, so the client does
-- the same work in both.
local requests = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      requests[#requests + 1] =
        wrk.format("GET", nil, { ["Cookie"] = "chronos_session=" .. line })
    end
  end
  assert(#requests > 0, "no tokens in " .. args[1])
  i = (tonumber(args[2]) or 0) % #requests
end

function request()
  i = i % #requests + 1
  return requests[i]
end
