"""fastscore.matrix, the state-input form z = (s @ W + b) / tau: accuracy against
an extended-precision oracle, finite differences, equality with fastscore.score
on the equivalent Kronecker features, sampling, thread-count invariance and
bad input."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastscore
import fastscore.matrix as fm
import fs_oracle
from fastscore import reference

LD = np.longdouble
needs_ld = pytest.mark.skipif(not fs_oracle.EXTENDED, reason="longdouble is double here")
DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------------------
# The oracle: logits to ~2**-106 (double-double dot products), the rest in longdouble.

def oracle_state(s, W, b=None, mask=None, tau=1.0):
    """(z, pi) of one state in longdouble; masked entries of pi are 0, of z -inf."""
    s = np.asarray(s, np.float64)
    W = np.asarray(W, np.float64)
    z = fs_oracle._dot_double_double(np.ascontiguousarray(W.T), s)
    if b is not None:
        z = z + np.asarray(b, np.float64).astype(LD)
    z = z / LD(tau)
    legal = np.ones(W.shape[1], bool) if mask is None else np.asarray(mask, bool)
    z = np.where(legal, z, LD(-np.inf))
    w = np.exp(z - z.max())
    return z, w / w.sum()


def oracle_residual(pi, a, tau):
    r = -pi.copy()
    r[a] = np.delete(pi, a).sum()  # 1 - pi_a as the sum of the others
    return r / LD(tau)


def oracle_log_prob(z, a):
    m = z.max()
    w = np.exp(z - m)
    amax = int(np.argmax(z))
    rest = np.delete(w, amax).sum()
    return (z[a] - m) - np.log1p(rest)


def oracle_entropy(z, pi):
    m = z.max()
    legal = pi > 0
    w = np.exp(z[legal] - m)
    amax = int(np.argmax(z[legal]))
    return np.log1p(np.delete(w, amax).sum()) + (pi[legal] * (m - z[legal])).sum()


def rel(got, want):
    got = np.asarray(got).astype(LD)
    want = np.asarray(want, LD)
    den = np.sqrt(np.square(want).sum())
    return float(np.sqrt(np.square(got - want).sum()) / den)


# ---------------------------------------------------------------------------
# Regimes (k = 16, N = 7 unless noted).

def make_case(regime, rng, k=16, n=7, batch=None):
    shape = (k,) if batch is None else (batch, k)
    s = rng.standard_normal(shape)
    W = rng.standard_normal((k, n)) / np.sqrt(k)
    b = rng.standard_normal(n)
    mask, tau = None, 1.0
    a = int(rng.integers(n)) if batch is None else rng.integers(0, n, batch)
    if regime == "thousands":
        # Logits near 2000 (and -1000 from b) whose differences are of order 1:
        # exp(z_k - m) needs the logits to far more than double precision.
        s[..., 0] = 1000.0
        W[0] = 2.0 + 0.002 * rng.standard_normal(n)
        b = b - 3000.0
    elif regime == "deterministic":
        # pi(a) -> 1: the taken action's logit 40 above the rest.
        W = W * 0.3
        b = np.zeros(n)
        if batch is None:
            b[a] = 40.0
        else:
            a = np.full(batch, 2)
            b[2] = 40.0
    elif regime == "mask":
        mask = rng.random(n if batch is None else (batch, n)) < 0.6
        if batch is None:
            mask[a] = True
        else:
            mask[np.arange(batch), a] = True
    elif regime == "temperature":
        tau = 0.37
    return s, W, b, a, mask, tau


REGIMES = ["random", "thousands", "deterministic", "mask", "temperature"]


@needs_ld
@pytest.mark.parametrize("regime", REGIMES)
def test_one_state_float64_accuracy(regime, rng):
    for _ in range(5):
        s, W, b, a, mask, tau = make_case(regime, rng)
        z, pi = oracle_state(s, W, b, mask, tau)
        r = oracle_residual(pi, a, tau)
        gw, gb = fm.score(s, W, a, b=b, mask=mask, temperature=tau)
        errs = {
            "score_W": rel(gw, np.outer(s.astype(LD), r)),
            "score_b": rel(gb, r),
            "log_prob": rel(fm.log_prob(s, W, a, b=b, mask=mask, temperature=tau),
                            oracle_log_prob(z, a)),
            "entropy": rel(fm.entropy(s, W, b=b, mask=mask, temperature=tau),
                           oracle_entropy(z, pi)),
            "probs": rel(fm.probs(s, W, b=b, mask=mask, temperature=tau), pi),
        }
        for name, err in errs.items():
            fs_oracle.record(f"matrix {name} float64 {regime}", err)
            assert err <= 1e-12, (name, err)


@needs_ld
@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("batch", [40, 3000])  # per-state path and BLAS blocks
def test_loglik_float64_accuracy(regime, batch, rng):
    s, W, b, a, mask, tau = make_case(regime, rng, batch=batch)
    wts = rng.random(batch) + 0.5  # positive: the sums do not cancel
    value, (gw, gb) = fm.loglik(s, W, a, b=b, weights=wts, grad=True, mask=mask,
                                temperature=tau)
    v_want = LD(0)
    gw_want = np.zeros(W.shape, LD)
    gb_want = np.zeros(W.shape[1], LD)
    for i in range(batch):
        z, pi = oracle_state(s[i], W, b, None if mask is None else mask[i], tau)
        r = oracle_residual(pi, a[i], tau) * LD(wts[i])
        v_want += LD(wts[i]) * oracle_log_prob(z, a[i])
        gw_want += np.outer(s[i].astype(LD), r)
        gb_want += r
    # The sums over states cancel (the gradient of a fitted model is ~0), so the
    # gradient is checked against the sum of magnitudes (its condition scale).
    for name, got, want, scale in [
        ("value", value, v_want, abs(v_want)),
        ("grad_W", gw, gw_want, None),
        ("grad_b", gb, gb_want, None),
    ]:
        err = rel(got, want)
        fs_oracle.record(f"matrix loglik {name} float64 {regime} B={batch}", err)
        if name == "value" or regime == "deterministic":
            assert err <= 1e-12, (name, err)
        else:
            assert err <= 1e-11, (name, err)


@pytest.mark.parametrize("fn", ["score", "log_prob", "probs", "entropy", "loglik"])
def test_float32_native(fn, rng):
    s, W, b, a, mask, tau = make_case("random", rng, batch=50)
    s32, W32, b32 = s.astype(np.float32), W.astype(np.float32), b.astype(np.float32)
    args = (s32, W32, a) if fn in ("score", "log_prob", "loglik") else (s32, W32)
    args64 = (s32.astype(float), W32.astype(float)) + args[2:]
    kw = dict(b=b32) if fn != "loglik" else dict(b=b32, grad=True)
    kw64 = dict(kw, b=b32.astype(float))
    got = getattr(fm, fn)(*args, **kw)
    want = getattr(fm, fn)(*args64, **kw64)
    flat_got = [np.asarray(x) for x in _leaves(got)]
    flat_want = [np.asarray(x) for x in _leaves(want)]
    for g, w in zip(flat_got, flat_want):
        assert g.dtype == np.float32
        assert np.allclose(g, w, rtol=2e-6, atol=1e-6 * np.abs(w).max())


def _leaves(x):
    if isinstance(x, tuple):
        for y in x:
            yield from _leaves(y)
    else:
        yield x


def test_mixed_dtypes_give_float64(rng):
    s, W, b, a, _, _ = make_case("random", rng)
    gw, gb = fm.score(s.astype(np.float32), W, a, b=b.astype(np.float32))
    assert gw.dtype == gb.dtype == np.float64


# ---------------------------------------------------------------------------
# Finite differences and the Kronecker features.

@needs_ld
@pytest.mark.parametrize("regime", ["random", "mask", "temperature"])
def test_finite_differences(regime, rng):
    s, W, b, a, mask, tau = make_case(regime, rng, k=5, n=4)
    gw, gb = fm.score(s, W, a, b=b, mask=mask, temperature=tau)
    h = 1e-6

    def lp(W_, b_):
        return float(fm.log_prob(s, W_, a, b=b_, mask=mask, temperature=tau))

    for c in range(W.shape[0]):
        for j in range(W.shape[1]):
            Wp, Wm = W.copy(), W.copy()
            Wp[c, j] += h
            Wm[c, j] -= h
            fd = (lp(Wp, b) - lp(Wm, b)) / (2 * h)
            assert abs(fd - gw[c, j]) <= 1e-7 * (1 + abs(gw[c, j]))
    for j in range(W.shape[1]):
        bp, bm = b.copy(), b.copy()
        bp[j] += h
        bm[j] -= h
        fd = (lp(W, bp) - lp(W, bm)) / (2 * h)
        assert abs(fd - gb[j]) <= 1e-7 * (1 + abs(gb[j]))


def test_loglik_finite_differences(rng):
    s, W, b, a, mask, tau = make_case("temperature", rng, k=4, n=3, batch=300)
    wts = rng.standard_normal(300)
    _, (gw, gb) = fm.loglik(s, W, a, b=b, weights=wts, grad=True, temperature=tau)
    h = 1e-6
    for c, j in [(0, 0), (1, 2), (3, 1)]:
        Wp, Wm = W.copy(), W.copy()
        Wp[c, j] += h
        Wm[c, j] -= h
        fd = (fm.loglik(s, Wp, a, b=b, weights=wts, temperature=tau)
              - fm.loglik(s, Wm, a, b=b, weights=wts, temperature=tau)) / (2 * h)
        assert abs(fd - gw[c, j]) <= 1e-6 * (1 + abs(gw[c, j]))
    bp, bm = b.copy(), b.copy()
    bp[1] += h
    bm[1] -= h
    fd = (fm.loglik(s, W, a, b=bp, weights=wts, temperature=tau)
          - fm.loglik(s, W, a, b=bm, weights=wts, temperature=tau)) / (2 * h)
    assert abs(fd - gb[1]) <= 1e-6 * (1 + abs(gb[1]))


def kronecker(s, n, with_bias):
    """phi (N, d): phi[j] = e_j (x) s (and e_j for the bias), d = N k (+ N)."""
    k = s.shape[-1]
    d = n * k + (n if with_bias else 0)
    phi = np.zeros(s.shape[:-1] + (n, d))
    for j in range(n):
        phi[..., j, j * k:(j + 1) * k] = s
        if with_bias:
            phi[..., j, n * k + j] = 1.0
    return phi


@pytest.mark.parametrize("regime", REGIMES)
def test_equals_score_on_kronecker_features(regime, rng):
    s, W, b, a, mask, tau = make_case(regime, rng, batch=6)
    n = W.shape[1]
    theta = np.concatenate([W.T.ravel(), b])   # theta[j k + c] = W[c, j]
    phi = kronecker(s, n, True)
    want = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    gw, gb = fm.score(s, W, a, b=b, mask=mask, temperature=tau)
    got = np.concatenate([gw.transpose(0, 2, 1).reshape(6, -1), gb], axis=1)
    scale = np.abs(want).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - want) <= 1e-13 * scale)
    # Without bias.
    want = fastscore.score(kronecker(s, n, False), W.T.ravel(), a, mask=mask, temperature=tau)
    got = fm.score(s, W, a, mask=mask, temperature=tau).transpose(0, 2, 1).reshape(6, -1)
    assert np.all(np.abs(got - want) <= 1e-13 * np.abs(want).max(axis=1, keepdims=True))


def test_against_numpy_reference(rng):
    s, W, b, a, mask, tau = make_case("mask", rng, batch=20)
    kw = dict(b=b, mask=mask, temperature=0.8)
    np.testing.assert_allclose(fm.score(s, W, a, **kw)[0], reference.matrix_score(s, W, a, **kw)[0],
                               rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(fm.log_prob(s, W, a, **kw), reference.matrix_log_prob(s, W, a, **kw),
                               rtol=1e-10)
    np.testing.assert_allclose(fm.entropy(s, W, **kw), reference.matrix_entropy(s, W, **kw),
                               rtol=1e-10)
    np.testing.assert_allclose(fm.probs(s, W, **kw), reference.matrix_probs(s, W, **kw),
                               rtol=1e-10, atol=1e-15)
    v, (gw, gb) = fm.loglik(s, W, a, grad=True, **kw)
    v2, (gw2, gb2) = reference.matrix_loglik(s, W, a, grad=True, **kw)
    np.testing.assert_allclose(v, v2, rtol=1e-10)
    np.testing.assert_allclose(gw, gw2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, gb2, rtol=1e-9, atol=1e-12)


@given(k=st.integers(0, 9), n=st.integers(1, 9), batch=st.integers(1, 5),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0]))
def test_properties(k, n, batch, seed, scale):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((batch, k))
    W = rng.standard_normal((k, n)) * scale
    a = rng.integers(0, n, batch)
    p = fm.probs(s, W)
    assert np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0)
    lp = fm.log_prob(s, W, a)
    np.testing.assert_allclose(np.exp(lp), p[np.arange(batch), a], rtol=1e-12, atol=1e-300)
    g = fm.score(s, W, a)
    # The residual sums to 0 over actions: sum_j grad_W[:, j] = 0.
    assert np.allclose(g.sum(axis=2), 0.0, atol=1e-12 * (1 + np.abs(s).max(initial=0)))
    h = fm.entropy(s, W)
    assert np.all(h >= -1e-15) and np.all(h <= np.log(n) + 1e-12)
    v, gw = fm.loglik(s, W, a, grad=True)
    np.testing.assert_allclose(v, lp.sum(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw, g.sum(axis=0), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Sampling.

def test_sample_chi_square(rng):
    s, W, b, _, _, _ = make_case("random", rng, k=8, n=6)
    W *= 2
    p = fm.probs(s, W, b=b)
    draws = np.array([fm.sample(s, W, b=b, seed=i)[0] for i in range(3000)])
    counts = np.bincount(draws, minlength=6)
    chi2 = ((counts - 3000 * p) ** 2 / (3000 * p)).sum()
    assert chi2 < 25.7  # 99.99 % quantile of chi-square with 5 degrees of freedom
    # Many states in one call: the (seed, state) keys are independent draws.
    S = np.broadcast_to(s, (20000, 8))
    acts, _ = fm.sample(S, W, b=b, seed=7)
    counts = np.bincount(acts, minlength=6)
    chi2 = ((counts - 20000 * p) ** 2 / (20000 * p)).sum()
    assert chi2 < 25.7


def test_sample_mask_log_probs_threads_and_seeds(rng):
    s, W, b, _, _, _ = make_case("random", rng, k=8, n=6, batch=5000)
    mask = rng.random((5000, 6)) < 0.5
    mask[:, 0] = True
    acts, lps = fm.sample(s, W, b=b, mask=mask, seed=123, n_threads=1)
    assert mask[np.arange(5000), acts].all()
    assert acts.dtype == np.intp
    want = fm.log_prob(s, W, acts, b=b, mask=mask)
    assert np.array_equal(lps, want)  # bit for bit
    acts2, lps2 = fm.sample(s, W, b=b, mask=mask, seed=123, n_threads=2)
    assert np.array_equal(acts, acts2) and np.array_equal(lps, lps2)
    acts3, _ = fm.sample(s, W, b=b, mask=mask, seed=124)
    assert not np.array_equal(acts, acts3)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    x1 = fm.sample(s, W, seed=g1)[0]
    x2 = fm.sample(s, W, seed=g2)[0]
    assert np.array_equal(x1, x2)
    assert not np.array_equal(fm.sample(s, W, seed=g1)[0], x1)  # the generator advanced
    a1, lp1 = fm.sample(s[0], W, seed=9)
    assert 0 <= int(a1) < 6 and lp1 == fm.log_prob(s[0], W, int(a1))
    assert np.isscalar(lp1)


def test_sample_seed_none_varies(rng):
    s = rng.standard_normal((200, 4))
    W = rng.standard_normal((4, 8))
    assert not np.array_equal(fm.sample(s, W)[0], fm.sample(s, W)[0])


# ---------------------------------------------------------------------------
# Threads, read-only input, out=, results.

@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_same_for_every_thread_count(dtype, rng):
    for batch, k, n in [(20000, 20, 10), (700, 64, 10), (300, 3, 200)]:
        s = rng.standard_normal((batch, k)).astype(dtype)
        W = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        a = rng.integers(0, n, batch)
        wts = rng.standard_normal(batch).astype(dtype)
        r1 = fm.loglik(s, W, a, b=b, weights=wts, grad=True, n_threads=1)
        r2 = fm.loglik(s, W, a, b=b, weights=wts, grad=True, n_threads=2)
        assert r1[0] == r2[0]
        assert np.array_equal(r1[1][0], r2[1][0]) and np.array_equal(r1[1][1], r2[1][1])
        if batch * k * n <= 2_000_000:
            for f in (fm.score, fm.log_prob):
                x1, x2 = f(s, W, a, n_threads=1), f(s, W, a, n_threads=2)
                assert np.array_equal(x1, x2)
            assert np.array_equal(fm.probs(s, W, n_threads=1), fm.probs(s, W, n_threads=2))
            assert np.array_equal(fm.entropy(s, W, n_threads=1), fm.entropy(s, W, n_threads=2))


def test_blas_rows_with_large_logits_are_refined(rng):
    """A batch on the BLAS path whose rows mix small logits and logits in the
    thousands: the large ones must be recomputed with compensated logits."""
    batch, k, n = 2000, 20, 10
    s = rng.standard_normal((batch, k))
    s[::3] *= 3000.0
    W = rng.standard_normal((k, n)) / np.sqrt(k)
    a = rng.integers(0, n, batch)
    v, gw = fm.loglik(s, W, a, grad=True)
    lp = fm.log_prob(s, W, a)     # per-state, compensated logits
    assert abs(v - lp.sum()) <= 1e-12 * np.abs(lp).sum()
    np.testing.assert_allclose(gw, fm.score(s, W, a).sum(axis=0), rtol=1e-10,
                               atol=1e-12 * np.abs(fm.score(s, W, a)).sum(axis=0).max())


@needs_ld
@pytest.mark.parametrize("scale", [0.01, 0.2, 1.0, 10.0])
def test_blocks_accurate_at_every_weight_scale(scale, rng):
    """Batches on the BLAS path with weights from small to large: from a
    scale of about 0.2 the plain logits' bound fails and whole blocks take the
    split logits (exact S_hi W_hi plus a correction product), which must hold
    the oracle's 1e-12 for every output, with a bias and a temperature."""
    batch, k, n = 900, 64, 10
    s = rng.standard_normal((batch, k))
    W = scale * rng.standard_normal((k, n))
    b = rng.standard_normal(n)
    a = rng.integers(0, n, batch)
    tau = 0.7
    mask = rng.random((batch, n)) < 0.8
    mask[np.arange(batch), a] = True
    lp = fm.log_prob(s, W, a, b=b, mask=mask, temperature=tau)
    ent = fm.entropy(s, W, b=b, mask=mask, temperature=tau)
    pr = fm.probs(s, W, b=b, mask=mask, temperature=tau)
    value, (gw, gb) = fm.loglik(s, W, a, b=b, mask=mask, temperature=tau, grad=True)
    v_want, gw_want, gb_want = LD(0), np.zeros(W.shape, LD), np.zeros(n, LD)
    worst = 0.0
    for i in range(batch):
        z, pi = oracle_state(s[i], W, b, mask[i], tau)
        want_lp = oracle_log_prob(z, a[i])
        r = oracle_residual(pi, a[i], tau)
        v_want += want_lp
        gw_want += np.outer(s[i].astype(LD), r)
        gb_want += r
        worst = max(worst, rel(lp[i], want_lp), rel(ent[i], oracle_entropy(z, pi)),
                    rel(pr[i], pi))
    fs_oracle.record(f"matrix blocks per-state outputs scale {scale}", worst)
    assert worst <= 1e-12
    for name, got, want in [("value", value, v_want), ("grad_W", gw, gw_want),
                            ("grad_b", gb, gb_want)]:
        err = rel(got, want)
        fs_oracle.record(f"matrix loglik {name} scale {scale}", err)
        assert err <= 1e-12, (name, err)


