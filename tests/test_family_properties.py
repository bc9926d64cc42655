"""Property tests (hypothesis) of the family on random shapes, masks, offsets
and temperatures: agreement with the longdouble oracle and with
fastscore.reference (within tolerances that allow for the reference's own
rounding), and the identities that hold in exact arithmetic: probs sum to 1
and are 0 where masked, 0 <= H <= log N_legal, log pi(a) <= 0,
exp(log_prob) = probs[a], sampled actions are legal."""
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastscore
from fastscore import reference

import fs_oracle as orc

pytestmark = pytest.mark.skipif(
    not orc.EXTENDED, reason="the oracle needs an extended-precision np.longdouble"
)


def examples(n):
    return max(1, int(n * float(os.environ.get("FASTSCORE_HYPOTHESIS_SCALE", "1"))))


@st.composite
def ragged_problems(draw, dtype=np.float64):
    """(rows, theta, a, mask or None, offsets, tau)."""
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=8))
    d = draw(st.integers(1, 6))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
    total = int(offsets[-1])
    width = 32 if dtype == np.float32 else 64
    rows = draw(hnp.arrays(dtype, (total, d), elements=st.floats(
        -8, 8, allow_nan=False, width=width)))
    theta = draw(hnp.arrays(dtype, d, elements=st.floats(-3, 3, allow_nan=False, width=width)))
    tau = draw(st.sampled_from([1.0, 0.5, 2.0, 0.3]))
    mask = draw(st.one_of(st.none(), hnp.arrays(np.bool_, total)))
    legal = np.ones(total, bool) if mask is None else mask
    a = []
    for b in range(len(sizes)):
        seg = legal[offsets[b]:offsets[b + 1]]
        if not seg.any():
            seg[draw(st.integers(0, sizes[b] - 1))] = True
        a.append(draw(st.sampled_from(np.flatnonzero(seg).tolist())))
    if mask is not None:
        rows = rows.copy()
        rows[~mask] = np.nan
    return rows, theta, np.array(a, np.intp), mask, offsets, tau


def legal_counts(mask, offsets):
    total = offsets[-1]
    legal = np.ones(total, bool) if mask is None else mask
    return np.add.reduceat(legal.astype(int), offsets[:-1]), legal


@settings(max_examples=examples(60))
@given(ragged_problems())
def test_invariants_and_oracle(p):
    rows, theta, a, mask, offsets, tau = p
    kw = dict(mask=mask, temperature=tau, offsets=offsets)
    n_legal, legal = legal_counts(mask, offsets)
    lp = fastscore.log_prob(rows, theta, a, **kw)
    h = fastscore.entropy(rows, theta, **kw)
    pr = fastscore.probs(rows, theta, **kw)
    assert np.all(lp <= 0)
    assert np.all(h >= 0) and np.all(h <= np.log(n_legal) * (1 + 1e-15) + 1e-300)
    assert np.all(pr[~legal] == 0) and np.all(pr >= 0) and np.all(pr <= 1)
    sums = np.add.reduceat(pr, offsets[:-1])
    assert np.all(np.abs(sums - 1) <= 4 * offsets[-1] * 2.0**-53)
    idx = offsets[:-1] + a
    np.testing.assert_allclose(np.exp(lp), pr[idx], rtol=1e-13, atol=1e-300)
    acts, slp = fastscore.sample(rows, theta, seed=0, **kw)
    assert np.all(legal[offsets[:-1] + acts]) and slp.tobytes() == \
        fastscore.log_prob(rows, theta, acts, **kw).tobytes()

    # oracle: per-state tolerance scaled by the logits' size (condition)
    ora = orc.family_all(rows, theta, a, mask=mask, temperature=tau, offsets=offsets)
    zmax = float(np.abs(np.nan_to_num(rows @ theta)).max()) / tau + 1
    tol = 64 * 2.0**-53 * (zmax + offsets[-1])
    assert np.all(np.abs(lp - ora["log_prob"].astype(float))
                  <= tol * np.maximum(np.abs(lp), 1e-300) + 1e-300)
    assert np.all(np.abs(h - ora["entropy"].astype(float))
                  <= tol * (np.abs(h) + np.abs(ora["entropy"].astype(float))) + 1e-300)
    assert np.all(np.abs(pr - ora["probs"].astype(float)) <= tol * pr + 1e-300)


