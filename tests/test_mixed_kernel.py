"""The mixed logit's simulated log-likelihood kernel (fastscore._mixedlogit,
fastscore._mixed) against a NumPy implementation written here (vectorised
over the draws, float64 and numpy.longdouble), mpmath, central differences of
the value, and itself across thread counts and instruction sets (bit for
bit); and each error message of the array checks."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastscore import _mixed
from fastscore._mixedlogit import simulated_loglik

FIXED, NORMAL, LOGNORMAL, TRIANGULAR, UNIFORM = 0, 1, 2, 3, 4


def coefficients(params, kinds, xi, chol, dtype):
    """beta (R, k) of one panel with draws xi (R, q)."""
    k = len(kinds)
    rc = np.flatnonzero(kinds)
    q = rc.size
    m = params[:k]
    B = np.tile(m, (xi.shape[0], 1))
    if chol:
        L = np.zeros((q, q), dtype)
        L[np.tril_indices(q)] = params[k:]
        B[:, rc] = m[rc] + xi @ L.T
    else:
        for jj, j in enumerate(rc):
            b = m[j] + params[k + jj] * xi[:, jj]
            B[:, j] = np.exp(b) if kinds[j] == LOGNORMAL else b
    return B


def reference(X, offsets, chosen, panel_offsets, draws, kinds, params, weights=None, chol=False,
              dtype=np.float64):
    """(LL, grad, panel scores, posterior) by the textbook formulas in log
    space: log pi = u_c - max u - log sum exp(u - max u) per draw, log P_pr
    their sum, the log-mean-exp over draws; the score x_c - sum_i pi_i x_i,
    weighted by h_pr and chained through d beta / d params."""
    X, params, draws = (np.asarray(a, dtype) for a in (X, params, draws))
    k = X.shape[1]
    rc = np.flatnonzero(kinds)
    q = rc.size
    P, R = len(panel_offsets) - 1, draws.shape[1]
    lls = np.zeros(P, dtype)
    scores = np.zeros((P, len(params)), dtype)
    post = np.zeros((P, k), dtype)
    for p in range(P):
        xi = draws[p]
        B = coefficients(params, kinds, xi, chol, dtype)
        lp = np.zeros(R, dtype)
        G = np.zeros((R, k), dtype)
        for s in range(panel_offsets[p], panel_offsets[p + 1]):
            xs = X[offsets[s]:offsets[s + 1]]
            u = B @ xs.T
            mx = u.max(axis=1, keepdims=True)
            e = np.exp(u - mx)
            l = e.sum(axis=1, keepdims=True)
            lp += u[:, chosen[s]] - mx[:, 0] - np.log(l[:, 0])
            G += xs[chosen[s]] - (e / l) @ xs
        top = lp.max()
        w = np.exp(lp - top)
        lls[p] = top + np.log(w.sum()) - np.log(dtype(R))
        h = w / w.sum()
        post[p] = h @ B
        hg = h[:, None] * G
        scores[p, :k] = hg.sum(axis=0)
        if chol:
            scores[p, k:] = (hg[:, rc].T @ xi)[np.tril_indices(q)]
        else:
            for jj, j in enumerate(rc):
                f = hg[:, j] * (B[:, j] if kinds[j] == LOGNORMAL else 1)
                scores[p, j] = f.sum()
                scores[p, k + jj] = (f * xi[:, jj]).sum()
    w = np.ones(P, dtype) if weights is None else np.asarray(weights, dtype)
    return (w * lls).sum(), w @ scores, scores, post


def standard_draws(rng, kinds, shape):
    """Standard draws of each random column's distribution (P, R, q)."""
    cols = []
    for kind in kinds[kinds != 0]:
        if kind in (NORMAL, LOGNORMAL):
            cols.append(rng.standard_normal(shape))
        elif kind == TRIANGULAR:
            cols.append(rng.triangular(-1, 0, 1, shape))
        else:
            cols.append(rng.uniform(-1, 1, shape))
    return np.stack(cols, axis=-1) if cols else np.zeros(shape + (0,))