@pytest.mark.parametrize("scale", [0.05, 1.0])
def test_loglik_value_alone_is_the_value_with_the_gradient(scale, rng):
    """loglik without grad takes the same blocks as with it: the same value,
    bit for bit (with a bias, weights, a mask and float32 states too)."""
    batch, k, n = 2500, 64, 10
    W = scale * rng.standard_normal((k, n))
    b = rng.standard_normal(n)
    a = rng.integers(0, n, batch)
    wts = rng.standard_normal(batch)
    mask = rng.random((batch, n)) < 0.7
    mask[np.arange(batch), a] = True
    for s in (rng.standard_normal((batch, k)), rng.standard_normal((batch, k)).astype(np.float32)):
        for kw in ({}, {"b": b, "weights": wts, "mask": mask}):
            v = fm.loglik(s, W, a, **kw)
            v_g, _ = fm.loglik(s, W, a, grad=True, **kw)
            assert v == v_g


def test_split_blocks_leave_huge_rows_to_dot2(rng):
    """A block on the split path with rows whose entries (near 1e280) are past
    the split's range: those rows get compensated (Dot2) logits, the rest the
    split ones, and all agree with the per-state (Dot2) results."""
    batch, k, n = 600, 64, 10
    s = rng.standard_normal((batch, k))
    W = rng.standard_normal((k, n))   # scale 1: every block splits
    s[::50] *= 1e280
    W_small = W * 1e-290
    a = rng.integers(0, n, batch)
    for WW in (W, W_small):
        if WW is W:
            rows = np.ones(batch, bool)
            rows[::50] = False       # s @ W would overflow there
            ss, aa = s[rows], a[rows]
        else:
            ss, aa = s, a
        lp_batch = fm.log_prob(ss, WW, aa)
        lp_one = np.array([fm.log_prob(ss[i], WW, int(aa[i])) for i in range(len(aa))])
        np.testing.assert_allclose(lp_batch, lp_one, rtol=1e-13, atol=1e-300)
        v, gw = fm.loglik(ss, WW, aa, grad=True)
        assert abs(v - lp_one.sum()) <= 1e-12 * np.abs(lp_one).sum()


