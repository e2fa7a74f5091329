#!/usr/bin/env bash
# Soak recipe: a steady open-loop load against one normserve for a while,
# sampling the server's resident memory, then the growth after warm-up.
#
#   scripts/soak.sh [SECONDS=600] [RATE=500] [OUT=bench/results/soak-<date>.txt]
#
# Uses the binaries in build/ (or $NORMSERVE_BUILD_DIR). RSS is sampled every
# 10 s from /proc; "growth" compares the last sample with the first one taken
# after 60 s of load (allocator pools and gRPC buffers settle in that time).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${NORMSERVE_BUILD_DIR:-$root/build}"
seconds="${1:-600}"
rate="${2:-500}"
out="${3:-$root/bench/results/soak-$(date -u +%F).txt}"
log="$(mktemp)"
"$build/server/normserve" --host=127.0.0.1 --port=0 --metrics_port=-1 --backend=cpu >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
target="$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" | sed 's/listening on //')"
"$build/client/normserve-loadgen" --target="$target" --rate="$rate" --arrival=poisson \
  --duration="${seconds}s" --shape=1x4096 --dtype=bfloat16 --json="$out.json" >"$out.loadgen" 2>&1 &
loadgen=$!
{
  echo "# normserve soak: $seconds s at $rate req/s (poisson, 1x4096 bfloat16 LayerNorm), commit $(git -C "$root" rev-parse --short HEAD), $(date -u +%FT%TZ)"
  echo "# elapsed_s rss_kib"
} >"$out"
start=$SECONDS
while kill -0 "$loadgen" 2>/dev/null; do
  echo "$((SECONDS - start)) $(awk '/VmRSS/ {print $2}' /proc/$server/status)" >>"$out"
  sleep 10
done
wait "$loadgen"
awk '!/^#/ { if ($1 >= 60 && base == "") base = $2; last = $2 }
     END { if (base == "") base = last;
           printf "# rss after warm-up %d KiB, at end %d KiB, growth %.2f%%\n", base, last, 100 * (last - base) / base }' \
  "$out" | tee -a "$out"
grep -E "achieved|p99|errors" "$out.loadgen" | head -5 | sed 's/^/# /' >>"$out"