def make_problem(rng, kinds, n_panels, per_panel, R, sizes=(2, 6), chol=False, scale=1.0,
                 spread=0.5):
    kinds = np.asarray(kinds, np.int8)
    k = kinds.size
    q = int((kinds != 0).sum())
    counts = rng.integers(per_panel[0], per_panel[1] + 1, n_panels)
    panel_offsets = np.r_[0, np.cumsum(counts)].astype(np.intp)
    S = int(panel_offsets[-1])
    n = rng.integers(sizes[0], sizes[1] + 1, S)
    offsets = np.r_[0, np.cumsum(n)].astype(np.intp)
    X = rng.standard_normal((offsets[-1], k)) * scale
    chosen = rng.integers(0, n).astype(np.intp)
    draws = standard_draws(rng, kinds, (n_panels, R))
    n_sp = q * (q + 1) // 2 if chol else q
    params = np.r_[rng.normal(0, 0.7, k), rng.normal(0, spread, n_sp)]
    return X, offsets, chosen, panel_offsets, draws, kinds, params


def run_all(args, **kw):
    return simulated_loglik(*args, grad=True, panel_scores=True, posterior=True, **kw)


def assert_close(got, exp, ll_tol=1e-12, grad_tol=1e-10):
    ll, g, sc, post = got
    assert abs(ll - exp[0]) <= ll_tol * abs(exp[0])
    assert np.linalg.norm(g - exp[1]) <= grad_tol * max(np.linalg.norm(exp[1]), 1e-300)
    # A panel's score x_c - E[x] cancels when it is small, in the double
    # reference too: its error is absolute, a few u times the attributes'
    # size (O(1) here), hence the floor (hypothesis found a panel score of
    # norm 7e-7 off by 2e-15, seed=344).
    floor = 1e-13 * max(1.0, float(np.abs(exp[2]).max()))
    for p in range(sc.shape[0]):
        assert np.linalg.norm(sc[p] - exp[2][p]) <= grad_tol * np.linalg.norm(exp[2][p]) + floor
    np.testing.assert_allclose(post, exp[3], rtol=1e-12, atol=1e-14)


KIND_SETS = {
    "normal": [NORMAL, NORMAL, NORMAL],
    "lognormal": [LOGNORMAL, FIXED, LOGNORMAL],
    "triangular": [TRIANGULAR, FIXED, TRIANGULAR, NORMAL],
    "uniform": [UNIFORM, UNIFORM, FIXED],
    "mixed": [FIXED, NORMAL, LOGNORMAL, TRIANGULAR, UNIFORM],
    "fixed": [FIXED, FIXED],
}


@pytest.mark.parametrize("name", sorted(KIND_SETS))
@pytest.mark.parametrize("panels", [False, True])
def test_matches_numpy_and_longdouble(rng, name, panels):
    args = make_problem(rng, KIND_SETS[name], 9, (3, 8) if panels else (1, 1), 21)
    if not panels:
        assert (np.diff(args[3]) == 1).all()
    weights = rng.uniform(0.2, 2.0, 9)
    got = run_all(args, weights=weights)
    assert_close(got, reference(*args, weights=weights))
    exact = reference(*args, weights=weights, dtype=np.longdouble)
    assert_close(got, [np.float64(exact[0])] + [a.astype(np.float64) for a in exact[1:]])
    # no flags: the float alone, and the same bits
    assert simulated_loglik(*args, weights=weights) == got[0]



def hessian_of(args, **kw):
    return simulated_loglik(*args, grad=True, hessian=True, **kw)[2]


def central_hessian(args, **kw):
    """The Hessian by central differences of the exact gradient."""
    *data, params = args
    n = params.size
    H = np.empty((n, n))
    for a in range(n):
        step = 1e-5 * max(1.0, abs(params[a]))
        up, dn = params.copy(), params.copy()
        up[a] += step
        dn[a] -= step
        H[:, a] = (simulated_loglik(*data, up, grad=True, **kw)[1]
                   - simulated_loglik(*data, dn, grad=True, **kw)[1]) / (up[a] - dn[a])
    return H


