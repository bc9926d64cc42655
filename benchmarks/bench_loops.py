"""Whole training loops (``python -m fastscore bench --loops``) as asv tracks:
the other implementation's time per step over fastscore's, timed side by
side in one process, and fastscore's default threads over one thread while
another process keeps a core busy.  The loops are those of the bench
(``harness/loops.py``).

Commits without ``fastscore.matrix`` skip the file (NotImplementedError).
"""
from __future__ import annotations

import importlib.util

from .harness import loops


def _loops():
    if importlib.util.find_spec("fastscore.matrix") is None:
        raise NotImplementedError("this commit has no fastscore.matrix")
    return loops


class LoopSpeedup:
    """Time per step of NumPy (or PyTorch, Numba where installed) / fastscore."""

    params = [["reinforce step", "reinforce update 32", "reinforce update 4096"],
              ["numpy", "torch", "numba"]]
    param_names = ["loop", "other"]
    unit = "other time / fastscore time"
    timeout = 600

    def setup_cache(self):
        loops = _loops()
        rows = loops.reinforce_rows(True, loops.import_optional("torch"),
                                    loops.import_optional("numba"))
        return {name: row.seconds for name, row in
                zip(["reinforce step", "reinforce update 32", "reinforce update 4096"], rows)}

    def setup(self, seconds, loop, other):
        # asv skips a benchmark whose setup raises NotImplementedError.
        if other not in seconds[loop]:
            raise NotImplementedError(f"{other} is not installed (pip install {other})")

    def track_speedup(self, seconds, loop, other):
        return seconds[loop][other] / seconds[loop]["fastscore"]


class LoopContention:
    """fastscore's default threads / n_threads=1 while a core is busy (<= 1.1)."""

    params = [["minibatch 32", "minibatch 4096", "logit fit"]]
    param_names = ["loop"]
    unit = "default-threads time / one-thread time"
    timeout = 600

    def setup_cache(self):
        rows = _loops().contention_rows(quick=True)
        return [r.seconds["default"] / r.seconds["1 thread"] for r in rows]

    def track_ratio(self, ratios, loop):
        return ratios[self.params[0].index(loop)]


class LogitFit:
    """Seconds of the conditional-logit fit (100,000 x 10 x 20), by Newton."""

    timeout = 600

    def setup(self):
        self.data = _loops().logit_data(100_000)

    def time_fit(self):
        phi, chosen = self.data
        _loops().fit_fastscore(phi, chosen)

    def track_iterations(self):
        phi, chosen = self.data
        return _loops().fit_fastscore(phi, chosen)[1]

