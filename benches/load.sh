#!/usr/bin/env bash
# Load comparison: telswap against nginx with sub_filter, both proxying one nginx origin, plus the
# idle-connection and large-page memory checks (issue 6 §2, §3). Not part of `cargo test`.
#
#   benches/load.sh [-d SECONDS] [-c CONNECTIONS] [-p PAGE] [-r ROUNDS] [-i IDLE_CONNS]
#                   [--hold SECONDS] [--big-mb MB] [--bin PATH] [--no-engine] [--no-pin] [--keep]
#                   [--tokens] [--banner]
#
# What runs (every process it starts is stopped on exit):
# - origin: nginx (1 worker) serving PAGE (default benches/data/numbers-heavy.html) as `/`, the
#   small-business page as `/small.html` and a generated BIG_MB page as `/big.html`;
# - telswap `serve --threads 1`, as it runs by default: a response with the same bytes as an
#   earlier one of the page is answered from that rewrite (`rewrite::replay`), and the page here
#   is static, so after the first response of each page that is what this instance measures;
# - the same telswap with `--replay-cache-mb 0` ("engine"): the byte-level engine reads every
#   response, as it must for a page that differs on every request (a nonce, a cart), in the
#   throughput and paced rounds too;
# - a third with `--engine lol_html`, in the throughput rounds only, for the engine's share; rules: the site number +1 555-010-0000, one source pool for
#   direct traffic (wrk sends no cookie, no referrer: every request is a new direct visitor, so
#   each one is classified, gets a signed visitor cookie, a page-view row, and the swap);
# - nginx (`worker_processes 1`) with `sub_filter` for every literal form of the number on the
#   page, `sub_filter_once off`, upstream `Accept-Encoding` cleared, keep-alive to the origin;
# - CPU pinning (unless --no-pin): both proxies on CPU 1, origin and wrk on CPU 0;
# - throughput: wrk -t1 -cC -dD on each proxy, alternating ROUNDS times (T N, N T, T N, ...);
# - latency: paced wrk (benches/load/paced.lua) at half of nginx sub_filter's saturation rate
#   from the same run, on direct-to-origin, telswap and nginx, alternating ROUNDS times (p50,
#   p90, p99 and p99.9 printed, medians of the rounds);
# - idle: a fresh telswap, IDLE_CONNS keep-alive connections each after one request, RSS; then
#   the same over HTTPS (a self-signed certificate made with the openssl command), then over
#   HTTP/2 (TLS, ALPN h2, as browsers connect);
# - big page: a fresh telswap streaming the BIG_MB page, RSS growth (peak VmHWM minus before);
# - engine: `cargo bench --bench rewrite` on numbers-heavy, telswap / lol_html no-op handlers.
#
# --tokens makes the pages dynamic, as most are: the origin writes a different 32-digit token
# (nginx SSI, `$request_id`) into two hidden inputs of PAGE and small.html, at 10% and 60% of the
# page, on every response. No two responses are then the same bytes; telswap answers around the
# tokens from the page's recording, reading the stretches around them with the engine.
# --banner (implies --tokens) also changes the pages' length: a promotion banner at 30% of the
# page, shown on about half the responses (SSI `if` on the request id), as an A/B test or a
# "today only" notice would; telswap finds the recording's bytes again past it (realignment).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=10
CONNS=32
PAGE=$ROOT/benches/data/numbers-heavy.html
ROUNDS=3
IDLE=10000
HOLD=40
BIG_MB=50
BIN=
ENGINE=1
PIN=1
KEEP=0
TOKENS=0
BANNER=0
while [ $# -gt 0 ]; do
  case $1 in
    -d) DUR=$2; shift 2 ;;
    -c) CONNS=$2; shift 2 ;;
    -p) PAGE=$(realpath "$2"); shift 2 ;;
    -r) ROUNDS=$2; shift 2 ;;
    -i) IDLE=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --big-mb) BIG_MB=$2; shift 2 ;;
    --bin) BIN=$(realpath "$2"); shift 2 ;;
    --no-engine) ENGINE=0; shift ;;
    --no-pin) PIN=0; shift ;;
    --keep) KEEP=1; shift ;;
    --tokens) TOKENS=1; shift ;;
    --banner) TOKENS=1; BANNER=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[load] %s\n' "$*" >&2; }