@pytest.mark.parametrize("name", sorted(KIND_SETS))
@pytest.mark.parametrize("panels", [False, True])
def test_hessian_against_central_differences(rng, name, panels):
    """The kernel's exact Hessian against central differences of its exact
    gradient (whose own error, about step^2 times the third derivative and
    1e-16 / step, is below 1e-8 here), with weights; and its value and
    gradient are those of the call without it."""
    args = make_problem(rng, KIND_SETS[name], 9, (3, 8) if panels else (1, 1), 21)
    weights = rng.uniform(0.2, 2.0, 9)
    ll, g, H, Hp = simulated_loglik(*args, weights=weights, grad=True, hessian=True,
                                    panel_hessians=True)
    from fastscore._mixedlogit import panel_sum
    assert panel_sum(Hp.reshape(9, -1), weights).tobytes() == H.reshape(-1).tobytes()
    assert (ll, g.tobytes()) == (lambda r: (r[0], r[1].tobytes()))(
        simulated_loglik(*args, weights=weights, grad=True))
    assert np.array_equal(H, H.T)
    expect = central_hessian(args, weights=weights)
    assert np.abs(H - expect).max() <= 1e-7 * max(1.0, np.abs(expect).max())


@pytest.mark.parametrize("q", [1, 3])
def test_hessian_cholesky(rng, q):
    args = make_problem(rng, [FIXED] + [NORMAL] * q, 7, (2, 6), 19, chol=True)
    H = hessian_of(args, chol=True)
    expect = central_hessian(args, chol=True)
    assert np.abs(H - expect).max() <= 1e-7 * max(1.0, np.abs(expect).max())

@pytest.mark.parametrize("q", [1, 3, 4])
def test_cholesky(rng, q):
    kinds = [FIXED] + [NORMAL] * q
    args = make_problem(rng, kinds, 7, (2, 6), 19, chol=True)
    got = run_all(args, chol=True)
    assert_close(got, reference(*args, chol=True, dtype=np.longdouble))
    # a diagonal factor is the independent model with those spreads
    k = len(kinds)
    params = args[-1].copy()
    diag = np.arange(q) * (np.arange(q) + 3) // 2
    params[k:] = 0.0
    params[k + diag] = rng.uniform(0.1, 1.0, q)
    indep = np.r_[params[:k], params[k + diag]]
    ll_c, g_c = simulated_loglik(*args[:-1], params, chol=True, grad=True)
    ll_i, g_i = simulated_loglik(*args[:-1], indep, grad=True)
    assert abs(ll_c - ll_i) <= 1e-13 * abs(ll_i)
    np.testing.assert_allclose(g_c[k + diag], g_i[k:], rtol=1e-12)
    np.testing.assert_allclose(g_c[:k], g_i[:k], rtol=1e-12)


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 4), min_size=1, max_size=5),
       st.integers(1, 6), st.integers(1, 40), st.booleans())
def test_random_structures_match_numpy(seed, kinds, n_panels, R, weighted):
    rng = np.random.default_rng(seed)
    args = make_problem(rng, kinds, n_panels, (1, 5), R, sizes=(1, 6))
    weights = rng.uniform(0, 2, n_panels) if weighted else None
    assert_close(run_all(args, weights=weights), reference(*args, weights=weights))


def test_mpmath_value():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    rng = np.random.default_rng(3)
    args = make_problem(rng, [NORMAL, LOGNORMAL, FIXED], 3, (2, 4), 5)
    X, offsets, chosen, poff, draws, kinds, params = args
    total = mpmath.mpf(0)
    for p in range(len(poff) - 1):
        B = [[mpmath.mpf(params[j]) for j in range(3)] for _ in range(draws.shape[1])]
        for r in range(draws.shape[1]):
            B[r][0] = mpmath.mpf(params[0]) + mpmath.mpf(params[3]) * mpmath.mpf(draws[p, r, 0])
            B[r][1] = mpmath.exp(mpmath.mpf(params[1]) + mpmath.mpf(params[4])
                                 * mpmath.mpf(draws[p, r, 1]))
        like = mpmath.mpf(0)
        for r in range(draws.shape[1]):
            prob = mpmath.mpf(1)
            for s in range(poff[p], poff[p + 1]):
                u = [mpmath.fsum(mpmath.mpf(X[i, j]) * B[r][j] for j in range(3))
                     for i in range(offsets[s], offsets[s + 1])]
                prob *= mpmath.exp(u[chosen[s]]) / mpmath.fsum(mpmath.exp(v) for v in u)
            like += prob
        total += mpmath.log(like / draws.shape[1])
    ll = simulated_loglik(*args)
    assert abs(ll - float(total)) <= 1e-12 * abs(float(total))


