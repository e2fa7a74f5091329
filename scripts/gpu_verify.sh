#!/usr/bin/env bash
# GPU verification on a machine with an NVIDIA GPU, CUDA, CMake, a C++
# compiler and ninja, but none of the Debian packages (no gRPC, no GoogleTest,
# no network). Configures kernels/ alone, builds the GPU tests and
# normserve-kernel-bench, runs the tests, runs the benchmark (and, where
# PyTorch is installed, scripts/bench_torch_gpu.py on the same shapes, merged
# in as peer / peer_gbps), and writes bench/results/gpu-<device>-<date>.jsonl
# with the git commit, device name and date in every record.
#
# Usage: scripts/gpu_verify.sh [--quick] [--no-bench] [--no-torch]
# Environment: NORMSERVE_GPU_BUILD_DIR (default build-gpu), CMAKE_CUDA_ARCHITECTURES.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${NORMSERVE_GPU_BUILD_DIR:-$root/build-gpu}"
quick=0
run_bench=1
run_torch=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-bench) run_bench=0 ;;
    --no-torch) run_torch=0 ;;
    *) echo "gpu_verify: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { echo "gpu_verify: $*" >&2; }
run() { say "+ $*"; "$@"; }

if [[ -z "${CUDACXX:-}" && -x /usr/local/cuda/bin/nvcc ]]; then export CUDACXX=/usr/local/cuda/bin/nvcc; fi
jobs="$(nproc 2>/dev/null || echo 4)"

device="none"
if command -v nvidia-smi >/dev/null 2>&1; then
  device="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || true)"
  [[ -n "$device" ]] || device="none"
fi
say "device: $device"
commit="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$root" status --porcelain 2>/dev/null || true)" ]]; then commit="$commit-dirty"; fi
date_utc="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "commit $commit, date $date_utc"

cmake_args=(-S "$root/kernels" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNORMSERVE_ENABLE_CUDA=ON)
if [[ -n "${CMAKE_CUDA_ARCHITECTURES:-}" ]]; then cmake_args+=(-DCMAKE_CUDA_ARCHITECTURES="$CMAKE_CUDA_ARCHITECTURES"); fi
run cmake "${cmake_args[@]}"

# Build what exists: the GPU tests always, the benchmark when kernels/bench defines it.
targets=(kernels_cuda_factory_test kernels_cuda_parity_test kernels_cuda_batch_test kernels_cuda_device_test)
have_bench=0
if ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q '^normserve-kernel-bench:'; then
  targets+=(normserve-kernel-bench)
  have_bench=1
else
  say "normserve-kernel-bench is not defined by kernels/bench; skipping the benchmark"
fi
run cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}"

say "running the GPU tests"
test_status=0
(cd "$build_dir" && run ctest --output-on-failure -R 'kernels_cuda_' -j1) || test_status=$?

if [[ "$device" == "none" ]]; then
  say "no GPU visible: tests ran (and skipped); no benchmark results written"
  exit "$test_status"
fi
if [[ $run_bench -eq 0 || $have_bench -eq 0 ]]; then exit "$test_status"; fi

slug="$(echo "$device" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '-' | sed 's/-\{2,\}/-/g; s/^-//; s/-$//')"
out_dir="$root/bench/results"
mkdir -p "$out_dir"
out="$out_dir/gpu-$slug-$(date -u +%Y%m%d).jsonl"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

bench_args=(--backend cuda --git-commit "$commit" --date "$date_utc")
[[ $quick -eq 1 ]] && bench_args+=(--quick)
say "running the kernel benchmark"
run "$build_dir/bench/normserve-kernel-bench" "${bench_args[@]}" >"$tmp/kernels.jsonl"

peer="$tmp/torch.jsonl"
: >"$peer"
if [[ $run_torch -eq 1 ]] && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "running the PyTorch peer"
  torch_args=(--shapes-from "$tmp/kernels.jsonl")
  run python3 "$root/scripts/bench_torch_gpu.py" "${torch_args[@]}" >"$peer" || say "PyTorch peer failed; records keep no peer"
else
  say "PyTorch with CUDA not available; records keep no peer"
fi

# Merge: each kernel record gets the device, commit and date, and the
# fastest PyTorch variant of the same shape as its peer.
python3 - "$tmp/kernels.jsonl" "$peer" "$device" "$commit" "$date_utc" >"$tmp/merged.jsonl" <<'PY'
import json, sys
kernels, peer_path, device, commit, date = sys.argv[1:6]
best = {}
for line in open(peer_path):
    line = line.strip()
    if not line:
        continue
    p = json.loads(line)
    key = (p["kind"], p["dtype"], p["rows"], p["cols"])
    if key not in best or p["gbps"] > best[key]["gbps"]:
        best[key] = p
for line in open(kernels):
    line = line.strip()
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    r["device"] = device
    r["git_commit"] = commit
    r["date"] = date
    p = best.get((r["kind"], r["dtype"], r["rows"], r["cols"]))
    if p is not None:
        r["peer"] = p["peer"]
        r["peer_gbps"] = p["gbps"]
    print(json.dumps(r, sort_keys=False))
PY
cat "$tmp/merged.jsonl" >>"$out"
say "wrote $(wc -l <"$tmp/merged.jsonl") records to $out"
exit "$test_status"
