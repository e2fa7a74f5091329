#!/usr/bin/env bash
# Runs the CPU kernel benchmark with its peers and writes
# bench/results/cpu-<date>.jsonl, or $NORMSERVE_BENCH_OUT (docs/cpu-performance.md).
#
#   scripts/bench_cpu.sh [--quick] [extra normserve-kernel-bench flags]
#
# Steps: build normserve-kernel-bench (kernels only, in $NORMSERVE_BENCH_BUILD_DIR
# or build-bench/), run it (oneDNN layer normalization is timed in the same
# process when libdnnl-dev is installed), time the same shapes in PyTorch
# (Debian python3-torch, scripts/bench_torch_peer.py) when it is installed,
# and merge: every benchmark record is written once with its oneDNN peer (if
# any) and once more per further peer (torch), so each line has at most one
# peer as docs/PERFORMANCE.md's record format has.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NORMSERVE_BENCH_BUILD_DIR:-$root/build-bench}"
threads="${NORMSERVE_BENCH_THREADS:-$(nproc)}"
date="$(date -u +%Y-%m-%d)"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
out="${NORMSERVE_BENCH_OUT:-$root/bench/results/cpu-$date.jsonl}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cmake -S "$root/kernels" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" --target normserve-kernel-bench
bench="$build_dir/bench/normserve-kernel-bench"

"$bench" --backend cpu --threads "$threads" --git_commit "$commit" --date "$date" --out "$tmp/cpp.jsonl" "$@"

quick_reps=()
for arg in "$@"; do [[ "$arg" == "--quick" ]] && quick_reps=(--reps 3); done
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  /usr/bin/python3 "$root/scripts/bench_torch_peer.py" "$tmp/cpp.jsonl" "${quick_reps[@]}" >"$tmp/torch.jsonl"
else
  echo "bench_cpu.sh: python3-torch not installed; no torch peer" >&2
  : >"$tmp/torch.jsonl"
fi

mkdir -p "$(dirname "$out")"
/usr/bin/python3 - "$tmp/cpp.jsonl" "$tmp/torch.jsonl" >"$out" <<'PY'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peers = {}
for line in open(sys.argv[2]):
    if line.strip():
        p = json.loads(line)
        peers.setdefault((p["kind"], p["dtype"], p["rows"], p["cols"], p["threads"]), []).append(p)
for r in records:
    print(json.dumps(r))
    for p in peers.get((r["kind"], r["dtype"], r["rows"], r["cols"], r["threads"]), []):
        extra = dict(r)
        extra["peer"], extra["peer_gbps"] = p["peer"], p["peer_gbps"]
        print(json.dumps(extra))
PY
echo "bench_cpu.sh: wrote $out" >&2
