"""Ragged action sets (offsets=) against the padded layout, and every
function of the family bitwise the same for every thread count.

Ragged = padded: the rows of state b stacked, versus a (B, N, d) batch whose
padding rows are masked (and hold NaN, never read).  Per-state results
(score, log_prob, entropy, probs, sample) are computed by the same code on
the same rows, so they must agree bit for bit; loglik sums the states in
groups fixed by the number of states and by which states are wide, so it is
bitwise equal too while no state is wide, and within rounding otherwise.
"""
import numpy as np
import pytest

import fastscore

THREADS = (1, 2, 3, 4)


def ragged_and_padded(rng, sizes, d, *, masked=False, dtype=np.float64, pad=True):
    sizes = np.asarray(sizes)
    b, n = sizes.size, int(sizes.max())
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
    rows = rng.standard_normal((offsets[-1], d)).astype(dtype)
    theta = rng.standard_normal(d).astype(dtype)
    mask = rng.random(offsets[-1]) < 0.6 if masked else np.ones(offsets[-1], bool)
    a = np.empty(b, np.intp)
    for i in range(b):
        m = mask[offsets[i]:offsets[i + 1]]
        if not m.any():
            m[rng.integers(sizes[i])] = True
        a[i] = rng.choice(np.flatnonzero(m))
    rows[~mask] = np.nan
    state = np.repeat(np.arange(b), sizes)
    col = np.arange(offsets[-1]) - offsets[state]
    if not pad:
        return dict(rows=rows, offsets=offsets, mask=mask if masked else None, theta=theta,
                    a=a)
    padded = np.full((b, n, d), np.nan, dtype)
    padded[state, col] = rows
    pmask = np.zeros((b, n), bool)
    pmask[state, col] = mask
    return dict(rows=rows, offsets=offsets, mask=mask if masked else None, theta=theta, a=a,
                padded=padded, pmask=pmask, state=state, col=col)


def per_state_results(p, ragged, **kw):
    if ragged:
        phi, lay = p["rows"], dict(offsets=p["offsets"], mask=p["mask"])
    else:
        phi, lay = p["padded"], dict(mask=p["pmask"])
    th, a = p["theta"], p["a"]
    out = {
        "score": fastscore.score(phi, th, a, **lay, **kw),
        "log_prob": fastscore.log_prob(phi, th, a, **lay, **kw),
        "entropy": fastscore.entropy(phi, th, **lay, **kw),
        "probs": fastscore.probs(phi, th, **lay, **kw),
    }
    out["sample"], out["sample_lp"] = fastscore.sample(phi, th, seed=99, **lay, **kw)
    out["loglik"] = fastscore.loglik(phi, th, a, weights=p.get("w"), grad=True, hess=True,
                                     **lay, **kw)
    if not ragged:
        out["probs"] = out["probs"][p["state"], p["col"]]
    return out


def assert_same_bits(x, y, what):
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), what


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.4])
def test_ragged_equals_padded(rng, dtype, masked, tau):
    sizes = rng.integers(1, 50, size=80)
    sizes[[0, 5, 79]] = 1  # states with one row
    p = ragged_and_padded(rng, sizes, 7, masked=masked, dtype=dtype)
    p["w"] = rng.standard_normal(sizes.size)
    r = per_state_results(p, True, temperature=tau)
    q = per_state_results(p, False, temperature=tau)
    for k in ("score", "log_prob", "entropy", "probs", "sample", "sample_lp"):
        assert_same_bits(r[k], q[k], k)
    # no wide state: the same groups, so the sums are bitwise equal as well
    for x, y in zip(r["loglik"], q["loglik"]):
        assert_same_bits(x, y, "loglik")


def test_wide_state_among_small_ones(rng):
    """One state of 6000 rows (split over chunks and threads) among small
    ones: its results are those of the same state computed alone."""
    sizes = np.concatenate([rng.integers(1, 20, size=30), [6000], rng.integers(1, 20, size=30)])
    p = ragged_and_padded(rng, sizes, 6, masked=True)
    wide = 30
    o0, o1 = p["offsets"][wide], p["offsets"][wide + 1]
    alone_phi, alone_mask, a = p["rows"][o0:o1], p["mask"][o0:o1], int(p["a"][wide])
    th = p["theta"]
    for nt in THREADS:
        kw = dict(offsets=p["offsets"], mask=p["mask"], temperature=0.7, n_threads=nt)
        one = dict(mask=alone_mask, temperature=0.7, n_threads=1)
        assert_same_bits(fastscore.score(p["rows"], th, p["a"], **kw)[wide],
                         fastscore.score(alone_phi, th, a, **one), "score")
        assert fastscore.log_prob(p["rows"], th, p["a"], **kw)[wide] == \
            fastscore.log_prob(alone_phi, th, a, **one)
        assert fastscore.entropy(p["rows"], th, **kw)[wide] == \
            fastscore.entropy(alone_phi, th, **one)
        assert_same_bits(fastscore.probs(p["rows"], th, **kw)[o0:o1],
                         fastscore.probs(alone_phi, th, **one), "probs")
        acts, lps = fastscore.sample(p["rows"], th, seed=5, **kw)
        assert (acts[wide], lps[wide]) == fastscore.sample(alone_phi, th, seed=5,
                                                           state_offset=wide, **one)
    # loglik of the ragged batch vs the padded one (every padded state is wide
    # here, so the groups differ): equal to rounding
    r = fastscore.loglik(p["rows"], th, p["a"], offsets=p["offsets"], mask=p["mask"],
                         grad=True, hess=True)
    q = fastscore.loglik(p["padded"], th, p["a"], mask=p["pmask"], grad=True, hess=True)
    assert abs(r[0] - q[0]) <= 1e-13 * abs(r[0])
    np.testing.assert_allclose(r[1], q[1], rtol=1e-12, atol=1e-13 * np.abs(r[1]).max())
    np.testing.assert_allclose(r[2], q[2], rtol=1e-12, atol=1e-13 * np.abs(r[2]).max())


