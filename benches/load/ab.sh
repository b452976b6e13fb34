#!/usr/bin/env bash
# A/B of two telswap builds on the paced tail: is a change's per-request work visible in latency?
#
#   benches/load/ab.sh OLD_BIN NEW_BIN [ROUNDS] [SECONDS] [RATE] [-- SERVE_ARGS...]
#
# One nginx origin serves numbers-heavy (CPU 0, with wrk). Each round starts each build fresh
# (`serve --threads 1` on CPU 1, as load.sh runs it), warms it with a 3 s saturation run, then
# drives it with paced wrk (benches/load/paced.lua) at RATE req/s (default 810, half of nginx
# sub_filter's saturation in the load runs) for SECONDS (default 10), and reads the CPU time the
# process used per request from /proc. Builds alternate (old new, new old, ...), so a drift of
# the machine lands on both. Prints each round and the medians; SERVE_ARGS (for example
# `--replay-cache-mb 0`) go to both. Needs nginx and wrk (benches/load.sh installs them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OLD=$(realpath "$1"); NEW=$(realpath "$2"); ROUNDS=${3:-8}; DUR=${4:-10}; RATE=${5:-810}
shift $(($# < 5 ? $# : 5)); [ "${1:-}" = -- ] && shift
CONNS=32
PACE_MS=$(awk -v c="$CONNS" -v r="$RATE" 'BEGIN {printf "%.3f", c*1000/r}')

W=$(mktemp -d /tmp/telswap-ab.XXXXXX)
chmod 755 "$W"
mkdir -p "$W/www" "$W/logs" "$W/temp" "$W/rules"
chmod 777 "$W/temp"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT
cp "$ROOT/benches/data/numbers-heavy.html" "$W/www/index.html"
cp "$OLD" "$W/old"; cp "$NEW" "$W/new"
# shellcheck source=benches/load/common.sh
. "$ROOT/benches/load/common.sh"
P_ORIGIN=$(free_port)
write_origin_conf "$W" "$P_ORIGIN"
write_rules "$W" "$P_ORIGIN"
taskset -c 0 "$(command -v nginx)" -p "$W" -c "$W/origin.conf" 2>>"$W/logs/origin.err" &
PIDS+=($!)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
: > "$W/res.txt"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for who in $order; do
    port=$(free_port)
    TELSWAP_ADMIN_TOKEN=$(head -c 18 /dev/urandom | base64) taskset -c 1 "$W/$who" serve --rules "$W/rules" \
      --listen "127.0.0.1:$port" --admin 127.0.0.1:0 --data "$W/data-$r-$who" --threads 1 "$@" \
      >>"$W/logs/telswap.out" 2>&1 &
    ts=$!
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
    taskset -c 0 wrk -t1 -c"$CONNS" -d3s "http://127.0.0.1:$port/" >/dev/null
    c0=$(cpu_ticks "$ts")
    res=$(PACE_MS=$PACE_MS taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$ROOT/benches/load/paced.lua" \
      "http://127.0.0.1:$port/" | grep '^RESULT')
    c1=$(cpu_ticks "$ts")
    kill "$ts"; wait "$ts" 2>/dev/null || true
    echo "$r $who $res $((c1 - c0))" | tee -a "$W/res.txt"
  done
done
python3 - "$W/res.txt" "$(getconf CLK_TCK)" <<'EOF'
import sys, statistics as st
tck = int(sys.argv[2])
rows = {"old": [], "new": []}
for line in open(sys.argv[1]):
    f = line.split()
    n = int(f[3])
    # RESULT n secs bytes p50 p99 max errors non2xx p90 p99.9, then CPU ticks
    rows[f[1]].append(dict(p50=int(f[6]) / 1e3, p90=int(f[11]) / 1e3, p99=int(f[7]) / 1e3,
                           p999=int(f[12]) / 1e3, cpu=int(f[13]) * 1e6 / tck / n, err=int(f[9]) + int(f[10])))
print("\nmedians of the rounds (ms; CPU in us per request):")
for who, rs in rows.items():
    m = {k: st.median(r[k] for r in rs) for k in ("p50", "p90", "p99", "p999", "cpu")}
    print(f"{who}: p50 {m['p50']:.2f}  p90 {m['p90']:.2f}  p99 {m['p99']:.2f}  p99.9 {m['p999']:.2f}  "
          f"cpu {m['cpu']:.0f}  errors {sum(r['err'] for r in rs)}  p99 by round {[r['p99'] for r in rs]}")
EOF
