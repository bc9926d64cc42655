"""The asv suite against a non-editable install, as the README runs it
(`pip install ".[bench]"`, then `asv run --python=same --quick` from the
repository root): each benchmark times the installed fastscore, never the
unbuilt `fastscore/` folder beside `benchmarks/`, and skips where an optional
library is missing.  And such an install's `python -m fastscore bench`, run
elsewhere, says how to reach the harness.

The install goes into a throwaway venv that sees this environment's packages
(asv, Dask, Numba: whatever is installed here) and gets fastscore from a copy
of this checkout without built modules in its `fastscore/`, as a fresh clone
has none; the compiled modules go to the copy's `build/`, so that pip's build
reuses them instead of compiling again.  The quick dry run covers one case
of each kind that reaches beyond the package: the Dask example run as a
script, the harness's loops, the Numba baseline, the mixed logit on the
examples' electricity data, and one plain case.
Skipped without asv.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytest.importorskip("asv")

ROOT = Path(__file__).resolve().parents[1]

#: One case of each kind (asv matches parameterised names with their values).
BENCHMARKS = [
    r"bench_dask\.DaskScaling\.",
    r"bench_loops\.LogitFit\.time_fit",
    r"bench_baselines\.BaselineSpeedup\.track_speedup\('numba', 'score', 'small_batch', "
    r"'float64'\)",
    r"bench_score\.Score\.time_score\('fastscore', 'small', 'float64', 1\)",
    r"bench_mixed\.MixedLoglik\.time_simulated_loglik\('value\+grad', 500, 1\)",
]

#: What a fresh clone lacks (and what is not worth copying).
NOT_CLONED = shutil.ignore_patterns(".git", ".asv", ".ci-venv", ".sanitize", ".hypothesis",
                                    ".pytest_cache", "__pycache__", "*.egg-info", "*.zarr",
                                    "dist", "*.so", "*.pyd")


def _copy_tree(dest: Path) -> None:
    shutil.copytree(ROOT, dest, ignore=NOT_CLONED)
    # This checkout's compiled modules (built in place or under build/, the
    # newer of each) go where pip's build looks for them: setuptools skips an
    # extension whose output there is newer than its sources.  Only those: a
    # stale build/lib's .py files would go into the wheel.
    lib = f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
    built = {}
    for so in [*ROOT.glob("fastscore/*.so"), *ROOT.glob(f"build/{lib}/fastscore/*.so")]:
        if so.name not in built or so.stat().st_mtime > built[so.name].stat().st_mtime:
            built[so.name] = so
    (dest / "build" / lib / "fastscore").mkdir(parents=True, exist_ok=True)
    for name, so in built.items():
        shutil.copy2(so, dest / "build" / lib / "fastscore" / name)


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the throwaway venv, the copy of the checkout, its HOME)."""
    tmp = tmp_path_factory.mktemp("asv-installed")
    tree = tmp / "checkout"
    _copy_tree(tree)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(_run([str(python), "-c", where]).stdout.strip())
    # This environment's packages after the venv's own: a .pth line only adds
    # the folder, it does not run that folder's .pth files (so an editable
    # fastscore there stays out of the way).
    (purelib / "this_environment.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))) + "\n")
    # Modules named in $HIDE_MODULES cannot be imported (nor found) in the venv.
    (purelib / "hide_modules.pth").write_text(
        "import os, sys; [sys.modules.setdefault(m, None) for m in "
        "os.environ.get('HIDE_MODULES', '').split(',') if m]\n")
    # --ignore-installed: pip would otherwise look at this environment's
    # fastscore as one to replace.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed", str(tree)],
         timeout=900)
    home = tmp / "home"  # asv machine writes ~/.asv-machine.json
    home.mkdir()
    return python, tree, home


def test_installed_is_the_one_imported(installed, tmp_path):
    python, tree, _ = installed
    out = _run([str(python), "-c", "import fastscore; print(fastscore.__file__)"],
               cwd=tmp_path).stdout
    assert not Path(out.strip()).is_relative_to(tree)
    assert not any(tree.glob("fastscore/*.so"))  # the copy's own folder cannot be imported


def _asv_dry_run(installed, patterns, hide=()) -> str:
    python, tree, home = installed
    env = dict(os.environ, HOME=str(home), HIDE_MODULES=",".join(hide))
    env.pop("PYTHONPATH", None)
    _run([str(python), "-m", "asv", "machine", "--yes"], cwd=tree, env=env)
    cmd = [str(python), "-m", "asv", "run", "--python=same", "--quick", "--dry-run",
           "--show-stderr"]
    for pattern in patterns:
        cmd += ["-b", pattern]
    out = _run(cmd, cwd=tree, env=env, timeout=1200).stdout
    assert not re.search(r"\bfailed\b", out), out
    return out


def test_asv_quick_dry_run(installed):
    out = _asv_dry_run(installed, BENCHMARKS)
    for name in ("DaskScaling", "LogitFit", "BaselineSpeedup", "Score.time_score",
                 "MixedLoglik.time_simulated_loglik"):
        assert name in out, out


def test_asv_check_finds_no_problems(installed):
    """`asv check` (CI runs it): every module under benchmarks/ is scanned, so
    a helper named like a benchmark (``time_*``) in a script fails it."""
    python, tree, home = installed
    env = dict(os.environ, HOME=str(home))
    env.pop("PYTHONPATH", None)
    _run([str(python), "-m", "asv", "machine", "--yes"], cwd=tree, env=env)
    out = _run([str(python), "-m", "asv", "check", "--python=same"], cwd=tree, env=env,
               timeout=600).stdout
    assert "No problems found" in out, out


def test_asv_skips_the_zarr_example_without_zarr(installed):
    pytest.importorskip("distributed")
    out = _asv_dry_run(installed, [r"bench_dask\.DaskScaling\."], hide=["zarr"])
    line = next(ln for ln in out.splitlines() if "DaskScaling" in ln)
    assert line.split()[-1] == "n/a", out
    assert "pip install zarr" in out, out


def test_bench_elsewhere_says_where_the_harness_is(installed, tmp_path):
    python, tree, _ = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTSCORE_BENCHMARKS")}
    proc = subprocess.run([str(python), "-m", "fastscore", "bench", "--quick"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "pip install -e ." in proc.stderr and "FASTSCORE_BENCHMARKS" in proc.stderr
    proc = _run([str(python), "-m", "fastscore", "bench", "--help"], cwd=tmp_path,
                env=dict(env, FASTSCORE_BENCHMARKS=str(tree)), timeout=120)
    assert "--loops" in proc.stdout
