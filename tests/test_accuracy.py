"""Accuracy of fastscore.score against an extended-precision oracle.

The oracle (tests/fs_oracle.py) works in 80-bit longdouble with double-double
logits; it is never ``fastscore.reference.score``, which is itself inaccurate
where it matters (nearly deterministic policies; asserted below).

Tolerances (README, "Accuracy"): float64 results within 1e-12 relative error
(2-norm of the score vector, per state), float32 within 1e-6.  Each check also
asserts the oracle's own logit error bound is at least 100x below the
tolerance, so a pass is not luck of the oracle.
"""
import math
from fractions import Fraction

import numpy as np
import pytest

import fastscore
from fastscore import reference

import fs_oracle as orc

pytestmark = pytest.mark.skipif(
    not orc.EXTENDED, reason="the oracle needs an extended-precision np.longdouble"
)

F64_TOL = 1e-12
F32_TOL = 1e-6


def check(case, got, phi, theta, a, *, mask=None, temperature=1.0, tol=F64_TOL, want=None):
    """Assert rel. error of got vs the oracle <= tol; record it; return it."""
    if want is None:
        want = orc.score(phi, theta, a, mask=mask, temperature=temperature)
    assert got.shape == want.shape
    # The oracle's logit error must be negligible next to the tolerance: the
    # score's relative sensitivity to a logit error dz is at most ~2 |dz|.
    assert orc.logit_error_bound(phi, theta, mask=mask, temperature=temperature) < tol / 100
    norms = np.sqrt(np.square(want).sum(axis=-1))
    if np.all(norms == 0):
        # N = 1 (or every legal row equal to phi_a): the score is exactly 0.
        assert np.all(got == 0)
        return 0.0
    assert np.all(norms > 1e-290), "test case underflows double; pick another"
    err = orc.rel_err(got, want)
    orc.record(case, err)
    assert err <= tol, f"{case}: relative error {err:.3e} > {tol:.0e}"
    return err


def random_problem(rng, shape, *, scale=1.0, mask_p=0.0, nan_pad=True):
    """phi ~ N(0,1), theta ~ N(0,1) scale/sqrt(d); a uniform over legal actions."""
    *batch, n, d = shape
    phi = rng.standard_normal(shape)
    theta = rng.standard_normal(d) * scale / math.sqrt(max(d, 1))
    mask = None
    if mask_p:
        mask = rng.random(tuple(batch) + (n,)) >= mask_p
    legal = np.ones(tuple(batch) + (n,), bool) if mask is None else mask
    legal2 = legal.reshape(-1, n)
    acts = []
    for b in range(legal2.shape[0]):
        if not legal2[b].any():
            legal2[b, rng.integers(n)] = True
        acts.append(rng.choice(np.flatnonzero(legal2[b])))
    if mask is not None and nan_pad:
        phi[~legal] = np.nan  # masked rows are never read
    a = np.array(acts, dtype=np.intp) if batch else int(acts[0])
    return phi, theta, a, mask


SHAPES = [
    (1, 1), (1, 7), (2, 1), (2, 3), (7, 3), (31, 8), (33, 9), (100, 17), (257, 64),
    (1025, 5), (64, 256), (5, 40, 12), (3, 1100, 9), (16, 33, 256),
]


# ---------------------------------------------------------------------------
# The oracle itself.

def test_oracle_logits_are_exact(rng):
    """The double-double logits agree with exact rational arithmetic to 2 eps_ld |z|."""
    phi = rng.standard_normal((20, 37)) * 30
    theta = rng.standard_normal(37) * 50
    phi[0] = theta[::-1]  # one large logit, one with heavy cancellation:
    phi[1] = theta * np.where(np.arange(37) % 2, 1, -1)
    z = orc.logits(phi, theta)
    for k in range(phi.shape[0]):
        exact = sum(Fraction(x) * Fraction(t) for x, t in zip(phi[k], theta))
        got = Fraction(*z[k].as_integer_ratio())
        assert abs(got - exact) <= Fraction(2 * orc.EPS_LD) * abs(exact)


