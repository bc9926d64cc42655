"""Command line: ``python -m fastscore bench``, ``info`` and ``example``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _output_path(text: str) -> Path:
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {str(path.parent)!r} does not exist")
    return path


def _loops_command(args) -> int:
    from . import _bench, _loops

    print(f"fastscore {fastscore.__version__} bench --loops on {_bench.cpu_name()}, "
          f"{_bench.default_threads()} threads by default")
    rows, busy = _loops.run(args.quick, contention=True)
    print("\n".join(_loops.format_table(rows, busy)))
    return 0


def _bench_command(args) -> int:
    from . import _bench

    if args.loops:
        return _loops_command(args)

    if args.plot is not None:
        try:
            _bench.require_matplotlib()
        except ImportError as exc:
            print(f"fastscore bench: {exc}", file=sys.stderr)
            return 2
    n_threads = args.threads or _bench.default_threads()
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    torch = _bench.import_torch()
    baselines = _bench.import_baselines()
    with _bench.thread_limits(n_threads, torch, baselines["numba"]) as blas_note:
        env = _bench.environment(n_threads, args.quick, torch, blas_note, baselines)
        rows = _bench.run(dtypes, args.quick, n_threads, torch, baselines=baselines)
        matrix_rows = _bench.run_matrix(dtypes, args.quick, n_threads)
    print("\n".join(_bench.header(env) + [""] + _bench.table(rows)))
    print("\n".join([""] + _bench.matrix_table(matrix_rows)))
    if args.json is not None:
        _bench.write_json(args.json, env, rows)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot is not None:
        _bench.plot(args.plot, env, rows)
        print(f"wrote {args.plot}", file=sys.stderr)
    bad = [f"{row.workload} {row.dtype}" for row in rows if not row.ok]
    bad += [f"matrix {row.workload} {row.op} {row.dtype}" for row in matrix_rows if not row.ok]
    if bad:
        print(f"fastscore bench: results differ from the NumPy reference: {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastscore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser(
        "bench",
        help="time fastscore against NumPy (and PyTorch, Numba, JAX) on the benchmark workloads",
        description="Time fastscore against the NumPy reference (and PyTorch, Numba and JAX, "
        "those installed) on the benchmark workloads, check every result against the reference "
        "and print a table.  Progress goes to stderr.  Exit status 1 if a result differs "
        "from the reference.",
    )
    bench.add_argument("--quick", action="store_true",
                       help="fewer repeats and smaller large batches (about 1.5 minutes)")
    bench.add_argument("--threads", type=_positive_int, metavar="N",
                       help="threads for fastscore, the read pass, NumPy's BLAS, PyTorch and "
                       "Numba (default: what OpenMP allows, see OMP_NUM_THREADS; JAX keeps "
                       "its own)")
    bench.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    bench.add_argument("--loops", action="store_true",
                       help="time whole training loops (REINFORCE, a logit fit) written with "
                       "fastscore, NumPy, PyTorch and Numba (those installed), and the fastscore "
                       "loops with default threads against one thread while a core is busy")
    bench.add_argument("--json", type=_output_path, metavar="FILE",
                       help="also write the numbers to FILE")
    bench.add_argument("--plot", type=_output_path, metavar="FILE.png",
                       help="also draw a speedup chart (needs matplotlib: fastscore[plot])")
    bench.set_defaults(func=_bench_command)
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