def test_all_states_one_row(rng):
    d = 4
    rows = rng.standard_normal((50, d))
    theta = rng.standard_normal(d)
    offsets = np.arange(51)
    a = np.zeros(50, np.intp)
    assert np.all(fastscore.log_prob(rows, theta, a, offsets=offsets) == 0)
    assert np.all(fastscore.entropy(rows, theta, offsets=offsets) == 0)
    assert np.all(fastscore.probs(rows, theta, offsets=offsets) == 1)
    assert np.all(fastscore.score(rows, theta, a, offsets=offsets) == 0)
    acts, lp = fastscore.sample(rows, theta, offsets=offsets, seed=1)
    assert np.all(acts == 0) and np.all(lp == 0)


def test_one_state_ragged_equals_unbatched(rng):
    phi = rng.standard_normal((37, 5))
    theta = rng.standard_normal(5)
    off = np.array([0, 37])
    assert fastscore.log_prob(phi, theta, np.array([3]), offsets=off).tolist() == \
        [fastscore.log_prob(phi, theta, 3)]
    assert fastscore.entropy(phi, theta, offsets=off).shape == (1,)
    assert_same_bits(fastscore.probs(phi, theta, offsets=off), fastscore.probs(phi, theta),
                     "probs")
    assert_same_bits(fastscore.score(phi, theta, [3], offsets=off)[0],
                     fastscore.score(phi, theta, 3), "score")


# ---------------------------------------------------------------------------
# Thread counts.

def all_functions(phi, theta, a, nt, **kw):
    weights = kw.pop("weights", None)
    acts, lps = fastscore.sample(phi, theta, seed=11, n_threads=nt, **kw)
    v, g, h = fastscore.loglik(phi, theta, a, weights=weights, grad=True, hess=True,
                               n_threads=nt, **kw)
    return [fastscore.score(phi, theta, a, n_threads=nt, **kw),
            fastscore.log_prob(phi, theta, a, n_threads=nt, **kw),
            fastscore.entropy(phi, theta, n_threads=nt, **kw),
            fastscore.probs(phi, theta, n_threads=nt, **kw),
            acts, lps, np.float64(v), g, h]


def check_threads(phi, theta, a, **kw):
    assert phi.size > 65536
    base = None
    for nt in THREADS:
        res = all_functions(phi, theta, a, nt, **dict(kw))
        if base is None:
            base = res
            continue
        for i, (x, y) in enumerate(zip(res, base)):
            assert_same_bits(x, y, f"output {i} with n_threads={nt}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_threads_padded_batch(rng, dtype):
    phi = rng.standard_normal((2000, 12, 6)).astype(dtype)
    theta = rng.standard_normal(6).astype(dtype)
    a = rng.integers(0, 12, size=2000)
    mask = rng.random((2000, 12)) < 0.7
    mask[np.arange(2000), a] = True
    phi[~mask] = np.nan
    check_threads(phi, theta, a, mask=mask, temperature=0.8,
                  weights=rng.standard_normal(2000))


def test_threads_ragged_with_one_wide_state(rng):
    sizes = np.concatenate([rng.integers(1, 40, size=1500), [9000], rng.integers(1, 40, 500)])
    p = ragged_and_padded(rng, sizes, 5, masked=True, pad=False)
    check_threads(p["rows"], p["theta"], p["a"], offsets=p["offsets"], mask=p["mask"],
                  weights=rng.standard_normal(sizes.size))


def test_threads_few_wide_states(rng):
    """Three wide states (each split into chunks over the threads)."""
    phi = rng.standard_normal((3, 5000, 6))
    theta = rng.standard_normal(6)
    a = np.array([0, 2500, 4999])
    check_threads(phi, theta, a, temperature=1.5)
    sizes = np.array([4200, 7000, 4096])
    p = ragged_and_padded(rng, sizes, 6, pad=False)
    check_threads(p["rows"], p["theta"], p["a"], offsets=p["offsets"])
