"""`python -m fastscore info` / `example`, how `bench` finds the benchmark
harness, and `fastscore.show_config()`."""
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fastscore
from fastscore import _core
from fastscore.__main__ import load_harness

ROOT = Path(__file__).resolve().parents[1]

# The fastscore this process imported: one from a checkout (built in place,
# or an editable install) is put on the children's path; an installed one
# they find by themselves.
_TREE = Path(fastscore.__file__).resolve().parents[1]
_PATH = [str(_TREE)] if (_TREE / "setup.py").is_file() else []


def run_module(tmp_path, *args, **env):
    # cwd=tmp_path: from the checkout, `-m fastscore` would import the source
    # tree's fastscore/ (no compiled module after a non-editable install).
    path = os.pathsep.join(_PATH + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "fastscore", *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120,
                          env=dict(os.environ, PYTHONPATH=path, **env))


def test_info_runs_and_mentions_openmp(tmp_path):
    proc = run_module(tmp_path, "info")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "openmp" in out.lower()
    assert fastscore.__version__ in out
    # the OpenMP line says what this build has
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("openmp"))
    assert line.split(":", 1)[1].strip() == str(bool(_core.build_info()["openmp"]))


def test_info_matches_show_config(tmp_path, capsys):
    fastscore.show_config()
    printed = capsys.readouterr().out
    proc = run_module(tmp_path, "info")
    keys = lambda text: [ln.split(":", 1)[0].strip() for ln in text.splitlines() if ":" in ln]
    assert keys(printed) == keys(proc.stdout)


def test_show_config_prints(capsys):
    info = fastscore.show_config()
    assert info["openmp"] == _core.build_info()["openmp"]
    out = capsys.readouterr().out
    for key in ("fastscore", "numpy", "openmp", "max_threads", "simd", "cflags"):
        assert any(ln.strip().startswith(key + ":") for ln in out.splitlines()), key
    assert f"openmp: {bool(_core.build_info()['openmp'])}" in out


def test_build_info_dict():
    info = _core.build_info()
    assert isinstance(info, dict)
    assert isinstance(info["openmp"], bool)
    assert isinstance(info["max_threads"], int) and info["max_threads"] >= 1
    assert isinstance(info["simd"], str) and info["simd"]


def test_example_runs(tmp_path):
    proc = run_module(tmp_path, "example", "--batch", "8", "--actions", "40",
                      "--features", "12")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "relative difference" in proc.stdout


def test_no_command_is_an_error(tmp_path):
    proc = run_module(tmp_path)
    assert proc.returncode != 0
    assert "usage" in proc.stderr.lower()


def test_bench_help_comes_from_the_harness(tmp_path):
    proc = run_module(tmp_path, "bench", "--help", FASTSCORE_BENCHMARKS=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m fastscore bench")
    for option in ("--quick", "--threads", "--dtype", "--loops", "--json", "--plot"):
        assert option in proc.stdout


def test_bench_options_are_checked_by_the_harness(tmp_path):
    proc = run_module(tmp_path, "bench", "--threads", "0", FASTSCORE_BENCHMARKS=str(ROOT))
    assert proc.returncode == 2
    assert "expected a positive integer, got 0" in proc.stderr


def test_bench_without_a_harness_says_what_to_do(tmp_path):
    proc = run_module(tmp_path, "bench", "--quick", FASTSCORE_BENCHMARKS=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"FASTSCORE_BENCHMARKS={tmp_path} has no benchmarks/harness/" in proc.stderr


def test_other_commands_take_no_extra_arguments(tmp_path):
    proc = run_module(tmp_path, "info", "--quick")
    assert proc.returncode == 2
    assert "unrecognized arguments: --quick" in proc.stderr


def test_load_harness_is_this_checkouts(monkeypatch):
    monkeypatch.delenv("FASTSCORE_BENCHMARKS", raising=False)
    harness = load_harness(ROOT)
    assert Path(harness.__file__) == ROOT / "benchmarks" / "harness" / "__init__.py"
    assert load_harness(ROOT) is harness
    assert [t.option for t in harness.TABLES][:2] == [None, "--loops"]


def test_load_harness_refuses_another_benchmarks_package(monkeypatch, tmp_path):
    other = types.ModuleType("benchmarks")
    other.__path__ = [str(tmp_path / "benchmarks")]
    monkeypatch.setitem(sys.modules, "benchmarks", other)
    with pytest.raises(LookupError, match="another package named benchmarks"):
        load_harness(ROOT)


def _small_choice_table(monkeypatch):
    """The harness's --choice table with no fits and a small kernel curve."""
    pytest.importorskip("pandas")
    pytest.importorskip("scipy")
    load_harness(ROOT)
    from benchmarks.harness import choice

    monkeypatch.setattr(choice, "ROWS", [])
    monkeypatch.setattr(choice, "MODULES", {"fastscore": "fastscore.choice"})
    monkeypatch.setattr(choice, "front_end", lambda *args: (0.1, 0.1))
    monkeypatch.setattr(choice, "CURVE_DRAWS", (8, 16))
    monkeypatch.setattr(choice, "CURVE_SHARES", (0.5, 1.0))
    monkeypatch.setattr(choice, "CURVE_SHARE_DRAWS", 16)
    monkeypatch.setattr(choice, "PEAK_RUNS", (1, 20_000))
    return choice


def _curve_rows(out):
    section = out.split("mixed logit, one evaluation of the value and gradient")[1]
    lines = section.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("-----")) + 1
    return section, [ln.split() for ln in lines[start:] if ln.strip()][:3]


def test_bench_choice_prints_the_mixed_logit_curve(monkeypatch, capsys):
    """`bench --choice` prints the kernel's curve after its fit table: each
    row's draws, panels, rows, time, floor, ratio and time per (row x draw);
    the panel share's rows are the first panels' rows."""
    _small_choice_table(monkeypatch)
    harness = load_harness(ROOT)
    assert harness.main(["--choice", "--quick", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    section, rows = _curve_rows(out)
    assert "6 normal coefficients" in section and "1 thread," in section
    assert out.index("mixed logit, one evaluation") < out.index("front end:")
    assert [r[:3] for r in rows] == [["8", "361", "17232"], ["16", "361", "17232"],
                                     ["16", "180/361", "8612"]]
    if "floor unavailable" not in section:
        assert "G FMA/s" in section
        for r in rows:
            assert float(r[-2]) > 0  # time / floor
    for r in rows:
        assert float(r[-1]) > 0  # ns per (row x draw)


def test_bench_choice_curve_without_a_c_compiler(monkeypatch):
    """Without a C compiler the curve still prints its times and says that
    the floor is unavailable."""
    import io

    choice = _small_choice_table(monkeypatch)
    from benchmarks.harness import measure

    monkeypatch.setattr(measure, "_compilers", lambda: [])
    assert measure.peak_fma_rates(1, 10) == (
        None, "no C compiler (set CC, or install cc, gcc or clang)")
    buf = io.StringIO()
    result = choice.mixed_curve(repeats=1, threads=1, out=buf)
    section, rows = _curve_rows(buf.getvalue())
    assert "floor unavailable: no C compiler" in section
    assert all(r[-3] == "-" and r[-2] == "-" for r in rows)
    assert [r["floor"] for r in result] == [None] * 3
    # A compiler that fails is no compiler either.
    monkeypatch.setattr(measure, "_compilers", lambda: [["false"]])
    peak, why = measure.peak_fma_rates(1, 10)
    assert peak is None and why.startswith("peak_fma.c did not compile or run (false")
