#!/usr/bin/env python3
"""PyTorch peer for the CUDA kernel benchmark (docs/PERFORMANCE.md).

Times torch.nn.functional.layer_norm / rms_norm, eager and torch.compile, on
the GPU for the shapes of a normserve-kernel-bench run (--shapes-from, JSON
lines) or for --kind/--dtype/--rows/--cols. Bytes moved are counted as the
kernel benchmark counts them (read x, write y, gamma and beta once). Times
are CUDA-event medians after warm-up, with the L2 flushed before each
repetition when the working set is below 4x the L2. Prints one JSON object per
line: kind, dtype, rows, cols, peer ("torch-<version>-eager" or
"-compile"), seconds, gbps.
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def shapes(args):
    if args.shapes_from:
        seen = set()
        for line in open(args.shapes_from):
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            key = (r["kind"], r["dtype"], int(r["rows"]), int(r["cols"]))
            if key not in seen:
                seen.add(key)
                yield key
        return
    for kind in args.kind:
        for dtype in args.dtype:
            for cols in args.cols:
                for rows in args.rows:
                    yield (kind, dtype, rows, cols)


def median_seconds(fn, reps, flush):
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        fn()
    times = []
    for i in range(reps):
        if flush is not None:
            flush.fill_(i & 0xFF)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1e-3)
    times.sort()
    return times[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes-from")
    parser.add_argument("--kind", nargs="*", default=["layer_norm", "rms_norm"])
    parser.add_argument("--dtype", nargs="*", default=list(DTYPES))
    parser.add_argument("--rows", nargs="*", type=int, default=[4096])
    parser.add_argument("--cols", nargs="*", type=int, default=[1024])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("bench_torch_gpu: no CUDA device", file=sys.stderr)
        return 2
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 << 20) or (50 << 20)
    flush_buf = torch.empty(2 * l2, dtype=torch.uint8, device="cuda")
    version = torch.__version__.split("+")[0]
    has_rms = hasattr(F, "rms_norm")

    for kind, dtype_name, rows, cols in shapes(args):
        if kind == "rms_norm" and not has_rms:
            continue
        dtype = DTYPES[dtype_name]
        x = torch.randn(rows, cols, device="cuda", dtype=dtype)
        gamma = torch.randn(cols, device="cuda", dtype=dtype)
        beta = torch.randn(cols, device="cuda", dtype=dtype)
        if kind == "layer_norm":
            def eager(x=x, gamma=gamma, beta=beta, cols=cols):
                return F.layer_norm(x, (cols,), gamma, beta, 1e-5)
            params = 2
        else:
            def eager(x=x, gamma=gamma, cols=cols):
                return F.rms_norm(x, (cols,), gamma, 1e-6)
            params = 1
        esize = x.element_size()
        nbytes = 2 * rows * cols * esize + params * cols * esize
        flush = flush_buf if nbytes < 4 * l2 else None
        variants = [("eager", eager)]
        if not args.no_compile:
            variants.append(("compile", torch.compile(eager, dynamic=False)))
        for name, fn in variants:
            try:
                seconds = median_seconds(fn, args.reps, flush)
            except Exception as e:  # torch.compile may be unavailable (no triton)
                print(f"bench_torch_gpu: {kind} {dtype_name} {rows}x{cols} {name}: {e}", file=sys.stderr)
                continue
            print(json.dumps({"kind": kind, "dtype": dtype_name, "rows": rows, "cols": cols,
                              "peer": f"torch-{version}-{name}", "seconds": seconds,
                              "gbps": nbytes / seconds / 1e9}), flush=True)
        del x, gamma, beta
    return 0


if __name__ == "__main__":
    sys.exit(main())