def test_read_only_and_strided_inputs(rng):
    s, W, b, a, mask, tau = make_case("mask", rng, batch=300)
    want = fm.loglik(s, W, a, b=b, mask=mask, grad=True)
    for x in (s, W, b, a, mask):
        x.setflags(write=False)
    got = fm.loglik(s, W, a, b=b, mask=mask, grad=True)
    assert got[0] == want[0] and np.array_equal(got[1][0], want[1][0])
    big = np.zeros((300, 2 * s.shape[1]))
    big[:, ::2] = s
    got = fm.loglik(big[:, ::2], np.asfortranarray(W), a, b=b, mask=mask, grad=True)
    np.testing.assert_allclose(got[1][0], want[1][0], rtol=1e-12, atol=1e-14)
    assert np.array_equal(fm.score(s, W, a, b=b, mask=mask)[0],
                          fm.score(big[:, ::2], W, a, b=b, mask=mask)[0])


def test_out_and_shapes(rng):
    s, W, b, a, _, _ = make_case("random", rng, batch=4)
    out = np.empty((4, 16, 7))
    outb = np.empty((4, 7))
    res = fm.score(s, W, a, b=b, out=(out, outb))
    assert res[0] is out and res[1] is outb
    np.testing.assert_array_equal(out, fm.score(s, W, a, b=b)[0])
    o = np.empty(4)
    assert fm.log_prob(s, W, a, out=o) is o
    assert fm.probs(s, W).shape == (4, 7) and fm.probs(s[0], W).shape == (7,)
    assert np.isscalar(fm.log_prob(s[0], W, 1)) and np.isscalar(fm.entropy(s[0], W))
    assert fm.score(s[0], W, 1).shape == (16, 7)
    v = fm.loglik(s[0], W, 1, weights=2.0)
    assert np.isscalar(v) and v == 2 * fm.log_prob(s[0], W, 1)
    # Python lists and ints go through coercion.
    assert np.allclose(fm.score(s[0].tolist(), W.tolist(), np.int64(1)), fm.score(s[0], W, 1))
    # B = 0 and k = 0.
    assert fm.score(np.empty((0, 16)), W, np.empty(0, np.intp)).shape == (0, 16, 7)
    assert fm.loglik(np.empty((0, 16)), W, np.empty(0, np.intp)) == 0.0
    np.testing.assert_allclose(fm.probs(np.empty(0), np.empty((0, 3))), np.full(3, 1 / 3))


