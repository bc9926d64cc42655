"""The state-input form (``fastscore.matrix``): its own workloads and table,
printed after the function table of the run without a table option.

One state, k = 64, N = 10 (an RL step): score, log_prob and sample against
the NumPy a user writes for one state.  Batches (a minibatch, and a
multinomial-logit fit): loglik(grad=True) against the NumPy reference, the
minibatch also with weights of scale 0.01 to 10 (trained weights and raw
features: past about 0.2 the plain logits' error bound fails and blocks take
the split logits), and the A2C update (advantage weights and
entropy_weight=0.01, against the NumPy reference with the same objective),
scikit-learn's multinomial loss gradient plus the matrix products (if
scikit-learn is installed), and the floor: the two BLAS products alone,
``S @ W`` and ``S.T @ R``, timed in the same run.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Callable, Optional, Sequence, TextIO

import numpy as np

from fastscore import reference

from .measure import (
    RTOL,
    OtherLoad,
    Settings,
    best_times,
    default_threads,
    format_time,
    relative_error,
    shape_str,
)


@dataclasses.dataclass(frozen=True)
class Workload:
    """One matrix-form case: (k, N) for one state, (B, k, N) for a batch."""

    name: str
    op: str  # score, log_prob, sample (one state), loglik (batch, with the gradient)
    shape: tuple[int, ...]
    quick_shape: Optional[tuple[int, ...]] = None
    w_scale: Optional[float] = None  # W = w_scale * N(0, 1); None: 1 / sqrt(k)

    def shape_for(self, quick: bool) -> tuple[int, ...]:
        return self.quick_shape if quick and self.quick_shape else self.shape


WORKLOADS: tuple[Workload, ...] = (
    Workload("one state", "score", (64, 10)),
    Workload("one state", "log_prob", (64, 10)),
    Workload("one state", "sample", (64, 10)),
    Workload("minibatch", "loglik", (4096, 64, 10)),
    *(Workload(f"minibatch |W| {scale:g}", "loglik", (4096, 64, 10), w_scale=scale)
      for scale in (0.01, 0.1, 1.0, 10.0)),
    # The A2C actor update: advantage-weighted loglik plus an entropy bonus.
    *(Workload(f"a2c |W| {scale:g}", "a2c", (4096, 64, 10), w_scale=scale)
      for scale in (0.1, 1.0)),
    Workload("mnl fit", "loglik", (1_000_000, 20, 10), quick_shape=(100_000, 20, 10)),
)


@dataclasses.dataclass
class Row:
    """Times (seconds per call) of one matrix-form workload."""

    workload: str
    op: str
    shape: tuple[int, ...]
    dtype: str
    seconds: dict[str, float]
    error: float
    rtol: float
    busy: Optional[float]

    @property
    def ok(self) -> bool:
        return self.error <= self.rtol

    def ratio(self, other: str) -> Optional[float]:
        if other not in self.seconds:
            return None
        return self.seconds[other] / self.seconds["fastscore"]


def _numpy_one_state(op: str, s: np.ndarray, W: np.ndarray, a: int,
                     rng: np.random.Generator) -> Callable[[], Any]:
    """What a user writes in NumPy for one state."""
    n = W.shape[1]

    def score() -> Any:
        z = s @ W
        p = np.exp(z - z.max())
        p /= p.sum()
        onehot = np.zeros(n, dtype=p.dtype)
        onehot[a] = 1
        return np.outer(s, onehot - p)

    def log_prob() -> Any:
        z = s @ W
        m = z.max()
        return z[a] - m - np.log(np.exp(z - m).sum())

    def sample() -> Any:
        z = s @ W
        act = int(np.argmax(z + rng.gumbel(size=n)))
        m = z.max()
        return act, z[act] - m - np.log(np.exp(z - m).sum())

    return {"score": score, "log_prob": log_prob, "sample": sample}[op]


def _sklearn_loss(n: int) -> Any:
    """scikit-learn's multinomial loss object, or None."""
    try:
        from sklearn._loss.loss import HalfMultinomialLoss
    except ImportError:
        return None
    return HalfMultinomialLoss(n_classes=n)


