"""``python -m fastscore bench``: fastscore against NumPy (and PyTorch, Numba, JAX) per workload.

A workload is one public function (``score``, ``log_prob``, ``entropy``,
``probs``, ``sample``, ``loglik``) on one shape; its NumPy baseline is the
namesake in ``fastscore.reference``.

Each workload is timed for every implementation side by side in one process,
interleaved over several repeats, and the best time of each counts: on a
shared, noisy machine a ratio measured that way is what survives.  Next to
the times the table shows the bandwidth fastscore achieves reading ``phi``
and the fraction it is of this machine's read bandwidth, measured by
``fastscore._core.read_pass`` over as many bytes with the same thread count
(or one thread, if that is faster: it is for a few kilobytes, where the
kernel does not start threads either).

Numba and JAX, when installed, are optional columns of the batch ``score``
and ``loglik`` rows (``fastscore._baselines``); nothing here imports them
before ``import_baselines``.

The asv suite in ``benchmarks/`` runs the same workloads.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TextIO

import numpy as np

import fastscore

from . import __version__, _baselines, _core, reference

#: Environment variables that change which BLAS kernels NumPy runs.
BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

#: Tolerated relative error against the NumPy reference, in the 2-norm of the
#: whole result.  The reference computes in the input precision and is the
#: less accurate one.
RTOL = {"float32": 1e-3, "float64": 1e-6}

#: Seconds to wait after timing NumPy before timing anything else.  OpenBLAS's
#: worker threads spin for about 2**28 cycles (~0.1 s) after a call; on a
#: machine with few cores they take a core from whatever runs next, and a
#: threaded call then loses a scheduler tick every few milliseconds.
BLAS_SETTLE = 0.15


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

#: The optional baselines (``fastscore._baselines``), in column order.
BASELINES = ("numba", "jax")

#: Functions whose result is a sum over the states (their rows also time
#: ``score`` on the same data, or the Hessian's floor).
REDUCTIONS = ("loglik", "loglik+hess")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long to measure: repeats per implementation, seconds per sample."""

    repeat: int
    min_time: float

    @classmethod
    def for_mode(cls, quick: bool) -> "Settings":
        return cls(repeat=3, min_time=0.01) if quick else cls(repeat=7, min_time=0.05)


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


def relative_error(got: Any, want: np.ndarray) -> float:
    """``|got - want| / |want|``, 2-norms over the whole result.

    Not per state: where a policy is nearly deterministic a state's score is
    tiny and the reference's own error in it can reach 100 %.
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), np.finfo(np.float64).tiny))


# ---------------------------------------------------------------------------
# Timing.

def _sample(func: Callable[[], Any], number: int) -> float:
    """Seconds for ``number`` calls, garbage collection off (as timeit does)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            func()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def calls_per_sample(func: Callable[[], Any], min_time: float) -> int:
    """How many calls of ``func`` last at least ``min_time`` (also a warm-up)."""
    number = 1
    while True:
        elapsed = _sample(func, number)
        if elapsed >= min_time:
            return number
        number = max(number + 1, int(number * min(10.0, 1.2 * min_time / max(elapsed, 1e-9))))


def best_times(funcs: dict[str, Callable[[], Any]], settings: Settings) -> dict[str, float]:
    """Seconds per call of each function: the best of ``settings.repeat`` samples.

    The samples are interleaved (every function once per repeat), so all of
    them see the same machine; each sample batches enough calls to last
    ``settings.min_time``, so a microsecond call is timed as well as a long one.
    After a sample of "numpy", wait ``BLAS_SETTLE``.
    """
    numbers = {name: calls_per_sample(f, settings.min_time) for name, f in funcs.items()}
    best = {name: float("inf") for name in funcs}
    for _ in range(settings.repeat):
        for name, func in funcs.items():
            best[name] = min(best[name], _sample(func, numbers[name]) / numbers[name])
            if name == "numpy":
                time.sleep(BLAS_SETTLE)
    return best


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


class OtherLoad:
    """The share of this machine's CPU time that other processes take from now on.

    It flags the timings that contention spoilt: a threaded call waits for
    its slowest thread, so one busy core can make it many times slower.
    Reads /proc/stat (Linux); elsewhere ``share()`` is None.
    """

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> Optional[tuple[float, float, float]]:
        """(wall seconds, busy CPU seconds of the machine, CPU seconds of this process)."""
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal: steal is CPU time
        # another virtual machine took, also not ours.
        busy = sum(fields[:8]) - fields[3] - fields[4]
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), time.process_time()

    def share(self) -> Optional[float]:
        """Other processes' CPU time since creation over all CPUs' wall time."""
        end = self._snapshot()
        if self._start is None or end is None:
            return None
        wall, busy, own = (e - s for e, s in zip(end, self._start))
        return max(busy - own, 0.0) / (wall * (os.cpu_count() or 1))


def warm_allocator() -> None:
    """Free a 16 MiB block, as any long-running process has done.

    glibc's malloc maps blocks above a threshold (128 KiB at first) straight
    from the OS and gives them back when freed, so each call of the NumPy
    reference would pay page faults on its temporaries.  Freeing such a
    mapped block raises the threshold to its size (up to 32 MiB); a fresh
    process has not done it and its NumPy times come out up to twice as slow
    (importing PyTorch happens to do it).  The block is never touched, so it
    costs no memory; elsewhere than glibc this does nothing useful or harmful.
    """
    block = np.empty(16 << 20, dtype=np.uint8)
    del block


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


