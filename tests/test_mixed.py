"""fastscore.choice.MixedLogit against a NumPy simulated likelihood written
here from the frame (pandas grouping, the same uniforms), finite
differences, and the properties of a maximum; the draws; every bad input.
(The kernel itself is tested on arrays in test_mixed_kernel.py.)"""
import math
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("scipy")
import fastscore.choice as fc  # noqa: E402
from scipy.special import ndtri  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"


def panel_frame(rng, n_people=40, n_situations=(1, 5), n_alt=3, avail=False, weights=False):
    """Long-format panel data from a mixed logit, rows shuffled."""
    b, s = np.array([0.8, -0.5, 0.3]), np.array([0.6, 0.4, 0.0])
    rows = []
    obs = 0
    for person in rng.permutation(n_people) + 100:
        beta = b + s * rng.standard_normal(3)
        beta[2] = math.exp(-1 + 0.5 * rng.standard_normal())
        w = rng.uniform(0.5, 2.0)
        for _ in range(rng.integers(n_situations[0], n_situations[1] + 1)):
            obs += 1
            X = rng.standard_normal((n_alt, 3))
            ok = np.ones(n_alt, bool)
            if avail:
                ok = rng.random(n_alt) < 0.8
                ok[rng.integers(n_alt)] = True
            u = np.where(ok, X @ beta + rng.gumbel(size=n_alt), -np.inf)
            for j in range(n_alt):
                rows.append(dict(person=person, obs=obs, alt=f"alt{j}", choice=int(j == u.argmax()),
                                 x0=X[j, 0], x1=X[j, 1], x2=X[j, 2], ok=int(ok[j]), w=w))
    df = pd.DataFrame(rows)
    if avail:
        df.loc[df["ok"] == 0, "x0"] = np.nan
    return df.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


KINDS = {"normal": 1, "lognormal": 2, "triangular": 3, "uniform": 4}


def reference(df, theta, u, random, x=("x0", "x1", "x2"), panel="person", avail=None,
              weights=None, chol=False):
    """The simulated log-likelihood, its per-panel gradient by central
    differences of the per-panel values, and the posterior means, in NumPy:
    panels in sorted label order, each panel's draws u[p]."""
    if avail is not None:
        df = df[df[avail] == 1]
    df = df.sort_values([panel, "obs", "alt"])
    x = list(x)
    rand = [c for c in x if c in random]

    def coefficients(t, xi):
        m = t[:len(x)]
        beta = np.tile(m, (xi.shape[0], 1))
        idx = [x.index(c) for c in rand]
        if chol:
            q = len(rand)
            L = np.zeros((q, q))
            L[np.tril_indices(q)] = t[len(x):]
            beta[:, idx] += xi @ L.T
        else:
            beta[:, idx] += xi * t[len(x):]
        for c in rand:
            if random[c] == "lognormal":
                beta[:, x.index(c)] = np.exp(beta[:, x.index(c)])
        return beta

    def standard(v, dist):
        if dist in ("normal", "lognormal"):
            return ndtri(v)
        if dist == "triangular":
            return np.where(v < 0.5, np.sqrt(2 * v) - 1, 1 - np.sqrt(2 * (1 - v)))
        return 2 * v - 1

    people = sorted(df[panel].unique())
    groups = {p: g for p, g in df.groupby(panel)}

    def panel_ll(t, p_index):
        g = groups[people[p_index]]
        xi = np.column_stack([standard(u[p_index][:, j], random[c]) for j, c in enumerate(rand)])
        beta = coefficients(t, xi)                      # (R, k)
        logP = np.zeros(beta.shape[0])
        for _, sit in g.groupby("obs"):
            if len(sit) < 2:
                continue
            V = sit[x].to_numpy() @ beta.T              # (J, R)
            V = V - V.max(0)
            logp = V - np.log(np.exp(V).sum(0))
            logP += logp[sit["choice"].to_numpy() == 1][0]
        top = logP.max()
        return top + math.log(np.mean(np.exp(logP - top))), beta, logP

    w = (np.ones(len(people)) if weights is None
         else np.array([groups[p][weights].iloc[0] for p in people]))
    total = sum(w[i] * panel_ll(theta, i)[0] for i in range(len(people)))
    scores = np.zeros((len(people), theta.size))
    posterior = np.zeros((len(people), len(x)))
    for i in range(len(people)):
        for j in range(theta.size):
            h = 1e-6 * max(1, abs(theta[j]))
            up, down = theta.copy(), theta.copy()
            up[j] += h
            down[j] -= h
            scores[i, j] = (panel_ll(up, i)[0] - panel_ll(down, i)[0]) / (2 * h)
        _, beta, logP = panel_ll(theta, i)
        h_r = np.exp(logP - logP.max())
        posterior[i] = (h_r / h_r.sum()) @ beta
    return total, scores, w, posterior


