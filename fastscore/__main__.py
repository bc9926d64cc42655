"""Command line: ``python -m fastscore bench``, ``info`` and ``example``.

``bench`` runs the benchmark harness of a source tree, ``benchmarks/harness/``
(see ``load_harness``); ``info`` and ``example`` need only the package.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

import numpy as np

import fastscore
from fastscore import reference


def _info(args) -> int:
    fastscore.show_config()
    return 0


def _example(args) -> int:
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((args.batch, args.actions, args.features))
    theta = rng.standard_normal(args.features)
    a = rng.integers(0, args.actions, size=args.batch)
    got = fastscore.score(phi, theta, a)
    want = reference.score(phi, theta, a)
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    print(f"score of {args.batch} states x {args.actions} actions x {args.features} features")
    print(f"relative difference to the NumPy reference: {err:.2e}")
    return 0 if err < 1e-10 else 1


#: The root of a fastscore checkout whose benchmark harness ``bench`` runs.
HARNESS_ENV = "FASTSCORE_BENCHMARKS"


def load_harness(root: Optional[Path] = None) -> ModuleType:
    """``benchmarks.harness`` of a fastscore source tree, which the package
    does not ship.

    The tree is ``root``, else ``$FASTSCORE_BENCHMARKS``, else the one this
    fastscore was imported from (an editable install, or a build in place):
    the folder above the package.  The harness then times whichever fastscore
    is imported.  ``benchmarks`` is imported from that folder alone, so the
    checkout's other contents (its unbuilt ``fastscore/`` folder, say) do not
    shadow installed modules.  Raises LookupError saying what to do.
    """
    if root is None and os.environ.get(HARNESS_ENV):
        root = Path(os.environ[HARNESS_ENV])
        where = f"{HARNESS_ENV}={root}"
    elif root is None:
        root = Path(fastscore.__file__).resolve().parent.parent
        where = None
    else:
        where = str(root)
    init = root / "benchmarks" / "harness" / "__init__.py"
    if not init.is_file():
        if where is None:
            raise LookupError(
                f"the benchmark harness is not installed with the package: it is "
                f"benchmarks/harness/ in the fastscore source tree, and this fastscore "
                f"({Path(fastscore.__file__).parent}) was not imported from one. "
                f"Install a checkout with `pip install -e .` (the README's Quick start), or set "
                f"{HARNESS_ENV} to the root of a fastscore checkout to time this install "
                f"with its harness.")
        raise LookupError(f"{where} has no benchmarks/harness/: "
                          f"name the root of a fastscore checkout.")
    package = sys.modules.get("benchmarks")
    if package is None:
        spec = importlib.machinery.PathFinder.find_spec("benchmarks", [str(root)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules["benchmarks"]
            raise
    elif init.parent.parent.resolve() not in [Path(p).resolve() for p in package.__path__]:
        raise LookupError(f"another package named benchmarks is already imported "
                          f"({', '.join(package.__path__)})")
    return importlib.import_module("benchmarks.harness")


def _bench(argv) -> int:
    try:
        harness = load_harness()
    except LookupError as exc:
        print(f"fastscore bench: {exc}", file=sys.stderr)
        return 2
    return harness.main(argv)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastscore",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # The harness parses bench's options (`bench --help` lists them): they go to it unparsed.
    sub.add_parser(
        "bench", add_help=False,
        help="time fastscore against NumPy (and PyTorch, Numba, JAX) on the benchmark workloads "
        "(needs the source tree's benchmarks/)",
    )
    sub.add_parser("info", help="version, OpenMP, SIMD level, compiler flags").set_defaults(
        func=_info
    )
    ex = sub.add_parser("example", help="score a random batch and compare with NumPy")
    ex.add_argument("--batch", type=int, default=1024)
    ex.add_argument("--actions", type=int, default=16)
    ex.add_argument("--features", type=int, default=256)
    ex.set_defaults(func=_example)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