# Tools: Debian's nginx and wrk when missing.
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v openssl >/dev/null; then
  log "installing nginx and wrk"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q nginx wrk openssl
fi
NGINX=$(command -v nginx)
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  PROXY_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0)
else
  PIN=0; PROXY_CPU=(); LOAD_CPU=()
fi

W=$(mktemp -d /tmp/telswap-load.XXXXXX)
chmod 755 "$W" # nginx workers run as an unprivileged user and read the pages from here
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$KEEP" = 0 ]; then rm -rf "$W"; else log "kept $W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "failed at line $LINENO (logs in $W/logs; --keep keeps them)"' ERR

if [ -z "$BIN" ]; then
  log "building telswap (release)"
  (cd "$ROOT" && cargo build --release -q --bin telswap)
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/telswap
  case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
fi
# A private copy: a shared target dir may be rebuilt by someone else during the run.
cp "$BIN" "$W/telswap"

# shellcheck source=benches/load/common.sh
. "$ROOT/benches/load/common.sh"
P_ORIGIN=$(free_port); P_NGINX=$(free_port); P_TS=$(free_port); P_TS2=$(free_port); P_TSL=$(free_port)
P_TSE=$(free_port)

mkdir -p "$W/www" "$W/logs" "$W/rules" "$W/temp"
chmod 777 "$W/temp"
cp "$PAGE" "$W/www/index.html"
cp "$ROOT/benches/data/small-business.html" "$W/www/small.html"
SSI=
if [ "$TOKENS" = 1 ]; then
  SSI="ssi on;"
  for f in "$W/www/index.html" "$W/www/small.html"; do
    python3 - "$f" "$BANNER" <<'EOF'
import sys
path, banner = sys.argv[1], sys.argv[2] == "1"
page = open(path, "rb").read()
inserts = [(60, b'<input type=hidden name=t1 value="<!--# echo var="request_id" -->">'),
           (10, b'<input type=hidden name=t2 value="<!--# echo var="request_id" -->">')]
if banner:
    inserts.insert(0, (30, b'<!--# if expr="$request_id = /^[0-7]/" --><p class=banner>Free delivery '
                           b'on every order today: call us before 6 pm.</p><!--# endif -->'))
for share, text in sorted(inserts, reverse=True):
    at = page.index(b"<", len(page) * share // 100)
    page = page[:at] + text + page[at:]
open(path, "wb").write(page)
EOF
  done
fi
# Responses compared byte for byte: the tokens (and the banner) are the parts that differ.
untoken() { sed -E -i -e 's/value="[0-9a-f]{32}"/value="TOKEN"/g' -e 's|<p class=banner>[^<]*</p>||g' "$@"; }
python3 - "$W/www/big.html" "$BIG_MB" <<'EOF'
import sys
path, mb = sys.argv[1], int(sys.argv[2])
block = ('<div class="row" data-i="{i}"><p>Call (555) 010-0000 or <a href="tel:+15550100000">555-010-0000</a>. '
         'Order 98765-{i} on 03/27/2011 for $1,234.50.</p></div>\n')
with open(path, "w") as f:
    f.write("<!doctype html><html><head><meta charset=utf-8><title>big</title></head><body>\n")
    n, i = 0, 0
    while n < mb << 20:
        s = block.format(i=i); f.write(s); n += len(s); i += 1
    f.write("</body></html>\n")
EOF

# The site number's literal forms on the page, as nginx needs them (sub_filter matches bytes).
# Every form telswap swaps on numbers-heavy contains one of these; parity.py checks it.
FORMS=('5550100000' '(555) 010-0000' '555-010-0000' '555 010 0000' '555.010.0000'
       '555&nbsp;010&nbsp;0000' '555%20010%200000' '(555)&nbsp;010&#8209;0000' '555&#8209;010&#8209;0000')
SUBS=
for f in "${FORMS[@]}"; do SUBS+="      sub_filter '$f' '${f%0000}2001';"$'\n'; done

write_origin_conf "$W" "$P_ORIGIN" "$SSI"
cat > "$W/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/logs/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path $W/temp; proxy_temp_path $W/temp; fastcgi_temp_path $W/temp;
  uwsgi_temp_path $W/temp; scgi_temp_path $W/temp;
  upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 256; }
  server {
    listen 127.0.0.1:$P_NGINX backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Accept-Encoding "";
      # Streams like telswap does (and never spills a large page to a temp file).
      proxy_buffering off;
      sub_filter_once off;
$SUBS    }
  }
}
EOF
write_rules "$W" "$P_ORIGIN"