def uniforms(rng, P, R, q):
    return rng.uniform(0.001, 0.999, size=(P, R, q))


@pytest.mark.parametrize("random", [
    {"x0": "normal", "x1": "normal"},
    {"x0": "triangular", "x2": "lognormal"},
    {"x1": "uniform"},
])
@pytest.mark.parametrize("avail, weights", [(False, False), (True, True)])
def test_loglik_gradient_posterior_against_numpy(rng, random, avail, weights):
    df = panel_frame(rng, avail=avail, weights=weights)
    q, R = len(random), 16
    P = df["person"].nunique()
    u = uniforms(rng, P, R, q)
    model = fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"],
                          random=random, panel="person", n_draws=R, draws=u,
                          avail="ok" if avail else None, weights="w" if weights else None)
    rand = [c for c in ["x0", "x1", "x2"] if c in random]
    assert model.param_names == ["x0", "x1", "x2"] + [f"sd.{c}" for c in rand]
    theta = np.r_[rng.normal(scale=0.5, size=3), rng.uniform(0.2, 0.8, size=q)]
    value, grad, scores = model.loglik(theta, grad=True, panel_scores=True)
    ref, ref_scores, w, post = reference(df, theta, u, random, avail="ok" if avail else None,
                                         weights="w" if weights else None)
    assert value == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, w @ ref_scores, rtol=1e-6, atol=1e-6)
    res_post = model._kernel(theta, posterior=True)[1]
    np.testing.assert_allclose(res_post, post, rtol=1e-12, atol=1e-14)


def test_correlated_names_and_value(rng):
    df = panel_frame(rng)
    R = 12
    u = uniforms(rng, df["person"].nunique(), R, 2)
    random = {"x0": "normal", "x1": "normal"}
    model = fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"],
                          random=random, panel="person", n_draws=R, draws=u, correlated=True)
    assert model.param_names[3:] == ["chol.x0.x0", "chol.x1.x0", "chol.x1.x1"]
    theta = np.array([0.5, -0.4, 0.2, 0.6, 0.3, 0.4])
    ref = reference(df, theta, u, random, chol=True)[0]
    assert model.loglik(theta) == pytest.approx(ref, rel=1e-12)


def test_without_panels_each_observation_is_one(rng):
    df = panel_frame(rng, n_people=30)
    R = 10
    u = uniforms(rng, df["obs"].nunique(), R, 1)
    model = fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"],
                          random={"x0": "normal"}, n_draws=R, draws=u)
    theta = np.array([0.5, -0.4, 0.2, 0.7])
    ref = reference(df, theta, u, {"x0": "normal"}, panel="obs")[0]
    assert model.n_panels == df["obs"].nunique()
    assert model.loglik(theta) == pytest.approx(ref, rel=1e-12)


@pytest.fixture(scope="module")
def electricity_fit():
    df = pd.read_csv(DATA / "electricity_long.csv")
    x = ["pf", "cl", "loc", "wk", "tod", "seas"]
    model = fc.MixedLogit(df, choice="choice", obs="chid", alt="alt", x=x,
                          random={c: "normal" for c in x}, panel="id", n_draws=100, seed=0)
    return df, model, model.fit()


