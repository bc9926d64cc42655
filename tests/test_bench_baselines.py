"""The bench's optional Numba and JAX baselines (``fastscore._baselines``):
they agree with the NumPy reference, and ``import fastscore`` does not
import them.  Nothing here is timed."""
import subprocess
import sys

import numpy as np
import pytest

from fastscore import _baselines, reference


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
    got = _baselines.CALLS[lib](module, "score", phi, theta, a, mask, tau)()
    want = reference.score(phi, theta, a, mask=mask, temperature=tau)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)

    value, grad = _baselines.CALLS[lib](module, "loglik", phi, theta, a, mask, tau)()
    want_value, want_grad = reference.loglik(phi, theta, a, mask=mask, temperature=tau,
                                             grad=True)
    assert float(value) == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-10, atol=1e-12)


def test_import_fastscore_imports_neither():
    code = ("import sys, fastscore, fastscore._baselines; "
            "print(sorted({'numba', 'jax'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
