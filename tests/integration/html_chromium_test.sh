#!/usr/bin/env bash
# Renders a normserve-loadgen HTML report in headless Chromium and checks that
# a screenshot comes out. Skips (exit 77) where /usr/bin/chromium is absent.
# Usage: html_chromium_test.sh LOADGEN ECHO_SERVER
set -euo pipefail
loadgen="$1"
echo_server="$2"
chromium=/usr/bin/chromium
if [[ ! -x "$chromium" ]]; then
  echo "SKIP: $chromium not installed"
  exit 77
fi
dir="$(mktemp -d)"
"$echo_server" --port=0 > "$dir/echo.out" &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$dir/echo.out" && break
  sleep 0.1
done
target="$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$dir/echo.out")"
"$loadgen" --target="$target" --concurrency=1:2:x2 --requests=200 --html="$dir/report.html" > /dev/null
timeout 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --window-size=900,1400 --screenshot="$dir/report.png" "file://$dir/report.html" > "$dir/chromium.log" 2>&1 || {
  cat "$dir/chromium.log"
  exit 1
}
# A PNG that is more than a blank page.
test "$(head -c 8 "$dir/report.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a"
size=$(stat -c %s "$dir/report.png")
echo "screenshot: $size bytes"
test "$size" -gt 20000