def test_electricity_fit_is_a_maximum(electricity_fit):
    """The fit is a local optimum (SciPy's BFGS from it gains nothing), its
    Hessian agrees with second differences of the value, and the value is
    far above the conditional logit's -4958.6 (xlogit: -3891.7 at 500 draws;
    100 draws simulate it biased low)."""
    from scipy.optimize import minimize

    df, model, res = electricity_fit
    assert res.converged
    assert -4000 < res.llf < -3880
    theta = res.params.to_numpy()
    value, grad = model.loglik(theta, grad=True)
    assert value == res.llf
    polish = minimize(lambda t: -model.loglik(t), theta, method="BFGS",
                      jac=lambda t: -model.loglik(t, grad=True)[1], options={"gtol": 1e-8})
    assert -polish.fun - res.llf < 1e-5
    # Second differences of the value, Richardson-extrapolated (error h^4),
    # for a few entries of the Hessian.
    for i, j in [(0, 0), (6, 6), (0, 6), (3, 9)]:
        def f(a, b):
            t = theta.copy()
            t[i] += a
            t[j] += b
            return model.loglik(t)

        def second(h):
            return (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4 * h * h)

        extrapolated = (4 * second(1e-3) - second(2e-3)) / 3
        assert res.hessian[i, j] == pytest.approx(extrapolated, rel=1e-4, abs=1e-3)
    np.testing.assert_allclose(res.bse, np.sqrt(np.diag(np.linalg.inv(-res.hessian))),
                               rtol=1e-12)


def test_robust_cluster_posterior_and_predict(electricity_fit):
    df, model, res = electricity_fit
    theta = res.params.to_numpy()
    _, _, scores = model.loglik(theta, grad=True, panel_scores=True)
    bread = np.linalg.inv(-res.hessian)
    robust = model.fit(start=theta, cov="robust")
    expect = bread @ (scores.T @ scores) @ bread
    # The refit from the optimum moves it by little; compare at its own estimates.
    _, _, scores_r = model.loglik(robust.params, grad=True, panel_scores=True)
    bread_r = np.linalg.inv(-robust.hessian)
    np.testing.assert_allclose(robust.bse, np.sqrt(np.diag(bread_r @ scores_r.T @ scores_r
                                                          @ bread_r)), rtol=1e-10)
    assert np.allclose(robust.bse, np.sqrt(np.diag(expect)), rtol=1e-2)
    # Panels are people; clustering by person with G / (G - 1) is the robust one scaled.
    clustered = model.fit(start=theta, cov="cluster", cluster="id")
    G = 361
    np.testing.assert_allclose(clustered.bse, robust.bse * math.sqrt(G / (G - 1)), rtol=1e-6)

    post = res.individual_coefficients()
    assert post.shape == (361, 6) and list(post.columns) == model.param_names[:6]
    assert post.index.name == "id"
    # The posterior means average, over people, near the population means.
    np.testing.assert_allclose(post.mean(), res.params.iloc[:6], rtol=0.15)

    p = res.predict()
    assert p.index.equals(df.index)
    np.testing.assert_allclose(p.groupby(df["chid"]).sum(), 1.0, rtol=1e-12)
    again = res.predict(df.sample(frac=1.0, random_state=1))
    np.testing.assert_allclose(again.loc[df.index], p, rtol=1e-12)


def test_same_bits_for_every_thread_count(rng):
    df = panel_frame(rng, n_people=60)
    model = fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"],
                          random={"x0": "normal", "x1": "triangular"}, panel="person",
                          n_draws=64, draws="mlhs", seed=3)
    fits = [model.fit(n_threads=t) for t in (1, 2, 3)]
    for f in fits[1:]:
        np.testing.assert_array_equal(f.params.to_numpy(), fits[0].params.to_numpy())
        np.testing.assert_array_equal(f.bse.to_numpy(), fits[0].bse.to_numpy())


@pytest.mark.parametrize("method", ["halton", "sobol", "mlhs", "random"])
def test_draws(method):
    from fastscore.choice._mixed import uniform_draws

    u = uniform_draws(method, 7, 50, 3, seed=5)
    assert u.shape == (7, 50, 3) and np.all((u > 0) & (u < 1))
    np.testing.assert_array_equal(u, uniform_draws(method, 7, 50, 3, seed=5))
    assert not np.array_equal(u, uniform_draws(method, 7, 50, 3, seed=6))
    if method == "halton":
        from scipy.stats import qmc

        expect = qmc.Halton(d=3, scramble=True, seed=5).random(350).reshape(7, 50, 3)
        np.testing.assert_array_equal(u, expect)
    if method == "mlhs":
        # One point in each of the R strata, for every panel and column.
        strata = np.sort(np.floor(u * 50), axis=1)
        np.testing.assert_array_equal(strata, np.broadcast_to(np.arange(50)[None, :, None],
                                                              u.shape))



@pytest.mark.parametrize("P, R, q, seed", [(1, 1, 1, 0), (3, 7, 2, 1), (11, 129, 6, 2),
                                           (5, 40, 12, 3), (2000, 9, 3, 4)])
