"""Speedup of fastscore over the optional Numba and JAX baselines.

``track_speedup`` returns the baseline's time over fastscore's (above 1:
fastscore is faster), both timed side by side in one process, interleaved,
best of 5; the baselines are those of ``python -m fastscore bench``
(``baselines.py``), compiled in ``setup``.  Both run with their default threads, as fastscore does.

Without the library (``pip install numba``, or ``fastscore[bench]``;
``pip install jax``) ``setup`` raises NotImplementedError and asv skips the
benchmark; so it does on commits without ``fastscore.loglik`` for loglik.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

import fastscore

from .baselines import CALLS
from .common import DTYPES, best_time, make_inputs

#: Batches of score and loglik(grad=True), as in the bench's Numba and JAX
#: columns (the 512 MB "large" batch is left to the bench).
WORKLOADS = ["small_batch", "medium", "choice", "choice_large", "tiny_states"]


def _fastscore_call(func: str, phi, theta, a) -> Callable[[], Any]:
    if func == "loglik":
        return functools.partial(fastscore.loglik, phi, theta, a, grad=True)
    return functools.partial(fastscore.score, phi, theta, a)


class BaselineSpeedup:
    """Numba or JAX time / fastscore time of score and loglik(grad=True)."""

    params = [list(CALLS), ["score", "loglik"], WORKLOADS, DTYPES]
    param_names = ["impl", "func", "workload", "dtype"]
    unit = "baseline time / fastscore time"
    timeout = 300
    #: Interleaved timings of each implementation; the best one counts.
    repeats = 5

    def setup(self, impl: str, func: str, workload: str, dtype: str) -> None:
        try:
            module = importlib.import_module(impl)
        except ImportError:
            raise NotImplementedError(f"{impl} is not installed (pip install {impl})") from None
        if not hasattr(fastscore, func):
            raise NotImplementedError(f"this commit has no fastscore.{func}")
        phi, theta, a, _ = make_inputs(workload, dtype)
        # The baseline's call compiles (a warm-up call) when it is built.
        self.calls = {impl: CALLS[impl](module, func, phi, theta, a, None, 1.0),
                      "fastscore": _fastscore_call(func, phi, theta, a)}

    def track_speedup(self, impl: str, func: str, workload: str, dtype: str) -> float:
        best = {name: float("inf") for name in self.calls}
        for _ in range(self.repeats):
            for name, call in self.calls.items():
                best[name] = min(best[name], best_time(call))
        return best[impl] / best["fastscore"]
