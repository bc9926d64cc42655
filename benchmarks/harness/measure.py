"""What every table of the harness measures with: timing, load, errors, formatting.

A table times each implementation side by side in one process, interleaved
over several repeats (``best_times``), and the best time of each counts: on a
shared, noisy machine a ratio measured that way is what survives.
``OtherLoad`` tells how much of the machine other processes took meanwhile.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from fastscore import _core

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
class Settings:
    """How long to measure: repeats per implementation, seconds per sample."""

    repeat: int
    min_time: float

    @classmethod
    def for_mode(cls, quick: bool) -> "Settings":
        return cls(repeat=3, min_time=0.01) if quick else cls(repeat=7, min_time=0.05)


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


def default_threads() -> int:
    """The threads fastscore uses when ``n_threads`` is None: what OpenMP allows."""
    return int(_core.build_info()["max_threads"])


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)


def format_time(seconds: float) -> str:
    """``seconds`` in ns, us, ms or s, three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"



# ---------------------------------------------------------------------------
# The multiply-add peak.

#: The C program that measures it, next to this file.
PEAK_FMA_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peak_fma.c")

#: Flags to try in turn: the machine's own instruction set, then AVX-512 and
#: AVX2 spelled out (for a compiler without -march=native).
_PEAK_FLAGS = (["-march=native"], ["-mavx512f", "-mfma"], ["-mavx2", "-mfma"])


@dataclasses.dataclass(frozen=True)
class Peak:
    """Multiply-adds per second of one core (``peak_fma.c``): fused (FMA) and
    as a separate multiplication and addition; ``isa`` the vectors it used."""

    fma: float
    mul_add: float
    isa: str


def _compilers() -> list[list[str]]:
    """$CC, then cc, gcc and clang, those on the path."""
    found = []
    if os.environ.get("CC"):
        found.append(shlex.split(os.environ["CC"]))
    found += [[name] for name in ("cc", "gcc", "clang") if shutil.which(name)]
    return found


def peak_fma_rates(reps: int = 25, iters: int = 4_000_000) -> tuple[Optional[Peak], str]:
    """(the peak of one core, ""), or (None, why not): ``peak_fma.c``
    compiled with the first C compiler and flags that work and run here,
    the best of ``reps`` runs of ``iters`` iterations each.  No compiler, no
    AVX2 or a failing run give None and the reason, never an exception."""
    compilers = _compilers()
    if not compilers:
        return None, "no C compiler (set CC, or install cc, gcc or clang)"
    why = ""
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "peak_fma")
        for cc in compilers:
            for flags in _PEAK_FLAGS:
                cmd = [*cc, "-O2", *flags, "-ffp-contract=off", PEAK_FMA_C, "-o", exe]
                try:
                    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
                    out = subprocess.run([exe, str(reps), str(iters)], check=True,
                                         capture_output=True, text=True, timeout=600).stdout
                    rates = dict(line.split(None, 1) for line in out.splitlines() if line)
                    return Peak(float(rates["fma"]), float(rates["mul_add"]),
                                rates["isa"].strip()), ""
                except (OSError, subprocess.SubprocessError, KeyError, ValueError) as exc:
                    detail = getattr(exc, "stderr", None) or b""
                    if isinstance(detail, bytes):
                        detail = detail.decode(errors="replace")
                    last = (detail.strip().splitlines() or [str(exc)])[-1]
                    why = f"{shlex.join([*cc, *flags])}: {last[:120]}"
    return None, f"peak_fma.c did not compile or run ({why})"
