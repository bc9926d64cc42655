"""The run without a table option: each public function against NumPy (and
PyTorch, Numba, JAX), then the ``fastscore.matrix`` table (``matrix.py``).

A workload is one public function (``score``, ``log_prob``, ``entropy``,
``probs``, ``sample``, ``loglik``) on one shape; its NumPy baseline is the
namesake in ``fastscore.reference``.

Each workload is timed for every implementation side by side in one process
(``measure.best_times``).  Next to the times the table shows the bandwidth
fastscore achieves reading ``phi`` and the fraction it is of this machine's
read bandwidth, measured by ``fastscore._core.read_pass`` over as many bytes
with the same thread count (or one thread, if that is faster: it is for a few
kilobytes, where the kernel does not start threads either).

Numba and JAX, when installed, are optional columns of the batch ``score``
and ``loglik`` rows (``benchmarks/baselines.py``); nothing here imports them
before ``import_baselines``.

The asv suite in ``benchmarks/`` runs the same workloads.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

import numpy as np

import fastscore
from fastscore import _core, reference

from .. import baselines as _baselines
from . import matrix
from .measure import (
    RTOL,
    OtherLoad,
    Settings,
    best_times,
    cpu_name,
    default_threads,
    format_time,
    relative_error,
    shape_str,
    warm_allocator,
)

#: Environment variables that change which BLAS kernels NumPy runs.
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark case: the shape of ``phi`` and the call's options."""

    name: str
    shape: tuple[int, ...]  # (N, d) for one state, (B, N, d) for a batch
    masked: bool = False  # about half of the actions illegal
    temperature: float = 1.0
    quick_shape: Optional[tuple[int, ...]] = None  # a smaller shape for --quick
    func: str = "score"  # the fastscore function; "loglik+hess": loglik(grad, hess)
    ragged: bool = False  # the batch's rows stacked, with offsets=

    def shape_for(self, quick: bool) -> tuple[int, ...]:
        """The shape of ``phi`` in this mode."""
        return self.quick_shape if quick and self.quick_shape else self.shape


WORKLOADS: tuple[Workload, ...] = (
    Workload("small", (8, 32)),  # one state: the call in a training loop
    Workload("small batch", (4096, 8, 32)),
    Workload("medium", (1024, 16, 256)),
    Workload("medium masked", (1024, 16, 256), masked=True),
    Workload("medium tau=0.1", (1024, 16, 256), temperature=0.1),
    Workload("large", (64, 1000, 1000), quick_shape=(16, 1000, 1000)),  # 512 MB in float64
    Workload("huge", (262144, 64)),  # one state, many actions
    Workload("small", (8, 32), func="log_prob"),
    Workload("small", (8, 32), func="entropy"),
    Workload("small", (8, 32), func="probs"),
    Workload("small", (8, 32), func="sample"),
    Workload("medium", (1024, 16, 256), func="log_prob"),
    Workload("medium", (1024, 16, 256), func="entropy"),
    Workload("medium", (1024, 16, 256), func="probs"),
    Workload("medium", (1024, 16, 256), func="sample"),
    Workload("medium", (1024, 16, 256), func="loglik"),
    Workload("medium ragged", (1024, 16, 256), ragged=True),
    Workload("choice data", (100000, 10, 20), func="loglik+hess",
             quick_shape=(20000, 10, 20)),
    # Many states with few actions and features (issue 11: the Numba and JAX columns).
    Workload("choice data", (100000, 10, 20)),
    Workload("choice data, large", (1000000, 10, 20), quick_shape=(200000, 10, 20)),
    Workload("tiny states", (65536, 4, 8)),
    Workload("tiny states ragged", (65536, 4, 8), ragged=True),
    Workload("small batch", (4096, 8, 32), func="loglik"),
    Workload("choice data", (100000, 10, 20), func="loglik"),
    Workload("choice data, large", (1000000, 10, 20), func="loglik",
             quick_shape=(200000, 10, 20)),
    Workload("tiny states", (65536, 4, 8), func="loglik"),
)

#: The optional baselines (``benchmarks/baselines.py``), in column order.
BASELINES = ("numba", "jax")


@dataclasses.dataclass
class Inputs:
    """The arguments of one ``score`` call."""

    phi: np.ndarray
    theta: np.ndarray
    a: Any  # int for one state, intp array for a batch
    mask: Optional[np.ndarray]
    temperature: float
    offsets: Optional[np.ndarray] = None  # ragged: phi is (B N, d), mask (B N,)


