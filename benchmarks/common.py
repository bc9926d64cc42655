"""Workloads, inputs and thread control shared by the benchmark classes.

The workloads are those of ``python -m fastscore bench``
(``harness/functions.py``) under the names asv's results have always had.
"""
from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple, Optional, Union

import numpy as np
from threadpoolctl import ThreadpoolController

import fastscore
from fastscore import reference

#: name -> shape of phi: (N, d) for one state, (B, N, d) for a batch.
WORKLOADS = {
    "small": (8, 32),  # one state: the per-step call of a training loop
    "small_batch": (4096, 8, 32),
    "medium": (1024, 16, 256),
    "large": (64, 1000, 1000),  # 512 MB in float64
    "huge": (262144, 64),  # one state with many actions
    # Many states, few actions and features: choice-model data (1.6 GB in
    # float64 for the large one), and a batch of tiny states.
    "choice": (100000, 10, 20),
    "choice_large": (1000000, 10, 20),
    "tiny_states": (65536, 4, 8),
}

IMPLEMENTATIONS: dict[str, Callable] = {
    "fastscore": fastscore.score,
    "numpy": reference.score,
}

DTYPES = ["float32", "float64"]

#: 1, or "all": what OpenMP (fastscore) and the BLAS (numpy) use by default.
THREADS: list[Union[int, str]] = [1, "all"]

#: Temperature of the temperature variant: a sharper policy than tau = 1.
TEMPERATURE = 0.1

#: Seconds to wait after timing NumPy before timing fastscore in the same
#: process: OpenBLAS's worker threads spin for about 0.1 s after a call and
#: take a core from fastscore's threads meanwhile.
BLAS_SETTLE = 0.15


def _warm_allocator() -> None:
    """Free a 16 MiB block, as any long-running process has done.

    glibc's malloc maps blocks above a threshold (128 KiB at first) straight
    from the OS and gives them back when freed; freeing one raises the
    threshold to its size.  asv runs each benchmark in a fresh process, where
    the NumPy reference would otherwise pay page faults on its temporaries at
    every call (up to twice its steady-state time).  The block is never
    touched: peak memory does not change.
    """
    block = np.empty(16 << 20, dtype=np.uint8)
    del block


_warm_allocator()


class Inputs(NamedTuple):
    phi: np.ndarray
    theta: np.ndarray
    a: Union[int, np.ndarray]
    mask: Optional[np.ndarray]


@functools.lru_cache(maxsize=1)
def make_inputs(workload: str, dtype: str, masked: bool = False) -> Inputs:
    """Random inputs of a workload, the same for every implementation.

    Logits are of order 1.  With ``masked``, about half of the actions are
    illegal (the taken one never).  Cached: asv re-runs ``setup`` between
    timed calls, and the large batch takes a second to generate.
    """
    shape = WORKLOADS[workload]
    rng = np.random.default_rng(0)
    phi = rng.standard_normal(shape, dtype=np.dtype(dtype).type)
    d, n = shape[-1], shape[-2]
    theta = (rng.standard_normal(d) / np.sqrt(d)).astype(dtype)
    batch = len(shape) == 3
    a = rng.integers(0, n, size=shape[0]) if batch else int(rng.integers(n))
    mask = None
    if masked:
        mask = rng.random(shape[:-1]) < 0.5
        if batch:
            mask[np.arange(shape[0]), a] = True
        else:
            mask[a] = True
    return Inputs(phi, theta, a, mask)


def n_threads_arg(threads: Union[int, str]) -> Optional[int]:
    """The ``n_threads`` argument of ``score`` for a ``THREADS`` value."""
    return None if threads == "all" else threads


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


class BlasThreads:
    """Limit NumPy's BLAS to ``threads`` (no limit for "all") until ``restore``.

    Only the BLAS is limited: fastscore's OpenMP takes ``n_threads``.
    """

    def __init__(self, threads: Union[int, str]) -> None:
        self._limits = None
        if threads != "all":
            self._limits = _controller().limit(limits=threads, user_api="blas")

    def restore(self) -> None:
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None


def best_time(func: Callable[[], object], min_time: float = 0.02) -> float:
    """Seconds per call of ``func``: calls are batched to last ``min_time``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / number
        number *= 2 if elapsed * 4 > min_time else 10
