"""The examples run (in a subprocess, as a user runs them) and find what they
should: published estimates, a learned policy, a solved task."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 300) -> str:
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_conditional_logit_reproduces_greene():
    """Greene, Econometric Analysis (5th ed.), Table 21.11: the conditional
    logit of the travel-mode data, estimates and standard errors as published."""
    pytest.importorskip("statsmodels")
    pytest.importorskip("pandas")
    out = run_example("conditional_logit.py")
    rows = {line[:12].strip(): line[12:].split() for line in out.splitlines()[:8]}
    published = {"ASC air": (5.207, 0.779), "ASC train": (3.869, 0.443),
                 "ASC bus": (3.163, 0.450), "GC": (-0.0155, 0.00441),
                 "TTME": (-0.0961, 0.0104), "HINC x air": (0.0133, 0.0103)}
    for name, (est, se) in published.items():
        got_est, got_se = float(rows[name][0]), float(rows[name][1])
        assert got_est == pytest.approx(est, rel=2e-3, abs=5e-5), name
        assert got_se == pytest.approx(se, rel=1e-2), name
    assert "log-likelihood -199.128" in out
    assert "weighted by party size" in out


def test_cartpole_is_solved():
    """CartPole-v1's usual threshold: mean return >= 475 over 100 episodes."""
    pytest.importorskip("gymnasium")
    out = run_example("cartpole_reinforce.py", "--quiet")
    assert "CartPole-v1: solved after" in out, out