def make_inputs(shape: Sequence[int], dtype: str, masked: bool, temperature: float,
                seed: int = 0, ragged: bool = False) -> Inputs:
    """Random inputs with logits of order 1 (before the temperature).

    With ``masked``, about half of the actions are illegal, never the taken one.
    With ``ragged``, the same batch with its rows stacked and ``offsets``.
    """
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal(tuple(shape), dtype=np.dtype(dtype).type)
    n, d = shape[-2], shape[-1]
    theta = (rng.standard_normal(d) / np.sqrt(d)).astype(dtype)
    batch = len(shape) == 3
    a = rng.integers(0, n, size=shape[0]) if batch else int(rng.integers(n))
    mask = None
    if masked:
        mask = rng.random(tuple(shape[:-1])) < 0.5
        if batch:
            mask[np.arange(shape[0]), a] = True
        else:
            mask[a] = True
    if ragged:
        offsets = np.arange(0, shape[0] * n + 1, n)
        return Inputs(phi.reshape(-1, d), theta, a, None if mask is None else mask.ravel(),
                      temperature, offsets)
    return Inputs(phi, theta, a, mask, temperature)


# ---------------------------------------------------------------------------
# Implementations: fastscore, the NumPy reference, PyTorch.

def torch_score(torch: Any, phi: Any, theta: Any, a: Any, mask: Any, temperature: float) -> Any:
    """The score in PyTorch ops, as the NumPy reference computes it.

    ``phi`` (N, d) or (B, N, d), ``theta`` (d,), ``a`` an int or a (B,) long
    tensor, ``mask`` None or a bool tensor of phi's leading shape.
    """
    logits = phi @ theta / temperature
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
        phi = phi.masked_fill(~mask.unsqueeze(-1), 0)  # masked rows may hold NaN
    pi = torch.softmax(logits, dim=-1)
    if phi.ndim == 2:
        return (phi[a] - pi @ phi) / temperature
    mean = torch.bmm(pi.unsqueeze(1), phi).squeeze(1)
    return (phi[torch.arange(phi.shape[0]), a] - mean) / temperature


def _call(func: Callable[..., Any], *args: Any, **options: Any) -> Callable[[], Any]:
    """A zero-argument call, as a user writes it: only the options that differ
    from the defaults (a keyword argument costs ~30 ns, 10 % of a small call)."""
    options = {k: v for k, v in options.items() if v is not None}
    return functools.partial(func, *args, **options) if options else lambda: func(*args)


def _arguments(func: str, inputs: Inputs) -> tuple[Callable[..., Any], str, tuple, dict]:
    """(reference function, fastscore name, positional arguments, options) of a workload."""
    name = "loglik" if func == "loglik+hess" else func
    args: tuple = (inputs.phi, inputs.theta)
    if name in ("score", "log_prob", "loglik"):
        args += (inputs.a,)
    options: dict[str, Any] = {"mask": inputs.mask, "offsets": inputs.offsets,
                               "temperature": None if inputs.temperature == 1.0
                               else inputs.temperature}
    if name == "loglik":
        options["grad"] = True
        options["hess"] = True if func == "loglik+hess" else None
    if name == "sample":
        options["seed"] = 12345
    return getattr(reference, name), name, args, options


