#!/usr/bin/python3
"""Plots normserve-kernel-bench results: GB/s against cols, one panel per dtype.

  scripts/plot_bench.py bench/results/cpu-2026-11-23.jsonl [-o out.png] [--in-cache]

For each kind it draws normserve's achieved bandwidth, the copy baseline
measured in the same run (memcpy on the CPU, device-to-device copy on the
GPU) and every peer found in the records (oneDNN, torch, ...). By default only
the large cases (rows > 1, the out-of-cache working sets) are drawn;
--in-cache draws the single-row cases (rows == 1, in cache) instead.
Several records of one shape (the rounds of a repeated run, field "round")
are drawn as their median, the copy as the median of all its records there.
Uses Debian's python3-matplotlib; run with /usr/bin/python3.
"""
import argparse
import collections
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DTYPES = ["float32", "float16", "bfloat16"]
KIND_STYLE = {"layer_norm": "-", "rms_norm": "--", "batch_norm": "-.", "group_norm": ":", "instance_norm": ":"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records")
    parser.add_argument("-o", "--output", help="PNG to write (default: records with .png)")
    parser.add_argument("--in-cache", action="store_true", help="plot the single-row (in-cache) cases instead")
    args = parser.parse_args()
    output = args.output or os.path.splitext(args.records)[0] + (
        "-in-cache.png" if args.in_cache else ".png")

    with open(args.records) as f:
        records = [json.loads(line) for line in f if line.strip()]
    records = [r for r in records if (r["rows"] == 1) == args.in_cache]
    if not records:
        raise SystemExit("plot_bench.py: no matching records")

    def lists():
        return collections.defaultdict(lambda: collections.defaultdict(list))

    ours = lists()   # (dtype, kind) -> cols -> [gbps]
    copy = lists()   # dtype -> cols -> [copy_gbps] (every kind: the same bytes)
    peers = lists()  # (dtype, kind, peer) -> cols -> [gbps]
    for r in records:
        ours[(r["dtype"], r["kind"])][r["cols"]].append(r["gbps"])
        copy[r["dtype"]][r["cols"]].append(r["copy_gbps"])
        if r.get("peer"):
            peers[(r["dtype"], r["kind"], r["peer"])][r["cols"]].append(r["peer_gbps"])
    for table in (ours, copy, peers):
        for series in table.values():
            for cols, values in series.items():
                series[cols] = statistics.median(values)

    dtypes = [d for d in DTYPES if d in copy]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(5.5 * len(dtypes), 4.5), sharey=True, squeeze=False)
    first = records[0]
    for ax, dtype in zip(axes[0], dtypes):
        xs = sorted(copy[dtype])
        ax.plot(xs, [copy[dtype][x] for x in xs], color="black", linewidth=2, label="copy (same bytes)")
        for (d, kind), series in sorted(ours.items()):
            if d != dtype:
                continue
            xs = sorted(series)
            ax.plot(xs, [series[x] for x in xs], KIND_STYLE.get(kind, "-"), color="tab:blue", marker="o",
                    label=f"normserve {kind}")
        colors = iter(["tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"])
        peer_colors = {}
        for (d, kind, peer), series in sorted(peers.items()):
            if d != dtype:
                continue
            color = peer_colors.setdefault(peer, next(colors))
            xs = sorted(series)
            ax.plot(xs, [series[x] for x in xs], KIND_STYLE.get(kind, "-"), color=color, marker="x",
                    label=f"{peer} {kind}")
        ax.set_xscale("log", base=2)
        ax.set_title(dtype)
        ax.set_xlabel("cols")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("GB/s (bytes read + written / s)")
    where = "in cache" if args.in_cache else "out of cache"
    fig.suptitle(f"{first['backend']} {first['device']}, {first['threads']} threads, {first.get('isa', '')}, "
                 f"{where}; {first['git_commit']} {first['date']}")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    print(output)


if __name__ == "__main__":
    main()
