"""loglik: its gradient and Hessian are the derivatives of its value
(central finite differences of fastscore's own results), with weights of any
sign, masks and temperatures; the return forms; consistency with score and
log_prob of the same states.

Central differences with step h of a smooth f: error <= h^2/6 max|f'''| +
eps |f| / h.  With |phi| ~ 1, |theta| ~ 1, B <= 20 states, tau >= 0.5 and
h = 1e-5 that is ~1e-9; the tolerance 1e-6 (1 + |derivative|) is far below
the size of a wrong factor (1/tau), a lost weight or a wrong sign (all O(1)).
"""
import numpy as np
import pytest

import fastscore

H = 1e-5


def problem(rng, b, n, d, *, masked, ragged):
    """A batch (padded) or the same rows stacked with offsets (ragged, sizes
    1..n); masked rows hold NaN."""
    phi = rng.standard_normal((b, n, d))
    theta = rng.standard_normal(d) * 0.7
    sizes = rng.integers(1, n + 1, size=b) if ragged else np.full(b, n)
    a = rng.integers(0, sizes)
    mask = None
    if masked:
        mask = rng.random((b, n)) < 0.6
        mask[np.arange(b), a] = True
    if not ragged:
        if masked:
            phi[~mask] = np.nan
        return phi, theta, a, mask, None
    rows = np.concatenate([phi[i, :sizes[i]] for i in range(b)])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    m = None
    if masked:
        m = np.concatenate([mask[i, :sizes[i]] for i in range(b)])
        rows[~m] = np.nan
    return rows, theta, a, m, offsets


CASES = [
    # (weights kind, masked, tau, ragged)
    ("none", False, 1.0, False),
    ("signed", False, 0.5, False),
    ("signed", True, 2.0, False),
    ("positive", True, 0.7, True),
    ("signed", False, 1.3, True),
]


@pytest.mark.parametrize("wkind, masked, tau, ragged", CASES)
def test_gradient_and_hessian_are_derivatives(rng, wkind, masked, tau, ragged):
    b, n, d = 20, 9, 5
    phi, theta, a, mask, offsets = problem(rng, b, n, d, masked=masked, ragged=ragged)
    weights = {"none": None, "signed": rng.uniform(-2, 2, b),
               "positive": rng.uniform(0.1, 3, b)}[wkind]
    kw = dict(weights=weights, mask=mask, temperature=tau, offsets=offsets)
    v, g, hm = fastscore.loglik(phi, theta, a, grad=True, hess=True, **kw)
    fd_g = np.empty(d)
    fd_h = np.empty((d, d))
    for j in range(d):
        e = np.zeros(d)
        e[j] = H
        vp, gp = fastscore.loglik(phi, theta + e, a, grad=True, **kw)
        vm, gm = fastscore.loglik(phi, theta - e, a, grad=True, **kw)
        fd_g[j] = (vp - vm) / (2 * H)
        fd_h[:, j] = (gp - gm) / (2 * H)
    np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hm, fd_h, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(hm, hm.T)
    if weights is None or np.all(weights > 0):
        # a sum of -Cov with positive weights: negative semidefinite
        assert np.linalg.eigvalsh(hm).max() <= 1e-12 * np.abs(hm).max()
    # the derivatives are not trivially small: the check has teeth
    assert np.abs(g).max() > 1e-2 and np.abs(hm).max() > 1e-2


@pytest.mark.parametrize("ragged", [False, True])
def test_consistent_with_score_and_log_prob(rng, ragged):
    """value = sum_b w_b log_prob_b, gradient = sum_b w_b score_b (to rounding)."""
    b, n, d = 30, 7, 4
    phi, theta, a, mask, offsets = problem(rng, b, n, d, masked=True, ragged=ragged)
    w = rng.standard_normal(b)
    kw = dict(mask=mask, temperature=0.9, offsets=offsets)
    v, g = fastscore.loglik(phi, theta, a, weights=w, grad=True, **kw)
    lp = fastscore.log_prob(phi, theta, a, **kw)
    sc = fastscore.score(phi, theta, a, **kw)
    scale = np.abs(w) @ np.abs(lp)
    assert abs(v - w @ lp) <= 1e-14 * scale
    np.testing.assert_allclose(g, w @ sc, rtol=0, atol=1e-14 * (np.abs(w) @ np.abs(sc)).max())
    # unweighted = all-ones weights, bit for bit
    assert fastscore.loglik(phi, theta, a, **kw) == \
        fastscore.loglik(phi, theta, a, weights=np.ones(b), **kw)
    # zero weights: exactly 0
    v0, g0, h0 = fastscore.loglik(phi, theta, a, weights=np.zeros(b), grad=True, hess=True,
                                  **kw)
    assert v0 == 0 and not np.any(g0) and not np.any(h0)


def test_return_forms(rng):
    phi = rng.standard_normal((6, 5, 3))
    theta = rng.standard_normal(3)
    a = rng.integers(0, 5, size=6)
    v = fastscore.loglik(phi, theta, a)
    assert isinstance(v, float)
    v2, g = fastscore.loglik(phi, theta, a, grad=True)
    v3, hm = fastscore.loglik(phi, theta, a, hess=True)
    v4, g4, h4 = fastscore.loglik(phi, theta, a, grad=True, hess=True)
    assert v == v2 == v3 == v4
    assert g.shape == (3,) and hm.shape == (3, 3)
    assert g.tobytes() == g4.tobytes() and hm.tobytes() == h4.tobytes()
    # float32 input: float64 results
    v5, g5, h5 = fastscore.loglik(phi.astype(np.float32), theta.astype(np.float32), a,
                                  grad=True, hess=True)
    assert type(v5) is float and g5.dtype == np.float64 and h5.dtype == np.float64
    # one state (2-D phi, int action)
    v6, g6 = fastscore.loglik(phi[0], theta, int(a[0]), grad=True)
    assert v6 == fastscore.log_prob(phi[0], theta, int(a[0]))
    assert g6.tobytes() == fastscore.score(phi[0], theta, int(a[0])).tobytes()


def test_scipy_style_newton_step_recovers_parameters(rng):
    """A conditional-logit fit with Newton steps from (value, grad, hess)
    recovers the generating theta (the documented use)."""
    b, n, d = 3000, 4, 3
    theta0 = np.array([1.0, -0.5, 0.25])
    phi = rng.standard_normal((b, n, d))
    z = phi @ theta0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    a = (p.cumsum(axis=1) > rng.random((b, 1))).argmax(axis=1)
    theta = np.zeros(d)
    for _ in range(8):
        v, g, hm = fastscore.loglik(phi, theta, a, grad=True, hess=True)
        theta = theta - np.linalg.solve(hm, g)
    assert np.abs(fastscore.loglik(phi, theta, a, grad=True)[1]).max() < 1e-8
    se = np.sqrt(np.diag(np.linalg.inv(-hm)))
    assert np.all(np.abs(theta - theta0) < 5 * se)
