"""Property tests (hypothesis): agreement with the extended-precision oracle
and invariances of the score that hold in exact arithmetic.

Tolerances are componentwise and condition-aware.  With
S_i = (1/tau) sum_k pi_k |phi_ai - phi_ki| (>= |score_i|), a stable one-pass
evaluation has error at most ~ u (c1 N + c2 max|z|) S_i, u = 2**-53: the
logits are accurate to ~u |z| (so the weights to ~2 u max|z|) and the sum of
N terms adds ~N u.  ``kernel_tol`` takes 45 u per unit of (N + max|z| + 10):
loose enough for any correct kernel, far too tight for a wrong one (a lost
1/tau, a masked row counted, a misplaced max shift -- all O(S_i) errors).
Plus an absolute N x 2**-1074 / tau for results in the subnormal range.
"""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastscore

import fs_oracle as orc

pytestmark = pytest.mark.skipif(
    not orc.EXTENDED, reason="the oracle needs an extended-precision np.longdouble"
)

PHI_MAX, THETA_MAX = 10.0, 3.0


def examples(n):
    """max_examples, scaled by FASTSCORE_HYPOTHESIS_SCALE for longer runs."""
    return max(1, int(n * float(os.environ.get("FASTSCORE_HYPOTHESIS_SCALE", "1"))))
TAUS = st.one_of(st.sampled_from([1.0, 0.5, 2.0]), st.floats(0.25, 4.0))


def floats(bound):
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, *, batch=False, max_n=40, max_d=12, dtype=np.float64, masked=None):
    """(phi, theta, a, mask, tau); masked=None: a mask or not, at random."""
    b = draw(st.integers(1, 6)) if batch else None
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    shape = (b, n, d) if batch else (n, d)
    width = 32 if dtype == np.float32 else 64
    phi = draw(hnp.arrays(dtype, shape, elements=st.floats(
        -PHI_MAX, PHI_MAX, allow_nan=False, width=width)))
    theta = draw(hnp.arrays(dtype, d, elements=st.floats(
        -THETA_MAX, THETA_MAX, allow_nan=False, width=width)))
    tau = draw(TAUS)
    mask = None
    if masked if masked is not None else draw(st.booleans()):
        mask = draw(hnp.arrays(np.bool_, shape[:-1]))
    legal = np.ones(shape[:-1], bool) if mask is None else mask
    legal2 = legal.reshape(-1, n)
    acts = []
    for i in range(legal2.shape[0]):
        if not legal2[i].any():
            legal2[i, draw(st.integers(0, n - 1))] = True
        acts.append(draw(st.sampled_from(np.flatnonzero(legal2[i]).tolist())))
    if mask is not None:
        phi = phi.copy()
        phi[~legal] = np.nan  # masked rows are never read
    a = np.array(acts, dtype=np.intp) if batch else acts[0]
    return phi, theta, a, mask, tau


def zmax(phi, theta, mask, tau):
    z = np.abs(np.nan_to_num(phi.astype(np.float64) @ theta.astype(np.float64))) / tau
    if mask is not None:
        z = np.where(mask, z, 0)
    return float(z.max())


def kernel_tol(phi, theta, a, mask, tau):
    """Componentwise error allowance of a float64 result (see module doc)."""
    n = phi.shape[-2]
    s = orc.condition_scale(phi, theta, a, mask=mask, temperature=tau)
    # + N half-ulps of the subnormal range: sums of subnormal terms are not
    # relatively accurate in any arithmetic
    return 1e-14 * (n + zmax(phi, theta, mask, tau) + 10) * s + n * 2.0**-1074 / tau


def assert_close_to_oracle(got, phi, theta, a, mask, tau, f32=False):
    want = orc.score(phi, theta, a, mask=mask, temperature=tau)
    tol = kernel_tol(phi, theta, a, mask, tau)
    if f32:
        # the float32 rounding of the result, and float32's subnormal floor
        tol = tol * 1.01 + 2.0**-24 * np.abs(want) + 2.0**-149
    err = np.abs(got.astype(orc.LD) - want)
    assert np.all(err <= tol), (err.max(), tol)
    return want


@settings(max_examples=examples(300))
@given(problems())
def test_matches_oracle(p):
    phi, theta, a, mask, tau = p
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    assert got.dtype == np.float64
    assert_close_to_oracle(got, phi, theta, a, mask, tau)


@settings(max_examples=examples(100))
@given(problems(batch=True))
def test_matches_oracle_batch(p):
    phi, theta, a, mask, tau = p
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    assert_close_to_oracle(got, phi, theta, a, mask, tau)