# ---------------------------------------------------------------------------
# Bad input.

K, N, B = 3, 4, 5
S1 = np.arange(K, dtype=float) / 3
WW = np.ones((K, N)) / 7
SB = np.ones((B, K))


def _nan(x, idx):
    x = np.array(x, dtype=float)
    x[idx] = np.nan
    return x


BAD = [
    # (function, args, kwargs, exception, message)
    ("score", (S1, WW, N), {}, IndexError, r"\ba = 4 is out of range"),
    ("score", (S1, WW, -1), {}, IndexError, r"\ba = -1"),
    ("loglik", (SB, WW, [0, 1, 9, 0, 0]), {}, IndexError, r"a\[2\] = 9"),
    ("score", (S1, WW, 1.0), {}, TypeError, r"\ba must be"),
    ("score", (S1, WW, True), {}, TypeError, r"\ba must be"),
    ("log_prob", (SB, WW, [0.5] * 5), {}, TypeError, r"\ba must be"),
    ("score", (S1 + 1j, WW, 0), {}, TypeError, r"\bs must be real"),
    ("score", (S1, WW.astype(complex), 0), {}, TypeError, r"\bW must be real"),
    ("score", (S1, WW, 0), dict(b=np.array(["x"] * N)), TypeError, r"\bb must be a real"),
    ("probs", (S1, WW), dict(mask=np.ones(N)), TypeError, r"\bmask must be a boolean"),
    ("score", (S1, WW, 0), dict(out=np.empty((K, N), np.float32)), TypeError, r"\bout must have dtype"),
    ("score", (S1, WW, 0), dict(b=np.zeros(N), out=np.empty((K, N))), TypeError, r"\bout must be a tuple"),
    ("sample", (S1, WW), dict(seed=1.5), TypeError, r"\bseed must be"),
    ("sample", (S1, WW), dict(seed=-1), ValueError, r"\bseed must be in"),
    ("score", (S1, WW, 0), dict(temperature="1"), TypeError, r"\btemperature must be a real"),
    ("score", (np.ones((2, 2, K)), WW, 0), {}, ValueError, r"\bs must be 1-D"),
    ("score", (S1, np.ones((K + 1, N)), 0), {}, ValueError, r"\bW must have shape \(3, N\)"),
    ("score", (S1, np.ones(K), 0), {}, ValueError, r"\bW must have shape"),
    ("score", (S1, WW, 0), dict(b=np.zeros(N + 1)), ValueError, r"\bb must have shape \(4,\)"),
    ("score", (S1, WW, 0), dict(mask=np.ones(N - 1, bool)), ValueError, r"\bmask must have shape"),
    ("score", (SB, WW, [0, 1]), {}, ValueError, r"\ba must have shape \(5,\)"),
    ("score", (SB, WW, np.zeros(B, int)), dict(out=np.empty((B, K, N + 1))), ValueError,
     r"\bout must have shape"),
    ("loglik", (SB, WW, np.zeros(B, int)), dict(weights=np.ones(B + 1)), ValueError,
     r"\bweights must have shape"),
    ("score", (S1, np.ones((K, 0)), 0), {}, ValueError, r"N = 0"),
    ("probs", (S1, np.ones((K, 0))), {}, ValueError, r"N = 0"),
    ("score", (S1, WW, 1), dict(mask=np.array([True, False, True, True])), ValueError,
     r"taken action a = 1 is masked"),
    ("probs", (S1, WW), dict(mask=np.zeros(N, bool)), ValueError, r"every action"),
    ("probs", (SB, WW), dict(mask=np.eye(B, N, dtype=bool)), ValueError, r"every action of state 4"),
    ("score", (_nan(S1, 1), WW, 0), {}, ValueError, r"\bs contains NaN"),
    ("loglik", (_nan(np.ones((300, K)), (200, 1)), WW, np.zeros(300, int)), dict(grad=True),
     ValueError, r"\bs contains NaN or inf \(in state 200\)"),
    ("score", (S1, _nan(WW, (2, 1)), 0), {}, ValueError, r"W contains NaN or inf \(W\[2, 1\]\)"),
    ("score", (S1, WW, 0), dict(b=_nan(np.zeros(N), 3)), ValueError, r"b contains NaN or inf \(b\[3\]\)"),
    ("loglik", (SB, WW, np.zeros(B, int)), dict(weights=_nan(np.ones(B), 2)), ValueError,
     r"weights contains NaN or inf \(weights\[2\]\)"),
    ("score", (S1 * 1e300, WW * 1e300, 0), {}, ValueError, r"non-finite logit"),
    ("score", (S1, WW, 0), dict(temperature=0.0), ValueError, r"\btemperature must be finite"),
    ("score", (S1, WW, 0), dict(temperature=np.inf), ValueError, r"\btemperature must be finite"),
    ("score", (S1, WW, 0), dict(n_threads=0), ValueError, r"\bn_threads must be >= 1"),
    ("score", (S1, WW, 0), dict(n_threads=1.5), TypeError, r"\bn_threads must be an integer"),
]


