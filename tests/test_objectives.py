"""The policy-gradient objectives of the phi form: entropy(grad=True), kl,
loglik(entropy_weight=) and sample(score=True), against the mpmath oracle
(tests/fs_oracle.py), finite differences and the existing functions."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastscore
import fs_oracle as O


def rel(got, want):
    got, want = np.asarray(got, float), np.asarray(want, float)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def case(seed, B=4, N=7, d=5, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng, rng.standard_normal((B, N, d)), scale * rng.standard_normal(d)


@pytest.mark.parametrize("tau", [1.0, 0.6])
@pytest.mark.parametrize("masked", [False, True])
def test_entropy_grad_oracle(tau, masked):
    rng, phi, th = case(1)
    mask = None
    if masked:
        mask = rng.random(phi.shape[:2]) < 0.6
        mask[:, 2] = True
        phi = phi.copy()
        phi[~mask] = np.nan  # masked rows are never read
    H, g = fastscore.entropy(phi, th, grad=True, mask=mask, temperature=tau)
    Hw, gw = O.entropy_grad(np.nan_to_num(phi), th, mask=mask, temperature=tau)
    assert rel(H, Hw) < 1e-12 and rel(g, gw) < 1e-10
    assert np.array_equal(H, fastscore.entropy(phi, th, mask=mask, temperature=tau))
    assert np.isfinite(g).all()


@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_kl_oracle(tau):
    rng, phi, th = case(2)
    th2 = th + 0.5 * rng.standard_normal(th.size)
    k, g = fastscore.kl(phi, th, th2, grad=True, temperature=tau)
    kw, gw = O.kl(phi, th, th2, temperature=tau)
    assert rel(k, kw) < 1e-12 and rel(g, gw) < 1e-10
    assert np.array_equal(k, fastscore.kl(phi, th, th2, temperature=tau))


def test_nearly_deterministic_entropy_keeps_relative_accuracy():
    rng, phi, th = case(3, B=3, N=6, d=4)
    th = 30.0 * th / np.abs(th).sum() * 4  # logits tens apart: H ~ 1e-10 or below
    H, g = fastscore.entropy(phi, th, grad=True)
    Hw, gw = O.entropy_grad(phi, th)
    assert (Hw < 1e-4).all()
    for b in range(3):
        assert abs(H[b] / Hw[b] - 1) < 1e-12
        assert np.max(np.abs(g[b] - gw[b])) / np.max(np.abs(gw[b])) < 1e-10


def test_kl_of_nearly_equal_policies_keeps_relative_accuracy():
    rng, phi, th = case(4)
    th2 = th + 1e-7 * rng.standard_normal(th.size)
    k, g = fastscore.kl(phi, th, th2, grad=True)
    kw, gw = O.kl(phi, th, th2)
    assert (kw < 1e-12).all()
    assert np.max(np.abs(k / kw - 1)) < 1e-10
    assert rel(g, gw) < 1e-8
    assert fastscore.kl(phi, th, th).tolist() == [0.0] * 4


def central_fd(f, th, eps=1e-6):
    return np.array([(f(th + eps * e) - f(th - eps * e)) / (2 * eps) for e in np.eye(th.size)])


def test_finite_differences():
    rng, phi, th = case(5, B=3)
    th2 = th + 0.4 * rng.standard_normal(th.size)
    a = rng.integers(0, 7, 3)
    w = rng.standard_normal(3)
    _, g = fastscore.entropy(phi, th, grad=True)
    fd = central_fd(lambda t: fastscore.entropy(phi, t).sum(), th)
    assert rel(g.sum(0), fd) < 1e-7
    _, g = fastscore.kl(phi, th, th2, grad=True)
    fd = central_fd(lambda t: fastscore.kl(phi, th, t).sum(), th2)
    assert rel(g.sum(0), fd) < 1e-7
    _, g = fastscore.loglik(phi, th, a, weights=w, grad=True, entropy_weight=0.3)
    fd = central_fd(lambda t: fastscore.loglik(phi, t, a, weights=w, entropy_weight=0.3), th)
    assert rel(g, fd) < 1e-7


def test_loglik_entropy_weight():
    rng, phi, th = case(6, B=40)
    a = rng.integers(0, 7, 40)
    w = rng.standard_normal(40)
    v, g = fastscore.loglik(phi, th, a, weights=w, grad=True, entropy_weight=-0.25)
    v0, g0 = fastscore.loglik(phi, th, a, weights=w, grad=True)
    H, dH = fastscore.entropy(phi, th, grad=True)
    assert abs(v - (v0 - 0.25 * H.sum())) < 1e-12 * abs(v0)
    assert rel(g, g0 - 0.25 * dH.sum(0)) < 1e-13
    assert fastscore.loglik(phi, th, a, weights=w, entropy_weight=-0.25) == v
    # entropy_weight=0: today's bits
    for kw in ({}, {"grad": True}, {"grad": True, "hess": True}):
        r0 = fastscore.loglik(phi, th, a, weights=w, entropy_weight=0, **kw)
        r1 = fastscore.loglik(phi, th, a, weights=w, **kw)
        r0, r1 = (r0, r1) if kw else ((r0,), (r1,))
        assert all(np.array_equal(x, y) for x, y in zip(r0, r1))


def test_masked_equals_legal_rows_only():
    rng, phi, th = case(7, B=1, N=8)
    mask = np.array([True, False, True, True, False, True, True, True])
    th2 = th + 0.3 * rng.standard_normal(th.size)
    bad = phi[0].copy()
    bad[~mask] = np.nan
    sub = phi[0][mask]
    for f, args in [(fastscore.entropy, (th,)), (fastscore.kl, (th, th2))]:
        v, g = f(bad, *args, mask=mask, grad=True)
        vs, gs = f(sub, *args, grad=True)
        assert np.isfinite(g).all()
        assert abs(v - vs) <= 1e-15 * abs(vs) + 1e-300 and rel(g, gs) < 1e-14


def test_ragged_and_threads():
    rng = np.random.default_rng(8)
    sizes = rng.integers(1, 40, 300)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    phi = rng.standard_normal((offsets[-1], 6))
    th = rng.standard_normal(6)
    th2 = th + 0.2 * rng.standard_normal(6)
    a = np.array([rng.integers(0, s) for s in sizes])
    res = {}
    for n in (1, 2, 3):
        res[n] = (fastscore.entropy(phi, th, offsets=offsets, grad=True, n_threads=n),
                  fastscore.kl(phi, th, th2, offsets=offsets, grad=True, n_threads=n),
                  fastscore.loglik(phi, th, a, offsets=offsets, grad=True, entropy_weight=0.1,
                                   n_threads=n),
                  fastscore.sample(phi, th, offsets=offsets, seed=5, score=True, n_threads=n))
    for n in (2, 3):
        for x, y in zip(res[1], res[n]):
            for u, v in zip(x, y):
                assert np.array_equal(u, v)
    # the first 5 states against the oracle
    Hw, gw = O.entropy_grad(phi, th, offsets=offsets[:6])
    H, g = res[1][0]
    assert rel(H[:5], Hw) < 1e-12 and rel(g[:5], gw) < 1e-10
    kw, gw = O.kl(phi, th, th2, offsets=offsets[:6])
    k, g = res[1][1]
    assert rel(k[:5], kw) < 1e-12 and rel(g[:5], gw) < 1e-10


def test_wide_state_threads():
    rng = np.random.default_rng(9)
    phi = rng.standard_normal((2, 5000, 3))
    th = rng.standard_normal(3)
    r1 = fastscore.kl(phi, th, 1.1 * th, grad=True, n_threads=1)
    r2 = fastscore.kl(phi, th, 1.1 * th, grad=True, n_threads=2)
    assert all(np.array_equal(x, y) for x, y in zip(r1, r2))
    e1 = fastscore.entropy(phi, th, grad=True, n_threads=1)
    e2 = fastscore.entropy(phi, th, grad=True, n_threads=2)
    assert all(np.array_equal(x, y) for x, y in zip(e1, e2))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(1, 70),
       st.sampled_from([np.float64, np.float32]), st.booleans())
def test_sample_score_bitwise(seed, N, d, dtype, batch):
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((6, N, d) if batch else (N, d)).astype(dtype)
    th = rng.standard_normal(d).astype(dtype)
    a, lp, s = fastscore.sample(phi, th, seed=seed, score=True, temperature=0.8)
    a0, lp0 = fastscore.sample(phi, th, seed=seed, temperature=0.8)
    assert np.array_equal(a, a0) and np.array_equal(lp, lp0)
    want = fastscore.score(phi, th, a, temperature=0.8)
    assert s.dtype == want.dtype and np.array_equal(s, want)


def test_float32():
    rng, phi, th = case(10)
    th2 = th + 0.3 * rng.standard_normal(th.size)
    p32, t32, u32 = phi.astype(np.float32), th.astype(np.float32), th2.astype(np.float32)
    H, g = fastscore.entropy(p32, t32, grad=True)
    assert H.dtype == g.dtype == np.float32
    Hw, gw = O.entropy_grad(p32, t32)
    assert rel(H, Hw) < 1e-5 and rel(g, gw) < 1e-4
    k, g = fastscore.kl(p32, t32, u32, grad=True)
    assert k.dtype == g.dtype == np.float32
    kw, gw = O.kl(p32, t32, u32)
    assert rel(k, kw) < 1e-4 and rel(g, gw) < 1e-4
    k, g = fastscore.kl(p32, t32, th2, grad=True)  # float64 theta: float64 results
    assert k.dtype == g.dtype == np.float64


def test_out_arrays():
    rng, phi, th = case(11)
    oh, og = np.empty(4), np.empty((4, 5))
    H, g = fastscore.entropy(phi, th, grad=True, out=(oh, og))
    assert H is oh and g is og
    k, g = fastscore.kl(phi, th, th, grad=True, out=(None, og))
    assert g is og
    with pytest.raises(TypeError, match="out must be a pair"):
        fastscore.entropy(phi, th, grad=True, out=oh)


def test_bad_inputs():
    rng, phi, th = case(12)
    a = np.zeros(4, dtype=np.intp)
    with pytest.raises(ValueError, match="theta_ref contains NaN"):
        fastscore.kl(phi, np.full(5, np.nan), th)
    with pytest.raises(ValueError, match=r"theta contains NaN or inf \(theta\[1\]\)"):
        fastscore.kl(phi, th, np.array([0, np.inf, 0, 0, 0.0]))
    with pytest.raises(ValueError, match="same shape"):
        fastscore.kl(phi, th, th[:3])
    with pytest.raises(ValueError, match="theta must have shape"):
        fastscore.kl(phi, th[:3], th[:3])
    with pytest.raises(TypeError, match="theta must be real"):
        fastscore.kl(phi, th, th.astype(complex))
    with pytest.raises(ValueError, match="entropy_weight must be finite"):
        fastscore.loglik(phi, th, a, entropy_weight=np.nan)
    with pytest.raises(TypeError, match="entropy_weight must be a real number"):
        fastscore.loglik(phi, th, a, entropy_weight="0.1")
    with pytest.raises(ValueError, match="hess=True with entropy_weight"):
        fastscore.loglik(phi, th, a, hess=True, entropy_weight=0.1)
    with pytest.raises(ValueError, match="phi must be 2-D"):
        fastscore.entropy(phi[0, 0], th, grad=True)


def test_kl_of_policies_too_far_apart_is_refused():
    """theta_ref = 1e10 theta: the difference form would cancel (an exponent
    off by ~1e-6, found by the fuzzer at 1e30), so the call refuses, naming
    both parameters; a moderate distance is still answered."""
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((2100, 32))
    theta = rng.standard_normal(32)
    for scale in (1e10, 1e30):
        with pytest.raises(ValueError, match="theta_ref and theta are too far apart"):
            fastscore.kl(phi, scale * theta, theta)
    z_ref, z = phi @ (10 * theta), phi @ theta
    lr = z_ref - z_ref.max() - np.log(np.exp(z_ref - z_ref.max()).sum())
    lp = z - z.max() - np.log(np.exp(z - z.max()).sum())
    want = float((np.exp(lr) * (lr - lp)).sum())
    assert abs(fastscore.kl(phi, 10 * theta, theta) - want) <= 1e-11 * want
