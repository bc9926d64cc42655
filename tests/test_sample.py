"""sample: Gumbel-max draws from the policy.

* goodness of fit: chi-square of the action counts against fastscore.probs
  (scipy.stats.chi2 if installed, else the regularized incomplete gamma
  below), rejecting at p < 1e-6 with fixed seeds, so the test is
  deterministic and a correct sampler fails it with probability ~1e-6 per
  state and seed set (it either passes for these seeds or never);
* masked actions are never drawn; log_probs equal log_prob bit for bit;
* the draws depend on the seed and the state's index only: the same for
  every thread count, and for a batch split with state_offset;
* seed as int, None and numpy Generator.
"""
import math

import numpy as np
import pytest

import fastscore

P_MIN = 1e-6


def chi2_sf(x, k):
    """P(X > x) for X ~ chi-square(k): Q(k/2, x/2) (scipy, or series/continued
    fraction as in Numerical Recipes, accurate to ~1e-14 relative)."""
    try:
        from scipy.stats import chi2
        return float(chi2.sf(x, k))
    except ImportError:
        pass
    a, x = k / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1:  # series for P, Q = 1 - P
        term = total = 1.0 / a
        ap = a
        for _ in range(10000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - lg))
    b = x + 1 - a  # Lentz continued fraction for Q
    c = 1 / 1e-300
    dd = 1 / b
    h = dd
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        dd = an * dd + b
        dd = 1e-300 if abs(dd) < 1e-300 else dd
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        dd = 1 / dd
        delta = dd * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - lg) * h


def test_chi2_sf_values():
    """The hand implementation against known quantiles."""
    assert abs(chi2_sf(3.841458820694124, 1) - 0.05) < 1e-12
    assert abs(chi2_sf(11.070497693516351, 5) - 0.05) < 1e-12
    assert abs(chi2_sf(2.0, 2) - math.exp(-1)) < 1e-14
    assert abs(chi2_sf(35.888186879646, 5) - 1e-6) < 1e-12


def gof_pvalue(counts, p):
    """Pearson chi-square p-value of counts against probabilities p (> 0)."""
    n = counts.sum()
    expected = n * p
    assert expected.min() >= 5, "pick probabilities with >= 5 expected draws"
    stat = float(((counts - expected) ** 2 / expected).sum())
    return chi2_sf(stat, p.size - 1)


STATES = {
    # name -> (phi (N, d), theta, mask or None, tau)
    "uniform": (np.zeros((6, 2)), np.ones(2), None, 1.0),
    "skewed": (np.arange(8.0)[:, None] * np.array([[0.4, 0.0]]), np.ones(2), None, 1.0),
    "masked": (np.array([[0.0], [1.0], [1e3], [0.5], [-0.5], [2.0]]), np.ones(1),
               np.array([True, True, False, True, True, True]), 1.3),
    "two": (np.array([[0.0], [1.0]]), np.ones(1), None, 0.5),
}


@pytest.mark.parametrize("name", STATES)
@pytest.mark.parametrize("layout", ["padded", "ragged"])
def test_goodness_of_fit(name, layout):
    """20 000 draws: 4 seeds x 5000 states that are copies of one state."""
    phi, theta, mask, tau = STATES[name]
    n = phi.shape[0]
    p = fastscore.probs(phi, theta, mask=mask, temperature=tau)
    legal = np.ones(n, bool) if mask is None else mask
    assert p[legal].min() > 0.01 and np.all(p[~legal] == 0)
    copies = 5000
    counts = np.zeros(n, np.int64)
    for seed in (1, 22, 333, 4444):
        if layout == "padded":
            batch = np.broadcast_to(phi, (copies,) + phi.shape)
            m = None if mask is None else np.broadcast_to(mask, (copies, n))
            acts, _ = fastscore.sample(batch, theta, seed=seed, mask=m, temperature=tau)
        else:
            rows = np.tile(phi, (copies, 1))
            m = None if mask is None else np.tile(mask, copies)
            offsets = np.arange(copies + 1) * n
            acts, _ = fastscore.sample(rows, theta, seed=seed, mask=m, temperature=tau,
                                       offsets=offsets)
        counts += np.bincount(acts, minlength=n)
    assert counts.sum() == 4 * copies
    assert np.all(counts[~legal] == 0)
    pv = gof_pvalue(counts[legal], p[legal].astype(float))
    assert pv > P_MIN, (counts, p)