wait_port() {
  for _ in $(seq 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; exit 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

"${LOAD_CPU[@]}" "$NGINX" -p "$W" -c "$W/origin.conf" 2>>"$W/logs/origin.err" &
PIDS+=($!)
"${PROXY_CPU[@]}" "$NGINX" -p "$W" -c "$W/nginx.conf" 2>>"$W/logs/nginx.err" &
PIDS+=($!)
start_telswap() { # PORT DATA [ENGINE [MORE ARGS...]] -> sets TS_PID
  local port=$1 data=$2 engine=${3:-auto}
  shift $(($# < 3 ? $# : 3))
  TELSWAP_ENGINE=$engine TELSWAP_ADMIN_TOKEN=$(head -c 18 /dev/urandom | base64) "${PROXY_CPU[@]}" "$W/telswap" serve \
    --rules "$W/rules" --listen "127.0.0.1:$port" --admin 127.0.0.1:0 --data "$data" --threads 1 "$@" \
    >>"$W/logs/telswap.out" 2>>"$W/logs/telswap.err" &
  TS_PID=$!
  PIDS+=("$TS_PID")
  wait_port "$port"
}
start_telswap "$P_TSL" "$W/data-lol" lol_html
TSL_PID=$TS_PID
start_telswap "$P_TSE" "$W/data-engine" auto --replay-cache-mb 0
TSE_PID=$TS_PID
start_telswap "$P_TS" "$W/data"
wait_port "$P_ORIGIN"; wait_port "$P_NGINX"

# Parity: the same page through each proxy; count the replacements each made.
curl -sf -o "$W/origin.html" "http://127.0.0.1:$P_ORIGIN/"
curl -sf -o "$W/telswap.html" "http://127.0.0.1:$P_TS/"
curl -sf -o "$W/nginx.html" "http://127.0.0.1:$P_NGINX/"
curl -sf -o "$W/lolhtml.html" "http://127.0.0.1:$P_TSL/"
curl -sf -o "$W/engine.html" "http://127.0.0.1:$P_TSE/"
curl -sf -o "$W/replayed.html" "http://127.0.0.1:$P_TS/"
untoken "$W"/{origin,telswap,nginx,lolhtml,engine,replayed}.html
cmp -s "$W/telswap.html" "$W/lolhtml.html" || { log "telswap's two engines answered differently"; exit 1; }
cmp -s "$W/telswap.html" "$W/engine.html" || { log "telswap with and without replays answered differently"; exit 1; }
cmp -s "$W/telswap.html" "$W/replayed.html" || { log "a replayed response differs from the first"; exit 1; }
PARITY=$(python3 "$ROOT/benches/load/parity.py" "$W/origin.html" "$W/telswap.html" "$W/nginx.html")
log "$PARITY"

# wrk NAME PORT SCRIPT [ENV...] -> prints "NAME RESULT ..."
run_wrk() {
  local name=$1 port=$2 script=$3; shift 3
  local out
  out=$(env "$@" "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$script" "http://127.0.0.1:$port/" | grep '^RESULT')
  echo "$name $out"
}

log "warm-up"
for p in "$P_TS" "$P_TSE" "$P_TSL" "$P_NGINX" "$P_ORIGIN"; do
  "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$p/" >/dev/null
done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
: > "$W/thr.txt"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="telswap nginx engine lolhtml"; else order="lolhtml engine nginx telswap"; fi
  for who in $order; do
    case $who in telswap) port=$P_TS ;; engine) port=$P_TSE ;; lolhtml) port=$P_TSL ;; nginx) port=$P_NGINX ;; esac
    log "throughput round $r: $who"
    run_wrk "$who" "$port" "$ROOT/benches/load/report.lua" >> "$W/thr.txt"
  done
done
log "throughput: direct to origin"
run_wrk direct "$P_ORIGIN" "$ROOT/benches/load/report.lua" >> "$W/thr.txt"

