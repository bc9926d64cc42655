"""The rest of the policy from the same pass: log_prob, entropy, probs, sample
and loglik (with gradient, and with the Hessian), against their NumPy
baselines in ``fastscore.reference``; the ratios the targets are stated in
(loglik over score, the Hessian over its matrix-product floor, ragged over
padded) are ``track_`` benchmarks timed side by side in one process.

Commits without these functions skip the whole file (setup raises
NotImplementedError, asv's way of saying "not applicable").
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Union

import numpy as np

import fastscore
from fastscore import reference

from .common import (
    BLAS_SETTLE,
    THREADS,
    WORKLOADS,
    BlasThreads,
    best_time,
    make_inputs,
    n_threads_arg,
)

FUNCS = ["log_prob", "entropy", "probs", "sample", "loglik_grad", "loglik_hess"]

#: Workloads of this file (from ``common.WORKLOADS``) and the functions timed
#: on each: every function but the Hessian on the two the targets name; the
#: Hessian, and loglik with the gradient, on the choice-model data set (many
#: states, few actions, few features); loglik with the gradient on the other
#: batches of many small states.
FUNCS_OF = {
    "small": FUNCS[:-1],
    "medium": FUNCS[:-1],
    "choice": ["loglik_grad", "loglik_hess"],
    "small_batch": ["loglik_grad"],
    "choice_large": ["loglik_grad"],
    "tiny_states": ["loglik_grad"],
}
SHAPES = {name: WORKLOADS[name] for name in FUNCS_OF}


def _require(name: str) -> None:
    if not hasattr(fastscore, name):
        raise NotImplementedError(f"this commit has no fastscore.{name}")


def _inputs(workload: str):
    return make_inputs(workload, "float64")


def family_call(module: Any, func: str, phi, theta, a, **options) -> Callable[[], Any]:
    """A zero-argument call of ``func`` from ``module`` (fastscore or reference)."""
    if func == "sample":
        return functools.partial(module.sample, phi, theta, seed=1, **options)
    if func in ("entropy", "probs"):
        return functools.partial(getattr(module, func), phi, theta, **options)
    if func.startswith("loglik"):
        if phi.ndim == 2:  # one state: a batch of one
            phi, a = phi[None], np.array([a])
        return functools.partial(module.loglik, phi, theta, a, grad=True,
                                 hess=func == "loglik_hess", **options)
    return functools.partial(getattr(module, func), phi, theta, a, **options)


def _skip(func: str, workload: str, threads: Union[int, str]) -> None:
    if workload == "small" and threads != 1:
        raise NotImplementedError("one small state runs on one thread")
    if func not in FUNCS_OF[workload]:
        raise NotImplementedError(f"{func} is not benchmarked on {workload}")


class Family:
    """Time and peak memory of each function, fastscore and NumPy side by side."""

    params = [["fastscore", "numpy"], FUNCS, list(SHAPES), THREADS]
    param_names = ["impl", "func", "workload", "threads"]
    timeout = 300

    def setup(self, impl: str, func: str, workload: str, threads: Union[int, str]) -> None:
        self.blas = BlasThreads(threads)
        _require("loglik")
        _skip(func, workload, threads)
        phi, theta, a, _ = _inputs(workload)
        module = fastscore if impl == "fastscore" else reference
        options = {"n_threads": n_threads_arg(threads)} if impl == "fastscore" else {}
        self.call = family_call(module, func, phi, theta, a, **options)
        self.number = 200 if workload == "small" else 0

    def teardown(self, impl: str, func: str, workload: str, threads: Union[int, str]) -> None:
        self.blas.restore()

    def time_family(self, impl: str, func: str, workload: str, threads: Union[int, str]) -> None:
        self.call()

    def peakmem_family(self, impl: str, func: str, workload: str,
                       threads: Union[int, str]) -> None:
        self.call()


def _best_of(calls: dict[str, Callable[[], Any]], repeats: int = 5) -> dict[str, float]:
    """Interleaved best times (after NumPy, wait for its BLAS threads to settle)."""
    best = {name: float("inf") for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            best[name] = min(best[name], best_time(call))
            if name == "numpy":
                time.sleep(BLAS_SETTLE)
    return best


class FamilySpeedup:
    """NumPy time / fastscore time of each function, timed side by side."""

    params = [FUNCS, list(SHAPES)]
    param_names = ["func", "workload"]
    unit = "NumPy time / fastscore time"
    timeout = 300

    def setup(self, func: str, workload: str) -> None:
        _require("loglik")
        _skip(func, workload, 1 if workload == "small" else "all")
        phi, theta, a, _ = _inputs(workload)
        self.calls = {"numpy": family_call(reference, func, phi, theta, a),
                      "fastscore": family_call(fastscore, func, phi, theta, a)}

    def track_speedup(self, func: str, workload: str) -> float:
        best = _best_of(self.calls)
        return best["numpy"] / best["fastscore"]


class TargetRatios:
    """The ratios issue targets are stated in, each timed side by side:

    * ``loglik_over_score``: loglik(grad=True) / score on the medium batch (<= 1.1);
    * ``hess_over_floor``: loglik(grad, hess) / ``X.T @ X`` over all rows of the
      choice data set (<= 2);
    * ``ragged_over_padded``: score with offsets / score padded, same rows (<= 1.1);
      ``ragged_over_padded_tiny`` the same for the tiny states (65536 x 4 x 8, the
      fused kernel's: ragged batches take it since round 8).
    """

    params = [["loglik_over_score", "hess_over_floor", "ragged_over_padded",
               "ragged_over_padded_tiny"]]
    param_names = ["ratio"]
    unit = "time / time"
    timeout = 300

    def setup(self, ratio: str) -> None:
        _require("loglik")
        workload = {"hess_over_floor": "choice",
                    "ragged_over_padded_tiny": "tiny_states"}.get(ratio, "medium")
        phi, theta, a, _ = _inputs(workload)
        if ratio == "loglik_over_score":
            self.calls = {"num": family_call(fastscore, "loglik_grad", phi, theta, a),
                          "den": functools.partial(fastscore.score, phi, theta, a)}
        elif ratio == "hess_over_floor":
            rows = phi.reshape(-1, phi.shape[-1])
            self.calls = {"num": family_call(fastscore, "loglik_hess", phi, theta, a),
                          "den": lambda: rows.T @ rows}
        else:
            offsets = np.arange(0, phi.shape[0] * phi.shape[1] + 1, phi.shape[1])
            stacked = phi.reshape(-1, phi.shape[-1])
            self.calls = {"num": functools.partial(fastscore.score, stacked, theta, a,
                                                   offsets=offsets),
                          "den": functools.partial(fastscore.score, phi, theta, a)}

    def track_ratio(self, ratio: str) -> float:
        best = _best_of(self.calls)
        return best["num"] / best["den"]
