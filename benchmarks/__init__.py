"""fastscore's benchmarks: the asv suite and the harness of ``python -m fastscore bench``.

The ``bench_*.py`` files are the asv suite (run with ``asv`` from the
repository root, see README, "Benchmarks"); they time the installed fastscore
through its public API (plus ``fastscore._core.read_pass``), so that they run
against any commit of the history, and skip (NotImplementedError in
``setup``) where a commit or an optional library lacks what they need.
``harness/`` holds the tables of ``python -m fastscore bench``, and
``baselines.py`` the Numba and JAX code both use.
"""