def test_goodness_of_fit_detects_a_wrong_distribution():
    """Teeth: the same counts tested against a slightly different temperature
    are rejected."""
    phi, theta, mask, tau = STATES["skewed"]
    batch = np.broadcast_to(phi, (20000,) + phi.shape)
    acts, _ = fastscore.sample(batch, theta, seed=9, temperature=tau)
    counts = np.bincount(acts, minlength=phi.shape[0])
    wrong = fastscore.probs(phi, theta, temperature=tau * 1.15)
    assert gof_pvalue(counts, wrong) < P_MIN


def test_goodness_of_fit_many_different_states(rng):
    """States with random features, one draw each: the count of each action
    rank pooled over states is chi-square distributed against the summed
    probabilities (a Poisson-binomial, tested by its normal approximation)."""
    b, n, d = 20000, 5, 3
    phi = rng.standard_normal((b, n, d))
    theta = rng.standard_normal(d)
    p = fastscore.probs(phi, theta)
    acts, _ = fastscore.sample(phi, theta, seed=77)
    hits = np.zeros((b, n))
    hits[np.arange(b), acts] = 1
    expected = p.sum(axis=0)
    var = (p * (1 - p)).sum(axis=0)
    zs = (hits.sum(axis=0) - expected) / np.sqrt(var)
    assert np.all(np.abs(zs) < 5.5), zs  # two-sided normal p < 4e-8 per action


def test_masked_actions_never_drawn(rng):
    """Masked rows hold the largest logits (and NaN): never drawn."""
    b, n, d = 3000, 12, 4
    phi = rng.standard_normal((b, n, d))
    theta = rng.standard_normal(d)
    mask = rng.random((b, n)) < 0.5
    mask[:, 0] = True
    phi[~mask] = theta * 1e3
    phi[~mask & (rng.random((b, n)) < 0.5)] = np.nan
    for seed in (0, 1, 2):
        acts, lp = fastscore.sample(phi, theta, seed=seed, mask=mask)
        assert np.all(mask[np.arange(b), acts])
        assert np.all(np.isfinite(lp))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["single", "padded", "ragged"])
def test_log_probs_equal_log_prob_bitwise(rng, dtype, layout):
    d = 6
    theta = (rng.standard_normal(d) * 2).astype(dtype)
    if layout == "single":
        phi = rng.standard_normal((40, d)).astype(dtype)
        for seed in range(20):
            a, lp = fastscore.sample(phi, theta, seed=seed, temperature=0.6)
            assert type(a) is int and type(lp) is float
            assert lp == fastscore.log_prob(phi, theta, a, temperature=0.6)
        return
    if layout == "padded":
        phi = rng.standard_normal((500, 30, d)).astype(dtype)
        mask = rng.random((500, 30)) < 0.7
        mask[:, 3] = True
        kw = dict(mask=mask, temperature=0.6)
    else:
        sizes = rng.integers(1, 60, size=500)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        phi = rng.standard_normal((offsets[-1], d)).astype(dtype)
        mask = rng.random(offsets[-1]) < 0.7
        mask[offsets[:-1]] = True
        kw = dict(mask=mask, temperature=0.6, offsets=offsets)
    acts, lp = fastscore.sample(phi, theta, seed=5, **kw)
    assert acts.dtype == np.intp and lp.dtype == dtype
    want = fastscore.log_prob(phi, theta, acts, **kw)
    assert lp.tobytes() == want.tobytes()


def big_inputs(rng, ragged):
    """> 65536 elements of phi, and (ragged) one wide state of 6000 rows."""
    d = 8
    theta = rng.standard_normal(d)
    if not ragged:
        phi = rng.standard_normal((3000, 20, d))
        return phi, theta, {}
    sizes = np.concatenate([rng.integers(1, 30, size=1000), [6000],
                            rng.integers(1, 30, size=500)])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    phi = rng.standard_normal((offsets[-1], d))
    return phi, theta, {"offsets": offsets}


@pytest.mark.parametrize("ragged", [False, True])
def test_same_seed_same_actions_for_every_thread_count(rng, ragged):
    phi, theta, kw = big_inputs(rng, ragged)
    assert phi.size > 65536
    res = [fastscore.sample(phi, theta, seed=123, n_threads=t, **kw) for t in (1, 2, 3, 4)]
    for acts, lp in res[1:]:
        assert acts.tobytes() == res[0][0].tobytes()
        assert lp.tobytes() == res[0][1].tobytes()
    # a different seed gives different actions
    other, _ = fastscore.sample(phi, theta, seed=124, n_threads=2, **kw)
    assert np.mean(other != res[0][0]) > 0.3