def calls_and_check(work: Workload, dtype: str, quick: bool,
                    n_threads: int) -> tuple[dict[str, Callable[[], Any]], Callable[[], float]]:
    """Zero-argument calls by name, and the relative error of fastscore's result."""
    import fastscore.matrix as fm

    shape = work.shape_for(quick)
    rng = np.random.default_rng(0)
    k, n = shape[-2], shape[-1]
    t = np.dtype(dtype).type
    w_scale = 1 / np.sqrt(k) if work.w_scale is None else work.w_scale
    W = (w_scale * rng.standard_normal((k, n))).astype(t)
    options: dict[str, Any] = {}
    if n_threads != default_threads():
        options["n_threads"] = n_threads
    if len(shape) == 2:
        s = rng.standard_normal(k).astype(t)
        a = int(rng.integers(n))
        fs: Callable[[], Any]
        if work.op == "score":
            fs = functools.partial(fm.score, s, W, a, **options)
        elif work.op == "log_prob":
            fs = functools.partial(fm.log_prob, s, W, a, **options)
        else:
            fs = functools.partial(fm.sample, s, W, seed=1, **options)
        calls = {"numpy": _numpy_one_state(work.op, s, W, a, rng), "fastscore": fs}
        if work.op == "sample":
            # Draws differ: check fastscore's log pi of its own draw against NumPy's.
            def check() -> float:
                act, lp = fs()
                want = _numpy_one_state("log_prob", s, W, int(act), rng)()
                return relative_error(np.atleast_1d(lp), np.atleast_1d(want))
        else:
            def check() -> float:
                return relative_error(np.asarray(fs()).ravel(),
                                      np.asarray(calls["numpy"]()).ravel())
        return calls, check
    b = shape[0]
    S = rng.standard_normal((b, k)).astype(t)
    a = rng.integers(0, n, size=b)
    R = rng.standard_normal((b, n)).astype(t)
    if work.op == "a2c":
        options.update(weights=rng.standard_normal(b).astype(t), entropy_weight=0.01)
    calls = {
        "numpy": functools.partial(reference.matrix_loglik, S, W, a, grad=True, **options),
        "fastscore": functools.partial(fm.loglik, S, W, a, grad=True, **options),
        "floor": lambda: (S @ W, S.T @ R),
    }
    loss = _sklearn_loss(n) if work.op == "loglik" else None
    if loss is not None:
        y = a.astype(t)

        def sklearn() -> Any:
            g = loss.gradient(y_true=y, raw_prediction=S @ W)
            return S.T @ g

        calls["sklearn"] = sklearn

    def check() -> float:
        return relative_error(calls["fastscore"]()[1], calls["numpy"]()[1])

    return calls, check


def run(dtypes: Sequence[str], quick: bool, n_threads: int,
        progress: TextIO = sys.stderr) -> list[Row]:
    """Every matrix-form workload in every dtype."""
    settings = Settings.for_mode(quick)
    rows = []
    cases = [(w, dtype) for w in WORKLOADS for dtype in dtypes]
    for i, (work, dtype) in enumerate(cases, 1):
        print(f"[matrix {i:2d}/{len(cases)}] {work.name} {work.op} "
              f"{shape_str(work.shape_for(quick))} {dtype}", file=progress, flush=True)
        calls, check = calls_and_check(work, dtype, quick, n_threads)
        error = check()
        load = OtherLoad()
        seconds = best_times(calls, settings)
        rows.append(Row(work.name, work.op, work.shape_for(quick), dtype, seconds, error,
                        RTOL[dtype], load.share()))
    return rows


def table(rows: Sequence[Row]) -> list[str]:
    """The matrix-form rows as an aligned text table."""
    head = ["fastscore.matrix", "op", "shape", "dtype", "numpy", "sklearn", "floor",
            "fastscore", "vs numpy", "vs sklearn", "/ floor", "busy"]
    body = []
    for row in rows:
        def cell(name: str) -> str:
            return format_time(row.seconds[name]) if name in row.seconds else "-"

        vs_np, vs_sk = row.ratio("numpy"), row.ratio("sklearn")
        floor = row.ratio("floor")
        body.append([
            row.workload, row.op, shape_str(row.shape), row.dtype, cell("numpy"),
            cell("sklearn"), cell("floor"), cell("fastscore"),
            f"{vs_np:.1f}x" if vs_np else "-", f"{vs_sk:.1f}x" if vs_sk else "-",
            f"{1 / floor:.2f}" if floor else "-",
            "-" if row.busy is None else f"{100 * row.busy:.0f} %",
        ] + ([] if row.ok else [f"MISMATCH {row.error:.1e}"]))
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))) + (
            "  " + "  ".join(cells[len(head):]) if len(cells) > len(head) else "")

    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in body] + [
        "floor: the two BLAS products S @ W and S.T @ R alone; / floor = fastscore time / floor time",
    ]