@pytest.mark.parametrize("c", [0.0, 1.5, 30.0, 50.0, 300.0, 700.0])
@pytest.mark.parametrize("a", [0, 1])
def test_two_actions_closed_form(c, a):
    """phi = [v, 0] with v . theta = c exactly: score(0) = sigmoid(-c) v,
    score(1) = -sigmoid(c) v.  Checks the oracle and fastscore against a formula."""
    v = np.array([c, 0.0, 0.0])
    phi = np.stack([v, np.zeros(3)])
    theta = np.array([1.0, 2.0, 3.0])
    e = math.exp(-c)
    want = (e / (1 + e)) * v if a == 0 else -(1 / (1 + e)) * v
    if c == 0.0:
        want = np.array([0.0, 0.0, 0.0])
        assert np.all(fastscore.score(phi, theta, a) == 0)
        return
    assert orc.rel_err(orc.score(phi, theta, a), want) < 1e-15
    got = fastscore.score(phi, theta, a)
    assert orc.rel_err(got, want) < 1e-14


# ---------------------------------------------------------------------------
# Random inputs.

@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("scale", [0.5, 4.0])
def test_float64_random(rng, shape, scale):
    phi, theta, a, _ = random_problem(rng, shape, scale=scale)
    got = fastscore.score(phi, theta, a)
    assert got.dtype == np.float64
    check("float64 random", got, phi, theta, a)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float32_random(rng, shape):
    phi, theta, a, _ = random_problem(rng, shape, scale=2.0)
    phi, theta = phi.astype(np.float32), theta.astype(np.float32)
    got = fastscore.score(phi, theta, a)
    assert got.dtype == np.float32
    # The oracle works from the float32 values (exactly representable in double).
    check("float32 random", got, phi, theta, a, tol=F32_TOL)


@pytest.mark.parametrize("dtypes", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["f32phi-f64theta", "f64phi-f32theta"])
@pytest.mark.parametrize("shape", [(50, 16), (4, 300, 33)], ids=str)
def test_mixed_precision_random(rng, shape, dtypes):
    """Mixed float32/float64 inputs give a float64 result: float64 accuracy."""
    phi, theta, a, _ = random_problem(rng, shape, scale=3.0)
    phi, theta = phi.astype(dtypes[0]), theta.astype(dtypes[1])
    got = fastscore.score(phi, theta, a)
    assert got.dtype == np.float64
    check("mixed f32/f64 random", got, phi, theta, a)


@pytest.mark.parametrize("shape", [(40, 6), (6, 50, 13)], ids=str)
def test_integer_inputs(rng, shape):
    phi = rng.integers(-5, 6, size=shape)
    theta = rng.integers(-2, 3, size=shape[-1])
    a = rng.integers(0, shape[-2], size=shape[0]) if len(shape) == 3 else 3
    got = fastscore.score(phi, theta, a, temperature=3.0)
    assert got.dtype == np.float64
    check("float64 random", got, phi, theta, a, temperature=3.0)


# ---------------------------------------------------------------------------
# Temperature and mask.

@pytest.mark.parametrize("tau", [1e-3, 0.05, 0.37, 1.0, 2.5, 100.0, 1e4])
@pytest.mark.parametrize("shape", [(60, 7), (5, 70, 12)], ids=str)
def test_temperature(rng, shape, tau):
    phi, theta, _, _ = random_problem(rng, shape, scale=1.0)
    # The least likely action: its score stays well-scaled (no underflow) even
    # when a small tau makes the policy one-hot.
    z = phi @ theta
    a = np.argmin(z, axis=-1)
    a = a if phi.ndim == 3 else int(a)
    got = fastscore.score(phi, theta, a, temperature=tau)
    check("temperature", got, phi, theta, a, temperature=tau)