@pytest.mark.parametrize("ragged", [False, True])
def test_state_offset_splits_a_batch(rng, ragged):
    """Sampling a batch in pieces, each with state_offset = its first state,
    draws exactly what the whole batch draws."""
    phi, theta, kw = big_inputs(rng, ragged)
    whole_a, whole_lp = fastscore.sample(phi, theta, seed=2024, temperature=0.8, **kw)
    n_states = whole_a.shape[0]
    cuts = [0, 1, 700, 1001, n_states]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        if ragged:
            offs = kw["offsets"]
            piece = phi[offs[lo]:offs[hi]]
            pkw = {"offsets": offs[lo:hi + 1] - offs[lo]}
        else:
            piece, pkw = phi[lo:hi], {}
        a, lp = fastscore.sample(piece, theta, seed=2024, temperature=0.8, state_offset=lo,
                                 **pkw)
        assert a.tobytes() == whole_a[lo:hi].tobytes()
        assert lp.tobytes() == whole_lp[lo:hi].tobytes()
    # without the offset a later piece draws differently (the index matters)
    a, _ = fastscore.sample(phi[700:1000] if not ragged else
                            phi[kw["offsets"][700]:kw["offsets"][1000]], theta, seed=2024,
                            temperature=0.8,
                            **({} if not ragged else
                               {"offsets": kw["offsets"][700:1001] - kw["offsets"][700]}))
    assert np.mean(a != whole_a[700:1000]) > 0.3


def test_single_state_with_state_offset(rng):
    """One state sampled at index k is state k of a batch of copies."""
    phi = rng.standard_normal((10, 3))
    theta = rng.standard_normal(3)
    batch_a, batch_lp = fastscore.sample(np.broadcast_to(phi, (50, 10, 3)), theta, seed=8)
    for k in (0, 1, 17, 49):
        a, lp = fastscore.sample(phi, theta, seed=8, state_offset=k)
        assert a == batch_a[k] and lp == batch_lp[k]


def test_seed_none_draws_fresh(rng):
    phi = rng.standard_normal((2000, 10, 2)) * 0.1
    theta = rng.standard_normal(2)
    a1, _ = fastscore.sample(phi, theta)
    a2, _ = fastscore.sample(phi, theta, seed=None)
    # equal with probability about 0.1 ** 2000
    assert not np.array_equal(a1, a2)


def test_seed_int_forms(rng):
    phi = rng.standard_normal((300, 10, 2)) * 0.1
    theta = rng.standard_normal(2)
    a, _ = fastscore.sample(phi, theta, seed=7)
    for s in (np.int64(7), np.uint64(7), np.uint8(7)):
        assert np.array_equal(fastscore.sample(phi, theta, seed=s)[0], a)
    hi = fastscore.sample(phi, theta, seed=2**64 - 1)[0]
    assert not np.array_equal(hi, a)
    assert not np.array_equal(fastscore.sample(phi, theta, seed=8)[0], a)


def test_seed_generator(rng):
    phi = rng.standard_normal((2000, 10, 2)) * 0.1
    theta = rng.standard_normal(2)
    g = np.random.default_rng(42)
    a1, _ = fastscore.sample(phi, theta, seed=g)
    a2, _ = fastscore.sample(phi, theta, seed=g)
    assert not np.array_equal(a1, a2)  # the generator advanced
    h = np.random.default_rng(42)
    b1, _ = fastscore.sample(phi, theta, seed=h)
    b2, _ = fastscore.sample(phi, theta, seed=h)
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2)  # same state, same draws


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"])
def test_seed_generator_is_one_64_bit_draw_in_both_forms(rng, bit_generator):
    """A Generator seed is the key integers(0, 2**64, dtype=uint64) draws from
    an identical Generator, in both modules, and advances it as that does
    (MT19937 included, whose raw output is 32 bits)."""
    import fastscore.matrix as fm

    phi = rng.standard_normal((500, 7, 3))
    theta = rng.standard_normal(3)
    s = rng.standard_normal((500, 3))
    W = rng.standard_normal((3, 7))
    for form, args in ((fastscore.sample, (phi, theta)), (fm.sample, (s, W))):
        bg = getattr(np.random, bit_generator)
        g, ref = np.random.Generator(bg(9)), np.random.Generator(bg(9))
        for _ in range(2):
            key = int(ref.integers(0, 2**64, dtype=np.uint64))
            got, want = form(*args, seed=g), form(*args, seed=key)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        assert g.bit_generator.random_raw() == ref.bit_generator.random_raw()
