"""What was built: version, OpenMP, SIMD level, compiler flags."""
from __future__ import annotations

import sys

import numpy as np

from . import _core, _openmp


def build_info() -> dict:
    """The build and runtime facts show_config() prints, as a dict."""
    from . import __version__

    info = {"fastscore": __version__, "python": sys.version.split()[0], "numpy": np.__version__}
    info.update(_core.build_info())
    if info.get("openmp"):
        info["omp_wait"] = _openmp.WAIT
    return info


def show_config() -> dict:
    """Print fastscore's version, whether OpenMP was compiled in, the thread
    count OpenMP allows now, the SIMD level in use and the compiler flags,
    and return them as a dict.

    ``python -m fastscore info`` prints the same.

    Returns
    -------
    dict
        Keys ``fastscore``, ``python``, ``numpy`` (versions), ``openmp``
        (bool), ``max_threads``, ``simd`` (the row kernels the CPU picked),
        ``float64_logits`` (how the compensated products are formed),
        ``cflags`` and, with OpenMP, ``omp_wait`` (how libgomp's threads
        wait between parallel regions: fastscore's spin count, the user's
        setting, or libgomp's default when another library loaded it first).

    Examples
    --------
    >>> import fastscore
    >>> info = fastscore.show_config()  # doctest: +ELLIPSIS
         fastscore: ...
    ...
    >>> info["fastscore"] == fastscore.__version__
    True
    """
    info = build_info()
    for key, value in info.items():
        print(f"{key:>14}: {value}")
    return info
