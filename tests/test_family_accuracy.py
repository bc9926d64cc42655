"""Accuracy of log_prob, entropy, probs and loglik (value, gradient, Hessian)
against the extended-precision oracle (tests/fs_oracle.py, ``family_*``).

Tolerances (issue 8): float64 results within 1e-12 relative error -- per
state for log_prob and entropy, per element for probs (also for tiny
probabilities in float64's normal range), 2-norm for the gradient -- and
1e-10 (Frobenius) for the Hessian; float32 inputs within 1e-6.  The regimes
are those of test_accuracy.py: random, logits in the thousands, nearly
deterministic policies (pi(a) > 1 - 1e-20, where log pi(a) -> 0 and H -> 0
must keep their RELATIVE accuracy), masks, temperatures, ragged states with a
single legal action, float32 and mixed float32/float64 input.  The largest
errors are recorded for the summary.
"""
import math

import numpy as np
import pytest

import fastscore
from fastscore import reference

import fs_oracle as orc
from test_accuracy import make_deterministic, offset_problem, random_problem

pytestmark = pytest.mark.skipif(
    not orc.EXTENDED, reason="the oracle needs an extended-precision np.longdouble"
)

F64_TOL = 1e-12
HESS_TOL = 1e-10
F32_TOL = 1e-6
TINY = 2.0**-1022  # float64's smallest normal number


def rel_scalar(got, want, floor=TINY):
    """max relative error; results below float64's normal range (underflow)
    must be within a few subnormal ulps instead, exact zeros exactly 0."""
    got = np.atleast_1d(np.asarray(got)).astype(orc.LD)
    want = np.atleast_1d(np.asarray(want, dtype=orc.LD))
    assert not np.any((want == 0) & (got != 0)), "exact zero expected"
    small = np.abs(want) < floor
    assert np.all(np.abs(got[small] - want[small]) <= 4 * 2.0**-1074 + floor * 1e-6)
    if small.all():
        return 0.0
    return float(np.max(np.abs(got[~small] - want[~small]) / np.abs(want[~small])))


def check_probs(case, got, want, tol, floor=TINY):
    """Per-element relative error where the probability is a normal number;
    below it (underflow) an absolute error of a few subnormal ulps."""
    assert got.shape == want.shape
    err = orc.rel_err_elementwise(got, want, floor=floor)
    small = np.abs(want.astype(float)) < floor
    if small.any():
        assert np.all(np.abs(got[small].astype(orc.LD) - want[small]) <= 4 * 2.0**-1074
                      + tol * np.abs(want[small])) or floor > TINY
    orc.record(case, err)
    assert err <= tol, f"{case}: per-element relative error {err:.3e} > {tol:.0e}"
    return err


def check_all(case, phi, theta, a, *, mask=None, tau=1.0, offsets=None, weights=None,
              tol=F64_TOL, hess_tol=HESS_TOL, f32_out=False, hess=True, oracle_bound=True):
    """Every function of the family vs the oracle on one problem."""
    kw = dict(mask=mask, temperature=tau, offsets=offsets)
    if oracle_bound:
        assert orc.logit_error_bound(phi, theta, mask=mask, temperature=tau) < tol / 100
    out_dtype = np.float32 if f32_out else np.float64
    floor = 2.0**-126 if f32_out else TINY

    ora = orc.family_all(phi, theta, a, weights=weights, **kw)
    lp = fastscore.log_prob(phi, theta, a, **kw)
    want = ora["log_prob"]
    if np.ndim(want):
        assert lp.dtype == out_dtype and lp.shape == want.shape
    err = rel_scalar(lp, want, floor)
    orc.record(f"log_prob {case}", err)
    assert err <= tol, f"log_prob {case}: {err:.3e}"

    h = fastscore.entropy(phi, theta, **kw)
    want = ora["entropy"]
    if np.ndim(want):
        assert h.dtype == out_dtype
    err = rel_scalar(h, want, floor)
    orc.record(f"entropy {case}", err)
    assert err <= tol, f"entropy {case}: {err:.3e}"

    p = fastscore.probs(phi, theta, **kw)
    assert p.dtype == out_dtype
    want = ora["probs"]
    check_probs(f"probs {case}", p, want, tol, floor)
    if mask is not None:
        assert np.all(p[~np.broadcast_to(mask, p.shape)] == 0)

    wv, wg, wh = ora["value"], ora["gradient"], ora["hessian"]
    res = fastscore.loglik(phi, theta, a, weights=weights, grad=True, hess=hess, **kw)
    v, g = res[0], res[1]
    assert isinstance(v, float) and g.dtype == np.float64
    # loglik is float64 whatever the input: float32 inputs get the float32 tolerance
    err = rel_scalar(v, wv)
    orc.record(f"loglik value {case}", err)
    assert err <= tol, f"loglik value {case}: {err:.3e}"
    if np.any(wg != 0):
        err = orc.rel_err(g, wg)
        orc.record(f"loglik gradient {case}", err)
        assert err <= tol, f"loglik gradient {case}: {err:.3e}"
    else:
        assert np.all(g == 0)
    if hess:
        hm = res[2]
        assert hm.shape == (theta.shape[0],) * 2 and np.array_equal(hm, hm.T)
        if np.any(wh != 0):
            err = orc.rel_err_frobenius(hm, wh)
            orc.record(f"loglik Hessian {case}", err)
            assert err <= hess_tol, f"loglik Hessian {case}: {err:.3e}"
        else:
            assert np.all(hm == 0)