# Median req/s of nginx's rounds is its saturation rate; pace at half of it.
SAT=$(awk '$1=="nginx" {print $3/$4}' "$W/thr.txt" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
RATE=$(awk -v s="$SAT" 'BEGIN {printf "%.0f", s/2}')
PACE_MS=$(awk -v c="$CONNS" -v r="$RATE" 'BEGIN {printf "%.3f", c*1000/r}')
log "nginx saturation ${SAT} req/s; paced runs at ${RATE} req/s (${CONNS} connections, ${PACE_MS} ms apart each)"
: > "$W/lat.txt"
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="direct telswap nginx engine"; else order="engine nginx telswap direct"; fi
  for who in $order; do
    case $who in telswap) port=$P_TS ;; engine) port=$P_TSE ;; nginx) port=$P_NGINX ;; direct) port=$P_ORIGIN ;; esac
    log "paced round $r: $who"
    run_wrk "$who" "$port" "$ROOT/benches/load/paced.lua" PACE_MS="$PACE_MS" >> "$W/lat.txt"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
kill "$TS_PID" "$TSL_PID" "$TSE_PID"; wait "$TS_PID" "$TSL_PID" "$TSE_PID" 2>/dev/null || true

# Idle keep-alive connections: a fresh telswap, warmed with a few requests.
log "idle: $IDLE keep-alive connections, held ${HOLD} s"
start_telswap "$P_TS2" "$W/data-idle"
for _ in 1 2 3; do curl -sf -o /dev/null "http://127.0.0.1:$P_TS2/small.html"; done
IDLE_RES=$(python3 "$ROOT/benches/load/idle.py" 127.0.0.1 "$P_TS2" /small.html "$IDLE" "$HOLD" "$TS_PID" | grep '^RESULT')
kill "$TS_PID"; wait "$TS_PID" 2>/dev/null || true

# The same over HTTPS: idle TLS connections keep rustls' state on top.
log "idle over TLS: $IDLE keep-alive connections, held ${HOLD} s"
mkdir -p "$W/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost -keyout "$W/certs/localhost.key" -out "$W/certs/localhost.crt" 2>/dev/null
P_TLS=$(free_port)
start_telswap "$(free_port)" "$W/data-idle-tls" auto --tls-listen "127.0.0.1:$P_TLS" --certs "$W/certs"
wait_port "$P_TLS"
IDLE_TLS_RES=$(python3 "$ROOT/benches/load/idle.py" 127.0.0.1 "$P_TLS" /small.html "$IDLE" "$HOLD" "$TS_PID" tls | grep '^RESULT')
kill "$TS_PID"; wait "$TS_PID" 2>/dev/null || true

# And HTTP/2 over TLS (ALPN h2), as browsers connect: hyper's HTTP/2 connection is not parked.
log "idle over HTTP/2: $IDLE keep-alive connections, held ${HOLD} s"
P_TLS=$(free_port)
start_telswap "$(free_port)" "$W/data-idle-h2" auto --tls-listen "127.0.0.1:$P_TLS" --certs "$W/certs"
wait_port "$P_TLS"
IDLE_H2_RES=$(python3 "$ROOT/benches/load/idle.py" 127.0.0.1 "$P_TLS" /small.html "$IDLE" "$HOLD" "$TS_PID" h2 | grep '^RESULT')
kill "$TS_PID"; wait "$TS_PID" 2>/dev/null || true

# The same three against nginx sub_filter (its worker's RSS; OpenSSL, nginx's own HTTP/2), for
# scale: a fresh instance sized for the connections, the same proxy settings. (Sized with room:
# when nginx runs short of connections it closes idle keep-alive ones to make some, and with
# 500 spare, 350-400 of the 10,000 were closed while they were being opened.)
log "idle, nginx sub_filter: $IDLE connections plain, HTTPS and HTTP/2, held ${HOLD} s each"
P_NI=$(free_port); P_NT=$(free_port); P_NH=$(free_port)
sed -e "s|^pid .*|pid $W/nginx-idle.pid;|" -e "s|^events .*|worker_rlimit_nofile $((IDLE + 4000));\nevents { worker_connections $((IDLE + 3000)); }|" \
  -e "s|^    listen 127.0.0.1:$P_NGINX backlog=4096;|    listen 127.0.0.1:$P_NI backlog=4096;\n    listen 127.0.0.1:$P_NT ssl backlog=4096;\n    listen 127.0.0.1:$P_NH ssl http2 backlog=4096;\n    ssl_certificate $W/certs/localhost.crt; ssl_certificate_key $W/certs/localhost.key;|" \
  "$W/nginx.conf" > "$W/nginx-idle.conf"
