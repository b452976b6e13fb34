-- wrk script: saturation run. Prints one machine-readable line at the end (latencies in µs):
-- RESULT requests seconds bytes p50 p99 max socket_errors non2xx
function done(s, lat, req)
  local e = s.errors
  io.write(string.format("RESULT %d %.3f %d %d %d %d %d %d\n", s.requests, s.duration / 1e6, s.bytes,
    lat:percentile(50), lat:percentile(99), lat.max, e.connect + e.read + e.write + e.timeout, e.status))
end
