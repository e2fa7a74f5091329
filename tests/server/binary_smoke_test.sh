#!/usr/bin/env bash
# Starts the real normserve binary and checks what scripts and the
# integration tests rely on: the start-up line, /metrics, graceful exit on
# SIGTERM with status 0, and a clear non-zero exit for --backend=cuda without
# a GPU. Usage: binary_smoke_test.sh PATH/TO/normserve
set -euo pipefail
bin="$1"
work="$(mktemp -d)"
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" --host=127.0.0.1 --port=0 --metrics_port=0 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do
  [[ -s "$work/out" ]] && break
  sleep 0.05
done
line="$(head -n1 "$work/out")"
if ! [[ "$line" =~ ^normserve\ listening\ on\ 127\.0\.0\.1:([0-9]+)\ metrics\ on\ 127\.0\.0\.1:([0-9]+)\ backend\ (cpu|cuda)$ ]]; then
  echo "unexpected start-up line: '$line'"; cat "$work/err"; exit 1
fi
mport="${BASH_REMATCH[2]}"
if command -v curl >/dev/null; then
  metrics="$(curl -sf "http://127.0.0.1:$mport/metrics")"
  for name in normserve_build_info normserve_backend_info normserve_backend_healthy normserve_rejections_total; do
    grep -q "^$name" <<<"$metrics" || { echo "missing $name in /metrics"; exit 1; }
  done
fi
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
unset pid
[[ $status -eq 0 ]] || { echo "exit status $status after SIGTERM"; cat "$work/err"; exit 1; }
grep -q "normserve: stopped" "$work/err" || { echo "no graceful stop"; cat "$work/err"; exit 1; }

# Without a GPU, --backend=cuda must fail fast with a message.
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  status=0
  "$bin" --backend=cuda --port=0 --metrics_port=-1 >/dev/null 2>"$work/cuda_err" || status=$?
  [[ $status -ne 0 ]] || { echo "--backend=cuda without a GPU exited 0"; exit 1; }
  grep -q -- "--backend=cuda but" "$work/cuda_err" || { echo "unclear message:"; cat "$work/cuda_err"; exit 1; }
fi
echo "ok"
