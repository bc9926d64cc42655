"""Time, peak memory and speedup of ``score``: fastscore against NumPy.

The time and memory classes take the implementation as a parameter, so the
``fastscore`` and ``numpy`` series sit side by side on each graph.  The
``track_`` classes return ratios of two measurements taken side by side in
one process (speedup over NumPy, fraction of the read bandwidth, float32
over float64 time), which a noisy machine disturbs less than absolute times.
``threads`` is 1 or "all": fastscore gets it as ``n_threads`` and NumPy's
BLAS is limited to it.
"""
from __future__ import annotations

import functools
import time
from typing import Union

import numpy as np

import fastscore

from .common import (
    BLAS_SETTLE,
    DTYPES,
    IMPLEMENTATIONS,
    TEMPERATURE,
    THREADS,
    WORKLOADS,
    BlasThreads,
    best_time,
    make_inputs,
    n_threads_arg,
)


def _skip_pointless(workload: str, threads: Union[int, str]) -> None:
    """One small state always runs on the calling thread: "all" = 1 there."""
    if workload == "small" and threads != 1:
        raise NotImplementedError("one small state runs on one thread")


class Score:
    """``score`` over the workloads: one small state up to a 512 MB batch."""

    params = [list(IMPLEMENTATIONS), list(WORKLOADS), DTYPES, THREADS]
    param_names = ["impl", "workload", "dtype", "threads"]
    timeout = 300

    def setup(self, impl: str, workload: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas = BlasThreads(threads)  # first: teardown runs after a skip too
        _skip_pointless(workload, threads)
        self.inputs = make_inputs(workload, dtype)
        self.func = IMPLEMENTATIONS[impl]
        self.n_threads = n_threads_arg(threads)
        # One small call takes about a microsecond: time many per sample
        # (0 lets asv choose; with a setup, asv times each call on its own).
        self.number = 200 if workload == "small" else 0

    def teardown(self, impl: str, workload: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas.restore()

    def _call(self) -> None:
        phi, theta, a, _ = self.inputs
        self.func(phi, theta, a, n_threads=self.n_threads)

    def time_score(self, impl: str, workload: str, dtype: str, threads: Union[int, str]) -> None:
        self._call()

    def peakmem_score(self, impl: str, workload: str, dtype: str, threads: Union[int, str]) -> None:
        self._call()


class ScoreMasked:
    """The medium batch with about half of the actions masked."""

    params = [list(IMPLEMENTATIONS), DTYPES, THREADS]
    param_names = ["impl", "dtype", "threads"]

    def setup(self, impl: str, dtype: str, threads: Union[int, str]) -> None:
        self.inputs = make_inputs("medium", dtype, masked=True)
        self.func = IMPLEMENTATIONS[impl]
        self.n_threads = n_threads_arg(threads)
        self.blas = BlasThreads(threads)

    def teardown(self, impl: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas.restore()

    def _call(self) -> None:
        phi, theta, a, mask = self.inputs
        self.func(phi, theta, a, mask=mask, n_threads=self.n_threads)

    def time_score(self, impl: str, dtype: str, threads: Union[int, str]) -> None:
        self._call()

    def peakmem_score(self, impl: str, dtype: str, threads: Union[int, str]) -> None:
        self._call()


class ScoreTemperature:
    """The medium batch at temperature ``TEMPERATURE``."""

    params = [list(IMPLEMENTATIONS), DTYPES, THREADS]
    param_names = ["impl", "dtype", "threads"]

    def setup(self, impl: str, dtype: str, threads: Union[int, str]) -> None:
        self.inputs = make_inputs("medium", dtype)
        self.func = IMPLEMENTATIONS[impl]
        self.n_threads = n_threads_arg(threads)
        self.blas = BlasThreads(threads)

    def teardown(self, impl: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas.restore()

    def time_score(self, impl: str, dtype: str, threads: Union[int, str]) -> None:
        phi, theta, a, _ = self.inputs
        self.func(phi, theta, a, temperature=TEMPERATURE, n_threads=self.n_threads)


class Speedup:
    """NumPy time / fastscore time, both timed in the same process.

    A ratio of two measurements taken side by side survives a noisy machine
    better than two absolute times from different runs.
    """

    params = [list(WORKLOADS), DTYPES, THREADS]
    param_names = ["workload", "dtype", "threads"]
    unit = "NumPy time / fastscore time"
    timeout = 300
    #: Interleaved timings of each implementation; the best one counts.
    repeats = 5

    def setup(self, workload: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas = BlasThreads(threads)  # first: teardown runs after a skip too
        _skip_pointless(workload, threads)
        self.inputs = make_inputs(workload, dtype)
        self.n_threads = n_threads_arg(threads)

    def teardown(self, workload: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas.restore()

    def track_speedup(self, workload: str, dtype: str, threads: Union[int, str]) -> float:
        phi, theta, a, _ = self.inputs
        best = {name: float("inf") for name in IMPLEMENTATIONS}
        for _ in range(self.repeats):
            for name, func in IMPLEMENTATIONS.items():
                call = functools.partial(func, phi, theta, a, n_threads=self.n_threads)
                best[name] = min(best[name], best_time(call))
                if name == "numpy":
                    time.sleep(BLAS_SETTLE)
        return best["numpy"] / best["fastscore"]


class ReadBandwidth:
    """fastscore's bytes of phi per second as a fraction of the machine's read
    bandwidth: ``fastscore._core.read_pass`` over as many bytes, with the same
    threads (or one, if that is faster), timed side by side with the call.

    The performance targets are stated this way (float64).
    """

    params = [["medium", "large", "huge"], THREADS]
    param_names = ["workload", "threads"]
    unit = "fraction of read bandwidth"
    timeout = 300
    repeats = 5

    def setup(self, workload: str, threads: Union[int, str]) -> None:
        core = fastscore._core
        self.inputs = make_inputs(workload, "float64")
        self.n_threads = n_threads_arg(threads)
        n_read = self.n_threads or core.build_info()["max_threads"]
        buf = np.ones(self.inputs.phi.nbytes // 8)
        self.reads = [functools.partial(core.read_pass, buf, n) for n in sorted({1, n_read})]

    def track_read_fraction(self, workload: str, threads: Union[int, str]) -> float:
        phi, theta, a, _ = self.inputs
        call = functools.partial(fastscore.score, phi, theta, a, n_threads=self.n_threads)
        t_score = t_read = float("inf")
        for _ in range(self.repeats):
            t_score = min(t_score, best_time(call))
            t_read = min([t_read] + [best_time(read) for read in self.reads])
        return t_read / t_score


class Float32Time:
    """float32 time / float64 time of the medium batch, timed side by side
    (float32 reads half the bytes; the target is at most 0.6)."""

    params = [THREADS]
    param_names = ["threads"]
    unit = "float32 time / float64 time"
    repeats = 5

    def setup(self, threads: Union[int, str]) -> None:
        self.inputs = {dtype: make_inputs("medium", dtype) for dtype in DTYPES}
        self.n_threads = n_threads_arg(threads)

    def track_float32_ratio(self, threads: Union[int, str]) -> float:
        best = {dtype: float("inf") for dtype in DTYPES}
        for _ in range(self.repeats):
            for dtype, (phi, theta, a, _) in self.inputs.items():
                call = functools.partial(fastscore.score, phi, theta, a, n_threads=self.n_threads)
                best[dtype] = min(best[dtype], best_time(call))
        return best["float32"] / best["float64"]