def implementations(inputs: Inputs, n_threads: int, torch: Any,
                    func: str = "score",
                    baselines: Optional[dict[str, Any]] = None) -> dict[str, Callable[[], Any]]:
    """Zero-argument calls of each implementation on ``inputs``, by name.

    ``baselines`` maps "numba" and "jax" to their modules (None: not
    installed); they join where ``_baselines.applies`` (batches of score and
    loglik without offsets), compiled here by a warm-up call.

    Rows of reductions also time what their targets compare with: ``score``
    on the same data ("score"), and for the Hessian one ``X.T @ X`` over all
    rows of phi ("floor", the matrix product of that size).
    """
    ref, name, args, options = _arguments(func, inputs)
    calls: dict[str, Callable[[], Any]] = {"numpy": _call(ref, *args, **options)}
    if torch is not None and func == "score" and inputs.offsets is None:
        phi, theta, a, mask, tau = (inputs.phi, inputs.theta, inputs.a, inputs.mask,
                                    inputs.temperature)
        t_a = a if isinstance(a, int) else torch.from_numpy(a)
        t_mask = None if mask is None else torch.from_numpy(mask)
        calls["torch"] = functools.partial(
            torch_score, torch, torch.from_numpy(phi), torch.from_numpy(theta), t_a, t_mask, tau)
    if _baselines.applies(func, inputs.phi, inputs.offsets):
        for lib in BASELINES:
            module = (baselines or {}).get(lib)
            if module is not None:
                calls[lib] = _baselines.CALLS[lib](module, func, inputs.phi, inputs.theta,
                                                   inputs.a, inputs.mask, inputs.temperature)
    threads = None if n_threads == default_threads() else n_threads
    calls["fastscore"] = _call(getattr(fastscore, name), *args, n_threads=threads, **options)
    if func == "loglik":
        calls["score"] = _call(fastscore.score, inputs.phi, inputs.theta, inputs.a,
                               n_threads=threads, mask=inputs.mask, offsets=inputs.offsets)
    if func == "loglik+hess":
        rows = inputs.phi.reshape(-1, inputs.phi.shape[-1])
        calls["floor"] = lambda: rows.T @ rows
    return calls


def check_error(func: str, inputs: Inputs, got: Any, want: Any) -> float:
    """Relative error of a result against the reference's (see relative_error).

    sample: the log-probabilities returned with the drawn actions against the
    reference's log_prob of those actions (the two samplers draw differently)."""
    if func == "sample":
        actions, logp = got
        want = reference.log_prob(inputs.phi, inputs.theta, actions, mask=inputs.mask,
                                  temperature=inputs.temperature, offsets=inputs.offsets)
        return relative_error(logp, want)
    if isinstance(got, tuple):
        got, want = (np.concatenate([np.ravel(x) for x in r]) for r in (got, want))
    return relative_error(got, want)


