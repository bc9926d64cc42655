"""`python -m fastscore info` / `example` and `fastscore.show_config()`."""
import subprocess
import sys

import fastscore
from fastscore import _core


def run_module(tmp_path, *args):
    # cwd=tmp_path: from the checkout, `-m fastscore` would import the source
    # tree's fastscore/ (no compiled module after a non-editable install).
    return subprocess.run([sys.executable, "-m", "fastscore", *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)


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