@settings(max_examples=examples(150))
@given(problems(dtype=np.float32))
def test_matches_oracle_float32(p):
    phi, theta, a, mask, tau = p
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    assert got.dtype == np.float32
    assert_close_to_oracle(got, phi, theta, a, mask, tau, f32=True)


@settings(max_examples=examples(150))
@given(problems(), hnp.arrays(np.float64, 12, elements=floats(PHI_MAX)))
def test_shift_invariance(p, c):
    """Adding the same vector c to every row changes every logit by
    c.theta/tau (pi unchanged) and every phi_a - phi_k not at all: the score
    is unchanged in exact arithmetic.  In floating point phi + c is rounded
    (<= u |phi + c| per entry), which moves the logits by <= 2 u |phi+c|.|theta|/tau
    relative to each other, and the differences by <= 2 u |phi + c|; the
    allowance below covers that plus both kernels' own error."""
    phi, theta, a, mask, tau = p
    c = c[: phi.shape[1]]
    shifted = phi + c
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    got_shifted = fastscore.score(shifted, theta, a, mask=mask, temperature=tau)
    s = orc.condition_scale(phi, theta, a, mask=mask, temperature=tau).astype(float)
    u = 2.0**-53
    big = 2 * PHI_MAX
    rounding = 4 * u * big * (1 + np.abs(theta).sum() / tau * s.max()) / tau * 10
    tol = (kernel_tol(phi, theta, a, mask, tau)
           + kernel_tol(shifted, theta, a, mask, tau)).astype(float) + rounding
    assert np.all(np.abs(got - got_shifted) <= tol)


@settings(max_examples=examples(150))
@given(problems(), st.randoms(use_true_random=False))
def test_permutation_invariance(p, rand):
    """Relabelling the actions (rows of phi, mask entries and a together)
    leaves the score unchanged up to summation order."""
    phi, theta, a, mask, tau = p
    n = phi.shape[0]
    perm = list(range(n))
    rand.shuffle(perm)
    perm = np.array(perm)
    inv = np.argsort(perm)
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    got_perm = fastscore.score(phi[perm], theta, int(inv[a]),
                               mask=None if mask is None else mask[perm], temperature=tau)
    tol = 2 * kernel_tol(phi, theta, a, mask, tau).astype(float)
    assert np.all(np.abs(got - got_perm) <= tol)


@settings(max_examples=examples(100))
@given(problems(max_n=25))
def test_expected_score_is_zero(p):
    """E_pi[grad log pi(a)] = grad sum_a pi(a) = 0: sum_a pi_a score(a) = 0.
    All actions scored in one batch call over a zero-stride batch."""
    phi, theta, _, mask, tau = p
    n, d = phi.shape
    legal = np.ones(n, bool) if mask is None else mask
    acts = np.flatnonzero(legal)
    batch = np.broadcast_to(phi, (acts.size, n, d))
    scores = fastscore.score(batch, theta, acts, mask=mask, temperature=tau)
    pi = orc.probabilities(phi, theta, mask=mask, temperature=tau)[acts]
    expectation = (pi[:, None] * scores.astype(orc.LD)).sum(axis=0)
    tol = sum(pi[i] * kernel_tol(phi, theta, int(k), mask, tau)
              for i, k in enumerate(acts))
    tol = tol + 64 * orc.EPS_LD * (pi[:, None] * np.abs(scores)).sum(axis=0)
    assert np.all(np.abs(expectation) <= tol)


@settings(max_examples=examples(100))
@given(problems(batch=True, max_n=1100, max_d=9),
       st.sampled_from([1, 2, 3, 4, None]))
def test_batch_is_stacked_single_states(p, n_threads):
    """A batch is B independent states: its rows are bitwise the single-state
    results, whatever the thread count."""
    phi, theta, a, mask, tau = p
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau, n_threads=n_threads)
    singles = np.stack([
        fastscore.score(phi[b], theta, int(a[b]), mask=None if mask is None else mask[b],
                        temperature=tau, n_threads=1)
        for b in range(phi.shape[0])])
    assert got.tobytes() == singles.tobytes()


@settings(max_examples=examples(80))
@given(problems(masked=True))
def test_dropping_masked_rows(p):
    """Masking an action is the same as deleting its row (and renumbering a)."""
    phi, theta, a, mask, tau = p
    keep = np.flatnonzero(mask)
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    dropped = fastscore.score(phi[keep], theta, int(np.searchsorted(keep, a)),
                              temperature=tau)
    tol = 2 * kernel_tol(phi, theta, a, mask, tau).astype(float)
    assert np.all(np.abs(got - dropped) <= tol)