@pytest.mark.parametrize("fn,args,kwargs,exc,msg", BAD, ids=[f"{i}-{c[0]}" for i, c in enumerate(BAD)])
def test_bad_input(fn, args, kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        getattr(fm, fn)(*args, **kwargs)


def test_out_must_not_alias_inputs():
    s = np.ones((2, 3))
    W = np.ones((3, 3))
    with pytest.raises(ValueError, match="share memory"):
        fm.probs(s, W, out=s[:, :3] if False else W[:2])


def test_import_fastscore_does_not_load_matrix_or_scipy():
    code = ("import sys, fastscore; "
            "assert 'fastscore.matrix' not in sys.modules and 'fastscore._matrix' not in sys.modules; "
            "assert not any(m == 'scipy' or m.startswith('scipy.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vector_exp_and_log1p_against_libm():
    """The batch gradient's vector exp (x <= 0) and log1p (x >= 0): within two
    units in the last place of the C library's (NumPy's) results."""
    from fastscore._matrix import _exp_block, _log1p_block

    x = np.concatenate([-np.linspace(0, 40, 20001), -np.linspace(700, 750, 10001),
                        [-np.inf, 0.0, -0.0, -1e-300]])
    y = x.copy()
    _exp_block(y)
    want = np.exp(x)
    normal = want > np.finfo(float).tiny
    assert np.all(np.abs(y - want)[normal] <= 2 * np.spacing(want[normal]))
    assert np.all(np.abs(y - want)[~normal] <= 5e-324)
    x = np.concatenate([np.logspace(-320, -1, 20001), np.linspace(0, 20, 20001),
                        np.logspace(0, 300, 1001)])
    y = x.copy()
    _log1p_block(y)
    want = np.log1p(x)
    assert np.all(np.abs(y - want) <= 2 * np.spacing(want))