def test_halton_points_are_scipys_bit_for_bit(P, R, q, seed):
    """The threaded generator gives SciPy's scrambled Halton points exactly
    (R not a multiple of the generator's 8 lanes, bases up to 37, index
    runs crossing many carries), and the same for any thread count."""
    from scipy.stats import qmc

    from fastscore.choice._mixed import halton_uniforms

    lo, hi = 2.0 ** -53, 1.0 - 2.0 ** -53
    u = halton_uniforms(P, R, q, seed, lo, hi)
    expect = np.clip(qmc.Halton(d=q, scramble=True, seed=seed).random(P * R), lo, hi)
    assert u.tobytes() == expect.reshape(P, R, q).tobytes()
    for n_threads in (1, 3):
        assert halton_uniforms(P, R, q, seed, lo, hi, n_threads).tobytes() == u.tobytes()


@pytest.mark.parametrize("q", [1, 3, 9])
def test_halton_points_far_along_the_sequence_are_scipys(q):
    """Panels whose indices are far along the sequence (the higher digits'
    terms, which the generator adds per block of indices in one exact step,
    are then large and varied; blocks of base^m indices cross inside a
    panel): the same bits as SciPy's points from fast_forward."""
    from scipy.stats import qmc
    from scipy.stats._qmc import van_der_corput  # SciPy's generator at any index

    from fastscore.choice._mixed import halton_uniforms

    lo, hi = 2.0 ** -53, 1.0 - 2.0 ** -53
    R = 1500
    panels = np.array([0, 1, 2, 977, 123457, 2 ** 20 + 3, 3 ** 17, 10 ** 9 + 7])
    u = halton_uniforms(panels, R, q, 11, lo, hi)
    # SciPy's own sequence at those indices (its fast_forward would
    # generate every point before them)
    engine = qmc.Halton(d=q, scramble=True, seed=11)
    for i, p in enumerate(panels):
        expect = np.stack([van_der_corput(R, base, start_index=int(p) * R, scramble=True,
                                              permutations=engine._permutations[d])
                           for d, base in enumerate(engine.base)], axis=1)
        assert u[i].tobytes() == np.clip(expect, lo, hi).tobytes(), p


def test_normal_draws_are_scipys_ndtri_bit_for_bit():
    """The compiled inverse normal CDF of the draws is SciPy's ndtri, bit for
    bit: uniform points, both tails down to the smallest doubles, the
    branches' edges, 0, 1 and what is not a probability; and the same for
    any thread count."""
    from scipy.special import ndtri

    from fastscore import _mixed as kernel

    rng = np.random.default_rng(3)
    e2 = 1.3533528323661269189e-1  # the tails' threshold, exp(-2)
    edges = [e2, 1 - e2, 0.5, 2.0 ** -53, 1 - 2.0 ** -53, 5e-324, np.exp(-32.0)]
    edges += [np.nextafter(v, d) for v in edges for d in (0.0, 1.0)]
    p = np.concatenate([rng.random(300_000), 10.0 ** rng.uniform(-320, -1, 50_000),
                        1 - 10.0 ** rng.uniform(-16, -1, 50_000), edges,
                        [0.0, 1.0, np.nan, -0.5, 1.5, np.inf, -np.inf]])
    a = p.copy().reshape(1, 1, -1)
    kernel.ndtri_columns(a, np.array([0]), 1)
    expect = ndtri(p)
    nan = np.isnan(expect)
    assert np.array_equal(np.isnan(a[0, 0]), nan)
    assert a[0, 0][~nan].tobytes() == expect[~nan].tobytes()

    u = rng.random((400, 4, 301))  # enough work for the threads
    once = u.copy()
    kernel.ndtri_columns(once, np.array([0, 2]), 1)
    assert once[:, [0, 2]].tobytes() == ndtri(u[:, [0, 2]]).tobytes()
    assert once[:, [1, 3]].tobytes() == u[:, [1, 3]].tobytes()  # other columns untouched
    for n_threads in (2, 3):
        again = u.copy()
        kernel.ndtri_columns(again, np.array([0, 2]), n_threads)
        assert again.tobytes() == once.tobytes()


