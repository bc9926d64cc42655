"""The actor objectives of the state-input form: sample(score=True).

The score of the drawn action must be bitwise what score() returns for it,
and the draws bitwise what sample() returns without it; the score itself is
checked against a longdouble reference written here."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastscore.matrix as fm


def _eq(x, y):
    if isinstance(x, tuple):
        return len(x) == len(y) and all(_eq(u, v) for u, v in zip(x, y))
    return np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)


def _score_ld(s, W, a, b, mask, tau):
    """outer(s, e_a - pi) / tau in longdouble (s, W rounded exactly)."""
    s = np.asarray(s, np.longdouble)
    z = s @ np.asarray(W, np.longdouble)
    if b is not None:
        z = z + np.asarray(b, np.longdouble)
    z = z / np.longdouble(tau)
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p = p / p.sum(axis=-1, keepdims=True)
    e = np.zeros_like(p)
    np.put_along_axis(e.reshape(-1, p.shape[-1]), np.asarray(a).reshape(-1, 1), 1, axis=1)
    r = (e - p) / np.longdouble(tau)
    return s[..., :, None] * r[..., None, :], r


def _check(s, W, b=None, mask=None, tau=1.0, seed=5, n_threads=None):
    kw = dict(b=b, mask=mask, temperature=tau, seed=seed, n_threads=n_threads)
    a0, lp0 = fm.sample(s, W, **kw)
    a, lp, g = fm.sample(s, W, score=True, **kw)
    assert _eq(a, a0) and _eq(lp, lp0)
    assert _eq(g, fm.score(s, W, a, b=b, mask=mask, temperature=tau))
    return a, lp, g


@pytest.mark.parametrize("B", [None, 7, 3000])
@pytest.mark.parametrize("with_b", [False, True])
def test_sample_score_bitwise_and_accurate(rng, B, with_b):
    k, n = 64, 10
    s = rng.standard_normal((B, k) if B else k)
    W = 0.3 * rng.standard_normal((k, n))
    b = rng.standard_normal(n) if with_b else None
    a, lp, g = _check(s, W, b)
    gw_ref, gb_ref = _score_ld(s, W, a, b, None, 1.0)
    gw = g[0] if with_b else g
    assert gw.shape == ((B, k, n) if B else (k, n))
    err = np.max(np.abs(gw - gw_ref)) / np.max(np.abs(gw_ref))
    assert err < 1e-12
    if with_b:
        assert np.max(np.abs(g[1] - gb_ref)) / np.max(np.abs(gb_ref)) < 1e-12


def test_sample_score_mask_temperature_float32(rng):
    k, n, B = 5, 6, 2000
    s = rng.standard_normal((B, k))
    W = rng.standard_normal((k, n))
    mask = rng.random((B, n)) < 0.6
    mask[:, 2] = True
    a, _, g = _check(s, W, rng.standard_normal(n), mask=mask, tau=0.7)
    assert np.all(mask[np.arange(B), a])
    gw, gb = g
    assert np.all(np.isfinite(gw)) and np.all(gb[~mask] == 0.0)
    assert np.all(gw.transpose(0, 2, 1)[~mask] == 0.0)
    a32, lp32, g32 = _check(s.astype(np.float32), W.astype(np.float32), tau=0.7)
    assert g32.dtype == np.float32 and lp32.dtype == np.float32


def test_sample_score_threads_bitwise(rng):
    s = rng.standard_normal((5000, 16))
    W = rng.standard_normal((16, 8))
    runs = [fm.sample(s, W, seed=11, score=True, n_threads=t) for t in (1, 2, 3)]
    for r in runs[1:]:
        assert _eq(r, runs[0])
    _check(s, W, n_threads=3)


def test_sample_score_one_state_types(rng):
    s, W = rng.standard_normal(4), rng.standard_normal((4, 3))
    a, lp, g = fm.sample(s, W, seed=2, score=True)
    assert isinstance(a, int) and np.ndim(lp) == 0 and g.shape == (4, 3)
    assert len(fm.sample(s, W, seed=2)) == 2


def test_sample_score_bad_inputs(rng):
    W = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="s must be"):
        fm.sample(np.ones((2, 2, 4)), W, score=True)
    with pytest.raises(ValueError, match="W contains NaN"):
        fm.sample(np.ones(4), np.full((4, 3), np.nan), score=True)
    with pytest.raises(ValueError):
        fm.sample(np.ones(4), W, mask=np.zeros(3, bool), score=True)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 300), k=st.integers(1, 12), n=st.integers(1, 9),
       scale=st.sampled_from([0.1, 1.0, 30.0]), tau=st.sampled_from([0.5, 1.0, 3.0]),
       seed=st.integers(0, 2**32 - 1), with_b=st.booleans())
def test_sample_score_property(B, k, n, scale, tau, seed, with_b):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((B, k))
    W = scale * rng.standard_normal((k, n))
    b = rng.standard_normal(n) if with_b else None
    a, _, g = _check(s, W, b, tau=tau, seed=seed)
    # Each state's score sums to zero over the actions (e_a - pi sums to 0).
    gw = g[0] if with_b else g
    assert np.all(np.abs(gw.sum(axis=2)) <= 1e-12 * (1 + np.abs(s)) * n / tau + 1e-300)


# ---------------------------------------------------------------------------
# entropy(grad=True)

def _entropy_grad_ld(s, W, b, mask, tau):
    """dH/dW, dH/db in longdouble: c = -pi (log pi + H), masked c = 0."""
    s = np.asarray(s, np.longdouble)
    z = s @ np.asarray(W, np.longdouble)
    if b is not None:
        z = z + np.asarray(b, np.longdouble)
    z = z / np.longdouble(tau)
    legal = np.ones(z.shape, bool) if mask is None else np.broadcast_to(mask, z.shape)
    z = np.where(legal, z, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=-1, keepdims=True)
    logp = np.where(legal, z - np.log(e.sum(axis=-1, keepdims=True)), 0)
    H = -(np.where(legal, p * logp, 0)).sum(axis=-1)
    c = np.where(legal, -p * (logp + H[..., None]), 0) / np.longdouble(tau)
    return H, s[..., :, None] * c[..., None, :], c


def _rel(got, want):
    return float(np.max(np.abs(np.asarray(got, np.longdouble) - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("B", [None, 9, 3000])
@pytest.mark.parametrize("with_b", [False, True])
def test_entropy_grad_oracle_and_bits(rng, B, with_b):
    k, n = 20, 7
    s = rng.standard_normal((B, k) if B else k)
    W = 0.5 * rng.standard_normal((k, n))
    b = rng.standard_normal(n) if with_b else None
    H, g = fm.entropy(s, W, b=b, temperature=0.8, grad=True)
    assert _eq(H, fm.entropy(s, W, b=b, temperature=0.8))
    H_ld, gw_ld, gb_ld = _entropy_grad_ld(s, W, b, None, 0.8)
    gw = g[0] if with_b else g
    assert gw.shape == ((B, k, n) if B else (k, n))
    assert _rel(gw, gw_ld) < 1e-10
    if with_b:
        assert _rel(g[1], gb_ld) < 1e-10


def test_entropy_grad_finite_differences(rng):
    k, n = 6, 5
    s = rng.standard_normal(k)
    W = rng.standard_normal((k, n))
    b = rng.standard_normal(n)
    _, (gw, gb) = fm.entropy(s, W, b=b, grad=True)
    h = 1e-6
    for c, j in [(0, 0), (2, 3), (5, 4)]:
        Wp, Wm = W.copy(), W.copy()
        Wp[c, j] += h
        Wm[c, j] -= h
        fd = (fm.entropy(s, Wp, b=b) - fm.entropy(s, Wm, b=b)) / (2 * h)
        assert abs(fd - gw[c, j]) < 1e-7
    for j in range(n):
        bp, bm = b.copy(), b.copy()
        bp[j] += h
        bm[j] -= h
        assert abs((fm.entropy(s, W, b=bp) - fm.entropy(s, W, b=bm)) / (2 * h) - gb[j]) < 1e-7


def test_entropy_grad_nearly_deterministic(rng):
    # pi_max = 1 - O(e^-30): the gradient is tiny and must keep its digits.
    k, n = 4, 5
    s = rng.standard_normal(k)
    W = rng.standard_normal((k, n))
    b = np.zeros(n)
    b[1] = 40.0
    _, (gw, gb) = fm.entropy(s, W, b=b, grad=True)
    _, gw_ld, gb_ld = _entropy_grad_ld(s, W, b, None, 1.0)
    assert np.max(np.abs(gb)) < 1e-10
    nz = gb_ld != 0
    assert np.max(np.abs((gb[nz] - gb_ld[nz]) / gb_ld[nz])) < 1e-10


def test_entropy_grad_mask_threads_float32(rng):
    B, k, n = 4000, 8, 6
    s = rng.standard_normal((B, k))
    W = rng.standard_normal((k, n))
    mask = rng.random((B, n)) < 0.5
    mask[:, 0] = True
    runs = [fm.entropy(s, W, mask=mask, grad=True, n_threads=t) for t in (1, 2, 3)]
    for r in runs[1:]:
        assert _eq(r, runs[0])
    H, g = runs[0]
    assert np.all(np.isfinite(g)) and np.all(g.transpose(0, 2, 1)[~mask] == 0.0)
    _, gw_ld, _ = _entropy_grad_ld(s, W, None, mask, 1.0)
    assert _rel(g, gw_ld) < 1e-10
    H32, g32 = fm.entropy(s.astype(np.float32), W.astype(np.float32), grad=True)
    assert g32.dtype == np.float32 and H32.dtype == np.float32
    _, gw_ld32, _ = _entropy_grad_ld(s.astype(np.float32), W.astype(np.float32), None, None, 1.0)
    assert _rel(g32, gw_ld32) < 1e-5


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 200), k=st.integers(1, 10), n=st.integers(1, 8),
       scale=st.sampled_from([0.1, 1.0, 10.0]), tau=st.sampled_from([0.5, 1.0, 2.0]),
       seed=st.integers(0, 2**32 - 1))
def test_entropy_grad_property(B, k, n, scale, tau, seed):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((B, k))
    W = scale * rng.standard_normal((k, n))
    b = rng.standard_normal(n)
    H, (gw, gb) = fm.entropy(s, W, b=b, temperature=tau, grad=True)
    assert _eq(H, fm.entropy(s, W, b=b, temperature=tau))
    _, gw_ld, gb_ld = _entropy_grad_ld(s, W, b, None, tau)
    # Absolute to the scale of the largest pi |log pi| / tau term.
    assert np.max(np.abs(gb - gb_ld)) <= 1e-12 * (np.log(n + 1) + 1) / tau
    # sum_j dH/dz_j = 0: the entropy is invariant to shifting every logit.
    assert np.all(np.abs(gb.sum(axis=1)) <= 1e-12 * (np.log(n + 1) + 1) * n / tau)


def test_entropy_grad_bad_inputs(rng):
    W = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="W contains NaN"):
        fm.entropy(np.ones((3000, 4)), np.full((4, 3), np.nan), grad=True)
    with pytest.raises(ValueError, match="b must have shape"):
        fm.entropy(np.ones(4), W, b=np.ones(2), grad=True)
    with pytest.raises(ValueError, match="s contains NaN|NaN"):
        fm.entropy(np.full((3000, 4), np.nan), W, grad=True)


def test_reference_entropy_grad_agrees(rng):
    from fastscore import reference
    s = rng.standard_normal((50, 5))
    W = rng.standard_normal((5, 4))
    b = rng.standard_normal(4)
    H, (gw, gb) = fm.entropy(s, W, b=b, grad=True)
    Hr, (gwr, gbr) = reference.matrix_entropy_grad(s, W, b=b)
    np.testing.assert_allclose(H, Hr, rtol=1e-12)
    np.testing.assert_allclose(gw, gwr, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(gb, gbr, rtol=1e-9, atol=1e-14)


# ---------------------------------------------------------------------------
# loglik(entropy_weight=): the A2C actor objective in one pass.

def _ld_actor_objective(s, W, a, b, w, beta, mask, tau):
    """sum w log pi(a) + beta sum H and its gradient, in longdouble."""
    LDT = np.longdouble
    s, W = s.astype(LDT), W.astype(LDT)
    z = (s @ W + b.astype(LDT)) / LDT(tau)
    z = np.where(mask, z, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    # log l = log1p(the other actions' weights): log(sum) would lose the
    # digits of a nearly deterministic state's log pi and entropy.
    others = e.copy()
    others[np.arange(len(a)), np.argmax(z, axis=1)] = 0
    logl = np.log1p(others.sum(axis=1, keepdims=True))
    pi = e / e.sum(axis=1, keepdims=True)
    logpi = np.where(mask, z - logl, 0)
    H = -(pi * logpi).sum(axis=1)
    rows = np.arange(len(a))
    value = (w.astype(LDT) * logpi[rows, a]).sum() + LDT(beta) * H.sum()
    R = -pi * w.astype(LDT)[:, None]
    R[rows, a] += w.astype(LDT)
    R += LDT(beta) * (-pi * (logpi + H[:, None]))
    R /= LDT(tau)
    return value, s.T @ R, R.sum(axis=0)


@pytest.mark.parametrize("batch", [1, 9, 3000])      # one state, per-state, BLAS blocks
@pytest.mark.parametrize("scale", [0.1, 3.0])        # plain and split block logits
def test_loglik_entropy_weight_against_longdouble(batch, scale):
    rng = np.random.default_rng(batch + int(10 * scale))
    k, n = 64, 10
    s = rng.standard_normal((batch, k))
    W = scale * rng.standard_normal((k, n))
    b = rng.standard_normal(n)
    a = rng.integers(0, n, batch)
    w = rng.standard_normal(batch)
    mask = rng.random((batch, n)) < 0.7
    mask[np.arange(batch), a] = True
    for tau in (1.0, 0.6):
        v, (gw, gb) = fm.loglik(s, W, a, b=b, weights=w, entropy_weight=0.3, mask=mask,
                                temperature=tau, grad=True)
        v_want, gw_want, gb_want = _ld_actor_objective(s, W, a, b, w, 0.3, mask, tau)
        # The sums over states cancel (any-sign weights): checked against their scale.
        assert abs(v - v_want) <= 1e-12 * np.abs(v_want)
        for got, want in ((gw, gw_want), (gb, gb_want)):
            assert np.abs(got - want).max() <= 1e-12 * max(np.abs(want).max(), 1.0)
        assert np.isfinite(gw).all()
        # The value alone is the value with the gradient, and threads change no bit.
        assert fm.loglik(s, W, a, b=b, weights=w, entropy_weight=0.3, mask=mask,
                         temperature=tau) == v
        v1, (gw1, gb1) = fm.loglik(s, W, a, b=b, weights=w, entropy_weight=0.3, mask=mask,
                                   temperature=tau, grad=True, n_threads=1)
        assert v1 == v and np.array_equal(gw1, gw) and np.array_equal(gb1, gb)


def test_loglik_entropy_weight_zero_is_loglik_and_fd():
    rng = np.random.default_rng(5)
    s = rng.standard_normal((2000, 16))
    W = rng.standard_normal((16, 5)) * 0.5
    a = rng.integers(0, 5, 2000)
    w = rng.standard_normal(2000)
    v0, g0 = fm.loglik(s, W, a, weights=w, grad=True)
    v, g = fm.loglik(s, W, a, weights=w, grad=True, entropy_weight=0.0)
    assert v == v0 and np.array_equal(g, g0)
    # Central differences of the regularised objective in W.
    beta = 0.7
    v_beta, g = fm.loglik(s, W, a, weights=w, grad=True, entropy_weight=beta)
    h = 1e-6
    for (c, j) in [(0, 0), (3, 2), (15, 4)]:
        Wp, Wm = W.copy(), W.copy()
        Wp[c, j] += h
        Wm[c, j] -= h
        fd = (fm.loglik(s, Wp, a, weights=w, entropy_weight=beta)
              - fm.loglik(s, Wm, a, weights=w, entropy_weight=beta)) / (2 * h)
        assert abs(fd - g[c, j]) <= 1e-6 * max(1.0, abs(g[c, j]))
    # And the NumPy reference agrees.
    from fastscore import reference
    vr, gr = reference.matrix_loglik(s, W, a, weights=w, grad=True, entropy_weight=beta)
    assert abs(v_beta - vr) <= 1e-9 * abs(vr) and np.allclose(g, gr, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("beta, exc", [(float("nan"), ValueError), (float("inf"), ValueError),
                                       ("0.1", TypeError), (True, TypeError), (None, TypeError)])
def test_loglik_entropy_weight_bad(beta, exc):
    s, W = np.ones((3, 2)), np.zeros((2, 4))
    with pytest.raises(exc, match="entropy_weight"):
        fm.loglik(s, W, [0, 1, 2], entropy_weight=beta, grad=True)


# sample(trace=): the drawn action's score added into the user's array.

@pytest.mark.parametrize("B", [None, 7, 3000])       # one state, per-state, blocks
@pytest.mark.parametrize("with_b", [False, True])
def test_sample_trace_is_numpy_accumulation_bitwise(rng, B, with_b):
    k, n = 64, 10
    s = rng.standard_normal((B, k) if B else k)
    W = 0.3 * rng.standard_normal((k, n))
    b = rng.standard_normal(n) if with_b else None
    shape = (B, k, n) if B else (k, n)
    z = rng.standard_normal(shape)
    zb = rng.standard_normal((B, n) if B else n)
    trace = (z, zb) if with_b else z
    z0, zb0 = z.copy(), zb.copy()
    a, lp = fm.sample(s, W, b=b, seed=9, trace=trace, weight=0.37)
    a1, lp1, g = fm.sample(s, W, b=b, seed=9, score=True)
    assert _eq(a, a1) and _eq(lp, lp1)
    gw, gb = g if with_b else (g, None)
    assert np.array_equal(z, z0 + 0.37 * gw)        # trace += weight * score, bit for bit
    if with_b:
        assert np.array_equal(zb, zb0 + 0.37 * gb)
    else:
        assert np.array_equal(zb, zb0)
    z[...] = z0
    fm.sample(s, W, b=b, seed=9, trace=trace, decay=0.9)   # an eligibility trace
    assert np.array_equal(z, 0.9 * z0 + gw)


def test_sample_trace_float32_strided_threads(rng):
    s = rng.standard_normal((5000, 16))
    W = rng.standard_normal((16, 8))
    z1 = np.zeros((5000, 16, 8))
    z2 = np.zeros((5000, 8, 16)).transpose(0, 2, 1)  # strided rows: the generic path
    fm.sample(s, W, seed=3, trace=z1, weight=2.0, n_threads=1)
    fm.sample(s, W, seed=3, trace=z2, weight=2.0, n_threads=2)
    assert np.array_equal(z1, z2)
    assert np.array_equal(z1, 2.0 * fm.sample(s, W, seed=3, score=True)[2])
    s32, W32 = s[:50].astype(np.float32), W.astype(np.float32)
    z32 = np.ones((50, 16, 8), np.float32)
    fm.sample(s32, W32, seed=3, trace=z32, decay=0.5)
    g32 = fm.sample(s32, W32, seed=3, score=True)[2]
    assert np.max(np.abs(z32 - (0.5 + g32.astype(float)))) < 1e-6


def test_sample_trace_bad_inputs(rng):
    s, W = rng.standard_normal(4), rng.standard_normal((4, 3))
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match="not both"):
        fm.sample(s, W, seed=1, score=True, trace=z)
    with pytest.raises(ValueError, match="trace= only"):
        fm.sample(s, W, seed=1, decay=0.5)
    with pytest.raises(ValueError, match="trace= only"):
        fm.sample(s, W, seed=1, weight=2.0)
    with pytest.raises(ValueError, match="shape"):
        fm.sample(s, W, seed=1, trace=np.zeros((3, 4)))
    with pytest.raises(TypeError, match="dtype"):
        fm.sample(s, W, seed=1, trace=np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fm.sample(s, W, seed=1, trace=[[0.0] * 3] * 4)
    with pytest.raises(TypeError, match="tuple"):
        fm.sample(s, W, b=np.zeros(3), seed=1, trace=z)
    with pytest.raises(ValueError, match="share memory"):
        fm.sample(s, W, seed=1, trace=W)
    with pytest.raises(ValueError, match="writeable"):
        ro = np.zeros((4, 3))
        ro.flags.writeable = False
        fm.sample(s, W, seed=1, trace=ro)
    for bad, exc in [(float("nan"), ValueError), (float("inf"), ValueError), ("1", TypeError)]:
        with pytest.raises(exc, match="decay"):
            fm.sample(s, W, seed=1, trace=z, decay=bad)
        with pytest.raises(exc, match="weight"):
            fm.sample(s, W, seed=1, trace=z, weight=bad)
    # An update that overflows raises and leaves the trace as it was.
    big = np.full((4, 3), 1.7e308)
    before = big.copy()
    with pytest.raises(ValueError, match="overflows"):
        fm.sample(np.full(4, 10.0), W, seed=1, trace=big, decay=1.5)
    assert np.array_equal(big, before)
    assert not np.any(z)  # the failed calls above left z alone