@pytest.mark.parametrize("name,chol", [("mixed", False), ("normal", True), ("lognormal", False)])
def test_gradient_against_central_differences(rng, name, chol):
    args = make_problem(rng, KIND_SETS[name], 5, (2, 5), 16, chol=chol)
    params = args[-1]
    weights = rng.uniform(0.5, 1.5, 5)
    _, g = simulated_loglik(*args, weights=weights, chol=chol, grad=True)
    fd = np.empty_like(g)
    for a in range(params.size):
        h = 1e-5 * max(1.0, abs(params[a]))
        up, dn = params.copy(), params.copy()
        up[a] += h
        dn[a] -= h
        fd[a] = (simulated_loglik(*args[:-1], up, weights=weights, chol=chol)
                 - simulated_loglik(*args[:-1], dn, weights=weights, chol=chol)) / (2 * h)
    assert np.linalg.norm(g - fd) <= 1e-7 * np.linalg.norm(g)


def test_long_panel_does_not_underflow(rng):
    # 200 situations of 6 rows with badly predicted choices: each panel's
    # likelihood at a draw is far below the smallest double (log P ~ -1500)
    args = make_problem(rng, [NORMAL, FIXED, LOGNORMAL], 3, (200, 200), 24, sizes=(6, 6),
                        scale=3.0)
    ll, g, sc, post = got = run_all(args)
    exp = reference(*args, dtype=np.longdouble)
    assert ll < -745 * 3
    assert np.isfinite(g).all() and np.isfinite(post).all()
    assert_close(got, [np.float64(exp[0])] + [a.astype(np.float64) for a in exp[1:]])


def test_large_utility_differences_are_shifted(rng):
    # differences d_i beyond the kernel's shift threshold (600) in some draws
    args = make_problem(rng, [NORMAL, NORMAL], 4, (2, 4), 17, scale=60.0, spread=3.0)
    X, offsets = args[0], args[1]
    d = np.abs(X).max() * 10
    assert d > 600
    got = run_all(args)
    exp = reference(*args, dtype=np.longdouble)
    assert np.isfinite(got[0]) and np.isfinite(got[1]).all()
    assert_close(got, [np.float64(exp[0])] + [a.astype(np.float64) for a in exp[1:]],
                 ll_tol=1e-12, grad_tol=1e-9)



@pytest.mark.parametrize("lanes", [
    # the likeliest draw is shifted (a difference of 601 in its second
    # situation) while unshifted draws are far less likely (log P ~ -1190)
    [(0, 601), (599, 599), (600, 590), (610, 620)],
    # every draw shifted
    [(601, 0), (700, 650), (0, 900)],
    # mostly unshifted draws around one shifted one
    [(0.5, -1), (2, 1), (601, 3), (-2, 0.1), (1, 1)],
])
def test_weights_relative_to_a_shifted_draw(lanes):
    """The weights over the draws are taken relative to the likeliest one
    whether or not that draw needed the shift: against long double."""
    xi = np.array(lanes * 3, dtype=np.float64)[None]       # 1 panel, (R, 2)
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    args = (X, np.array([0, 2, 4]), np.array([0, 0]), np.array([0, 2]), xi,
            np.array([NORMAL, NORMAL]), np.array([0.0, 0.0, 1.0, 1.0]))
    got = run_all(args)
    exp = reference(*args, dtype=np.longdouble)
    assert_close(got, [np.float64(exp[0])] + [a.astype(np.float64) for a in exp[1:]],
                 ll_tol=1e-13, grad_tol=1e-10)

def test_single_row_situations_and_one_draw(rng):
    args = list(make_problem(rng, [NORMAL, UNIFORM, FIXED], 6, (1, 5), 1, sizes=(1, 3)))
    assert (np.diff(args[1]) == 1).any()
    assert_close(run_all(args), reference(*args))


