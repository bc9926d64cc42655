"""Timings of the mixed-logit kernel for docs/mixed_logit.md.

    python tools/mixed_bench.py          # value + gradient on electricity

Train's electricity panel (examples/data/electricity_long.csv, or the path
in $ELECTRICITY_CSV): 361 panels, 4308 situations x 4 alternatives, six normal
coefficients, scrambled Halton draws (scipy.stats.qmc.Halton(d=6,
scramble=True, seed=0), one dimension per random column, panel p taking
points p R to p R + R - 1).  One evaluation of the value and gradient at R = 500 and
1000, 1 and 2 threads, alternated with a plain Numba version (value and
gradient, two sweeps a panel, draws inner, scalar exp) in the same run;
medians of the repeats.  The multiply-add floor: rows x R x k multiply-adds
for the utilities and as many for the gradient, at the peak rate measured by
benchmarks/harness/peak_fma.c (fused, and as a separate multiplication and
addition), both from the harness (``python -m fastscore bench --choice``
prints the same floor for its draws and panels curve).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import qmc

from fastscore.__main__ import load_harness
from fastscore._mixedlogit import simulated_loglik

load_harness(Path(__file__).resolve().parent.parent)  # this checkout's benchmarks/
from benchmarks.harness.choice import ELECTRICITY, ELECTRICITY_X as COLS, madds  # noqa: E402
from benchmarks.harness.measure import peak_fma_rates  # noqa: E402


def electricity():
    path = os.environ.get("ELECTRICITY_CSV", str(ELECTRICITY))
    df = pd.read_csv(path).sort_values(["id", "chid", "alt"], kind="stable")
    X = df[COLS].to_numpy(np.float64)
    chid = df["chid"].to_numpy()
    starts = np.flatnonzero(np.r_[True, chid[1:] != chid[:-1]])
    offsets = np.r_[starts, len(df)].astype(np.intp)
    choice = df["choice"].to_numpy()
    chosen = np.array([np.flatnonzero(choice[a:b])[0] for a, b in zip(offsets[:-1], offsets[1:])],
                      dtype=np.intp)
    pid = df["id"].to_numpy()[starts]
    pstarts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
    panel_offsets = np.r_[pstarts, len(starts)].astype(np.intp)
    return X, offsets, chosen, panel_offsets


def halton_normal(P, R, q, seed=0):
    """N(0, 1) draws (P, R, q) from P R scrambled Halton points, panel p taking
    points p R to p R + R - 1 (as fastscore.choice.MixedLogit does)."""
    u = qmc.Halton(d=q, scramble=True, seed=seed).random(P * R)
    return np.ascontiguousarray(stats.norm.ppf(u).reshape(P, R, q))


def numba_loglik():
    import numba

    @numba.njit(parallel=True, fastmath=False, cache=False)
    def ll_grad(X, offsets, chosen, panel_offsets, draws, params):
        P, R, q = draws.shape
        k = X.shape[1]
        m, s = params[:k], params[k:]
        ll_p = np.zeros(P)
        g_p = np.zeros((P, 2 * k))
        for p in numba.prange(P):
            beta = np.empty((k, R))
            for j in range(k):
                for r in range(R):
                    beta[j, r] = m[j] + s[j] * draws[p, r, j]
            lp = np.zeros(R)
            nmax = 0
            for si in range(panel_offsets[p], panel_offsets[p + 1]):
                nmax = max(nmax, offsets[si + 1] - offsets[si])
            u = np.empty((nmax, R))
            mx = np.empty(R)
            l = np.empty(R)
            G = np.zeros((k, R))
            for sweep in range(2):  # 1: log P_pr; 2: the scores, weighted by h
                for si in range(panel_offsets[p], panel_offsets[p + 1]):
                    a, n = offsets[si], offsets[si + 1] - offsets[si]
                    c = chosen[si]
                    mx[:] = -np.inf
                    for i in range(n):
                        for r in range(R):
                            v = 0.0
                            for j in range(k):
                                v += X[a + i, j] * beta[j, r]
                            u[i, r] = v
                            mx[r] = max(mx[r], v)
                    l[:] = 0.0
                    for i in range(n):
                        for r in range(R):
                            u[i, r] = np.exp(u[i, r] - mx[r])
                            l[r] += u[i, r]
                    if sweep == 0:
                        for r in range(R):
                            lp[r] += np.log(u[c, r] / l[r])
                    else:
                        for i in range(n):
                            for j in range(k):
                                xij = X[a + i, j]
                                for r in range(R):
                                    G[j, r] += ((1.0 if i == c else 0.0) - u[i, r] / l[r]) * xij
                if sweep == 0:
                    top = lp.max()
                    h = np.exp(lp - top)
                    tot = h.sum()
                    ll_p[p] = top + np.log(tot / R)
                    h /= tot
            for j in range(k):
                for r in range(R):
                    g_p[p, j] += h[r] * G[j, r]
                    g_p[p, k + j] += h[r] * G[j, r] * draws[p, r, j]
        return ll_p.sum(), g_p.sum(axis=0)

    return ll_grad


def cpu_name():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def bench(repeats=9):
    import numba

    X, offsets, chosen, poff = electricity()
    P, k = len(poff) - 1, X.shape[1]
    kinds = np.ones(k, np.int8)
    rng = np.random.default_rng(1)
    params = np.r_[rng.normal(0, 1, k), np.abs(rng.normal(0, 1, k))]
    ll_grad = numba_loglik()
    peak, why = peak_fma_rates()
    if peak is None:
        sys.exit(f"no multiply-add peak, so no floor: {why}")
    fma = peak.fma
    print(f"CPU: {cpu_name()}; peak per core: {fma / 1e9:.2f} G FMA/s, "
          f"{peak.mul_add / 1e9:.2f} G mul+add/s ({peak.isa}, benchmarks/harness/peak_fma.c); "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| R | threads | fastscore (ms) | Numba (ms) | Numba / fastscore | floor (ms, FMA) "
          "| fastscore / floor | G madd/s |")
    print("|---|---|---|---|---|---|---|---|")
    for R in (500, 1000):
        draws = halton_normal(P, R, k)
        ll_grad(X, offsets, chosen, poff, draws, params)  # compile
        v_fs, g_fs = simulated_loglik(X, offsets, chosen, poff, draws, kinds, params, grad=True)
        v_nb, g_nb = ll_grad(X, offsets, chosen, poff, draws, params)
        assert abs(v_fs - v_nb) <= 1e-9 * abs(v_nb), (v_fs, v_nb)
        assert np.abs(g_fs - g_nb).max() <= 1e-7 * np.abs(g_nb).max()
        work = madds(X.shape[0], R, k)
        for nt in (1, 2):
            numba.set_num_threads(nt)
            t_fs, t_nb = [], []
            for _ in range(repeats):
                t0 = time.perf_counter()
                simulated_loglik(X, offsets, chosen, poff, draws, kinds, params, grad=True,
                                 n_threads=nt)
                t_fs.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ll_grad(X, offsets, chosen, poff, draws, params)
                t_nb.append(time.perf_counter() - t0)
            fs, nb = np.median(t_fs), np.median(t_nb)
            floor = work / (fma * nt)
            print(f"| {R} | {nt} | {fs * 1e3:.1f} | {nb * 1e3:.1f} | {nb / fs:.1f} | "
                  f"{floor * 1e3:.2f} | {fs / floor:.1f} | {work / fs / 1e9:.1f} |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
