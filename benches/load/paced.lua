-- wrk script: a fixed request rate instead of saturation. wrk has no rate option, so each
-- connection waits PACE_MS on average (uniform in [0.5, 1.5] x PACE_MS, so the connections do
-- not fire in lockstep) after each response before sending its next request:
-- rate = connections / (PACE_MS + latency). wrk starts a request's latency clock when it writes
-- the request, after the delay, so the pause is not counted as latency.
-- RESULT line as in report.lua, then p90 and p99.9 (us): the tail's shape around the p99
-- target, which one 10 s run moves by about half a millisecond.
local pace = tonumber(os.getenv("PACE_MS") or "0")

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function delay()
  return pace * (0.5 + math.random())
end

function done(s, lat, req)
  local e = s.errors
  io.write(string.format("RESULT %d %.3f %d %d %d %d %d %d %d %d\n", s.requests, s.duration / 1e6, s.bytes,
    lat:percentile(50), lat:percentile(99), lat.max, e.connect + e.read + e.write + e.timeout, e.status,
    lat:percentile(90), lat:percentile(99.9)))
end
