"""Command line: ``python -m fastscore info`` and ``python -m fastscore example``."""
from __future__ import annotations

import argparse
import sys

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastscore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, OpenMP, SIMD level, compiler flags").set_defaults(
        func=_info
    )
    ex = sub.add_parser("example", help="score a random batch and compare with NumPy")
    ex.add_argument("--batch", type=int, default=1024)
    ex.add_argument("--actions", type=int, default=16)
    ex.add_argument("--features", type=int, default=256)
    ex.set_defaults(func=_example)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
