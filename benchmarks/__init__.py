"""asv benchmarks of fastscore.score against the NumPy reference.

Run with ``asv`` from the repository root (see README, "Benchmarks").  The
suite uses only the public API (``fastscore.score``, ``fastscore.reference``)
so that it runs against any commit of the history.
"""