def read_pass_calls(nbytes: int, n_threads: int) -> dict[str, Callable[[], Any]]:
    """Read-only passes over ``nbytes``, the roofline of a kernel that reads as
    much: with ``n_threads`` ("read_pass") and, if that is more than one, with
    one thread ("read_pass_1"); the faster of the two is the bandwidth.

    The buffer is written (``np.full``): an untouched ``np.zeros`` maps every
    page to the kernel's single zero page, which is read from cache.
    """
    buf = np.full(max(nbytes // 8, 1), 1.0)
    calls = {"read_pass": functools.partial(_core.read_pass, buf, n_threads)}
    if n_threads > 1:
        calls["read_pass_1"] = functools.partial(_core.read_pass, buf, 1)
    return calls


# ---------------------------------------------------------------------------
# Running the workloads.

@dataclasses.dataclass
class Row:
    """The measurements of one workload in one dtype."""

    workload: str
    shape: tuple[int, ...]
    dtype: str
    masked: bool
    temperature: float
    phi_bytes: int
    seconds: dict[str, float]  # per call: numpy, [torch, numba, jax,] fastscore, read_pass
    # [, read_pass_1], [score] (loglik rows), [floor] (Hessian rows)
    rel_error: dict[str, float]  # against the reference: fastscore, [torch, numba, jax]
    rtol: float
    other_load: Optional[float]  # OtherLoad.share() while the row was timed
    func: str = "score"
    ragged: bool = False

    @property
    def ok(self) -> bool:
        return all(err <= self.rtol for err in self.rel_error.values())

    @property
    def mismatched(self) -> list[str]:
        """The implementations whose result differs from the reference."""
        return [name for name, err in self.rel_error.items() if not err <= self.rtol]

    def speedup(self, other: str) -> Optional[float]:
        """``other``'s time over fastscore's, None if ``other`` was not run."""
        if other not in self.seconds:
            return None
        return self.seconds[other] / self.seconds["fastscore"]

    @property
    def note(self) -> str:
        """The ratio the row's target is about, beyond the speedups."""
        if "score" in self.seconds:
            return f"{self.seconds['fastscore'] / self.seconds['score']:.2f}x score"
        if "floor" in self.seconds:
            return (f"{self.seconds['fastscore'] / self.seconds['floor']:.2f}x floor "
                    f"({format_time(self.seconds['floor'])})")
        return ""

    @property
    def gbps(self) -> float:
        """Bytes of phi that fastscore reads per second, in GB/s."""
        return self.phi_bytes / self.seconds["fastscore"] / 1e9

    @property
    def read_gbps(self) -> float:
        """This machine's read bandwidth over as many bytes, in GB/s."""
        read = min(self.seconds["read_pass"], self.seconds.get("read_pass_1", float("inf")))
        return self.phi_bytes / read / 1e9


def import_torch() -> Any:
    """PyTorch if it is installed, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def import_baselines() -> dict[str, Any]:
    """The optional baselines' modules by name ("numba", "jax"), None where
    one is not installed (or fails to import)."""
    modules: dict[str, Any] = {}
    for name in BASELINES:
        try:
            modules[name] = __import__(name)
        except ImportError:
            modules[name] = None
    return modules


def numba_threads(n_threads: int, numba: Any) -> int:
    """The threads Numba runs with: ``n_threads``, at most what it was started
    with (``NUMBA_NUM_THREADS``, all CPUs by default)."""
    return min(n_threads, int(numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def thread_limits(n_threads: int, torch: Any, numba: Any = None) -> Iterator[str]:
    """Run NumPy's BLAS, PyTorch and Numba with ``n_threads``; yields how NumPy is limited.

    The BLAS is limited with threadpoolctl when it is installed; otherwise
    NumPy keeps its own default, and the returned note says so.  Numba gets
    at most ``NUMBA_NUM_THREADS`` (see ``numba_threads``); JAX's XLA thread
    pool cannot be limited after its import, and is not.
    """
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            note = "BLAS threads not limited (threadpoolctl is not installed)"
        else:
            stack.enter_context(threadpool_limits(limits=n_threads, user_api="blas"))
            note = f"BLAS limited to {n_threads} threads"
        if torch is not None:
            previous = torch.get_num_threads()
            torch.set_num_threads(n_threads)
            stack.callback(torch.set_num_threads, previous)
        if numba is not None:
            previous_numba = numba.get_num_threads()
            numba.set_num_threads(numba_threads(n_threads, numba))
            stack.callback(numba.set_num_threads, previous_numba)
        yield note


def run_workload(workload: Workload, dtype: str, quick: bool, n_threads: int, torch: Any,
                 settings: Settings, baselines: Optional[dict[str, Any]] = None) -> Row:
    """Check and time every implementation on one workload."""
    shape = workload.shape_for(quick)
    inputs = make_inputs(shape, dtype, workload.masked, workload.temperature,
                         ragged=workload.ragged)
    calls = implementations(inputs, n_threads, torch, workload.func, baselines)
    want = calls["numpy"]()
    errors = {name: check_error(workload.func, inputs, call(), want)
              for name, call in calls.items() if name in ("fastscore", "torch") + BASELINES}
    calls.update(read_pass_calls(inputs.phi.nbytes, n_threads))
    load = OtherLoad()
    seconds = best_times(calls, settings)
    return Row(workload.name, tuple(shape), dtype, workload.masked, workload.temperature,
               inputs.phi.nbytes, seconds, errors, RTOL[dtype], load.share(), workload.func,
               workload.ragged)


def run(dtypes: Sequence[str], quick: bool, n_threads: int, torch: Any,
        progress: TextIO = sys.stderr, baselines: Optional[dict[str, Any]] = None) -> list[Row]:
    """Every workload in every dtype, with progress lines on ``progress``.

    ``baselines``: the modules of ``import_baselines()`` (None: neither)."""
    warm_allocator()
    settings = Settings.for_mode(quick)
    cases = [(w, dtype) for w in WORKLOADS for dtype in dtypes]
    rows = []
    for i, (workload, dtype) in enumerate(cases, 1):
        shape = workload.shape_for(quick)
        print(f"[{i:2d}/{len(cases)}] {workload.func} {workload.name} {shape_str(shape)} {dtype}",
              file=progress, flush=True)
        rows.append(run_workload(workload, dtype, quick, n_threads, torch, settings, baselines))
    return rows


# ---------------------------------------------------------------------------
# Reporting: environment, table, JSON, plot.

def environment(n_threads: int, quick: bool, torch: Any, blas_note: str,
                baselines: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What the numbers depend on: versions, threads, CPU, BLAS settings."""
    info = _core.build_info()
    baselines = baselines or {}
    numba, jax = baselines.get("numba"), baselines.get("jax")
    return {
        "fastscore": fastscore.__version__,
        "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "numba": None if numba is None else numba.__version__,
        "numba_threads": None if numba is None else numba_threads(n_threads, numba),
        "jax": None if jax is None else jax.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "threads": n_threads,
        "openmp": info["openmp"],
        "simd": info["simd"],
        "numpy_blas_threads": blas_note,
        "blas_env": {name: os.environ[name] for name in BLAS_ENV_VARS if name in os.environ},
        "quick": quick,
    }


def _label(row: Row) -> str:
    """A row's function, workload and shape on two lines, for the chart."""
    return f"{row.func} {row.workload}\n{shape_str(row.shape)}"


def header(env: dict[str, Any]) -> list[str]:
    """The lines above the table: what was measured, and on what."""
    lines = [
        f"fastscore {env['fastscore']} bench: {env['threads']} thread(s) on {env['cpus']} CPUs"
        f" ({env['cpu']}), SIMD {env['simd']}, OpenMP {'on' if env['openmp'] else 'off'}",
        f"numpy {env['numpy']} ({env['numpy_blas_threads']})"
        + (f", torch {env['torch']} ({env['threads']} threads)" if env["torch"] else
           ", torch not installed")
        + (f", numba {env['numba']} ({env['numba_threads']} threads)" if env.get("numba") else
           ", numba not installed")
        + (f", jax {env['jax']} (XLA's own threads)" if env.get("jax") else
           ", jax not installed (pip install jax adds its column)"),
    ]
    if env["blas_env"]:
        settings = ", ".join(f"{k}={v}" for k, v in env["blas_env"].items())
        lines.append(f"set: {settings} (they change NumPy's BLAS kernels)")
    else:
        lines.append(f"not set: {', '.join(BLAS_ENV_VARS)}")
    repeat = Settings.for_mode(env["quick"]).repeat
    lines += [
        f"times: per call, best of {repeat} interleaved repeats"
        + (" (--quick)" if env["quick"] else "") + "; vs X = X time / fastscore time"
        + ("; numba, jax: batches of score and loglik only" if env.get("numba") or env.get("jax")
           else ""),
        "GB/s: bytes of phi / fastscore time; read GB/s: a read-only pass over as many bytes"
        " (same threads, or 1 if faster); % read = GB/s / read GB/s",
        "busy: CPU share other processes took while the row was timed; above a few %"
        " the threaded times suffer (a parallel call waits for its slowest thread)",
    ]
    return lines


def table(rows: Sequence[Row]) -> list[str]:
    """The rows as an aligned text table."""
    with_torch = any("torch" in row.seconds for row in rows)
    head = ["function", "workload", "shape", "dtype", "numpy"] + (["torch"] if with_torch else [])
    head += ["fastscore", "vs numpy"] + (["vs torch"] if with_torch else [])
    head += [f"vs {lib}" for lib in BASELINES]
    head += ["GB/s", "read GB/s", "% read", "busy", "check", "note"]
    body = []
    for row in rows:
        cells = [row.func, row.workload, shape_str(row.shape), row.dtype,
                 format_time(row.seconds["numpy"])]
        if with_torch:
            cells.append(format_time(row.seconds["torch"]) if "torch" in row.seconds else "-")
        cells += [format_time(row.seconds["fastscore"]), f"{row.speedup('numpy'):.2f}x"]
        if with_torch:
            vs_torch = row.speedup("torch")
            cells.append("-" if vs_torch is None else f"{vs_torch:.2f}x")
        for lib in BASELINES:
            vs = row.speedup(lib)
            cells.append("-" if vs is None else f"{vs:.2f}x")
        check = "ok" if row.ok else "MISMATCH"
        if not row.ok and row.mismatched != ["fastscore"]:
            check += f" ({', '.join(row.mismatched)})"
        cells += [f"{row.gbps:.1f}", f"{row.read_gbps:.1f}",
                  f"{100 * row.gbps / row.read_gbps:.0f}%",
                  "?" if row.other_load is None else f"{100 * row.other_load:.0f}%",
                  check, row.note]
        body.append(cells)
    widths = [max(len(str(r[i])) for r in [head] + body) for i in range(len(head))]
    left = {0, 1, 2, 3}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(cells) for cells in body]


def to_json(env: dict[str, Any], rows: Sequence[Row]) -> dict[str, Any]:
    """The environment and every measurement, times in seconds per call."""
    return {
        "environment": env,
        "results": [
            {
                "function": row.func,
                "workload": row.workload,
                "ragged": row.ragged,
                "shape": list(row.shape),
                "dtype": row.dtype,
                "masked": row.masked,
                "temperature": row.temperature,
                "phi_bytes": row.phi_bytes,
                "seconds": row.seconds,
                "speedup_vs_numpy": row.speedup("numpy"),
                "speedup_vs_torch": row.speedup("torch"),
                "speedup_vs_numba": row.speedup("numba"),
                "speedup_vs_jax": row.speedup("jax"),
                "gbps": row.gbps,
                "read_gbps": row.read_gbps,
                "fraction_of_read_bandwidth": row.gbps / row.read_gbps,
                "rel_error": row.rel_error,
                "rtol": row.rtol,
                "other_load": row.other_load,
                "ok": row.ok,
            }
            for row in rows
        ],
    }


def write_json(path: Path, env: dict[str, Any], rows: Sequence[Row]) -> None:
    """Write ``to_json`` to ``path``."""
    path.write_text(json.dumps(to_json(env, rows), indent=2) + "\n")


def require_matplotlib() -> None:
    """Raise ImportError with the install command if matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "--plot needs matplotlib: pip install 'fastscore[plot]' "
            "(or pip install matplotlib)") from None


def plot(path: Path, env: dict[str, Any], rows: Sequence[Row]) -> None:
    """A bar chart of fastscore's speedup over NumPy (and PyTorch) per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    others = ["numpy"] + (["torch"] if any("torch" in r.seconds for r in rows) else [])
    names = list(dict.fromkeys(_label(r) for r in rows))
    dtypes = list(dict.fromkeys(r.dtype for r in rows))
    fig, axes = plt.subplots(1, len(others), figsize=(5.5 * len(others), 0.9 + 0.55 * len(names)),
                             sharey=True, squeeze=False)
    height = 0.8 / len(dtypes)
    y = np.arange(len(names))
    for ax, other in zip(axes[0], others):
        for j, dtype in enumerate(dtypes):
            speedups = {_label(r): r.speedup(other) for r in rows if r.dtype == dtype}
            values = [speedups.get(name) or np.nan for name in names]
            pos = y - 0.4 + height * (j + 0.5)
            bars = ax.barh(pos, values, height, label=dtype, color=f"C{j}")
            ax.bar_label(bars, labels=[f"{v:.2g}x" for v in values], padding=2, fontsize=8)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"speedup ({other} time / fastscore time)")
        ax.set_title(f"fastscore vs {'NumPy' if other == 'numpy' else 'PyTorch'}")
        ax.margins(x=0.15)
    axes[0][0].set_yticks(y, names)
    axes[0][0].invert_yaxis()
    axes[0][0].legend(loc="lower right")
    versions = f"NumPy {env['numpy']}" + (f", PyTorch {env['torch']}" if env["torch"] else "")
    fig.suptitle(f"python -m fastscore bench: fastscore {env['fastscore']} ({versions}),"
                 f" {env['threads']} thread(s), {env['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    """Run, check and print both tables (``--json``, ``--plot``: the function rows)."""
    if args.plot is not None:
        try:
            require_matplotlib()
        except ImportError as exc:
            print(f"fastscore bench: {exc}", file=sys.stderr)
            return 2
    n_threads = args.threads or default_threads()
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    torch = import_torch()
    baselines = import_baselines()
    with thread_limits(n_threads, torch, baselines["numba"]) as blas_note:
        env = environment(n_threads, args.quick, torch, blas_note, baselines)
        rows = run(dtypes, args.quick, n_threads, torch, baselines=baselines)
        matrix_rows = matrix.run(dtypes, args.quick, n_threads)
    print("\n".join(header(env) + [""] + table(rows)))
    print("\n".join([""] + matrix.table(matrix_rows)))
    if args.json is not None:
        write_json(args.json, env, rows)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot is not None:
        plot(args.plot, env, rows)
        print(f"wrote {args.plot}", file=sys.stderr)
    bad = [f"{row.workload} {row.dtype}" for row in rows if not row.ok]
    bad += [f"matrix {row.workload} {row.op} {row.dtype}" for row in matrix_rows if not row.ok]
    if bad:
        print(f"fastscore bench: results differ from the NumPy reference: {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0