def test_all_fixed_is_the_conditional_logit(rng):
    X, offsets, chosen, poff, draws, kinds, params = make_problem(rng, [FIXED] * 3, 6, (1, 4), 3)
    ll, g = simulated_loglik(X, offsets, chosen, poff, draws, kinds, params, grad=True)
    u = X @ params
    exp_ll = sum(u[a + c] - np.log(np.exp(u[a:b]).sum())
                 for a, b, c in zip(offsets[:-1], offsets[1:], chosen))
    assert abs(ll - exp_ll) <= 1e-13 * abs(exp_ll)


def test_output_order_and_types(rng):
    args = make_problem(rng, [NORMAL, FIXED], 4, (1, 3), 9)
    full = run_all(args)
    assert isinstance(simulated_loglik(*args), float)
    g_only = simulated_loglik(*args, grad=True)
    assert len(g_only) == 2 and g_only[1].shape == (3,)
    post_only = simulated_loglik(*args, posterior=True)
    assert post_only[1].shape == (4, 2)
    np.testing.assert_array_equal(post_only[1], full[3])
    sc = simulated_loglik(*args, panel_scores=True, posterior=True)
    assert len(sc) == 3 and sc[1].shape == (4, 3)
    np.testing.assert_array_equal(sc[1], full[2])
    np.testing.assert_array_equal(full[1], g_only[1])
    # the fixed column's posterior is its coefficient
    assert (full[3][:, 1] == args[-1][1]).all()



def test_panel_values_and_panel_sum_give_the_total_in_parts(rng):
    """Each panel's value, checked against its own one-panel call; and the
    totals rebuilt from two parts of the panels by panel_sum carry the same
    bits (what a caller holding the panels in partitions relies on)."""
    from fastscore._mixedlogit import panel_sum

    X, offsets, chosen, poff, draws, kinds, params = make_problem(
        rng, [NORMAL, FIXED, LOGNORMAL], 9, (1, 4), 13)
    w = np.linspace(0.5, 2.0, 9)
    ll, g, scores, values = simulated_loglik(X, offsets, chosen, poff, draws, kinds, params,
                                             weights=w, grad=True, panel_scores=True,
                                             panel_values=True)
    for p in range(9):
        s0, s1 = poff[p], poff[p + 1]
        r0, r1 = offsets[s0], offsets[s1]
        alone = simulated_loglik(X[r0:r1], offsets[s0:s1 + 1] - r0, chosen[s0:s1],
                                 [0, s1 - s0], draws[p:p + 1], kinds, params)
        assert values[p] == alone
    parts = [simulated_loglik(X, offsets, chosen, poff, draws, kinds, params, weights=w,
                              panel_scores=True, panel_values=True)[1:] for _ in range(2)]
    sc = np.concatenate([parts[0][0][:4], parts[1][0][4:]])
    va = np.concatenate([parts[0][1][:4], parts[1][1][4:]])
    assert panel_sum(va, w) == ll
    assert panel_sum(sc, w).tobytes() == g.tobytes()
    exact = math.fsum(values)
    assert abs(panel_sum(values) - exact) <= 4e-16 * abs(exact)
    with pytest.raises(ValueError, match="weights must have shape"):
        panel_sum(values, w[:3])

def big_problem():
    rng = np.random.default_rng(11)
    return make_problem(rng, [NORMAL, LOGNORMAL, FIXED, TRIANGULAR, UNIFORM], 41, (1, 12), 203)


@pytest.mark.parametrize("n_threads", [2, 3, 7, None])
def test_bitwise_same_for_every_thread_count(n_threads):
    args = big_problem()
    w = np.linspace(0.5, 2.0, 41)
    one = run_all(args, weights=w, n_threads=1) + (hessian_of(args, weights=w, n_threads=1),)
    many = run_all(args, weights=w, n_threads=n_threads) + (
        hessian_of(args, weights=w, n_threads=n_threads),)
    assert one[0] == many[0]
    for a, b in zip(one[1:], many[1:]):
        assert a.tobytes() == b.tobytes()


def test_bitwise_same_for_every_instruction_set():
    levels = _mixed.isa_levels()
    assert "baseline" in levels
    args = big_problem()
    chol_args = make_problem(np.random.default_rng(5), [NORMAL] * 3, 13, (1, 9), 77, chol=True)
    old = _mixed.current_isa()
    try:
        results = []
        for isa in levels:
            _mixed.set_isa(isa)
            r = run_all(args, n_threads=2) + run_all(chol_args, chol=True)
            r += (hessian_of(args, n_threads=2), hessian_of(chol_args, chol=True))
            results.append(b"".join(np.asarray(x).tobytes() for x in r))
        assert all(r == results[0] for r in results)
    finally:
        _mixed.set_isa(old)
    with pytest.raises(ValueError, match="isa must be one of"):
        _mixed.set_isa("sse9")


