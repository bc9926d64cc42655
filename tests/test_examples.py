"""The examples run (in a subprocess, as a user runs them) and find what they
should: published estimates, a learned policy, a solved task."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 300) -> str:
    # The checkout's fastscore (built in place), as the docs' examples import
    # it, not another installed copy.
    path = os.pathsep.join(filter(None, [str(EXAMPLES.parent), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_conditional_logit_reproduces_published_tables():
    """Greene, Econometric Analysis (5th ed.), Table 21.11: the conditional
    logit of the travel-mode data, estimates and standard errors as published;
    the electricity data's log-likelihood as mlogit and xlogit publish it."""
    pytest.importorskip("statsmodels")
    pytest.importorskip("pandas")
    out = run_example("conditional_logit.py")
    travel, rest = out.split("The same, each traveller weighted by party size")
    rows = {line.split()[0]: line.split()[1:] for line in travel.splitlines()
            if line and line.split()[0] in ("gc", "ttme", "hinc_air", "asc.air", "asc.train",
                                             "asc.bus")}
    published = {"asc.air": (5.207, 0.779), "asc.train": (3.869, 0.443),
                 "asc.bus": (3.163, 0.450), "gc": (-0.0155, 0.00441),
                 "ttme": (-0.0961, 0.0104), "hinc_air": (0.0133, 0.0103)}
    for name, (est, se) in published.items():
        got_est, got_se = float(rows[name][0]), float(rows[name][1])
        assert got_est == pytest.approx(est, rel=2e-3, abs=5e-5), name
        assert got_se == pytest.approx(se, rel=1e-2), name
    assert "-199.1284" in travel
    assert "-4958.6491" in rest and "clustered by 'id' (361 clusters)" in rest


def test_mixed_logit_example():
    """The electricity panel's mixed logit far above the conditional logit's
    -4958.6 (xlogit: -3891.7 at 500 draws; 100 draws simulate it biased low),
    every fit converged, the posterior summary printed."""
    pytest.importorskip("pandas")
    pytest.importorskip("scipy")
    out = run_example("mixed_logit.py", "--draws", "100")
    elec, fishing = out.split("Fishing mode")
    ll = float(elec.split("Log-likelihood")[1].split()[0])
    assert -4000 < ll < -3880
    assert out.count("Converged") == 2 and "NO (" not in out
    assert "conditional mean price coefficient: mean -" in elec
    # The published fit beside ours: xlogit's README, every parameter and the
    # log-likelihood.
    table = elec.split("Against xlogit README")[1].split("Each person's")[0]
    assert [ln.split()[0] for ln in table.splitlines()[2:] if ln.strip()] == [
        "pf", "cl", "loc", "wk", "tod", "seas", "sd.pf", "sd.cl", "sd.loc", "sd.wk", "sd.tod",
        "sd.seas", "log-lik."]
    assert "-3888.413" in table and "-0.9996" in table
    assert "sd.catch" in fishing


def test_cartpole_is_solved():
    """CartPole-v1's usual threshold: mean return >= 475 over 100 episodes."""
    pytest.importorskip("gymnasium")
    out = run_example("cartpole_reinforce.py", "--quiet")
    assert "CartPole-v1: solved after" in out, out


def test_digits_bandit_learns(tmp_path):
    """REINFORCE on the digits bandit: far above chance (0.1) on held-out images,
    and the learning curve is saved as a PNG."""
    pytest.importorskip("sklearn")
    pytest.importorskip("scipy")
    plot = tmp_path / "curve.png"
    args = ["--quiet"] + (["--plot", str(plot)] if _has("matplotlib") else [])
    out = run_example("digits_bandit.py", *args)
    acc = float(out.split("held-out accuracy ")[1].split()[0])
    assert acc > 0.85, out
    if _has("matplotlib"):
        assert plot.stat().st_size > 1000


def test_reinforce_torch_learns():
    """REINFORCE with a torch network and optimiser through fastscore.torch:
    from near chance (0.3) to most of the way to the best policy (0.9)."""
    pytest.importorskip("torch")
    out = run_example("reinforce_torch.py", "--quiet")
    first, last = (float(out.split(f"{w} 100 steps ")[1].split()[0].rstrip(","))
                   for w in ("first", "last"))
    assert last > 0.75 and last > first + 0.25, out


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True