def test_draws_layout_is_what_the_kernel_reads():
    """The model's standard draws are a (P, R, q) view with each column's
    draws contiguous, which the kernel reads without gathering; a C-order
    copy gives the same bits."""
    from fastscore._mixedlogit import simulated_loglik

    df = pd.read_csv(DATA / "electricity_long.csv")
    m = fc.MixedLogit(df, choice="choice", obs="chid", alt="alt", x=["pf", "cl"],
                      random={"pf": "normal", "cl": "normal"}, panel="id", n_draws=21)
    assert m.xi.strides[1] == 8 and m.xi.shape == (361, 21, 2)
    theta = m.start_values()
    got = m.loglik(theta, grad=True)
    again = simulated_loglik(m.X, m.offsets, m.chosen, m.panel_offsets,
                             np.ascontiguousarray(m.xi), m.kinds, theta, grad=True)
    assert got[0] == again[0] and got[1].tobytes() == again[1].tobytes()

@pytest.mark.parametrize("method", ["halton", "sobol", "mlhs", "random"])
def test_draws_rows_are_the_whole_arrays_rows(method):
    """uniform_draws_rows (fastscore.dask's draws for a partition's panels)
    gives the rows of uniform_draws bit for bit, runs of panels and gaps."""
    from fastscore.choice._mixed import uniform_draws, uniform_draws_rows

    u = uniform_draws(method, 37, 20, 3, seed=4)
    for panels in ([0], [36], np.arange(5, 17), [1, 2, 3, 9, 10, 30], np.arange(37)):
        rows = uniform_draws_rows(method, panels, 37, 20, 3, seed=4)
        assert rows.tobytes() == u[np.asarray(panels)].tobytes()


@pytest.mark.parametrize("method", ["halton", "sobol", "mlhs", "random"])
def test_every_panels_draws_cover_the_interval(method):
    """Each panel's draws spread over (0, 1) in every dimension, also when the
    number of panels shares factors with the Halton bases (4000 = 2^5 5^3):
    spreading consecutive points over the panels would put a panel's base-2
    draws in 1/32 of the interval."""
    from fastscore.choice._mixed import uniform_draws

    u = uniform_draws(method, 4000, 64, 3, seed=0)
    spread = u.max(axis=1) - u.min(axis=1)
    assert spread.min() > 0.8
    # And the panels' means of the normal draws scatter as 1 / sqrt(64).
    from scipy.special import ndtri

    assert np.abs(ndtri(u).mean(axis=1)).max() < 6 / 8


