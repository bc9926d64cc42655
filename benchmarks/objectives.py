"""The one-state policy-gradient step of the state-input form, side by side.

    python -m benchmarks.objectives [--repeat R]   (from the repository root)

Times ``a, lp, g = fastscore.matrix.sample(s, W, seed=t, score=True)`` then
``G += adv * g``, and the same step as one call, ``fastscore.matrix.sample(s,
W, seed=t, trace=G, weight=adv)`` (k = 64, N = 10, weights of scale 0.1 and
1.0), against the
NumPy step a user writes (softmax, ``rng.choice``, outer product) and a Numba
fused step (one njit function: logits, softmax, inverse-CDF draw, the
accumulation of ``adv * outer(s, e_a - pi)``), and prints a table of the
median time per step and the ratios.  Run it under the timing lock.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastscore.matrix as fm

try:
    import numba
except ImportError:  # the table then lacks the Numba column
    numba = None

K, N = 64, 10
STEPS = 2000


def numpy_step(s, W, G, adv, rng):
    z = s @ W
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    a = rng.choice(N, p=p)
    r = -p
    r[a] += 1.0
    G += adv * np.outer(s, r)
    return a


if numba is not None:
    @numba.njit(cache=False, fastmath=False)
    def _numba_step(s, W, G, adv, u):
        k, n = W.shape
        z = np.zeros(n)
        for c in range(k):
            for j in range(n):
                z[j] += s[c] * W[c, j]
        m = z.max()
        tot = 0.0
        for j in range(n):
            z[j] = np.exp(z[j] - m)
            tot += z[j]
        a = n - 1
        acc = 0.0
        for j in range(n):
            acc += z[j] / tot
            if u < acc:
                a = j
                break
        for j in range(n):
            z[j] = -z[j] / tot
        z[a] += 1.0
        for c in range(k):
            sc = adv * s[c]
            for j in range(n):
                G[c, j] += sc * z[j]
        return a


def fastscore_step(s, W, G, adv, t):
    a, lp, g = fm.sample(s, W, seed=t, score=True)
    G += adv * g
    return a


def fastscore_trace_step(s, W, G, adv, t):
    a, lp = fm.sample(s, W, seed=t, trace=G, weight=adv)
    return a


def seconds_per_step(step, states, advs, W, make_arg):
    G = np.zeros_like(W)
    t0 = time.perf_counter()
    for t in range(STEPS):
        step(states[t], W, G, advs[t], make_arg(t))
    return (time.perf_counter() - t0) / STEPS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    states = rng.standard_normal((STEPS, K))
    advs = rng.standard_normal(STEPS)
    us = rng.random(STEPS)
    print(f"one-state step, k = {K}, N = {N}: median us per step of {args.repeat} runs of {STEPS}")
    print(f"{'scale':>6} {'fastscore':>10} {'trace=':>8} {'numpy':>8} {'numba':>8}"
          f" {'x numpy':>8} {'x numba':>8} {'trace= x numpy':>15} {'x numba':>8}")
    for scale in (0.1, 1.0):
        W = scale * rng.standard_normal((K, N))
        gen = np.random.default_rng(1)
        runs = {"fastscore": [], "trace": [], "numpy": [], "numba": []}
        if numba is not None:
            _numba_step(states[0], W, np.zeros_like(W), 1.0, 0.5)  # compile
        for _ in range(args.repeat):  # interleaved, so drifts hit every column alike
            runs["fastscore"].append(seconds_per_step(fastscore_step, states, advs, W, lambda t: t))
            runs["trace"].append(seconds_per_step(fastscore_trace_step, states, advs, W,
                                                  lambda t: t))
            runs["numpy"].append(seconds_per_step(numpy_step, states, advs, W, lambda t: gen))
            if numba is not None:
                runs["numba"].append(seconds_per_step(_numba_step, states, advs, W, lambda t: us[t]))
        med = {key: (np.median(v) * 1e6 if v else float("nan")) for key, v in runs.items()}
        print(f"{scale:>6} {med['fastscore']:>10.2f} {med['trace']:>8.2f} {med['numpy']:>8.2f}"
              f" {med['numba']:>8.2f} {med['numpy'] / med['fastscore']:>8.2f}"
              f" {med['numba'] / med['fastscore']:>8.2f} {med['numpy'] / med['trace']:>15.2f}"
              f" {med['numba'] / med['trace']:>8.2f}")


if __name__ == "__main__":
    main()
