"""A SciPy BFGS fit of Train's electricity panel through
fastscore._mixedlogit.simulated_loglik (docs/mixed_logit.md): six normal
coefficients, 500 scrambled Halton draws (scipy.stats.qmc.Halton(d=6,
scramble=True, seed=0), point r P + p for panel p's draw r), from zero means
and standard deviations 0.1.  Not the estimator (fastscore.choice's); a check that
the kernel's value and gradient drive an optimiser to the published optimum.

    python tools/mixed_fit.py [R] [n_threads]
"""
from __future__ import annotations

import sys
import time

import numpy as np
from scipy import optimize

from mixed_bench import COLS, cpu_name, electricity, halton_normal

from fastscore._mixedlogit import simulated_loglik


def main(R=500, n_threads=None):
    X, offsets, chosen, poff = electricity()
    P, k = len(poff) - 1, X.shape[1]
    draws = halton_normal(P, R, k)
    kinds = np.ones(k, np.int8)
    calls = [0]

    def f(theta):
        calls[0] += 1
        v, g = simulated_loglik(X, offsets, chosen, poff, draws, kinds, theta, grad=True,
                                n_threads=n_threads)
        return -v, -g

    x0 = np.r_[np.zeros(k), np.full(k, 0.1)]
    t0 = time.perf_counter()
    res = optimize.minimize(f, x0, jac=True, method="BFGS", options={"gtol": 1e-5})
    t = time.perf_counter() - t0
    print(f"CPU: {cpu_name()}; R = {R}, n_threads = {n_threads}")
    print(f"LL = {-res.fun:.4f}, {res.nit} iterations, {calls[0]} evaluations, {t:.2f} s "
          f"({res.message})")
    for name, m, s in zip(COLS, res.x[:k], res.x[k:]):
        print(f"  {name:>5}: mean {m: .4f}  sd {abs(s):.4f}")
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500,
         int(sys.argv[2]) if len(sys.argv) > 2 else None)
