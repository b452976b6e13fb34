#!/usr/bin/env bash
# Browser test of the dashboard: Debian's headless Chromium, driven over WebDriver by
# chromedriver, against `telswap demo`. It browses the demo site as a paid and an organic
# visitor, places their calls with `telswap call`, logs in to the dashboard, opens every page,
# checks the figures shown against the JSON API, records an outcome through the journey page's
# form, and saves a screenshot of every page under target/browser/.
#
#   tests/browser/run.sh            # installs chromium + chromium-driver from Debian if missing
#
# Not part of `cargo test` (it needs a browser); everything runs on loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "installing chromium and chromium-driver from Debian..."
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo build --release --quiet
out=target/browser
mkdir -p "$out"
rm -f "$out"/*.png

export TELSWAP_ADMIN_TOKEN="browser-test-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
log="$out/demo.log"
target/release/telswap demo --listen 127.0.0.1:0 --admin 127.0.0.1:0 >"$log" 2>&1 &
demo=$!
driver_pid=""
cleanup() {
  kill "$demo" 2>/dev/null || true
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  grep -q "Press Ctrl-C" "$log" 2>/dev/null && break
  sleep 0.1
done
grep -q "Press Ctrl-C" "$log" || { cat "$log"; echo "demo did not start"; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chromedriver --port="$port" >"$out/chromedriver.log" 2>&1 &
driver_pid=$!

python3 tests/browser/dashboard.py \
  --driver "http://127.0.0.1:$port" \
  --demo-log "$log" \
  --telswap target/release/telswap \
  --token "$TELSWAP_ADMIN_TOKEN" \
  --out "$out"
