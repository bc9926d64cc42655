"""``python -m fastscore bench``: the benchmark tables, one module per table.

The harness is not part of the installed package: ``fastscore/__main__.py``
finds this folder in a source tree (``fastscore.__main__.load_harness``) and
hands ``main`` the arguments after ``bench``.

A table is a module of this package with ``main(args) -> int``: it runs its
workloads, prints its table to stdout (progress to stderr) and returns the
exit status (1 if a result disagrees with its reference).  ``args`` holds the
common options below (``quick``, ``threads``: None for the default, ``dtype``,
``json``, ``plot``); a table uses those that mean something to it.
``measure.py`` has what the tables share: interleaved timing, the load of
other processes, relative errors, ``format_time``.

To add a table, say ``--foo``: write ``foo.py`` with its ``main`` and add
``Table("--foo", "foo", "...help...")`` to ``TABLES``.  The options
of ``TABLES`` exclude each other; none of them runs the first entry.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
from pathlib import Path
from typing import Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Table:
    """One table: the option that selects it, its module here, its help line."""

    option: Optional[str]  # None: the run without a table option
    module: str
    help: str


TABLES: tuple[Table, ...] = (
    Table(None, "functions", "each public function, then fastscore.matrix, against NumPy"),
    Table("--loops", "loops",
          "time whole training loops (REINFORCE, a logit fit) written with fastscore, NumPy, "
          "PyTorch and Numba (those installed), and the fastscore loops with default threads "
          "against one thread while a core is busy"),
    Table("--choice", "choice",
          "fit conditional and mixed logits with fastscore.choice and the peers installed "
          "(xlogit, biogeme, jaxlogit; see --peer-python), each in its own process"),
)


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


def parser() -> argparse.ArgumentParser:
    """The options of ``python -m fastscore bench``."""
    p = argparse.ArgumentParser(
        prog="python -m fastscore bench",
        description="Time fastscore against the NumPy reference (and PyTorch, Numba and JAX, "
        "those installed) on the benchmark workloads, check every result against the reference "
        "and print a table.  Progress goes to stderr.  Exit status 1 if a result differs "
        "from the reference.",
    )
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats and smaller large batches (about 1.5 minutes)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for fastscore, the read pass, NumPy's BLAS, PyTorch and "
                   "Numba (default: what OpenMP allows, see OMP_NUM_THREADS; JAX keeps "
                   "its own)")
    p.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    tables = p.add_mutually_exclusive_group()
    for table in TABLES:
        if table.option is not None:
            tables.add_argument(table.option, dest="table", action="store_const",
                                const=table.module, help=table.help)
    p.set_defaults(table=TABLES[0].module)
    p.add_argument("--peer-python", action="append", metavar="PYTHON",
                   help="with --choice: another interpreter to look for the peers in "
                   "(repeatable; biogeme needs pandas < 3)")
    p.add_argument("--json", type=_output_path, metavar="FILE",
                   help="also write the numbers to FILE")
    p.add_argument("--plot", type=_output_path, metavar="FILE.png",
                   help="also draw a speedup chart (needs matplotlib: fastscore[plot])")
    options = ", ".join(t.option for t in TABLES if t.option is not None)
    p.epilog = f"Without {options}: {TABLES[0].help}."
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the arguments after ``bench`` and run the table they select."""
    args = parser().parse_args(argv)
    return importlib.import_module(f"{__name__}.{args.table}").main(args)