NGINX_IDLE=()
for mode in plain tls h2; do
  "${PROXY_CPU[@]}" nginx -p "$W" -c "$W/nginx-idle.conf" 2>>"$W/logs/nginx.err" &
  NI_PID=$!; PIDS+=("$NI_PID")
  port=$P_NI; [ "$mode" = tls ] && port=$P_NT; [ "$mode" = h2 ] && port=$P_NH
  wait_port "$port"
  NI_WORKER=$(pgrep -P "$NI_PID" | head -1)
  NGINX_IDLE+=("$(python3 "$ROOT/benches/load/idle.py" 127.0.0.1 "$port" /small.html "$IDLE" "$HOLD" "$NI_WORKER" "$mode" | grep '^RESULT')")
  kill "$NI_PID"; wait "$NI_PID" 2>/dev/null || true
done

# The big page: a fresh telswap; peak RSS (VmHWM, reset first) against RSS before.
log "big page: ${BIG_MB} MB"
P_TS3=$(free_port)
start_telswap "$P_TS3" "$W/data-big"
for _ in 1 2 3; do curl -sf -o /dev/null "http://127.0.0.1:$P_TS3/small.html"; done
BIG_BEFORE=$(rss_kib "$TS_PID")
echo 5 > "/proc/$TS_PID/clear_refs"
curl -sf -o "$W/big.out" "http://127.0.0.1:$P_TS3/big.html"
BIG_PEAK=$(awk '/^VmHWM:/ {print $2}' "/proc/$TS_PID/status")
BIG_BYTES=$(stat -c %s "$W/big.out")
BIG_SWAPS=$(grep -o '010-2001' "$W/big.out" | wc -l)
BIG_LEFT=$(grep -o '010-0000' "$W/big.out" | wc -l || true)
rm -f "$W/big.out"
kill "$TS_PID"; wait "$TS_PID" 2>/dev/null || true

