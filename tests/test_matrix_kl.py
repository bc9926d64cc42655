"""fastscore.matrix.kl: KL(pi_ref || pi) of the state-input form and its gradient in W (and b).

Checked against the mpmath oracle of the phi form (tests/fs_oracle.py) on the
equivalent features phi(s, j) = e_j (x) s (and e_j for the bias), finite
differences, the NumPy reference, and the usual conventions (masks,
temperature, float32, out=, threads, bad inputs)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastscore.matrix as fm
import fastscore.reference as R
import fs_oracle as O


def as_phi(s, n, with_b):
    """phi rows (B, n, k n [+ n]) with phi(s, j) . vec(W) [+ b_j] = (s @ W)_j [+ b_j]."""
    s = np.atleast_2d(s)
    B, k = s.shape
    phi = np.zeros((B, n, k * n + (n if with_b else 0)))
    for j in range(n):
        phi[:, j, j:k * n:n] = s
        if with_b:
            phi[:, j, k * n + j] = 1.0
    return phi


def oracle(s, W_ref, W, b_ref=None, b=None, mask=None, tau=1.0):
    """(KL, grad_W[, grad_b]) per state by mpmath."""
    k, n = W_ref.shape
    with_b = b is not None
    th_ref = np.concatenate([W_ref.ravel()] + ([b_ref] if with_b else []))
    th = np.concatenate([W.ravel()] + ([b] if with_b else []))
    m = None if mask is None else np.broadcast_to(mask, (np.atleast_2d(s).shape[0], n))
    kv, g = O.kl(as_phi(s, n, with_b), th_ref, th, mask=m, temperature=tau)
    gw = g[:, :k * n].reshape(-1, k, n)
    gb = g[:, k * n:] if with_b else None
    if np.ndim(s) == 1:
        return kv[0], gw[0], (gb[0] if with_b else None)
    return kv, gw, gb


def rel(got, want):
    got, want = np.asarray(got, float), np.asarray(want, float)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def case(seed, B=6, k=7, n=5, scale=1.0, step=0.5, with_b=False):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((B, k) if B else k)
    W_ref = scale * rng.standard_normal((k, n))
    W = W_ref + step * rng.standard_normal((k, n))
    b_ref = rng.standard_normal(n) if with_b else None
    b = b_ref + step * rng.standard_normal(n) if with_b else None
    return rng, s, W_ref, W, b_ref, b


@pytest.mark.parametrize("B", [None, 6])
@pytest.mark.parametrize("with_b", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.6])
def test_kl_oracle(B, with_b, tau):
    _, s, W_ref, W, b_ref, b = case(1, B=B, with_b=with_b)
    v, g = fm.kl(s, W_ref, W, b_ref=b_ref, b=b, temperature=tau, grad=True)
    kw, gw, gb = oracle(s, W_ref, W, b_ref, b, tau=tau)
    assert np.max(np.abs(v / kw - 1)) < 1e-12
    if with_b:
        g, g_b = g
        assert rel(g_b, gb) < 1e-10
    assert g.shape == ((B, 7, 5) if B else (7, 5))
    assert rel(g, gw) < 1e-10
    assert np.array_equal(v, fm.kl(s, W_ref, W, b_ref=b_ref, b=b, temperature=tau))


@pytest.mark.parametrize("scale", [10.0, 300.0])
def test_kl_large_logits(scale):
    """Logits in the hundreds (compensated reference logits) and a nearly
    deterministic reference policy: the KL keeps its relative accuracy."""
    _, s, W_ref, W, _, _ = case(2, scale=scale, step=0.01 * scale)
    v, g = fm.kl(s, W_ref, W, grad=True)
    kw, gw, _ = oracle(s, W_ref, W)
    nz = kw > 1e-300
    assert np.max(np.abs(v[nz] / kw[nz] - 1)) < 1e-11
    for i in range(len(kw)):
        # The oracle's 60 digits hold pi_c - pi_ref_c (pi_c near 1) to a
        # relative 1e-60 / |pi_c - pi_ref_c|: states whose gradient is below
        # 1e-40 are beyond it.
        if np.abs(gw[i]).max() > 1e-40:
            assert rel(g[i], gw[i]) < 1e-9


def test_kl_of_nearly_equal_policies_keeps_relative_accuracy():
    _, s, W_ref, W, b_ref, b = case(3, step=1e-7, with_b=True)
    v, (g, gb) = fm.kl(s, W_ref, W, b_ref=b_ref, b=b, grad=True)
    kw, gw, gbw = oracle(s, W_ref, W, b_ref, b)
    assert (kw < 1e-12).all()
    assert np.max(np.abs(v / kw - 1)) < 1e-10
    assert rel(g, gw) < 1e-8 and rel(gb, gbw) < 1e-8
    # The reference computes pi - pi_ref by subtraction: it loses the digits.
    assert np.max(np.abs(R.matrix_kl(s, W_ref, W, b_ref=b_ref, b=b) / kw - 1)) > 1e-8


def test_kl_of_a_policy_with_itself_is_zero():
    _, s, W_ref, _, b_ref, _ = case(4, with_b=True)
    v, (g, gb) = fm.kl(s, W_ref, W_ref.copy(), b_ref=b_ref, b=b_ref.copy(), grad=True)
    assert v.tolist() == [0.0] * len(v)
    assert not np.any(g) and not np.any(gb)
    # W = W_ref + a shift constant across actions, rounded: policies equal to
    # about 1e-16, whose KL (~1e-33) is still right to its relative 1e-10.
    W = W_ref + np.random.default_rng(0).standard_normal((7, 1))
    v = fm.kl(s, W_ref, W)
    kw, _, _ = oracle(s, W_ref, W)
    assert np.all(kw < 1e-30) and np.max(np.abs(v / kw - 1)) < 1e-10


def test_kl_finite_differences():
    _, s, W_ref, W, b_ref, b = case(5, B=3, with_b=True)
    _, (g, gb) = fm.kl(s, W_ref, W, b_ref=b_ref, b=b, grad=True)
    h = 1e-6
    for (c, j) in [(0, 0), (3, 2), (6, 4)]:
        E = np.zeros_like(W)
        E[c, j] = h
        fd = (fm.kl(s, W_ref, W + E, b_ref=b_ref, b=b).sum()
              - fm.kl(s, W_ref, W - E, b_ref=b_ref, b=b).sum()) / (2 * h)
        assert abs(fd - g[:, c, j].sum()) < 1e-7
    for j in range(5):
        e = np.zeros(5)
        e[j] = h
        fd = (fm.kl(s, W_ref, W, b_ref=b_ref, b=b + e).sum()
              - fm.kl(s, W_ref, W, b_ref=b_ref, b=b - e).sum()) / (2 * h)
        assert abs(fd - gb[:, j].sum()) < 1e-7


def test_kl_masked_actions_contribute_nothing():
    rng, s, W_ref, W, b_ref, b = case(6, B=40, with_b=True)
    mask = rng.random((40, 5)) < 0.6
    mask[:, 1] = True
    v, (g, gb) = fm.kl(s, W_ref, W, b_ref=b_ref, b=b, mask=mask, grad=True)
    kw, gw, gbw = oracle(s, W_ref, W, b_ref, b, mask=mask)
    assert np.max(np.abs(v / np.where(kw > 0, kw, 1) - np.where(kw > 0, 1, 0))) < 1e-12
    assert rel(g, gw) < 1e-10
    assert np.all(gb[~mask] == 0.0) and np.all(g.transpose(0, 2, 1)[~mask] == 0.0)
    # A mask shared by the batch: the masked columns of W are never read.
    m1 = np.array([True, False, True, True, False])
    W2 = W.copy()
    W2[:, ~m1] = 1e300
    assert np.array_equal(fm.kl(s, W_ref, W, mask=m1), fm.kl(s, W_ref, W2, mask=m1))
    # One legal action: both policies are that action, KL = 0.
    only = np.zeros(5, bool)
    only[3] = True
    assert np.all(fm.kl(s, W_ref, W, mask=only) == 0.0)


def test_kl_threads_bitwise_and_out():
    rng, s, W_ref, W, _, _ = case(7, B=5000, k=16, n=8)
    r1 = fm.kl(s, W_ref, W, grad=True, n_threads=1)
    r2 = fm.kl(s, W_ref, W, grad=True, n_threads=2)
    assert np.array_equal(r1[0], r2[0]) and np.array_equal(r1[1], r2[1])
    o = np.empty(5000)
    assert fm.kl(s, W_ref, W, out=o) is o and np.array_equal(o, r1[0])
    want = R.matrix_kl(s, W_ref, W, grad=True)
    assert rel(r1[0], want[0]) < 1e-10 and rel(r1[1], want[1]) < 1e-10


def test_kl_float32_and_layouts():
    _, s, W_ref, W, _, _ = case(8, B=50)
    s32, r32, w32 = (x.astype(np.float32) for x in (s, W_ref, W))
    v, g = fm.kl(s32, r32, w32, grad=True)
    assert v.dtype == np.float32 and g.dtype == np.float32
    kw, gw, _ = oracle(s32.astype(float), r32.astype(float), w32.astype(float))
    assert np.max(np.abs(v / kw - 1)) < 1e-6 and rel(g, gw) < 1e-6
    v64 = fm.kl(s32, r32, W)  # one float64 array: float64 results
    assert v64.dtype == np.float64
    # Fortran-ordered and strided W, lists: the same bits as C-contiguous float64.
    want = fm.kl(s, W_ref, W, grad=True)
    for args in [(s, np.asfortranarray(W_ref), np.asfortranarray(W)),
                 (s, W_ref, np.repeat(W, 2, axis=1)[:, ::2]),
                 (s.tolist(), W_ref.tolist(), W.tolist())]:
        got = fm.kl(*args, grad=True)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_kl_one_state():
    _, s, W_ref, W, _, _ = case(9, B=None)
    v, g = fm.kl(s, W_ref, W, grad=True)
    assert np.ndim(v) == 0 and g.shape == (7, 5)
    vb, gb = fm.kl(s[None], W_ref, W, grad=True)
    assert v == vb[0] and np.array_equal(g, gb[0])


def test_kl_bad_inputs():
    _, s, W_ref, W, b_ref, b = case(10, with_b=True)
    with pytest.raises(ValueError, match="W_ref contains NaN"):
        fm.kl(s, np.where(W_ref > 1, np.nan, W_ref), W)
    with pytest.raises(ValueError, match=r"W contains NaN or inf \(W\["):
        fm.kl(s, W_ref, np.where(W > 1, np.inf, W))
    with pytest.raises(ValueError, match="W must have the shape of W_ref"):
        fm.kl(s, W_ref, W[:, :3])
    with pytest.raises(ValueError, match="W_ref must have shape"):
        fm.kl(s, W_ref[:3], W[:3])
    with pytest.raises(ValueError, match="both b_ref and b"):
        fm.kl(s, W_ref, W, b=b)
    with pytest.raises(ValueError, match="both b_ref and b"):
        fm.kl(s, W_ref, W, b_ref=b_ref)
    with pytest.raises(ValueError, match="b contains NaN"):
        fm.kl(s, W_ref, W, b_ref=b_ref, b=np.full(5, np.nan))
    with pytest.raises(ValueError, match="b_ref contains NaN"):
        fm.kl(s, W_ref, W, b_ref=np.full(5, np.nan), b=b)
    with pytest.raises(ValueError, match="b must have the shape of b_ref"):
        fm.kl(s, W_ref, W, b_ref=b_ref, b=b[:2])
    with pytest.raises(TypeError):
        fm.kl(s, W_ref, None)
    with pytest.raises(TypeError):
        fm.kl(s, W_ref, W.astype(complex))
    with pytest.raises(ValueError, match="every action of state 0 is masked"):
        fm.kl(s, W_ref, W, mask=np.zeros(5, bool))
    with pytest.raises(ValueError):
        fm.kl(s, W_ref, W, temperature=0.0)
    o = np.empty(6)
    with pytest.raises(ValueError, match="share memory"):
        fm.kl(s, W_ref, W, out=s[:, 0])
    assert fm.kl(s, W_ref, W, out=o) is o


def test_kl_of_policies_too_far_apart_is_refused():
    _, s, W_ref, W, _, _ = case(11, step=0.0)
    with pytest.raises(ValueError, match="W_ref and W are too far apart"):
        fm.kl(s, 1e6 * W_ref, W)
    big = np.full_like(W_ref, 0.9e308)
    with pytest.raises(ValueError, match="too far apart"):
        fm.kl(1e-300 * s, -big, big)  # W - W_ref overflows
    # Far apart but within the difference form's range: still exact, also
    # where pi is pi_ref's most probable action's point mass and the KL is
    # of the order of 1e300.
    for W_ref2, W2 in [(10 * W_ref, W_ref), (W_ref, 1e300 * W_ref)]:
        v = fm.kl(s, W_ref2, W2)
        kw, _, _ = oracle(s, W_ref2, W2)
        assert np.max(np.abs(v / kw - 1)) < 1e-11


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 60), k=st.integers(1, 9), n=st.integers(1, 7),
       scale=st.sampled_from([0.01, 1.0, 5.0]), step=st.sampled_from([1e-9, 1e-3, 0.5, 3.0]),
       tau=st.sampled_from([1.0, 0.3]), seed=st.integers(0, 2**32 - 1))
def test_kl_property(B, k, n, scale, step, tau, seed):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((B, k))
    W_ref = scale * rng.standard_normal((k, n))
    W = W_ref + step * rng.standard_normal((k, n))
    v, g = fm.kl(s, W_ref, W, temperature=tau, grad=True)
    assert np.all(v >= 0.0) and np.all(np.isfinite(g))
    # The gradient's entries of each state sum to zero over the actions
    # (sum_j (pi_j - pi_ref_j) = 0), to rounding.
    assert np.all(np.abs(g.sum(axis=2)) <= 1e-14 * np.abs(g).sum(axis=2) + 1e-300)
    want = R.matrix_kl(s, W_ref, W, temperature=tau)
    big = want > 1e-6
    assert np.all(np.abs(v[big] - want[big]) <= 1e-9 * want[big])