def default_threads() -> int:
    """The threads fastscore uses when ``n_threads`` is None: what OpenMP allows."""
    return int(_core.build_info()["max_threads"])


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
        print(f"[{i:2d}/{len(cases)}] {workload.func} {workload.name} {_shape_str(shape)} {dtype}",
              file=progress, flush=True)
        rows.append(run_workload(workload, dtype, quick, n_threads, torch, settings, baselines))
    return rows


# ---------------------------------------------------------------------------
# Reporting: environment, table, JSON, plot.

def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(n_threads: int, quick: bool, torch: Any, blas_note: str,
                baselines: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What the numbers depend on: versions, threads, CPU, BLAS settings."""
    info = _core.build_info()
    baselines = baselines or {}
    numba, jax = baselines.get("numba"), baselines.get("jax")
    return {
        "fastscore": __version__,
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


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)


def _label(row: Row) -> str:
    """A row's function, workload and shape on two lines, for the chart."""
    return f"{row.func} {row.workload}\n{_shape_str(row.shape)}"


def format_time(seconds: float) -> str:
    """``seconds`` in ns, us, ms or s, three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


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
        cells = [row.func, row.workload, _shape_str(row.shape), row.dtype,
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


# ---------------------------------------------------------------------------
# The state-input form (fastscore.matrix): its own workloads and table.
#
# One state, k = 64, N = 10 (an RL step): score, log_prob and sample against
# the NumPy a user writes for one state.  Batches (a minibatch, and a
# multinomial-logit fit): loglik(grad=True) against the NumPy reference,
# scikit-learn's multinomial loss gradient plus the matrix products (if
# scikit-learn is installed), and the floor: the two BLAS products alone,
# ``S @ W`` and ``S.T @ R``, timed in the same run.

@dataclasses.dataclass(frozen=True)
class MatrixWorkload:
    """One matrix-form case: (k, N) for one state, (B, k, N) for a batch."""

    name: str
    op: str  # score, log_prob, sample (one state), loglik (batch, with the gradient)
    shape: tuple[int, ...]
    quick_shape: Optional[tuple[int, ...]] = None

    def shape_for(self, quick: bool) -> tuple[int, ...]:
        return self.quick_shape if quick and self.quick_shape else self.shape


MATRIX_WORKLOADS: tuple[MatrixWorkload, ...] = (
    MatrixWorkload("one state", "score", (64, 10)),
    MatrixWorkload("one state", "log_prob", (64, 10)),
    MatrixWorkload("one state", "sample", (64, 10)),
    MatrixWorkload("minibatch", "loglik", (4096, 64, 10)),
    MatrixWorkload("mnl fit", "loglik", (1_000_000, 20, 10), quick_shape=(100_000, 20, 10)),
)


@dataclasses.dataclass
class MatrixRow:
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


def matrix_calls(work: MatrixWorkload, dtype: str, quick: bool,
                 n_threads: int) -> tuple[dict[str, Callable[[], Any]], Callable[[], float]]:
    """Zero-argument calls by name, and the relative error of fastscore's result."""
    from . import matrix

    shape = work.shape_for(quick)
    rng = np.random.default_rng(0)
    k, n = shape[-2], shape[-1]
    t = np.dtype(dtype).type
    W = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(t)
    options: dict[str, Any] = {}
    if n_threads != default_threads():
        options["n_threads"] = n_threads
    if len(shape) == 2:
        s = rng.standard_normal(k).astype(t)
        a = int(rng.integers(n))
        fs: Callable[[], Any]
        if work.op == "score":
            fs = functools.partial(matrix.score, s, W, a, **options)
        elif work.op == "log_prob":
            fs = functools.partial(matrix.log_prob, s, W, a, **options)
        else:
            fs = functools.partial(matrix.sample, s, W, seed=1, **options)
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
    calls = {
        "numpy": functools.partial(reference.matrix_loglik, S, W, a, grad=True),
        "fastscore": functools.partial(matrix.loglik, S, W, a, grad=True, **options),
        "floor": lambda: (S @ W, S.T @ R),
    }
    loss = _sklearn_loss(n)
    if loss is not None:
        y = a.astype(t)

        def sklearn() -> Any:
            g = loss.gradient(y_true=y, raw_prediction=S @ W)
            return S.T @ g

        calls["sklearn"] = sklearn

    def check() -> float:
        return relative_error(calls["fastscore"]()[1], calls["numpy"]()[1])

    return calls, check


def run_matrix(dtypes: Sequence[str], quick: bool, n_threads: int,
               progress: TextIO = sys.stderr) -> list[MatrixRow]:
    """Every matrix-form workload in every dtype."""
    settings = Settings.for_mode(quick)
    rows = []
    cases = [(w, dtype) for w in MATRIX_WORKLOADS for dtype in dtypes]
    for i, (work, dtype) in enumerate(cases, 1):
        print(f"[matrix {i:2d}/{len(cases)}] {work.name} {work.op} "
              f"{_shape_str(work.shape_for(quick))} {dtype}", file=progress, flush=True)
        calls, check = matrix_calls(work, dtype, quick, n_threads)
        error = check()
        load = OtherLoad()
        seconds = best_times(calls, settings)
        rows.append(MatrixRow(work.name, work.op, work.shape_for(quick), dtype, seconds, error,
                              RTOL[dtype], load.share()))
    return rows


def matrix_table(rows: Sequence[MatrixRow]) -> list[str]:
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
            row.workload, row.op, _shape_str(row.shape), row.dtype, cell("numpy"),
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