# ---------------------------------------------------------------------------
# Random inputs.

SHAPES = [(1, 1), (2, 3), (7, 3), (33, 9), (257, 16), (1025, 5), (5, 40, 12), (3, 1100, 9),
          (16, 33, 64)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_random(rng, shape, scale):
    phi, theta, a, _ = random_problem(rng, shape, scale=scale)
    weights = rng.standard_normal(shape[0]) if len(shape) == 3 else None
    check_all("float64 random", phi, theta, a, weights=weights)


@pytest.mark.parametrize("shape", [(50, 16), (4, 300, 33)], ids=str)
def test_mixed_f32_phi_f64_theta(rng, shape):
    """float32 phi with a float64 theta: float64 results, float64 accuracy."""
    phi, theta, a, _ = random_problem(rng, shape, scale=3.0)
    check_all("mixed f32/f64", phi.astype(np.float32), theta, a)


@pytest.mark.parametrize("shape", [(50, 16), (7, 3), (4, 300, 33)], ids=str)
def test_float32(rng, shape):
    """float32 phi and theta: float32 per-state results (loglik stays float64)."""
    phi, theta, a, _ = random_problem(rng, shape, scale=2.0)
    check_all("float32", phi.astype(np.float32), theta.astype(np.float32), a,
              tol=F32_TOL, hess_tol=F32_TOL, f32_out=True)


# ---------------------------------------------------------------------------
# Temperatures and masks.

@pytest.mark.parametrize("tau", [1e-3, 0.05, 0.37, 2.5, 1e4])
@pytest.mark.parametrize("shape", [(60, 7), (5, 70, 12)], ids=str)
def test_temperature(rng, shape, tau):
    """The least likely action (as in test_accuracy): log pi(a) in the
    thousands below 0, probabilities down to the subnormal range."""
    phi, theta, _, _ = random_problem(rng, shape, scale=1.0)
    a = np.argmin(phi @ theta, axis=-1)
    a = a if phi.ndim == 3 else int(a)
    # The Hessian is checked with the most likely action below: see
    # test_hessian_independent_of_the_taken_action.
    check_all("temperature", phi, theta, a, tau=tau, hess=False)
    a_max = np.argmax(phi @ theta, axis=-1)
    a_max = a_max if phi.ndim == 3 else int(a_max)
    _, _, wh = orc.family_loglik(phi, theta, a_max, temperature=tau)
    if np.sqrt(np.square(wh).sum()) > 1e-280:
        _, hm = fastscore.loglik(phi, theta, a_max, hess=True, temperature=tau)
        err = orc.rel_err_frobenius(hm, wh)
        orc.record("loglik Hessian temperature", err)
        assert err <= HESS_TOL


@pytest.mark.parametrize("tau", [0.2, 1.0, 3.0])
@pytest.mark.parametrize("shape", [(50, 9), (2, 1), (3000, 4), (7, 64, 10), (2, 2100, 8)],
                         ids=str)
def test_mask(rng, shape, tau):
    phi, theta, a, mask = random_problem(rng, shape, scale=2.0, mask_p=0.5)
    weights = rng.uniform(-2, 2, shape[0]) if len(shape) == 3 else None
    check_all("float64 mask", phi, theta, a, mask=mask, tau=tau, weights=weights)


@pytest.mark.parametrize("shape", [(50, 9), (7, 64, 10)], ids=str)
def test_mask_float32(rng, shape):
    phi, theta, a, mask = random_problem(rng, shape, scale=2.0, mask_p=0.5)
    check_all("float32 mask", phi.astype(np.float32), theta.astype(np.float32), a, mask=mask,
              tau=0.7, tol=F32_TOL, hess_tol=F32_TOL, f32_out=True)


# ---------------------------------------------------------------------------
# Logits in the thousands.

@pytest.mark.parametrize("d, zscale", [(8, 1e3), (8, 1e4), (64, 3e3), (256, 1e4)])
def test_logits_in_the_thousands_near_ties(rng, d, zscale):
    """Every action of one state taken once (a zero-stride batch of copies)."""
    phi, theta = offset_problem(rng, 80 if d < 256 else 40, d, zscale, 2.0)
    n = phi.shape[0]
    batch = np.broadcast_to(phi, (n,) + phi.shape)
    check_all("logits in the thousands", batch, theta, np.arange(n))


@pytest.mark.parametrize("tau", [0.5, 4.0])
def test_logits_in_the_thousands_batch_mask(rng, tau):
    b, n, d = 6, 150, 64
    theta = rng.standard_normal(d)
    phi = np.empty((b, n, d))
    for i in range(b):
        u = rng.standard_normal(d) * 30
        u *= 5e3 * tau / abs(u @ theta) * rng.choice([-1, 1])
        noise = rng.standard_normal((n, d))
        noise *= 2.0 * tau / (noise @ theta).std()
        phi[i] = u + noise
    mask = rng.random((b, n)) < 0.7
    a = np.array([rng.choice(np.flatnonzero(m)) for m in mask])
    assert np.abs(phi @ theta / tau).min() > 4000
    phi[~mask] = np.nan
    check_all("logits in the thousands", phi, theta, a, mask=mask, tau=tau,
              weights=rng.standard_normal(b))


@pytest.mark.parametrize("zscale", [1e3, 1e4])
def test_logits_in_the_thousands_mixed_precision(rng, zscale):
    phi, theta = offset_problem(rng, 50, 64, zscale, 2.0, dtype=np.float32)
    batch = np.broadcast_to(phi, (50,) + phi.shape)
    check_all("mixed f32/f64 logits in the thousands", batch, theta, np.arange(50))


def test_logits_in_the_thousands_float32(rng):
    phi, theta = offset_problem(rng, 50, 64, 5e3, 2.0, dtype=np.float32)
    theta = theta.astype(np.float32)
    batch = np.broadcast_to(phi, (50,) + phi.shape)
    check_all("float32 logits in the thousands", batch, theta, np.arange(50),
              tol=F32_TOL, hess_tol=F32_TOL, f32_out=True, oracle_bound=False)


# ---------------------------------------------------------------------------
# Nearly deterministic policies: pi(a) > 1 - 1e-20.

@pytest.mark.parametrize("n, d", [(2, 1), (50, 8), (2000, 9), (40, 256)])
@pytest.mark.parametrize("tau", [1.0, 0.25, 8.0])
@pytest.mark.parametrize("masked", [False, True])
def test_near_deterministic(rng, n, d, tau, masked):
    mask = None
    phi = rng.standard_normal((n, d))
    theta = rng.standard_normal(d)
    if masked:
        mask = rng.random(n) < 0.5
        mask[rng.choice(n, size=min(n, 2), replace=False)] = True
    legal = np.ones(n, bool) if mask is None else mask
    a = int(rng.choice(np.flatnonzero(legal)))
    make_deterministic(phi, theta, a, gap=50.0, tau=tau, legal=legal)
    if mask is not None:
        phi[~mask] = np.nan
    assert 0 < orc.prob_not_a(phi, theta, a, mask=mask, temperature=tau) < 1e-20
    lp = orc.family_log_prob(phi, theta, a, mask=mask, temperature=tau)
    h = orc.family_entropy(phi, theta, mask=mask, temperature=tau)
    assert -1e-20 < lp < 0 and 0 < h < 1e-18  # tiny, and kept relatively accurate:
    check_all("near-deterministic", phi, theta, a, mask=mask, tau=tau)
    # the textbook log-softmax and -sum pi log pi lose every digit here (teeth)
    assert rel_scalar(reference.log_prob(phi, theta, a, mask=mask, temperature=tau), lp) > 0.5
    # (the entropy's textbook error is ~ 1/gap: it drops the r log-term of pi(a))
    assert rel_scalar(reference.entropy(phi, theta, mask=mask, temperature=tau), h) > 1e-3


def test_near_deterministic_batch_weights(rng):
    b, n, d = 12, 100, 16
    phi = rng.standard_normal((b, n, d))
    theta = rng.standard_normal(d)
    a = rng.integers(0, n, size=b)
    for i in range(b):
        make_deterministic(phi[i], theta, a[i], gap=rng.uniform(47, 200))
    check_all("near-deterministic", phi, theta, a, weights=rng.uniform(0.5, 2.0, b))


def test_near_deterministic_large_logits(rng):
    phi, theta = offset_problem(rng, 100, 32, 1e3, 3.0)
    make_deterministic(phi, theta, 17, gap=50.0)
    assert orc.prob_not_a(phi, theta, 17) < 1e-20
    check_all("near-deterministic", phi, theta, 17)


@pytest.mark.parametrize("gap", [50.0, 80.0])
def test_near_deterministic_float32(rng, gap):
    phi = rng.standard_normal((64, 12))
    theta = rng.standard_normal(12)
    make_deterministic(phi, theta, 5, gap=gap)
    phi, theta = phi.astype(np.float32), theta.astype(np.float32)
    check_all("float32 near-deterministic", phi, theta, 5, tol=F32_TOL, hess_tol=F32_TOL,
              f32_out=True, oracle_bound=False)


# ---------------------------------------------------------------------------
# Ragged states, single legal actions.

def ragged_problem(rng, sizes, d, *, scale=2.0, mask_p=0.0):
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
    phi = rng.standard_normal((offsets[-1], d))
    theta = rng.standard_normal(d) * scale / math.sqrt(d)
    mask = None
    if mask_p:
        mask = rng.random(offsets[-1]) >= mask_p
    a = []
    for b in range(len(sizes)):
        legal = np.ones(sizes[b], bool) if mask is None else mask[offsets[b]:offsets[b + 1]]
        if not legal.any():
            legal[rng.integers(sizes[b])] = True
        a.append(rng.choice(np.flatnonzero(legal)))
    if mask is not None:
        phi[~mask] = np.nan
    return phi, theta, np.array(a, dtype=np.intp), mask, offsets


@pytest.mark.parametrize("masked", [False, True])
def test_ragged(rng, masked):
    sizes = [1, 5, 1, 40, 3, 1100, 2, 1]
    phi, theta, a, mask, offsets = ragged_problem(rng, sizes, 9, mask_p=0.4 if masked else 0)
    check_all("ragged", phi, theta, a, mask=mask, offsets=offsets, tau=0.8,
              weights=rng.standard_normal(len(sizes)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_single_legal_action_is_exact(rng, dtype):
    """A state with one legal action (one row, or one unmasked row): entropy
    exactly 0, log pi exactly 0, probability exactly 1, score and Hessian 0."""
    sizes = [1, 4, 1, 6]
    phi, theta, _, _, offsets = ragged_problem(rng, sizes, 5)
    mask = np.ones(offsets[-1], bool)
    mask[offsets[1]:offsets[2]] = [False, False, True, False]
    mask[offsets[3]:offsets[4]] = [False] * 5 + [True]
    a = np.array([0, 2, 0, 5])
    phi[~mask] = np.nan
    phi, theta = phi.astype(dtype), theta.astype(dtype)
    kw = dict(mask=mask, offsets=offsets, temperature=0.3)
    assert np.all(fastscore.log_prob(phi, theta, a, **kw) == 0)
    assert np.all(fastscore.entropy(phi, theta, **kw) == 0)
    p = fastscore.probs(phi, theta, **kw)
    assert np.array_equal(p, mask.astype(dtype))
    v, g, h = fastscore.loglik(phi, theta, a, weights=[1.0, -2.0, 3.0, 0.5], grad=True,
                               hess=True, **kw)
    assert v == 0 and np.all(g == 0) and np.all(h == 0)
    sa, slp = fastscore.sample(phi, theta, seed=3, **kw)
    assert np.array_equal(sa, a) and np.all(slp == 0)
    # one state with one row, padded layout
    assert fastscore.log_prob(phi[:1], theta, 0) == 0.0
    assert fastscore.entropy(phi[:1], theta) == 0.0
    assert fastscore.probs(phi[:1], theta).tolist() == [1.0]


# ---------------------------------------------------------------------------
# The Hessian is -Cov_pi(phi)/tau^2: it does not depend on the taken action.

def _peaked_problem(rng):
    """One state whose policy is nearly one-hot (1 - pi_max ~ 1e-9 ... 1e-80)."""
    phi = rng.standard_normal((5, 3))
    theta = rng.standard_normal(3)
    return phi, theta


@pytest.mark.parametrize("tau", [0.02, 0.005])
def test_hessian_of_a_peaked_policy_taken_argmax(rng, tau):
    phi, theta = _peaked_problem(rng)
    a = int(np.argmax(phi @ theta))
    _, _, wh = orc.family_loglik(phi, theta, a, temperature=tau)
    _, hm = fastscore.loglik(phi, theta, a, hess=True, temperature=tau)
    err = orc.rel_err_frobenius(hm, wh)
    orc.record("loglik Hessian peaked, a = argmax", err)
    assert err <= HESS_TOL


@pytest.mark.parametrize("tau", [0.02, 0.005])
def test_hessian_of_a_peaked_policy_taken_other_action(rng, tau):
    phi, theta = _peaked_problem(rng)
    a = int(np.argmin(phi @ theta))
    _, _, wh = orc.family_loglik(phi, theta, a, temperature=tau)
    _, hm = fastscore.loglik(phi, theta, a, hess=True, temperature=tau)
    err = orc.rel_err_frobenius(hm, wh)
    orc.record("loglik Hessian peaked, a = argmin", err)
    assert err <= HESS_TOL, f"Hessian relative error {err:.3e} (a = argmin, tau = {tau})"
