"""libgomp's spin count, set for fastscore's own threads before they exist.

After a parallel region libgomp's worker threads spin, by default for about
300,000 iterations, before they sleep.  Between fastscore calls a user's own
NumPy work runs OpenBLAS threads, which spin too: on a machine whose cores
are all taken (another process busy) the two pools' spinning threads take
each other's time slices, and a minibatch update measured 3.7x to 7.4x
slower with the default thread count than with one thread.  A spin count of
20,000 keeps almost all of the threads' gain in back-to-back calls and
removes that stall (docs/performance.md, round 11).

libgomp reads its environment once, when it is loaded: so the variable is
set only for the import of the compiled modules, and only when the user
chose neither ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT`` and no library has
loaded libgomp before (then its settings are already fixed); the process's
environment, which child processes inherit, is left as it was.
"""
from __future__ import annotations

import os

#: The spin count fastscore gives libgomp when the user has not chosen one.
SPIN_COUNT = "20000"
_USER_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _libgomp_loaded() -> bool:
    """Whether this process has libgomp mapped already (Linux; elsewhere False)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def _load():
    """Import the compiled modules' OpenMP runtime with fastscore's spin
    count where it may set it; returns how libgomp's waiting was chosen."""
    user = [f"{v}={os.environ[v]}" for v in _USER_VARS if v in os.environ]
    if user:
        from . import _core  # noqa: F401
        return f"{', '.join(user)} (the user's)"
    if _libgomp_loaded():
        from . import _core  # noqa: F401
        return "libgomp's default (loaded before fastscore)"
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    try:
        from . import _core  # noqa: F401  (loads libgomp, which reads its environment now)
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return f"GOMP_SPINCOUNT={SPIN_COUNT} (set by fastscore at import)"


#: For show_config(): how libgomp's threads wait between parallel regions.
WAIT = _load()