@pytest.mark.parametrize("tau", [0.2, 1.0, 3.0])
@pytest.mark.parametrize("shape", [(50, 9), (2, 1), (3000, 4), (7, 64, 10), (2, 2100, 8)],
                         ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mask(rng, shape, tau, dtype):
    phi, theta, a, mask = random_problem(rng, shape, scale=2.0, mask_p=0.5)
    phi, theta = phi.astype(dtype), theta.astype(dtype)
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    case = "float32 mask" if dtype == np.float32 else "float64 mask"
    tol = F32_TOL if dtype == np.float32 else F64_TOL
    check(case, got, phi, theta, a, mask=mask, temperature=tau, tol=tol)


def test_shared_mask_for_a_batch(rng):
    phi, theta, _, _ = random_problem(rng, (6, 80, 11), scale=2.0)
    mask = rng.random(80) < 0.6
    phi[:, ~mask] = np.nan
    a = rng.choice(np.flatnonzero(mask), size=6)
    got = fastscore.score(phi, theta, a, mask=mask)
    check("float64 mask", got, phi, theta, a, mask=mask)


# ---------------------------------------------------------------------------
# Logits in the thousands.

def offset_problem(rng, n, d, zscale, spread, dtype=np.float64):
    """Rows u + noise: every logit is ~zscale in size, the spread between them
    O(spread), so many actions carry weight.  The logit of each row must be
    right to ~1e-13 absolute for the score to have 12 digits: the kernel needs
    more than a plain double dot product here."""
    u = rng.standard_normal(d) * 30
    phi = u + rng.standard_normal((n, d)) * 0.3
    theta = rng.standard_normal(d)
    theta *= zscale / abs(u @ theta)
    # rescale the noise so that the logits spread by ~spread
    noise_z = (phi - u) @ theta
    phi = u + (phi - u) * (spread / noise_z.std())
    phi, theta = phi.astype(dtype), theta.astype(np.float64)
    return phi, theta


def check_every_action(case, phi, theta, tol):
    """The score of every action of one state, in one batch call over a
    zero-stride (broadcast, read-only) batch of copies of phi."""
    n = phi.shape[0]
    want = orc.score_all_actions(phi, theta)
    got = fastscore.score(np.broadcast_to(phi, (n,) + phi.shape), theta, np.arange(n))
    return check(case, got, np.broadcast_to(phi, (n,) + phi.shape), theta, np.arange(n),
                 tol=tol, want=want)


@pytest.mark.parametrize("d", [8, 64, 256])
@pytest.mark.parametrize("zscale", [1e3, 3e3, 1e4])
@pytest.mark.parametrize("spread", [0.5, 5.0])
def test_logits_in_the_thousands_near_ties(rng, d, zscale, spread):
    phi, theta = offset_problem(rng, 200, d, zscale, spread)
    z = phi @ theta
    assert 0.5 * zscale < np.abs(z).min() and np.abs(z).max() < 2 * zscale
    check_every_action("logits in the thousands", phi, theta, F64_TOL)


@pytest.mark.parametrize("d", [8, 64, 256])
@pytest.mark.parametrize("zscale", [1e3, 1e4])
def test_logits_in_the_thousands_iid(rng, d, zscale):
    """phi ~ 30 N(0,1), theta scaled so that |z| ~ zscale: a nearly one-hot policy."""
    n = 300
    phi = rng.standard_normal((n, d)) * 30
    theta = rng.standard_normal(d)
    theta *= zscale / np.abs(phi @ theta).mean()
    z = phi @ theta
    order = np.argsort(z)
    checked = 0
    for a in [*rng.integers(n, size=5), order[-1], order[-2], order[0]]:
        a = int(a)
        if np.linalg.norm(orc.score(phi, theta, a).astype(float)) < 1e-280:
            continue  # the argmax with a gap > 700: its score underflows double
        check("logits in the thousands", fastscore.score(phi, theta, a), phi, theta, a)
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
def test_logits_in_the_thousands_batch_mask(rng, tau):
    """A batch whose states sit at logits of +-5000 (after 1/tau), spread ~2."""
    b, n, d = 8, 150, 64
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
    z = phi @ theta / tau
    assert np.abs(z).min() > 4000 and np.abs(z).max() < 6000
    phi[~mask] = np.nan
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    check("logits in the thousands", got, phi, theta, a, mask=mask, temperature=tau)


@pytest.mark.parametrize("d", [64, 256])
def test_logits_in_the_thousands_float32(rng, d):
    phi, theta = offset_problem(rng, 200, d, 5e3, 2.0, dtype=np.float32)
    theta = theta.astype(np.float32)
    assert fastscore.score(phi, theta, 0).dtype == np.float32
    check_every_action("float32 logits in the thousands", phi, theta, F32_TOL)


@pytest.mark.parametrize("d", [64, 256])
@pytest.mark.parametrize("zscale", [1e3, 1e4])
def test_logits_in_the_thousands_mixed_precision(rng, d, zscale):
    """float32 phi with a float64 theta gives a float64 result, so the float64
    promise (1e-12, also for logits in the thousands) applies to it: the
    logits must be as accurate as for float64 phi (the float32 values are
    exact doubles; the products with a float64 theta are not exact)."""
    for _ in range(10 if (d, zscale) == (256, 1e4) else 3):
        phi, theta = offset_problem(rng, 200, d, zscale, 2.0, dtype=np.float32)
        assert fastscore.score(phi, theta, 0).dtype == np.float64
        check_every_action("mixed f32/f64 logits in the thousands", phi, theta, F64_TOL)


# ---------------------------------------------------------------------------
# Nearly deterministic policies: pi(a) > 1 - 1e-20, score ~ 1e-20.

def make_deterministic(phi, theta, a, *, gap, tau=1.0, legal=None):
    """Move phi[a] (in place) along theta until z_a / tau exceeds every other
    legal logit by gap + log(n), so that 1 - pi(a) < e^-gap."""
    n = phi.shape[0]
    legal = np.ones(n, bool) if legal is None else legal
    z = phi @ theta
    others = z[legal & (np.arange(n) != a)]
    top = others.max() if others.size else z[a]
    phi[a] += theta * ((top + (gap + math.log(n)) * tau) - z[a]) / (theta @ theta)


def deterministic_problem(rng, n, d, *, gap=50.0, tau=1.0, mask=None):
    phi = rng.standard_normal((n, d))
    theta = rng.standard_normal(d)
    legal = np.ones(n, bool) if mask is None else mask
    a = int(rng.choice(np.flatnonzero(legal)))
    make_deterministic(phi, theta, a, gap=gap, tau=tau, legal=legal)
    if mask is not None:
        phi[~mask] = np.nan
    return phi, theta, a


@pytest.mark.parametrize("n, d", [(2, 1), (2, 5), (50, 8), (300, 17), (2000, 9), (40, 256)])
@pytest.mark.parametrize("tau", [1.0, 0.25, 8.0])
@pytest.mark.parametrize("masked", [False, True])
def test_near_deterministic(rng, n, d, tau, masked):
    mask = None
    if masked:
        mask = rng.random(n) < 0.5
        mask[rng.integers(n)] = True
        mask[rng.integers(n)] = True
        if mask.sum() < 2:
            mask[:2] = True
    phi, theta, a = deterministic_problem(rng, n, d, gap=50.0, tau=tau, mask=mask)
    one_minus_pa = orc.prob_not_a(phi, theta, a, mask=mask, temperature=tau)
    assert 0 < one_minus_pa < 1e-20
    want = orc.score(phi, theta, a, mask=mask, temperature=tau)
    assert 0 < np.linalg.norm(want.astype(float)) < 1e-15  # a tiny score

    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)
    check("near-deterministic", got, phi, theta, a, mask=mask, temperature=tau)

    # The textbook phi_a - E[phi] loses every digit here: the test has teeth.
    ref = reference.score(phi, theta, a, mask=mask, temperature=tau)
    assert orc.rel_err(ref, want) > 0.5


