"""Kernel throughput against this machine's read bandwidth, for docs/performance.md.

    python tools/throughput.py            # all sections
    python tools/throughput.py small      # per-call cost of the 8 x 32 state

Sections:
  small   per-call time of fastscore.score, fastscore.reference.score and a
          bare np.dot of two 32-vectors, side by side;
  cache   single-thread throughput on data that stays in L2 (compute bound);
  memory  throughput on the issue's large workloads at 1 and all threads,
          as a fraction of fastscore._core.read_pass over the same bytes.

Every figure is the minimum over repeats; ratios are taken within one run.
"""
from __future__ import annotations

import sys
import timeit

import numpy as np

import fastscore
from fastscore import reference
from fastscore._core import build_info, read_pass


def best(f, number, repeat=7):
    return min(timeit.repeat(f, number=number, repeat=repeat)) / number


def small():
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((8, 32))
    theta = rng.standard_normal(32)
    x, y = rng.standard_normal(32), rng.standard_normal(32)
    out = np.empty(32)
    t_dot = best(lambda: np.dot(x, y), 100_000)
    t_fs = best(lambda: fastscore.score(phi, theta, 3), 100_000)
    t_out = best(lambda: fastscore.score(phi, theta, 3, out=out), 100_000)
    t_ref = best(lambda: reference.score(phi, theta, 3), 10_000)
    print("small state 8 x 32 float64, per call")
    print(f"  np.dot(32-vectors) {t_dot * 1e9:7.0f} ns")
    print(f"  fastscore.score    {t_fs * 1e9:7.0f} ns   ({t_fs / t_dot:.2f} x np.dot)")
    print(f"  ... with out=      {t_out * 1e9:7.0f} ns")
    print(f"  reference.score    {t_ref * 1e9:7.0f} ns   (fastscore {t_ref / t_fs:.1f}x faster)")


def cache():
    rng = np.random.default_rng(0)
    print("in cache, one thread (compute bound)")
    for shape in [(1, 128, 1000), (1, 200, 256), (1, 2000, 64)]:
        for dt in (np.float64, np.float32):
            phi = rng.standard_normal(shape).astype(dt)
            theta = (0.1 * rng.standard_normal(shape[-1])).astype(dt)
            a = np.zeros(1, np.intp)
            t = best(lambda: fastscore.score(phi, theta, a, n_threads=1), 200)
            print(f"  {str(shape):15s} {dt.__name__:8s} {phi.size / t / 1e9:5.2f} Gelem/s "
                  f"{phi.nbytes / t / 1e9:6.1f} GB/s")


def memory():
    rng = np.random.default_rng(0)
    n_all = build_info()["max_threads"]
    print(f"out of cache: fraction of read_pass bandwidth (threads 1 and {n_all})")
    for shape in [(1024, 16, 256), (64, 1000, 1000), (262144, 64)]:
        for dt in (np.float64, np.float32):
            phi = rng.standard_normal(shape).astype(dt)
            theta = (0.1 * rng.standard_normal(shape[-1])).astype(dt)
            a = rng.integers(0, shape[-2], shape[0]) if len(shape) == 3 else 1
            flat = np.ones(phi.nbytes // 8)
            t_ref = best(lambda: reference.score(phi, theta, a), 3, 5)
            for nt in sorted({1, n_all}):
                t = best(lambda: fastscore.score(phi, theta, a, n_threads=nt), 3, 5)
                t_bw = best(lambda: read_pass(flat, nt), 3, 5)
                print(f"  {str(shape):16s} {dt.__name__:8s} threads={nt} {t * 1e3:7.2f} ms "
                      f"{phi.nbytes / t / 1e9:5.1f} GB/s of {phi.nbytes / t_bw / 1e9:5.1f} "
                      f"({t_bw / t:4.0%})  numpy {t_ref * 1e3:7.2f} ms ({t_ref / t:4.2f}x)")


if __name__ == "__main__":
    sections = sys.argv[1:] or ["small", "cache", "memory"]
    for name in sections:
        {"small": small, "cache": cache, "memory": memory}[name]()