@settings(max_examples=examples(40))
@given(ragged_problems(), st.sampled_from([None, "signed"]))
def test_matches_reference(p, wkind):
    """fastscore agrees with the plain NumPy reference (padding with a mask,
    as a user does) wherever the reference itself is accurate: absolute
    errors scaled by the sizes of the terms."""
    rows, theta, a, mask, offsets, tau = p
    w = None if wkind is None else np.linspace(-1.5, 2.0, len(a))
    kw = dict(mask=mask, temperature=tau, offsets=offsets)
    zmax = float(np.abs(np.nan_to_num(rows @ theta)).max()) / tau + 1
    tol = 1e-13 * (zmax + offsets[-1])
    np.testing.assert_allclose(fastscore.log_prob(rows, theta, a, **kw),
                               reference.log_prob(rows, theta, a, **kw), rtol=tol, atol=tol)
    np.testing.assert_allclose(fastscore.entropy(rows, theta, **kw),
                               reference.entropy(rows, theta, **kw), rtol=tol, atol=tol)
    np.testing.assert_allclose(fastscore.probs(rows, theta, **kw),
                               reference.probs(rows, theta, **kw), rtol=tol, atol=tol)
    got = fastscore.loglik(rows, theta, a, weights=w, grad=True, hess=True, **kw)
    ref = reference.loglik(rows, theta, a, weights=w, grad=True, hess=True, **kw)
    phimax = float(np.nanmax(np.abs(rows))) + 1
    scale = len(a) * (1 if w is None else 2)
    assert abs(got[0] - ref[0]) <= tol * scale * zmax
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=tol * scale * phimax / tau)
    np.testing.assert_allclose(got[2], ref[2], rtol=0,
                               atol=tol * scale * phimax**2 / tau**2)


@settings(max_examples=examples(60))
@given(ragged_problems(dtype=np.float32))
def test_float32_ragged(p):
    """float32 in, float32 out, within 1e-6 of the oracle (relative to the
    result; absolute for the tiny ones)."""
    rows, theta, a, mask, offsets, tau = p
    kw = dict(mask=mask, temperature=tau, offsets=offsets)
    lp = fastscore.log_prob(rows, theta, a, **kw)
    pr = fastscore.probs(rows, theta, **kw)
    h = fastscore.entropy(rows, theta, **kw)
    assert lp.dtype == pr.dtype == h.dtype == np.float32
    ora = orc.family_all(rows, theta, a, mask=mask, temperature=tau, offsets=offsets)
    for got, want in ((lp, ora["log_prob"]), (pr, ora["probs"]), (h, ora["entropy"])):
        want = want.astype(float)
        assert np.all(np.abs(got - want) <= 1e-6 * np.abs(want) + 2.0**-126)


@settings(max_examples=examples(60))
@given(ragged_problems(), st.randoms(use_true_random=False))
def test_state_order_and_permutation(p, rand):
    """Reordering the states permutes the per-state results bit for bit
    (each state is computed alone); permuting the rows within states leaves
    log_prob and entropy unchanged to rounding."""
    rows, theta, a, mask, offsets, tau = p
    n_states = len(a)
    order = list(range(n_states))
    rand.shuffle(order)
    sizes = np.diff(offsets)
    new_rows = np.concatenate([rows[offsets[b]:offsets[b + 1]] for b in order])
    new_mask = None if mask is None else np.concatenate(
        [mask[offsets[b]:offsets[b + 1]] for b in order])
    new_off = np.concatenate([[0], np.cumsum(sizes[order])])
    kw = dict(temperature=tau)
    lp = fastscore.log_prob(rows, theta, a, mask=mask, offsets=offsets, **kw)
    lp2 = fastscore.log_prob(new_rows, theta, a[order], mask=new_mask, offsets=new_off, **kw)
    assert lp2.tobytes() == lp[order].tobytes()
    h = fastscore.entropy(rows, theta, mask=mask, offsets=offsets, **kw)
    h2 = fastscore.entropy(new_rows, theta, mask=new_mask, offsets=new_off, **kw)
    assert h2.tobytes() == h[order].tobytes()
    # reversing the rows of every state (and renumbering a)
    rev = np.concatenate([np.arange(offsets[b + 1] - 1, offsets[b] - 1, -1)
                          for b in range(n_states)])
    a_rev = sizes - 1 - a
    lp3 = fastscore.log_prob(rows[rev], theta, a_rev, offsets=offsets, temperature=tau,
                             mask=None if mask is None else mask[rev])
    zmax = float(np.abs(np.nan_to_num(rows @ theta)).max()) / tau + 1
    assert np.all(np.abs(lp3 - lp) <= 32 * 2.0**-53 * (zmax + offsets[-1]) *
                  np.maximum(np.abs(lp), 1e-300) + 1e-300)
    assert math.isfinite(float(lp3.sum()))