def test_read_only_and_non_contiguous_inputs(rng):
    args = list(make_problem(rng, [NORMAL, FIXED, UNIFORM], 5, (1, 4), 11))
    exp = run_all(args)
    X2 = np.asfortranarray(args[0])
    draws2 = np.ascontiguousarray(np.transpose(args[4], (1, 0, 2))).transpose(1, 0, 2)
    args2 = [X2, args[1].astype(np.int32), args[2].astype(np.int64), args[3], draws2,
             args[5].astype(np.intp), args[6]]
    for a in args2:
        a.flags.writeable = False
    got = run_all(args2)
    assert got[0] == exp[0]
    for a, b in zip(got[1:], exp[1:]):
        np.testing.assert_array_equal(a, b)


# --- bad input ---------------------------------------------------------------

def good(rng=None):
    rng = rng or np.random.default_rng(0)
    X, offsets, chosen, poff, draws, kinds, params = make_problem(
        rng, [NORMAL, FIXED, LOGNORMAL], 3, (2, 2), 4, sizes=(2, 2))
    return dict(X=X, offsets=offsets, chosen=chosen, panel_offsets=poff, draws=draws,
                kinds=kinds, params=params)


def call(**kw):
    args = good()
    extra = {key: kw.pop(key) for key in ("weights", "chol", "n_threads") if key in kw}
    args.update(kw)
    return simulated_loglik(args["X"], args["offsets"], args["chosen"], args["panel_offsets"],
                            args["draws"], args["kinds"], args["params"], **extra)


BAD = [
    (dict(X=np.zeros(5)), ValueError, "X must be 2-dimensional"),
    (dict(X=np.array([["a", "b", "c"]])), TypeError, "X must be a real"),
    (dict(offsets=np.array([0.0, 2.0])), TypeError, "offsets must be an integer array"),
    (dict(offsets=np.array([1, 2])), ValueError, r"offsets\[0\] must be 0"),
    (dict(offsets=np.arange(0, 12, 2)), ValueError, r"offsets\[-1\] must be the number of rows"),
    (dict(offsets=np.array([0, 2, 2, 4, 6, 8, 10, 12])), ValueError,
     "offsets must be strictly increasing"),
    (dict(offsets=np.zeros((2, 2), np.intp)), ValueError, "offsets must be 1-dimensional"),
    (dict(chosen=np.zeros(3, np.intp)), ValueError, r"chosen must have shape \(6,\)"),
    (dict(chosen=np.r_[0, 0, 0, 5, 0, 0]), ValueError, r"chosen\[3\] = 5 is out of range"),
    (dict(chosen=np.r_[0, -1, 0, 0, 0, 0]), ValueError, r"chosen\[1\] = -1 is out of range"),
    (dict(panel_offsets=np.array([0, 2, 5])), ValueError,
     r"panel_offsets\[-1\] must be the number of situations"),
    (dict(panel_offsets=np.array([0, 2, 2, 6])), ValueError,
     "panel_offsets must be strictly increasing"),
    (dict(draws=np.zeros((3, 4))), ValueError, "draws must be 3-dimensional"),
    (dict(draws=np.zeros((2, 4, 2))), ValueError, r"draws must have shape \(3, R, 2\)"),
    (dict(draws=np.zeros((3, 4, 3))), ValueError, r"draws must have shape \(3, R, 2\)"),
    (dict(draws=np.zeros((3, 0, 2))), ValueError, r"at least one draw"),
    (dict(draws=np.full((3, 4, 2), np.nan)), ValueError, "draws must be finite"),
    (dict(kinds=np.array([1, 0])), ValueError, r"kinds must have shape \(3,\)"),
    (dict(kinds=np.array([1.0, 0.0, 2.0])), TypeError, "kinds must be an integer array"),
    (dict(kinds=np.array([1, 5, 2])), ValueError, "kinds codes must be 0 .* got 5"),
    (dict(kinds=np.array([1, -1, 2])), ValueError, "kinds codes must be 0 .* got -1"),
    (dict(params=np.zeros(4)), ValueError, r"params must have shape \(5,\)"),
    (dict(params=np.r_[0, np.inf, 0, 0, 0]), ValueError, "params must be finite"),
    (dict(params=np.zeros((5, 1))), ValueError, "params must be 1-dimensional"),
    (dict(chol=True), ValueError, "chol=True needs every random column to be normal"),
    (dict(weights=np.ones(4)), ValueError, r"weights must have shape \(3,\)"),
    (dict(weights=np.array([1.0, -1.0, 1.0])), ValueError, "weights must be finite and >= 0"),
    (dict(weights=np.array([1.0, np.nan, 1.0])), ValueError, "weights must be finite and >= 0"),
    (dict(n_threads=0), ValueError, "n_threads must be >= 1"),
    (dict(n_threads=1.5), TypeError, "n_threads must be an integer or None"),
]


