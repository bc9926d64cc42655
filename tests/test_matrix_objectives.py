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
