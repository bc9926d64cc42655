"""The mixed logit's kernel on Train's electricity panel (361 people, 4308
situations x 4 alternatives, six normal coefficients, Halton draws): one
evaluation of ``fastscore._mixedlogit.simulated_loglik`` (the value alone,
and with the gradient) at 500 and 1000 draws on 1 and 2 threads, with the
arrays and starting values of a ``fastscore.choice.MixedLogit``; and the peak
memory of building that model (its draws are 361 x draws x 6 doubles).

The curve over the draws and the panels against the multiply-add floor is
``python -m fastscore bench --choice`` (``harness/choice.py``).  Commits
without the mixed logit, and environments without pandas or SciPy (which
``fastscore.choice.MixedLogit`` needs), skip the file (NotImplementedError).
"""
from __future__ import annotations

import functools
import importlib.util

DRAWS = [500, 1000]
THREADS = [1, 2]


def _need():
    if importlib.util.find_spec("fastscore._mixedlogit") is None:
        raise NotImplementedError("this commit has no fastscore._mixedlogit")
    for module in ("pandas", "scipy"):
        if importlib.util.find_spec(module) is None:
            raise NotImplementedError(f"MixedLogit needs {module}: pip install 'fastscore[choice]'")


@functools.lru_cache(maxsize=1)
def _frame():
    import pandas as pd

    from .harness.choice import ELECTRICITY

    return pd.read_csv(ELECTRICITY)


def _model(n_draws):
    from .harness.choice import electricity_mixed

    return electricity_mixed(n_draws, _frame())


@functools.lru_cache(maxsize=2)
def _problem(n_draws):
    """(the kernel's arrays, the starting values) of the electricity model."""
    m = _model(n_draws)
    return (m.X, m.offsets, m.chosen, m.panel_offsets, m.xi, m.kinds), m.start_values()


class MixedLoglik:
    """Seconds of one ``simulated_loglik`` call (its checks of the arrays
    included), the value alone or with the gradient."""

    params = [["value", "value+grad"], DRAWS, THREADS]
    param_names = ["output", "draws", "threads"]
    timeout = 300

    def setup(self, output: str, draws: int, threads: int) -> None:
        _need()
        from fastscore._mixedlogit import simulated_loglik

        arrays, theta = _problem(draws)
        self.call = functools.partial(simulated_loglik, *arrays, theta,
                                      grad=output == "value+grad", n_threads=threads)

    def time_simulated_loglik(self, output: str, draws: int, threads: int) -> None:
        self.call()


class MixedModel:
    """Peak memory of ``MixedLogit(...)`` on the electricity panel (the data
    frame read in setup)."""

    params = [DRAWS]
    param_names = ["draws"]
    timeout = 300

    def setup(self, draws: int) -> None:
        _need()
        _frame()

    def peakmem_construct(self, draws: int) -> None:
        _model(draws)
