-- wrk script: POSTs pre-signed generic-profile webhooks, cycling through them. wrk's Lua has no
-- HMAC, so the bench driver writes the bodies and their signatures beforehand, one request per
-- line pair in BENCH_BODIES (signature line, then body line). Each thread starts at a different
-- offset so that the two threads do not send the same events at the same moment.
local bodies = {}
local sigs = {}
local n = 0
local pos = 1

local function load(path)
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  while true do
    local sig = f:read("*l")
    local body = f:read("*l")
    if not sig or not body then break end
    n = n + 1
    sigs[n] = sig
    bodies[n] = body
  end
  f:close()
end

local thread_count = 0
function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  load(os.getenv("BENCH_BODIES"))
  local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
  pos = math.floor(n * (thread_index or 0) / threads) + 1
end

function request()
  local i = pos
  pos = pos + 1
  if pos > n then pos = 1 end
  return wrk.format("POST", "/webhooks/hr", {
    ["Content-Type"] = "application/json",
    ["X-Scimsync-Signature"] = sigs[i],
  }, bodies[i])
end
