"""The one-state policy-gradient step of the state-input form, side by side.

    python -m benchmarks.objectives [--repeat R]   (from the repository root)

Times ``a, lp, g = fastscore.matrix.sample(s, W, seed=t, score=True)`` then
``G += adv * g``, and the same step as one call, ``fastscore.matrix.sample(s,
W, seed=t, trace=G, weight=adv)`` (``bench --loops``' fastscore step), on
k = 64, N = 10 with weights of scale 0.1 and 1.0, against ``bench --loops``'
NumPy step (softmax, ``rng.choice``, outer product) and Numba fused step (one
njit function: logits, softmax, inverse-CDF draw, the accumulation of ``adv *
outer(s, e_a - pi)``), a fresh state and advantage each step; prints the
median time per step and the ratios.  Run it under the timing lock.
"""
from __future__ import annotations

import argparse
import functools
import time

import numpy as np

import fastscore.matrix as fm

from .harness import loops

K, N = 64, 10
STEPS = 2000


def score_then_add(s, W, G, seed, adv):
    a, lp, g = fm.sample(s, W, seed=seed, score=True)
    G += adv * g
    return lp


def seconds_per_step(step, states, advs, W, arg_of):
    """Mean seconds of step(s, W, G, arg, adv) over the STEPS states."""
    G = np.zeros_like(W)
    t0 = time.perf_counter()
    for t in range(STEPS):
        step(states[t], W, G, arg_of(t), advs[t])
    return (time.perf_counter() - t0) / STEPS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    numba = loops.import_optional("numba")
    numba_step = loops.numba_kernels(numba)[0] if numba is not None else None
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
        steps = {"fastscore": (score_then_add, lambda t: t),
                 "trace": (functools.partial(loops.step_fastscore, fm), lambda t: t),
                 "numpy": (loops.step_numpy, lambda t: gen)}
        if numba_step is not None:
            numba_step(states[0], W, np.zeros_like(W), 0.5, 1.0)  # compile
            steps["numba"] = (numba_step, lambda t: us[t])
        runs = {key: [] for key in ("fastscore", "trace", "numpy", "numba")}
        for _ in range(args.repeat):  # interleaved, so drifts hit every column alike
            for key, (step, arg_of) in steps.items():
                runs[key].append(seconds_per_step(step, states, advs, W, arg_of))
        med = {key: (np.median(v) * 1e6 if v else float("nan")) for key, v in runs.items()}
        print(f"{scale:>6} {med['fastscore']:>10.2f} {med['trace']:>8.2f} {med['numpy']:>8.2f}"
              f" {med['numba']:>8.2f} {med['numpy'] / med['fastscore']:>8.2f}"
              f" {med['numba'] / med['fastscore']:>8.2f} {med['numpy'] / med['trace']:>15.2f}"
              f" {med['numba'] / med['trace']:>8.2f}")


if __name__ == "__main__":
    main()