def test_near_deterministic_batch(rng):
    b, n, d = 12, 100, 16
    phi = rng.standard_normal((b, n, d))
    theta = rng.standard_normal(d)
    a = rng.integers(0, n, size=b)
    for i in range(b):
        make_deterministic(phi[i], theta, a[i], gap=rng.uniform(47, 200))
        assert orc.prob_not_a(phi[i], theta, a[i]) < 1e-20
    got = fastscore.score(phi, theta, a)
    check("near-deterministic", got, phi, theta, a)
    assert orc.rel_err(reference.score(phi, theta, a), orc.score(phi, theta, a)) > 0.5


@pytest.mark.parametrize("gap", [50.0, 300.0, 700.0])
def test_near_deterministic_float32(rng, gap):
    """float32 results of size ~e^-gap, still within 1e-6."""
    phi, theta, a = deterministic_problem(rng, 64, 12, gap=gap)
    phi, theta = phi.astype(np.float32), theta.astype(np.float32)
    want = orc.score(phi, theta, a)
    if np.linalg.norm(want.astype(float)) < 1e-36:
        # below float32's normal range (gap 300, 700): the result must be 0 or
        # tiny, not a wrong number of ordinary size
        got = fastscore.score(phi, theta, a)
        assert np.all(np.abs(got) < 1e-36)
        return
    got = fastscore.score(phi, theta, a)
    check("float32 near-deterministic", got, phi, theta, a, tol=F32_TOL)


