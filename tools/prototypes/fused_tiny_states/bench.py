"""Time the fused kernel against fastscore.score (one thread), ns per state.

Run under the timing lock: flock /tmp/timing.lock python bench.py
"""
import json
import sys
import time

import numpy as np
import fastscore

from harness import call, data, load

REPS = int(sys.argv[1]) if len(sys.argv) > 1 else 25
lib = load("libfused.so")
res = {}
for (B, N, d) in [(65536, 4, 8), (100000, 3, 5), (4096, 8, 32), (2048, 4, 8)]:
    phi, theta, a = data(B, N, d, seed=1)
    out = np.empty((B, d))

    def best(f):
        ts = []
        for _ in range(REPS):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return min(ts) / B * 1e9

    res[f"{B}x{N}x{d}"] = {
        "fastscore.score": best(lambda: fastscore.score(phi, theta, a, out=out, n_threads=1)),
        "fused": best(lambda: call(lib.fused_score_f64, phi, theta, a, out)),
        "one state at a time (reference)": best(lambda: call(lib.ref_score_f64, phi, theta, a, out)),
    }
print(json.dumps(res, indent=1))
