#!/usr/bin/python3
"""PyTorch CPU peer for normserve-kernel-bench (docs/PERFORMANCE.md).

Reads the JSON lines of a normserve-kernel-bench CPU run and times, for each
(kind, dtype, rows, cols, threads) found there, the same normalization in
PyTorch on the same shape and thread count:
  layer_norm: torch.nn.functional.layer_norm with weight and bias;
  rms_norm:   RMSNorm written in torch ops as models do it (PyTorch 1.13 has
              no F.rms_norm): float32 statistics, scale by the weight.
Bytes are counted as the C++ benchmark counts them (input + output + float32
parameters), so peer_gbps compares directly with gbps. Prints one JSON line
per case: {"kind", "dtype", "rows", "cols", "threads", "peer", "peer_gbps"}.

Uses Debian's python3-torch; run with /usr/bin/python3. For benchmarks only,
never a test dependency.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EPS = {"layer_norm": 1e-5, "rms_norm": 1e-6}


def rms_norm(x, weight, eps):
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def median_seconds(fn, reps):
    """Median seconds per call after warm-up; each repetition lasts >= 2 ms.

    Calls slower than 0.5 s (out-of-cache cases, where torch is far slower
    than the kernels) get at most 3 repetitions, the first call serving as
    the warm-up, to keep the run under half an hour.
    """
    t0 = time.perf_counter()
    fn()
    first = max(time.perf_counter() - t0, 1e-9)
    calls = int(min(max(2e-3 / first, 1), 100000))
    if first > 0.5:
        reps = min(reps, 3)
    else:
        for _ in range(calls):
            fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", help="JSON lines from normserve-kernel-bench --backend cpu")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    cases = []
    with open(args.records) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("backend") != "cpu" or r["kind"] not in EPS:
                continue
            key = (r["kind"], r["dtype"], r["rows"], r["cols"], r["threads"])
            if key not in cases:
                cases.append(key)

    peer = "torch-" + torch.__version__.split("+")[0].split("a")[0]
    buffers = {}
    for kind, dtype_name, rows, cols, threads in cases:
        torch.set_num_threads(threads)
        dtype = DTYPES[dtype_name]
        # One buffer per dtype, sized for the largest case, viewed per case.
        need = rows * cols
        if dtype_name not in buffers or buffers[dtype_name].numel() < need:
            buffers.pop(dtype_name, None)
            buffers[dtype_name] = (torch.rand(need, dtype=torch.float32) * 4 - 1.5).to(dtype)
        x = buffers[dtype_name][:need].view(rows, cols)
        weight = torch.linspace(0.5, 1.25, cols, dtype=dtype)
        bias = torch.zeros(cols, dtype=dtype)
        if kind == "layer_norm":
            fn = lambda: F.layer_norm(x, (cols,), weight, bias, EPS[kind])  # noqa: E731
            param_bytes = 2 * 4 * cols
        else:
            fn = lambda: rms_norm(x, weight, EPS[kind])  # noqa: E731
            param_bytes = 4 * cols
        try:
            seconds = median_seconds(fn, args.reps)
        except RuntimeError as e:  # e.g. an op without a CPU kernel for the dtype
            print(f"bench_torch_peer: {kind} {dtype_name} {rows}x{cols}: {e}", file=sys.stderr)
            continue
        moved = rows * cols * 2 * x.element_size() + param_bytes
        record = {"kind": kind, "dtype": dtype_name, "rows": rows, "cols": cols, "threads": threads,
                  "peer": peer, "peer_gbps": round(moved / seconds / 1e9, 6)}
        print(json.dumps(record), flush=True)
        print(f"{kind} {dtype_name} {rows}x{cols}: {record['peer_gbps']:.3g} GB/s", file=sys.stderr)


if __name__ == "__main__":
    main()
