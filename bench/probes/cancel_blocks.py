#!/usr/bin/python3
# cancel_blocks.py: how many 256-element blocks of an output pass the
# cancellation test sends to the per-element path (sixteenth session, for
# Avx512SimdT::RangeGapFold). Not a benchmark: arithmetic on random data.
#   /usr/bin/python3 bench/probes/cancel_blocks.py
# The share of 256-element blocks flagged by the element test (GapMaxOrSubnormal /
# GapMax) and by the per-lane block test (RangeGapFold), on run_driver's data:
# x ~ N(0.3, 1), gamma = 1 + 0.1 N(0.3, 1), beta = 0.1 N(0.3, 1); y ~ the normalized row.
import numpy as np
rng = np.random.default_rng(1)
cols, rows = 4096, 64
x = rng.normal(0.3, 1, (rows, cols)).astype(np.float32)
g = (1 + 0.1 * rng.normal(0.3, 1, cols)).astype(np.float32)
b = (0.1 * rng.normal(0.3, 1, cols)).astype(np.float32)
m = x.mean(1, keepdims=True); s = x.std(1, keepdims=True)
y = ((x - m) / s * g + b).astype(np.float32)
for name, k, sub in (("bfloat16", 12, True), ("float16", 9, False)):
    yb = y.reshape(rows, cols // 256, 16, 16)          # block, vector, lane
    bb = np.broadcast_to(b.reshape(1, cols // 256, 16, 16), yb.shape)
    ay, ab = np.abs(yb), np.abs(bb)
    elem = (ab > 2.0**k * ay) | ((ay < 2.0**-126) if sub else False)
    elem_blocks = elem.any(axis=(2, 3)).mean()
    miny, maxb = ay.min(axis=2), ab.max(axis=2)             # per lane over the block's 16 vectors
    lane = (maxb > 2.0**k * miny) | ((miny < 2.0**-126) if sub else False)
    print(f"{name}: element test flags {100*elem_blocks:.1f}% of blocks, lane test {100*lane.any(axis=2).mean():.1f}%")