def test_bad_input(rng):
    df = panel_frame(rng, n_people=10)
    kw = dict(choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"], panel="person")
    with pytest.raises(ValueError, match=r"random\['x0'\] = 'gamma' is not a distribution"):
        fc.MixedLogit(df, random={"x0": "gamma"}, **kw)
    with pytest.raises(ValueError, match="random column 'zz' is not in x"):
        fc.MixedLogit(df, random={"zz": "normal"}, **kw)
    with pytest.raises(ValueError, match="n_draws must be an integer >= 1"):
        fc.MixedLogit(df, random={"x0": "normal"}, n_draws=0, **kw)
    with pytest.raises(ValueError, match=r"draws must have shape \(panels, n_draws, random "
                                         r"columns\) = \(10, 5, 1\), got \(10, 5, 2\)"):
        fc.MixedLogit(df, random={"x0": "normal"}, n_draws=5, draws=np.full((10, 5, 2), 0.5),
                      **kw)
    bad = np.full((10, 5, 1), 0.5)
    bad[3, 2, 0] = 1.0
    with pytest.raises(ValueError, match=r"draws must be uniforms in \(0, 1\); draws\[3, 2, 0\]"):
        fc.MixedLogit(df, random={"x0": "normal"}, n_draws=5, draws=bad, **kw)
    with pytest.raises(ValueError, match="draws must be one of"):
        fc.MixedLogit(df, random={"x0": "normal"}, draws="latin", **kw)
    with pytest.raises(ValueError, match="correlated=True needs every random column"):
        fc.MixedLogit(df, random={"x0": "normal", "x1": "uniform"}, correlated=True, **kw)
    varying = df.assign(w=rng.uniform(size=len(df)))
    with pytest.raises(fc.ChoiceDataError, match="weights column 'w' varies within"):
        fc.MixedLogit(varying, random={"x0": "normal"}, weights="w", **kw)
    per_obs = df.assign(w=df["obs"] * 1.0)
    with pytest.raises(fc.ChoiceDataError, match="weights column 'w' varies within panel"):
        fc.MixedLogit(per_obs, random={"x0": "normal"}, weights="w", **kw)
    with pytest.raises(fc.ChoiceDataError, match="panel column 'person' varies within"):
        fc.MixedLogit(df.assign(person=np.arange(len(df))), random={"x0": "normal"}, **kw)
    model = fc.MixedLogit(df, random={"x0": "normal"}, n_draws=5, **kw)
    with pytest.raises(ValueError, match="method must be 'bfgs'"):
        model.fit(method="newton")


def test_separation_in_the_starting_fit_names_the_column():
    df = pd.read_csv(DATA / "electricity_long.csv")
    df["perfect"] = df["choice"] * 1.0
    with pytest.raises(fc.NotIdentifiedError, match=r"separated by 'perfect': the chosen"):
        fc.MixedLogit(df, choice="choice", obs="chid", alt="alt", x=["pf", "cl", "perfect"],
                      random={"pf": "normal"}, panel="id", n_draws=5).fit()


def test_standard_errors_against_central_differences_of_the_gradient():
    """The fit's standard errors (cov="hessian") agree to 1e-4 with those of
    a Hessian by central differences of the exact gradient (steps 1e-5 of
    each parameter), on the electricity panel with three normal columns."""
    df = pd.read_csv(DATA / "electricity_long.csv")
    x = ["pf", "cl", "loc", "wk", "tod", "seas"]
    model = fc.MixedLogit(df, choice="choice", obs="chid", alt="alt", x=x,
                          random={"pf": "normal", "loc": "normal", "tod": "normal"},
                          panel="id", n_draws=50, seed=1)
    res = model.fit()
    assert res.converged
    theta = res.params.to_numpy()
    H = np.empty((theta.size, theta.size))
    for j in range(theta.size):
        h = 1e-5 * max(1.0, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        H[:, j] = (model.loglik(up, grad=True)[1] - model.loglik(down, grad=True)[1]) / (2 * h)
    H = (H + H.T) / 2
    bse = np.sqrt(np.diag(np.linalg.inv(-H)))
    np.testing.assert_allclose(res.bse.to_numpy(), bse, rtol=1e-4)


@pytest.mark.parametrize("avail, weights", [(True, False), (False, True)])
def test_availability_and_weights_each_alone_against_numpy(rng, avail, weights):
    """Availability without weights, and weights without availability, each
    against the NumPy simulated log-likelihood and its panel scores."""
    df = panel_frame(rng, avail=avail)
    random = {"x0": "normal", "x2": "lognormal"}
    R, P = 12, df["person"].nunique()
    u = uniforms(rng, P, R, 2)
    model = fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"],
                          random=random, panel="person", n_draws=R, draws=u,
                          avail="ok" if avail else None, weights="w" if weights else None)
    theta = np.r_[rng.normal(scale=0.5, size=3), rng.uniform(0.2, 0.8, size=2)]
    value, grad, scores = model.loglik(theta, grad=True, panel_scores=True)
    ref, ref_scores, w, _ = reference(df, theta, u, random, avail="ok" if avail else None,
                                      weights="w" if weights else None)
    if not weights:
        assert np.all(w == 1)
    assert value == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, w @ ref_scores, rtol=1e-6, atol=1e-6)


def test_asc_and_x_by_alt(rng):
    """Alternative constants and an alternative-specific column beside two
    random ones: the parameters' names in order, and the value and gradient
    against the NumPy reference on the design columns written out."""
    df = panel_frame(rng)
    random = {"x0": "normal", "x1": "triangular"}
    R, P = 10, df["person"].nunique()
    u = uniforms(rng, P, R, 2)
    model = fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1"],
                          random=random, panel="person", n_draws=R, draws=u, asc="alt0",
                          x_by_alt={"x2": "alt0"})
    design = ["x0", "x1", "asc.alt1", "asc.alt2", "x2.alt1", "x2.alt2"]
    assert model.param_names == design + ["sd.x0", "sd.x1"]
    wide = df.copy()
    for a in ("alt1", "alt2"):
        wide[f"asc.{a}"] = (df["alt"] == a).astype(float)
        wide[f"x2.{a}"] = np.where(df["alt"] == a, df["x2"], 0.0)
    theta = np.r_[rng.normal(scale=0.5, size=6), rng.uniform(0.2, 0.8, size=2)]
    value, grad = model.loglik(theta, grad=True)
    ref, ref_scores, w, _ = reference(wide, theta, u, random, x=design)
    assert value == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(grad, w @ ref_scores, rtol=1e-6, atol=1e-6)
    # By name, as a dict: the same value.
    assert model.loglik(dict(zip(model.param_names, theta))) == value


