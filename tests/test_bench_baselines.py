"""The bench's optional Numba and JAX baselines (``benchmarks/baselines.py``):
they agree with the NumPy reference, join the bench only where they apply,
and neither ``import fastscore`` nor the harness imports them.  Nothing here
is timed."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastscore import reference
from fastscore.__main__ import load_harness

ROOT = Path(__file__).resolve().parents[1]
load_harness(ROOT)  # this checkout's benchmarks/, as `python -m fastscore bench` finds it
from benchmarks import baselines  # noqa: E402
from benchmarks.harness import functions, measure  # noqa: E402


def _inputs(rng, masked, shape=(40, 6, 5)):
    b, n, d = shape
    phi = rng.standard_normal(shape)
    theta = rng.standard_normal(d) / np.sqrt(d)
    a = rng.integers(0, n, size=b)
    mask = None
    if masked:
        mask = rng.random((b, n)) < 0.5
        mask[np.arange(b), a] = True
        phi[~mask] = np.nan  # masked rows may hold anything
    return phi, theta, a, mask


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("lib", ["numba", "jax"])
def test_baseline_matches_reference(lib, masked, rng):
    module = pytest.importorskip(lib)
    phi, theta, a, mask = _inputs(rng, masked)
    tau = 0.5
    got = baselines.CALLS[lib](module, "score", phi, theta, a, mask, tau)()
    want = reference.score(phi, theta, a, mask=mask, temperature=tau)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)

    value, grad = baselines.CALLS[lib](module, "loglik", phi, theta, a, mask, tau)()
    want_value, want_grad = reference.loglik(phi, theta, a, mask=mask, temperature=tau,
                                             grad=True)
    assert float(value) == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-10, atol=1e-12)


def test_bench_adds_baselines_where_they_apply():
    modules = {"numba": pytest.importorskip("numba"), "jax": pytest.importorskip("jax")}
    inputs = functions.make_inputs((30, 4, 8), "float32", True, 0.5)
    for func in ("score", "loglik"):
        calls = functions.implementations(inputs, measure.default_threads(), None, func, modules)
        assert {"numba", "jax"} <= set(calls)
        want = calls["numpy"]()
        for lib in ("numba", "jax"):
            error = functions.check_error(func, inputs, calls[lib](), want)
            assert error <= measure.RTOL["float32"]
    for func in ("log_prob", "loglik+hess"):  # not theirs
        assert not {"numba", "jax"} & set(functions.implementations(
            inputs, measure.default_threads(), None, func, modules))
    one_state = functions.make_inputs((4, 8), "float64", False, 1.0)
    ragged = functions.make_inputs((3, 4, 8), "float64", False, 1.0, ragged=True)
    for inp in (one_state, ragged):
        assert not {"numba", "jax"} & set(functions.implementations(
            inp, measure.default_threads(), None, "score", modules))


def _row(seconds, rel_error):
    return functions.Row("tiny states", (8, 4, 8), "float64", False, 1.0, 2048,
                         dict(seconds, read_pass=1e-6), rel_error, 1e-6, 0.0)


def test_table_columns():
    rows = [_row({"numpy": 4e-3, "fastscore": 1e-3}, {"fastscore": 0.0}),
            _row({"numpy": 4e-3, "fastscore": 1e-3, "numba": 2e-3, "jax": 3e-3},
                 {"fastscore": 0.0, "numba": 0.0, "jax": 1.0})]
    head, _, no_baselines, with_baselines = functions.table(rows)
    assert "vs numba" in head and "vs jax" in head
    assert head.index("vs numba") < head.index("vs jax") < head.index("GB/s")
    assert " - " in no_baselines and no_baselines.split()[-1] == "ok"
    assert "2.00x" in with_baselines and "3.00x" in with_baselines
    assert "MISMATCH (jax)" in with_baselines
    env = functions.environment(1, True, None, "note", {"numba": None, "jax": None})
    assert "numba not installed" in functions.header(env)[1]
    assert functions.to_json(env, rows)["results"][1]["speedup_vs_jax"] == pytest.approx(3.0)


def test_import_fastscore_imports_neither():
    code = ("import sys, fastscore; from fastscore.__main__ import load_harness; "
            f"load_harness(__import__('pathlib').Path({str(ROOT)!r})); "
            "import benchmarks.baselines, benchmarks.harness.functions, benchmarks.harness.loops; "
            "print(sorted({'numba', 'jax'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