def test_near_deterministic_large_logits(rng):
    """pi(a) > 1 - 1e-20 with logits ~1e3: both hard cases at once."""
    phi, theta = offset_problem(rng, 100, 32, 1e3, 3.0)
    make_deterministic(phi, theta, 17, gap=50.0)
    assert orc.prob_not_a(phi, theta, 17) < 1e-20
    assert np.abs(phi @ theta).min() > 500
    check("near-deterministic", fastscore.score(phi, theta, 17), phi, theta, 17)


# ---------------------------------------------------------------------------
# Finite differences of log pi.

@pytest.mark.parametrize("tau", [1.0, 0.37, 4.0])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("n, d", [(25, 5), (3, 2), (200, 9)])
def test_finite_differences(rng, tau, masked, n, d):
    """score_j = d log pi(a) / d theta_j, by central differences of the
    longdouble log pi with step h = 1e-6.

    Error of the central difference: truncation h^2/6 |f'''| with
    |f'''| = |third cumulant of phi_j / tau under pi| <= (range_j / tau)^3,
    plus rounding 2 * 8 eps_ld (1 + max|z|) / (2 h).  The tolerance is 10x
    that plus 1e-12 |score_j|; with these inputs it is ~1e-9 -- far below the
    size of a wrong factor (1/tau) or a wrong sign, and of the score itself.
    """
    phi = rng.standard_normal((n, d))
    theta = rng.standard_normal(d) * 0.7
    mask = None
    a = int(rng.integers(n))
    if masked:
        mask = rng.random(n) < 0.6
        mask[a] = True
        phi[~mask] = np.nan
    got = fastscore.score(phi, theta, a, mask=mask, temperature=tau)

    h = 1e-6
    legal = np.ones(n, bool) if mask is None else mask
    rows = phi[legal]
    zmax = float(np.abs(rows @ theta).max()) / tau
    theta_ld = theta.astype(orc.LD)
    worst = 0.0
    for j in range(d):
        e = np.zeros(d, dtype=orc.LD)
        e[j] = orc.LD(h)
        fp = orc.log_pi(phi, theta_ld + e, a, mask=mask, temperature=tau)
        fm = orc.log_pi(phi, theta_ld - e, a, mask=mask, temperature=tau)
        fd = float((fp - fm) / (2 * orc.LD(h)))
        rng_j = float(rows[:, j].max() - rows[:, j].min())
        tol = 10 * (h**2 / 6 * (rng_j / tau) ** 3
                    + 8 * orc.EPS_LD * (1 + zmax) / h) + 1e-12 * abs(got[j])
        assert tol < 1e-6
        assert abs(got[j] - fd) <= tol, (j, got[j], fd, tol)
        worst = max(worst, abs(got[j] - fd))
    orc.record("finite differences (abs err)", worst)