ENGINE_LINE="not run (--no-engine)"
ENGINE_PCT=
if [ "$ENGINE" = 1 ]; then
  log "engine: cargo bench --bench rewrite (numbers-heavy)"
  (cd "$ROOT" && cargo bench -q --bench rewrite -- 'numbers-heavy/' --warm-up-time 1 --measurement-time 4) > "$W/engine.txt" 2>&1 || true
  # Middle thrpt figure of each function, in MiB/s.
  read -r E_TS E_NOOP < <(awk '
    /^numbers-heavy\// { name = $1 }
    /thrpt:/ && !(name in t) { v = $4; u = $5; if (u ~ /^GiB/) v *= 1024; if (u ~ /^KiB/) v /= 1024; t[name] = v }
    END { print t["numbers-heavy/telswap"]+0, t["numbers-heavy/lol_html_noop_handlers"]+0 }' "$W/engine.txt")
  if awk -v b="$E_NOOP" 'BEGIN {exit !(b > 0)}'; then
    ENGINE_PCT=$(awk -v a="$E_TS" -v b="$E_NOOP" 'BEGIN {printf "%.1f", 100*a/b}')
    ENGINE_LINE="telswap ${E_TS} MiB/s, lol_html no-op handlers ${E_NOOP} MiB/s: ${ENGINE_PCT}%"
  else
    ENGINE_LINE="bench failed, see $W/engine.txt (--keep)"
  fi
fi

# Report.
python3 - "$W/thr.txt" "$W/lat.txt" "$SAT" "$RATE" <<'EOF' > "$W/report.txt"
import statistics as st, sys
thr, lat = {}, {}
for path, d in ((sys.argv[1], thr), (sys.argv[2], lat)):
    for line in open(path):
        f = line.split()
        who, req, secs, byts, p50, p99, mx, err, non2xx = f[0], int(f[2]), float(f[3]), int(f[4]), int(f[5]), int(f[6]), int(f[7]), int(f[8]), int(f[9])
        row = dict(rps=req / secs, mbs=byts / secs / 1e6, p50=p50 / 1000, p99=p99 / 1000, err=err + non2xx)
        if len(f) >= 12:  # paced.lua: p90 and p99.9 too
            row.update(p90=int(f[10]) / 1000, p999=int(f[11]) / 1000)
        d.setdefault(who, []).append(row)
med = lambda rows, k: st.median(r[k] for r in rows)
print(f"{'':9} {'req/s':>9} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8}  rounds (req/s)                errors")
names = {"lolhtml": "telswap, lol_html engine (--engine lol_html)",
         "engine": "telswap, every response through the engine (--replay-cache-mb 0)"}
for who in ("telswap", "nginx", "direct", "engine", "lolhtml"):
    rows = thr.get(who, [])
    if rows:
        each = " ".join("%.1f" % r["rps"] for r in rows)
        print(f"{who:9} {med(rows,'rps'):9.1f} {med(rows,'mbs'):8.1f} {med(rows,'p50'):8.2f} {med(rows,'p99'):8.2f}  "
              f"{each:29} {sum(r['err'] for r in rows)}  {names.get(who, '')}")
print(f"\npaced at {sys.argv[4]} req/s (half of nginx's {float(sys.argv[3]):.1f}):")
print(f"{'':9} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}  rounds (p99 ms)               errors")
for who in ("direct", "telswap", "nginx", "engine"):
    rows = lat.get(who, [])
    each = " ".join("%.2f" % r["p99"] for r in rows)
    print(f"{who:9} {med(rows,'rps'):9.1f} {med(rows,'p50'):8.2f} {med(rows,'p90'):8.2f} {med(rows,'p99'):8.2f} "
          f"{med(rows,'p999'):9.2f}  {each:29} {sum(r['err'] for r in rows)}")
ratio = med(thr['telswap'], 'rps') / med(thr['nginx'], 'rps')
added_ts = med(lat['telswap'], 'p99') - med(lat['direct'], 'p99')
added_ngx = med(lat['nginx'], 'p99') - med(lat['direct'], 'p99')
errs = sum(r['err'] for rows in list(thr.values()) + list(lat.values()) for r in rows)
added_eng = med(lat['engine'], 'p99') - med(lat['direct'], 'p99')
print(f"\nthroughput telswap / nginx sub_filter: {ratio:.2f}x (every response through the engine: "
      f"{med(thr['engine'], 'rps') / med(thr['nginx'], 'rps'):.2f}x; with the lol_html engine: "
      f"{med(thr['lolhtml'], 'rps') / med(thr['nginx'], 'rps'):.2f}x)")
print(f"added p99 over direct: telswap {added_ts:.2f} ms, nginx sub_filter {added_ngx:.2f} ms "
      f"(every response through the engine: {added_eng:.2f} ms)")
ratio_eng = med(thr['engine'], 'rps') / med(thr['nginx'], 'rps')
# Unrounded: the targets below round once, as the report above does.
print(f"VALUES ratio={ratio:.6f} added_ts={added_ts:.6f} errors={errs} ratio_engine={ratio_eng:.6f} added_engine={added_eng:.6f}")
EOF
pass() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo MISS; fi; }
read -r _ RATIO ADDED ERRS RATIO_ENG ADDED_ENG < <(grep '^VALUES' "$W/report.txt" | tr '=' ' ' | awk '{print $1, $3, $5, $7, $9, $11}')
read -r _ I_BEFORE I_OPEN I_OPENED I_STILL I_HOLD <<< "$IDLE_RES"
I_MB=$(awk -v k="$I_OPEN" 'BEGIN {printf "%.1f", k/1024}')
read -r _ T_BEFORE T_OPEN T_OPENED T_STILL T_HOLD <<< "$IDLE_TLS_RES"
T_MB=$(awk -v k="$T_OPEN" 'BEGIN {printf "%.1f", k/1024}')
read -r _ H_BEFORE H_OPEN H_OPENED H_STILL H_HOLD <<< "$IDLE_H2_RES"
H_MB=$(awk -v k="$H_OPEN" 'BEGIN {printf "%.1f", k/1024}')
# nginx's three: "MiB opened" each.
NGINX_IDLE_MB=()
for r in "${NGINX_IDLE[@]}"; do
  read -r _ _ n_open n_opened _ _ <<< "$r"
  NGINX_IDLE_MB+=("$(awk -v k="$n_open" 'BEGIN {printf "%.1f", k/1024}') MiB ($n_opened open)")