@pytest.mark.parametrize("kw,exc,msg", BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input_messages(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        call(**kw)


def test_the_good_call_works():
    assert np.isfinite(call())
    assert np.isfinite(call(kinds=np.array([1, 0, 1]), chol=True,
                            params=np.zeros(3 + 3)))


@given(st.lists(st.integers(-3, 8), min_size=1, max_size=8))
def test_any_offsets_are_accepted_or_named(offsets):
    """Any integer offsets either work (valid structure) or raise a ValueError
    that names offsets."""
    offsets = np.array(offsets, np.intp)
    S = offsets.size - 1
    valid = offsets[0] == 0 and offsets[-1] == 12 and (np.diff(offsets) >= 1).all()
    args = good()
    kw = dict(offsets=offsets, chosen=np.zeros(S, np.intp),
              panel_offsets=np.array([0, S], np.intp) if S else np.array([0], np.intp),
              draws=np.zeros((1 if S else 0, 2, 2)))
    args.update(kw)
    try:
        simulated_loglik(*args.values())
    except ValueError as exc:
        assert not valid
        assert "offsets" in str(exc)
    else:
        assert valid


@given(st.lists(st.integers(-2, 3), min_size=6, max_size=6))
def test_any_chosen_is_checked(chosen):
    chosen = np.array(chosen, np.intp)
    valid = ((chosen >= 0) & (chosen < 2)).all()
    try:
        value = call(chosen=chosen)
    except ValueError as exc:
        assert not valid
        assert "chosen[" in str(exc) and "out of range" in str(exc)
    else:
        assert valid and np.isfinite(value)


def test_no_situations():
    ll, g = simulated_loglik(np.zeros((0, 2)), [0], np.zeros(0, np.intp), [0], np.zeros((0, 3, 1)),
                             np.array([1, 0]), np.zeros(3), grad=True)
    assert ll == 0.0 and (g == 0.0).all()


def test_compiled_entry_rechecks_what_memory_safety_needs():
    """The arrays entry (called by the wrapper after its checks) refuses
    structures that would read out of bounds, instead of trusting them."""
    a = good()
    kinds = a["kinds"].astype(np.intc)
    rcol = np.flatnonzero(kinds).astype(np.intp)

    def entry(**kw):
        b = dict(a, kinds=kinds, rcol=rcol)
        b.update(kw)
        return _mixed.simulated_loglik_arrays(
            b["X"], b["offsets"], b["chosen"], b["panel_offsets"], b["draws"], b["kinds"],
            b["rcol"], b["params"], None, False, True, False, False, 1)

    assert np.isfinite(entry()[0])
    for kw in (dict(chosen=np.full(6, 2, np.intp)), dict(offsets=np.r_[0, 3, 2, 6, 8, 10, 12]),
               dict(panel_offsets=np.array([0, 2, 2, 6], np.intp)), dict(rcol=np.array([0, 1])),
               dict(offsets=np.arange(0, 14, 2, dtype=np.intp) + np.r_[0, 0, 0, 0, 0, 0, 2])):
        kw = {key: np.ascontiguousarray(v, np.intp) for key, v in kw.items()}
        with pytest.raises(ValueError, match="inconsistent arrays"):
            entry(**kw)
