"""fastscore.matrix, the state-input form z = (s @ W + b) / tau, against NumPy.

``MatrixOneState`` times one state (an RL step, k = 64, N = 10) and
``MatrixLoglik`` the batch gradient ``loglik(grad=True)`` (a minibatch and a
multinomial-logit fit), with the implementation as a parameter so the
``fastscore`` and ``numpy`` series sit side by side.  The ``track_`` classes
return ratios measured side by side in one process: the speedup over NumPy,
and the time over the floor (the two BLAS products ``S @ W`` and ``S.T @ R``
alone).  Skipped on commits without ``fastscore.matrix``.
"""
from __future__ import annotations

import functools
import time
from typing import Callable, Union

import numpy as np

from .common import BLAS_SETTLE, DTYPES, THREADS, BlasThreads, best_time, n_threads_arg

try:
    import fastscore.matrix as fm
    from fastscore import reference
except ImportError:  # an older commit
    fm = None

ONE_STATE = (64, 10)  # (k, N)
BATCHES = {
    "minibatch": (4096, 64, 10),  # (B, k, N)
    "mnl_fit": (1_000_000, 20, 10),
    # The minibatch with trained-size weights (W = scale * N(0, 1)): past a
    # scale of about 0.2 the blocks take the split logits.
    "minibatch_w1": (4096, 64, 10, 1.0),
    "minibatch_w10": (4096, 64, 10, 10.0),
}
OPS = ["score", "log_prob", "sample"]


def _require_matrix() -> None:
    if fm is None:
        raise NotImplementedError("this commit has no fastscore.matrix")


@functools.lru_cache(maxsize=2)
def _inputs(shape: tuple, dtype: str):
    """Inputs of a (k, N) or (B, k, N) case; a fourth entry is W's scale
    (default 1 / sqrt(k))."""
    rng = np.random.default_rng(0)
    t = np.dtype(dtype).type
    if len(shape) == 4:
        *shape, scale = shape
        shape = tuple(shape)
    else:
        scale = 1 / np.sqrt(shape[-2])
    k, n = shape[-2], shape[-1]
    W = (scale * rng.standard_normal((k, n))).astype(t)
    if len(shape) == 2:
        return rng.standard_normal(k).astype(t), W, int(rng.integers(n))
    b = shape[0]
    return (rng.standard_normal((b, k)).astype(t), W, rng.integers(0, n, size=b),
            rng.standard_normal((b, n)).astype(t))


def _numpy_one_state(op: str, s: np.ndarray, W: np.ndarray, a: int) -> Callable[[], object]:
    """What a user writes for one state."""
    n = W.shape[1]
    rng = np.random.default_rng(1)

    def score():
        z = s @ W
        p = np.exp(z - z.max())
        p /= p.sum()
        onehot = np.zeros(n, dtype=p.dtype)
        onehot[a] = 1
        return np.outer(s, onehot - p)

    def log_prob():
        z = s @ W
        m = z.max()
        return z[a] - m - np.log(np.exp(z - m).sum())

    def sample():
        z = s @ W
        act = int(np.argmax(z + rng.gumbel(size=n)))
        m = z.max()
        return act, z[act] - m - np.log(np.exp(z - m).sum())

    return {"score": score, "log_prob": log_prob, "sample": sample}[op]


def _one_state_call(impl: str, op: str, dtype: str) -> Callable[[], object]:
    s, W, a = _inputs(ONE_STATE, dtype)
    if impl == "numpy":
        return _numpy_one_state(op, s, W, a)
    if op == "sample":
        return functools.partial(fm.sample, s, W, seed=1)
    return functools.partial(getattr(fm, op), s, W, a)


class MatrixOneState:
    """score, log_prob and sample of one state (k = 64, N = 10)."""

    params = [["fastscore", "numpy"], OPS, DTYPES]
    param_names = ["impl", "op", "dtype"]

    def setup(self, impl: str, op: str, dtype: str) -> None:
        _require_matrix()
        self.func = _one_state_call(impl, op, dtype)
        self.number = 2000  # a call takes about a microsecond

    def time_call(self, impl: str, op: str, dtype: str) -> None:
        self.func()


class MatrixOneStateSpeedup:
    """NumPy time / fastscore time for one state, timed side by side."""

    params = [OPS, DTYPES]
    param_names = ["op", "dtype"]
    unit = "NumPy time / fastscore time"
    repeats = 5

    def setup(self, op: str, dtype: str) -> None:
        _require_matrix()

    def track_speedup(self, op: str, dtype: str) -> float:
        calls = {impl: _one_state_call(impl, op, dtype) for impl in ("fastscore", "numpy")}
        best = {name: min(best_time(f) for _ in range(self.repeats)) for name, f in calls.items()}
        return best["numpy"] / best["fastscore"]


def _batch_calls(batch: str, dtype: str, n_threads) -> dict[str, Callable[[], object]]:
    S, W, a, R = _inputs(BATCHES[batch], dtype)
    return {
        "fastscore": functools.partial(fm.loglik, S, W, a, grad=True, n_threads=n_threads),
        "numpy": functools.partial(reference.matrix_loglik, S, W, a, grad=True),
        "floor": lambda: (S @ W, S.T @ R),
    }


class MatrixLoglik:
    """loglik(grad=True) over a batch: the policy / likelihood gradient."""

    params = [["fastscore", "numpy"], list(BATCHES), DTYPES, THREADS]
    param_names = ["impl", "batch", "dtype", "threads"]
    timeout = 300

    def setup(self, impl: str, batch: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas = BlasThreads(threads)
        _require_matrix()
        self.func = _batch_calls(batch, dtype, n_threads_arg(threads))[impl]

    def teardown(self, impl: str, batch: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas.restore()

    def time_loglik_grad(self, impl: str, batch: str, dtype: str,
                         threads: Union[int, str]) -> None:
        self.func()


class MatrixLoglikRatios:
    """Side-by-side ratios of the batch gradient: NumPy / fastscore, and
    fastscore / floor (the two BLAS products alone; the issue's bound is 1.3)."""

    params = [list(BATCHES), DTYPES, THREADS]
    param_names = ["batch", "dtype", "threads"]
    timeout = 600
    repeats = 3

    def setup(self, batch: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas = BlasThreads(threads)
        _require_matrix()
        self.calls = _batch_calls(batch, dtype, n_threads_arg(threads))

    def teardown(self, batch: str, dtype: str, threads: Union[int, str]) -> None:
        self.blas.restore()

    def _best(self) -> dict[str, float]:
        best = {name: float("inf") for name in self.calls}
        for _ in range(self.repeats):
            for name, func in self.calls.items():
                best[name] = min(best[name], best_time(func, min_time=0.05))
                if name != "fastscore":
                    time.sleep(BLAS_SETTLE)
        return best

    def track_speedup(self, batch: str, dtype: str, threads: Union[int, str]) -> float:
        best = self._best()
        return best["numpy"] / best["fastscore"]

    track_speedup.unit = "NumPy time / fastscore time"

    def track_over_floor(self, batch: str, dtype: str, threads: Union[int, str]) -> float:
        best = self._best()
        return best["fastscore"] / best["floor"]

    track_over_floor.unit = "fastscore time / two BLAS products"