done
B_GROWTH=$(awk -v a="$BIG_BEFORE" -v b="$BIG_PEAK" 'BEGIN {printf "%.1f", (b-a)/1024}')

echo
echo "== telswap vs nginx sub_filter: $(basename "$PAGE") ($(stat -c %s "$PAGE") bytes), wrk -t1 -c$CONNS -d${DUR}s x $ROUNDS rounds$([ "$TOKENS" = 1 ] && echo ", a fresh token in each response (--tokens)")$([ "$BANNER" = 1 ] && echo ", a banner in about half (--banner)"), pinned: $([ "$PIN" = 1 ] && echo 'proxies CPU 1, origin+wrk CPU 0' || echo no)"
echo "load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
echo "$PARITY"
echo
grep -v '^VALUES' "$W/report.txt"
echo
echo "idle: $I_OPENED of $IDLE keep-alive connections open after one request each; telswap RSS ${I_BEFORE} KiB before, ${I_OPEN} KiB with them open; $I_STILL still open after ${I_HOLD} s idle"
echo "idle over TLS: $T_OPENED of $IDLE keep-alive HTTPS connections open after one request each; telswap RSS ${T_BEFORE} KiB before, ${T_OPEN} KiB with them open; $T_STILL still open after ${T_HOLD} s idle"
echo "idle over HTTP/2: $H_OPENED of $IDLE HTTP/2 (TLS, ALPN h2) connections open after one request each; telswap RSS ${H_BEFORE} KiB before, ${H_OPEN} KiB with them open; $H_STILL still open after ${H_HOLD} s idle"
echo "idle, nginx sub_filter worker RSS with $IDLE open: plain ${NGINX_IDLE_MB[0]}, HTTPS ${NGINX_IDLE_MB[1]}, HTTP/2 ${NGINX_IDLE_MB[2]}"
echo "big page: $BIG_BYTES bytes, $BIG_SWAPS swapped, $BIG_LEFT left; telswap RSS ${BIG_BEFORE} KiB before, peak ${BIG_PEAK} KiB: growth ${B_GROWTH} MiB"
echo "engine: $ENGINE_LINE"
echo
echo "targets:"
echo "  throughput telswap >= 1.0x nginx sub_filter      $(printf '%.2fx' "$RATIO")   $(pass "$RATIO >= 1.0")"
echo "  added p99 over direct <= 1 ms at half saturation  $(printf '%.2f ms' "$ADDED")  $(pass "$ADDED <= 1.0")"
echo "    the same two with every response through the engine (--replay-cache-mb 0): $(printf '%.2fx' "$RATIO_ENG") $(pass "$RATIO_ENG >= 1.0"), $(printf '%.2f ms' "$ADDED_ENG") $(pass "$ADDED_ENG <= 1.0")"
if [ -n "$ENGINE_PCT" ]; then
  echo "  engine >= 75% of lol_html no-op handlers          ${ENGINE_PCT}%   $(pass "$ENGINE_PCT >= 75")"
fi
echo "  $IDLE idle keep-alive connections < 200 MB RSS    ${I_MB} MiB  $(pass "$I_OPENED == $IDLE && $I_OPEN < 200*1024")  (nginx ${NGINX_IDLE_MB[0]%% (*})"
echo "  $IDLE idle keep-alive HTTPS connections < 200 MB  ${T_MB} MiB  $(pass "$T_OPENED == $IDLE && $T_OPEN < 200*1024")  (nginx ${NGINX_IDLE_MB[1]%% (*})"
echo "  $IDLE idle HTTP/2 connections < 200 MB           ${H_MB} MiB  $(pass "$H_OPENED == $IDLE && $H_OPEN < 200*1024")  (nginx ${NGINX_IDLE_MB[2]%% (*})"
echo "  ${BIG_MB} MB page < 20 MB RSS growth                 ${B_GROWTH} MiB   $(pass "$B_GROWTH < 20 && $BIG_SWAPS > 0 && $BIG_LEFT == 0")"
echo "  errors (socket + non-2xx) in all wrk runs         $ERRS"