def test_correlated_fit_predict_and_individual_coefficients(rng):
    """correlated=True fitted: the Cholesky names, the simulated prediction
    (against the mean over the model's draws of the logit probabilities at
    m + L xi, rows of an observation summing to 1, the same for shuffled
    data) and each person's conditional means (one finite row a person)."""
    df = panel_frame(rng, n_people=60)
    model = fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"],
                          random={"x0": "normal", "x1": "normal"}, panel="person",
                          n_draws=40, correlated=True, seed=2)
    res = model.fit()
    assert res.converged
    assert list(res.params.index[3:]) == ["chol.x0.x0", "chol.x1.x0", "chol.x1.x1"]
    theta = res.params.to_numpy()
    L = np.zeros((2, 2))
    L[np.tril_indices(2)] = theta[3:]

    p = res.predict()
    assert p.shape == (len(df),) and p.index.equals(df.index)
    np.testing.assert_allclose(p.groupby(df["obs"]).sum(), 1.0, rtol=1e-12)
    assert list(model.panel_labels) == sorted(df["person"].unique())
    for i, person in enumerate(model.panel_labels):
        beta = np.tile(theta[:3], (model.n_draws, 1))
        beta[:, :2] += model.xi[i] @ L.T
        for _, sit in df[df["person"] == person].groupby("obs"):
            V = sit[["x0", "x1", "x2"]].to_numpy() @ beta.T
            E = np.exp(V - V.max(0))
            np.testing.assert_allclose(p.loc[sit.index], (E / E.sum(0)).mean(1), rtol=1e-10)
    again = res.predict(df.sample(frac=1.0, random_state=3))
    np.testing.assert_allclose(again.loc[df.index], p, rtol=1e-12)

    post = res.individual_coefficients()
    assert post.shape == (60, 2) and list(post.columns) == ["x0", "x1"]
    assert list(post.index) == list(model.panel_labels) and post.index.name == "person"
    assert np.isfinite(post.to_numpy()).all()


def test_draws_with_nan_name_draws(rng):
    df = panel_frame(rng, n_people=10)
    bad = np.full((10, 5, 1), 0.5)
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"draws must be uniforms in \(0, 1\); "
                                         r"draws\[1, 2, 0\] = nan"):
        fc.MixedLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1", "x2"],
                      random={"x0": "normal"}, panel="person", n_draws=5, draws=bad)


def test_conditional_logit_parts_per_panel():
    """The start's per-panel conditional-logit parts add up to the phi-form
    kernel's totals (value, gradient, Hessian), and each panel's are its own
    call's."""
    import fastscore
    from fastscore.choice._mixed import cl_panel_parts

    df = pd.read_csv(DATA / "electricity_long.csv")
    m = fc.MixedLogit(df, choice="choice", obs="chid", alt="alt", x=["pf", "cl", "loc"],
                      random={"pf": "normal"}, panel="id", n_draws=3)
    beta = np.array([-0.5, -0.1, 1.2])
    values, grads, H = cl_panel_parts(m.X, m.offsets, m.chosen, m.panel_offsets, beta)
    ll, g, Hs = fastscore.loglik(m.X, beta, m.chosen, offsets=m.offsets, grad=True, hess=True)
    assert abs(values.sum() - ll) <= 1e-12 * abs(ll)
    np.testing.assert_allclose(grads.sum(axis=0), g, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(H.sum(axis=0), Hs, rtol=1e-11, atol=1e-8)
    p = 7
    s0, s1 = m.panel_offsets[p], m.panel_offsets[p + 1]
    r0, r1 = m.offsets[s0], m.offsets[s1]
    one = cl_panel_parts(m.X[r0:r1], m.offsets[s0:s1 + 1] - r0, m.chosen[s0:s1],
                         np.array([0, s1 - s0]), beta)
    assert one[0][0] == values[p] and one[2][0].tobytes() == H[p].tobytes()
