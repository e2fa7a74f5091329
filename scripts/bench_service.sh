#!/usr/bin/env bash
# Service benchmark: single-row requests (1x4096 bfloat16 LayerNorm) in a
# closed loop at concurrency 1, 4, 16, 64 and 256, through
#   - normserve with batching on (default --max_queue_delay_us=100),
#   - normserve with batching off (--enable_batching=false),
#   - normserve-echo-server, the transport floor (same API and payload, no compute).
# Writes bench/results/service-<date>-<variant>.{csv,json} and prints a table
# with each variant's throughput as a fraction of the echo server's.
#
#   scripts/bench_service.sh [SECONDS_PER_STEP=3] [CPU_THREADS=0]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${NORMSERVE_BUILD_DIR:-$root/build}"
step="${1:-3}"
threads="${2:-0}"
day="$(date -u +%F)"
out="$root/bench/results"
mkdir -p "$out"

run_variant() {  # NAME BINARY [FLAGS...]
  local name="$1" binary="$2"; shift 2
  local log; log="$(mktemp)"
  "$binary" --host=127.0.0.1 --port=0 "$@" >"$log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  local target; target="$(grep -o 'listening on [0-9.]*:[0-9]*' "$log" | sed 's/listening on //')"
  "$build/client/normserve-loadgen" --target="$target" --concurrency=1:256:x4 --duration="${step}s" \
    --warmup=1s --shape=1x4096 --dtype=bfloat16 --kind=layer_norm \
    --csv="$out/service-$day-$name.csv" --json="$out/service-$day-$name.json" >"$out/service-$day-$name.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$log"
}

run_variant echo "$build/client/normserve-echo-server"
run_variant batching-on "$build/server/normserve" --metrics_port=-1 --backend=cpu --cpu_threads="$threads"
run_variant batching-off "$build/server/normserve" --metrics_port=-1 --backend=cpu --cpu_threads="$threads" \
  --enable_batching=false

/usr/bin/python3 - "$out" "$day" "$(git -C "$root" rev-parse --short HEAD)" "$step" <<'PY' | tee "$out/service-$day-summary.txt"
import csv, sys
out, day, commit, step = sys.argv[1:5]
rows = {}
for name in ("echo", "batching-on", "batching-off"):
    with open(f"{out}/service-{day}-{name}.csv") as f:
        rows[name] = list(csv.DictReader(f))
print(f"# scripts/bench_service.sh {step}: 1x4096 bfloat16 LayerNorm, closed loop, {step} s per step, "
      f"commit {commit}, {day}, CPU backend, loadgen and server on the same machine")
print("# req/s (fraction of the echo server's) and p99 latency in us, per concurrency")
keys = rows["echo"][0].keys()
conc = next(k for k in keys if "concurrency" in k)
rps = next(k for k in keys if "achieved" in k)
p99 = next(k for k in keys if "p99" in k and "999" not in k)
for i, e in enumerate(rows["echo"]):
    line = f"concurrency {e[conc]:>4}: echo {float(e[rps]):8.0f}"
    for name in ("batching-on", "batching-off"):
        r = rows[name][i]
        line += f" | {name} {float(r[rps]):8.0f} ({float(r[rps]) / float(e[rps]):.2f}) p99 {float(r[p99]):7.0f}"
    print(line)
PY
