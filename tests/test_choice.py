"""fastscore.choice.ConditionalLogit against computations written here: a
NumPy Newton on a design matrix built from the frame by pandas, statsmodels'
ConditionalLogit, published log-likelihoods, finite differences; invariance
properties by hypothesis; every data error."""
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")
import fastscore.choice as fc  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
ELEC_X = ["pf", "cl", "loc", "wk", "tod", "seas"]


@pytest.fixture(scope="module")
def electricity():
    return pd.read_csv(DATA / "electricity_long.csv")


@pytest.fixture(scope="module")
def fishing():
    return pd.read_csv(DATA / "fishing_long.csv")


# ---- the reference: a NumPy conditional logit on a frame sorted by pandas ----

def reference_arrays(df, choice, obs, x, weights=None):
    """(X, group starts, chosen flags, per-observation weights) from a frame,
    grouped by pandas (sorted by observation label)."""
    df = df.sort_values([obs], kind="stable")
    X = df[x].to_numpy(dtype=float)
    y = df[choice].to_numpy(dtype=float)
    g = df[obs].to_numpy()
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    w = np.ones(starts.size) if weights is None else df[weights].to_numpy(dtype=float)[starts]
    return X, starts, y, w


def reference_loglik(beta, X, starts, y, w):
    z = X @ beta
    zmax = np.maximum.reduceat(z, starts)
    size = np.diff(np.r_[starts, len(z)])
    e = np.exp(z - np.repeat(zmax, size))
    s = np.add.reduceat(e, starts)
    logp = z - np.repeat(zmax + np.log(s), size)
    p = np.exp(logp)
    ll = float(w @ np.add.reduceat(y * logp, starts))
    xbar = np.add.reduceat(p[:, None] * X, starts) / 1.0
    scores = np.add.reduceat(y[:, None] * X, starts) - xbar
    grad = (w[:, None] * scores).sum(0)
    dev = X - np.repeat(xbar, size, axis=0)
    H = -np.einsum("r,ri,rj->ij", np.repeat(w, size) * p, dev, dev)
    return ll, grad, H, scores


def reference_fit(X, starts, y, w):
    beta = np.zeros(X.shape[1])
    for _ in range(40):
        ll, g, H, _ = reference_loglik(beta, X, starts, y, w)
        step = np.linalg.solve(-H, g)
        t = 1.0
        # Halve while the value falls by more than rounding can explain.
        while reference_loglik(beta + t * step, X, starts, y, w)[0] < ll - 1e-12 * abs(ll):
            t /= 2
        beta = beta + t * step
    ll, g, H, scores = reference_loglik(beta, X, starts, y, w)
    return beta, ll, H, scores


def test_electricity_matches_published_and_numpy(electricity):
    """Train's electricity data: the conditional logit log-likelihood -4958.649
    (mlogit, xlogit), estimates and all three covariances against NumPy."""
    model = fc.ConditionalLogit(electricity, choice="choice", obs="chid", alt="alt", x=ELEC_X)
    res = model.fit()
    assert round(res.llf, 3) == -4958.649
    assert res.converged and res.nobs == 4308
    X, starts, y, w = reference_arrays(electricity, "choice", "chid", ELEC_X)
    beta, ll, H, scores = reference_fit(X, starts, y, w)
    np.testing.assert_allclose(res.params.to_numpy(), beta, rtol=1e-11)
    assert res.llf == pytest.approx(ll, rel=1e-13)
    cov_h = np.linalg.inv(-H)
    np.testing.assert_allclose(res.bse.to_numpy(), np.sqrt(np.diag(cov_h)), rtol=1e-10)
    np.testing.assert_allclose(res.cov_params().to_numpy(), cov_h, rtol=1e-9, atol=1e-15)

    robust = model.fit(cov="robust")
    sandwich = cov_h @ (scores.T @ scores) @ cov_h
    np.testing.assert_allclose(robust.bse.to_numpy(), np.sqrt(np.diag(sandwich)), rtol=1e-9)
    np.testing.assert_array_equal(robust.params.to_numpy(), res.params.to_numpy())

    clustered = model.fit(cov="cluster", cluster="id")
    person = electricity.sort_values("chid", kind="stable")["id"].to_numpy()[starts]
    codes, labels = pd.factorize(person)
    G = len(labels)
    summed = np.zeros((G, X.shape[1]))
    np.add.at(summed, codes, scores)
    cov_c = G / (G - 1) * cov_h @ (summed.T @ summed) @ cov_h
    np.testing.assert_allclose(clustered.bse.to_numpy(), np.sqrt(np.diag(cov_c)), rtol=1e-9)
    assert clustered.n_clusters == 361

    k, n = 6, 4308
    assert res.aic == pytest.approx(-2 * res.llf + 2 * k, rel=1e-15)
    assert res.bic == pytest.approx(-2 * res.llf + k * math.log(n), rel=1e-15)
    assert res.llnull == pytest.approx(-n * math.log(4), rel=1e-13)
    assert res.rho2 == pytest.approx(1 - res.llf / res.llnull, rel=1e-15)
    assert res.rho2_adj == pytest.approx(1 - (res.llf - k) / res.llnull, rel=1e-15)
    np.testing.assert_allclose(res.tvalues, res.params / res.bse, rtol=1e-15)
    p = [math.erfc(abs(t) / math.sqrt(2)) for t in res.tvalues]
    np.testing.assert_allclose(res.pvalues, p, rtol=1e-12, atol=1e-300)


def reference_covariances(beta, X, starts, y, w, groups):
    """inv(-H), the sandwich of the weighted scores and its clustered form
    (scores summed per group, times G / (G - 1)), from the NumPy reference."""
    _, _, H, scores = reference_loglik(beta, X, starts, y, w)
    cov_h = np.linalg.inv(-H)
    ws = w[:, None] * scores
    robust = cov_h @ (ws.T @ ws) @ cov_h
    codes, labels = pd.factorize(groups)
    G = len(labels)
    summed = np.zeros((G, X.shape[1]))
    np.add.at(summed, codes, ws)
    cluster = G / (G - 1) * cov_h @ (summed.T @ summed) @ cov_h
    return cov_h, robust, cluster


def check_against_reference(model, df, names, X, weights=None, cluster=None):
    """Estimates, log-likelihood and the three covariances of ``model``
    against the NumPy reference on the design ``X`` (columns ``names``, rows
    those of ``df``, which holds the model's available rows)."""
    df = df.assign(_row=np.arange(len(df)))
    order = df.sort_values(["obs"], kind="stable")["_row"].to_numpy()
    g = df["obs"].to_numpy()[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    y = df["choice"].to_numpy(dtype=float)[order]
    w = np.ones(starts.size) if weights is None else df[weights].to_numpy(float)[order][starts]
    Xs = X[order]
    beta, ll, H, _ = reference_fit(Xs, starts, y, w)
    covs = reference_covariances(beta, Xs, starts, y, w,
                                 df[cluster].to_numpy()[order][starts] if cluster else g[starts])
    for cov, reference in zip(("hessian", "robust", "cluster"), covs):
        if cov == "cluster" and cluster is None:
            continue
        res = model.fit(cov=cov, cluster=cluster if cov == "cluster" else None)
        assert res.converged
        np.testing.assert_allclose(res.params[names].to_numpy(), beta, rtol=1e-9, atol=1e-12)
        assert res.llf == pytest.approx(ll, rel=1e-12)
        np.testing.assert_allclose(res.bse[names].to_numpy(), np.sqrt(np.diag(reference)),
                                   rtol=1e-8, err_msg=cov)
        np.testing.assert_allclose(res.cov_params().loc[names, names].to_numpy(), reference,
                                   rtol=1e-7, atol=1e-12 * np.abs(reference).max(), err_msg=cov)
    return res


def test_weighted_standard_errors_against_numpy(rng):
    """Weighted fits: estimates and the hessian, robust and clustered standard
    errors against the NumPy reference with weights."""
    df = synthetic(rng, 400, 4, weights=True)
    df["grp"] = df["obs"] % 23  # constant within an observation
    model = fc.ConditionalLogit(df, choice="choice", obs="obs", alt="alt",
                                x=["x0", "x1", "x2"], weights="w")
    X = df[["x0", "x1", "x2"]].to_numpy(float)
    res = check_against_reference(model, df, ["x0", "x1", "x2"], X, weights="w", cluster="grp")
    assert res.n_clusters == 23
    # The weights matter: the unweighted fit differs.
    plain = fc.ConditionalLogit(df, choice="choice", obs="obs", alt="alt",
                                x=["x0", "x1", "x2"]).fit()
    assert np.abs(plain.params - res.params).max() > 1e-4


def design_by_pandas(df, x, asc, x_by_alt):
    """The design of generic columns, alternative constants and
    alternative-specific columns, built from the frame with pandas; its
    parameter names."""
    alts = sorted(df["alt"].unique())
    columns = {c: df[c].to_numpy(float) for c in x}
    if asc is not None:
        for a in alts:
            if a != asc:
                columns[f"asc.{a}"] = (df["alt"] == a).to_numpy(float)
    for col, ref in (x_by_alt or {}).items():
        for a in alts:
            if a != ref:
                columns[f"{col}.{a}"] = df[col].where(df["alt"] == a, 0.0).to_numpy(float)
    return list(columns), np.column_stack(list(columns.values()))


def test_asc_and_x_by_alt_against_numpy(rng):
    """Alternative constants and alternative-specific coefficients, with
    availability and weights, against the NumPy reference on a design built
    by pandas."""
    df = synthetic(rng, 500, 4, avail=True, weights=True)
    df["x2"] = df["x2"] + df["alt"].map({"a0": 0.0, "a1": 0.5, "a2": -0.3, "a3": 1.0})
    df["grp"] = df["obs"] % 31
    model = fc.ConditionalLogit(df, choice="choice", obs="obs", alt="alt", x=["x0", "x1"],
                                asc="a0", x_by_alt={"x2": "a1"}, avail="ok", weights="w")
    available = df[df["ok"] == 1]
    names, X = design_by_pandas(available, ["x0", "x1"], "a0", {"x2": "a1"})
    assert sorted(names) == sorted(model.param_names)
    check_against_reference(model, available, names, X, weights="w", cluster="grp")


def test_fishing_against_numpy(fishing):
    """Fishing with constants and income by alternative: estimates and every
    standard error against the NumPy reference (clustered by the angler's
    income band, a column constant within each observation)."""
    df = fishing.rename(columns={"id": "obs"})
    df["band"] = (df["income"] // 2000).astype(int)
    model = fc.ConditionalLogit(df, choice="choice", obs="obs", alt="alt", x=["price", "catch"],
                                asc="beach", x_by_alt={"income": "beach"})
    names, X = design_by_pandas(df, ["price", "catch"], "beach", {"income": "beach"})
    assert names == model.param_names
    res = check_against_reference(model, df, names, X, cluster="band")
    assert round(res.llf, 3) == -1215.138


def test_fishing_published_loglik(fishing):
    """Fishing with price and catch: -1311.980 (mlogit, xlogit); with
    alternative constants and income by alternative, mlogit's -1215.138."""
    res = fc.ConditionalLogit(fishing, choice="choice", obs="id", alt="alt",
                              x=["price", "catch"]).fit()
    assert round(res.llf, 3) == -1311.980
    full = fc.ConditionalLogit(fishing, choice="choice", obs="id", alt="alt", x=["price", "catch"],
                               asc="beach", x_by_alt={"income": "beach"}).fit()
    assert round(full.llf, 3) == -1215.138
    assert list(full.params.index) == ["price", "catch", "asc.boat", "asc.charter", "asc.pier",
                                       "income.boat", "income.charter", "income.pier"]


def travel_mode():
    sm = pytest.importorskip("statsmodels.api")
    data = sm.datasets.modechoice.load_pandas().data.copy()
    data["mode"] = data["mode"].map({1: "air", 2: "train", 3: "bus", 4: "car"})
    return data


def test_greene_travel_mode_and_statsmodels():
    """Greene's travel-mode table (Econometric Analysis, Table 21.11) through
    the estimator, and statsmodels' ConditionalLogit on the same design."""
    from statsmodels.discrete.conditional_models import ConditionalLogit as SMLogit

    data = travel_mode()
    data["hinc_air"] = data["hinc"] * (data["mode"] == "air")
    res = fc.ConditionalLogit(data, choice="choice", obs="individual", alt="mode",
                              x=["gc", "ttme", "hinc_air"], asc="car").fit()
    assert round(res.llf, 3) == -199.128
    published = {"asc.air": (5.207, 0.779), "asc.train": (3.869, 0.443),
                 "asc.bus": (3.163, 0.450), "gc": (-0.0155, 0.00441), "ttme": (-0.0961, 0.0104),
                 "hinc_air": (0.0133, 0.0103)}
    for name, (est, se) in published.items():
        assert res.params[name] == pytest.approx(est, rel=2e-3, abs=5e-5), name
        assert res.bse[name] == pytest.approx(se, rel=1e-2), name

    res = fc.ConditionalLogit(data, choice="choice", obs="individual", alt="mode",
                              x=["gc", "ttme"], asc="car", x_by_alt={"hinc": "car"}).fit()
    X = np.column_stack([data["gc"], data["ttme"]] + [data["mode"] == m for m in
                        ("air", "bus", "train")] + [data["hinc"] * (data["mode"] == m)
                                                  for m in ("air", "bus", "train")]).astype(float)
    sm = SMLogit(data["choice"].to_numpy(), X, groups=data["individual"].to_numpy()).fit(
        method="bfgs", maxiter=2000, gtol=1e-10, disp=False)
    order = ["gc", "ttme", "asc.air", "asc.bus", "asc.train", "hinc.air", "hinc.bus", "hinc.train"]
    np.testing.assert_allclose(res.params[order].to_numpy(), sm.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.bse[order].to_numpy(), sm.bse, rtol=1e-4)


# ---- invariances ----

def synthetic(rng, n_obs, n_alt, k=3, avail=False, weights=False):
    """A long-format frame drawn from a conditional logit (labels not sorted)."""
    beta = rng.normal(size=k)
    X = rng.normal(size=(n_obs, n_alt, k))
    z = X @ beta + rng.gumbel(size=(n_obs, n_alt))
    ok = np.ones((n_obs, n_alt), bool)
    if avail:
        ok = rng.random((n_obs, n_alt)) < 0.8
        ok[np.arange(n_obs), rng.integers(0, n_alt, n_obs)] = True
        z = np.where(ok, z, -np.inf)
    chosen = z.argmax(1)
    y = np.zeros((n_obs, n_alt), int)
    y[np.arange(n_obs), chosen] = 1
    df = pd.DataFrame({
        "obs": np.repeat(rng.permutation(n_obs) * 7 + 3, n_alt),
        "alt": np.tile([f"a{j}" for j in rng.permutation(n_alt)], n_obs),
        "choice": y.ravel(),
        **{f"x{j}": X[..., j].ravel() for j in range(k)},
    })
    if avail:
        df["ok"] = ok.ravel().astype(int)
        df.loc[df["ok"] == 0, "x0"] = np.nan  # unavailable rows may hold anything
    if weights:
        df["w"] = np.repeat(rng.uniform(0.5, 2.0, n_obs), n_alt)
    return df


def fit(df, **kw):
    model_kw = {k: kw.pop(k) for k in ("asc", "avail", "weights", "x_by_alt") if k in kw}
    x = kw.pop("x", ["x0", "x1", "x2"])
    return fc.ConditionalLogit(df, choice="choice", obs="obs", alt="alt", x=x, **model_kw).fit(**kw)


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), n_obs=st.integers(40, 120), n_alt=st.integers(2, 5),
       avail=st.booleans(), weights=st.booleans())
def test_row_order_does_not_change_a_bit(seed, n_obs, n_alt, avail, weights):
    rng = np.random.default_rng(seed)
    df = synthetic(rng, n_obs, n_alt, avail=avail, weights=weights)
    kw = dict(asc="a0", avail="ok" if avail else None, weights="w" if weights else None)
    shuffled = df.sample(frac=1.0, random_state=seed % 1000)
    try:
        a = fit(df, **kw)
    except fc.NotIdentifiedError as exc:
        # Small draws can be separated; the shuffled frame must say the same.
        with pytest.raises(fc.NotIdentifiedError, match=re.escape(str(exc))):
            fit(shuffled, **kw)
        return
    b = fit(shuffled, **kw)
    for field in ("params", "bse"):
        np.testing.assert_array_equal(getattr(a, field).to_numpy(), getattr(b, field).to_numpy())
    assert a.llf == b.llf


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(1e-3, 1e3))
def test_labels_and_rescaling(seed, scale):
    """Relabelled alternatives give the same estimates; a column times c gives
    its coefficient over c (and the same log-likelihood)."""
    rng = np.random.default_rng(seed)
    df = synthetic(rng, 80, 3)
    base = fit(df, asc="a0")
    relabel = df.assign(alt=df["alt"].map({"a0": "zz", "a1": "b", "a2": "m"}))
    other = fit(relabel, asc="zz")
    np.testing.assert_allclose(other.params[["x0", "x1", "x2"]], base.params[["x0", "x1", "x2"]],
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(other.params[["asc.b", "asc.m"]].to_numpy(),
                               base.params[["asc.a1", "asc.a2"]].to_numpy(), rtol=1e-9, atol=1e-12)
    scaled = fit(df.assign(x1=df["x1"] * scale), asc="a0")
    assert scaled.params["x1"] * scale == pytest.approx(base.params["x1"], rel=1e-8)
    assert scaled.bse["x1"] * scale == pytest.approx(base.bse["x1"], rel=1e-7)
    assert scaled.llf == pytest.approx(base.llf, rel=1e-12)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1))
def test_duplicates_at_half_weight(seed):
    rng = np.random.default_rng(seed)
    df = synthetic(rng, 60, 4)
    base = fit(df)
    twin = df.assign(obs=df["obs"] + 10**6)
    both = pd.concat([df, twin], ignore_index=True).assign(w=0.5)
    dup = fit(both, weights="w")
    np.testing.assert_allclose(dup.params, base.params, rtol=1e-10, atol=1e-13)
    assert dup.llf == pytest.approx(base.llf, rel=1e-12)


def test_same_bits_for_every_thread_count(rng):
    df = synthetic(rng, 3000, 6, k=4, weights=True)
    results = [fit(df, x=["x0", "x1", "x2", "x3"], weights="w", cov="robust", n_threads=t)
               for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r.params.to_numpy(), results[0].params.to_numpy())
        np.testing.assert_array_equal(r.bse.to_numpy(), results[0].bse.to_numpy())
        assert r.llf == results[0].llf


def test_avail_rows_and_single_alternatives(rng):
    """Unavailable rows (holding NaN) are the same as rows not there; an
    observation with one available alternative adds nothing."""
    df = synthetic(rng, 200, 4, avail=True)
    with_avail = fit(df, avail="ok")
    dropped = fit(df[df["ok"] == 1])
    np.testing.assert_allclose(with_avail.params, dropped.params, rtol=1e-12)
    extra = pd.DataFrame({"obs": [-1], "alt": ["a0"], "choice": [1], "x0": [5.0], "x1": [1.0],
                          "x2": [2.0], "ok": [1]})
    single = fit(pd.concat([df, extra], ignore_index=True), avail="ok")
    assert single.n_single == with_avail.n_single + 1 and single.nobs == with_avail.nobs
    np.testing.assert_array_equal(single.params.to_numpy(), with_avail.params.to_numpy())


def test_start_maxiter_and_warning(electricity):
    model = fc.ConditionalLogit(electricity, choice="choice", obs="chid", alt="alt", x=ELEC_X)
    with pytest.warns(fc.ConvergenceWarning, match="did not converge"):
        short = model.fit(maxiter=1)
    assert not short.converged and short.niter == 1
    best = model.fit()
    again = model.fit(start=best.params)
    assert again.niter == 1 and again.converged
    np.testing.assert_allclose(again.params, best.params, rtol=1e-13)
    ll, g = model.loglik(best.params, grad=True)
    assert ll == best.llf and np.abs(g).max() < 1e-8


# ---- after the fit ----

def test_predict_shares_elasticity_wtp(fishing):
    model = fc.ConditionalLogit(fishing, choice="choice", obs="id", alt="alt",
                                x=["price", "catch"], asc="beach")
    res = model.fit()
    shuffled = fishing.sample(frac=1.0, random_state=3)
    p = res.predict(shuffled)
    assert p.index.equals(shuffled.index)
    np.testing.assert_allclose(p.groupby(shuffled["id"]).sum(), 1.0, rtol=1e-14)
    beta = res.params
    v = (shuffled["price"] * beta["price"] + shuffled["catch"] * beta["catch"]
         + shuffled["alt"].map(lambda a: beta.get(f"asc.{a}", 0.0)))
    ev = np.exp(v - v.groupby(shuffled["id"]).transform("max"))
    np.testing.assert_allclose(p, ev / ev.groupby(shuffled["id"]).transform("sum"), rtol=1e-12)
    shares = res.predict(shares=True)
    assert shares.sum() == pytest.approx(1.0, rel=1e-14)
    # At the maximum with constants, predicted shares equal the observed ones.
    observed = fishing.groupby("alt")["choice"].mean()
    np.testing.assert_allclose(shares.to_numpy(), observed.to_numpy(), rtol=1e-9)

    e = res.elasticity("price")
    h = 1e-6
    for row in (0, 5, 13):
        bumped = fishing.copy()
        bumped.loc[row, "price"] *= 1 + h
        q = res.predict(bumped)
        person = fishing.loc[row, "id"]
        rows = fishing.index[fishing["id"] == person]
        dlog = (np.log(q[rows]) - np.log(p[rows])) / math.log1p(h)
        assert dlog[row] == pytest.approx(e.loc[row, "direct"], rel=1e-5)
        for other in rows.drop(row):
            assert dlog[other] == pytest.approx(e.loc[row, "cross"], rel=1e-5)

    # One signature, elasticity(var, data=None): the same with the data given
    # (by position or name); the other order is a TypeError saying which.
    np.testing.assert_array_equal(res.elasticity("price", fishing).to_numpy(), e.to_numpy())
    np.testing.assert_array_equal(res.elasticity("price", data=fishing).to_numpy(), e.to_numpy())
    with pytest.raises(TypeError, match=r"takes the variable first and the data second, got a "
                                        r"data frame as var: write res.elasticity\('price', data\)"):
        res.elasticity(fishing, "price")
    with pytest.raises(TypeError, match=r"write res.elasticity\('<column>', data\)"):
        res.elasticity(fishing)
    with pytest.raises(ValueError, match=r"'income' is not a variable of the model"):
        res.elasticity("income")

    w = res.wtp("catch", "price")
    assert w["estimate"] == pytest.approx(-beta["catch"] / beta["price"], rel=1e-15)
    cov = res.cov_params().loc[["catch", "price"], ["catch", "price"]].to_numpy()
    grad = np.array([-1 / beta["price"], beta["catch"] / beta["price"] ** 2])
    assert w["std_err"] == pytest.approx(math.sqrt(grad @ cov @ grad), rel=1e-12)
    ci = res.conf_int(0.1)
    np.testing.assert_allclose(ci["upper"] - beta, 1.6448536269514722 * res.bse, rtol=1e-12)


def test_summary_and_frame(electricity):
    res = fc.ConditionalLogit(electricity, choice="choice", obs="chid", alt="alt",
                              x=ELEC_X).fit()
    text = str(res.summary())
    for name in ELEC_X:
        assert name in text
    assert "-4958.6491" in text and "4308" in text and "yes (" in text
    line = next(l for l in text.splitlines() if l.startswith("pf "))
    assert float(line.split()[1]) == pytest.approx(res.params["pf"], rel=1e-5)
    assert "<table>" in res.summary()._repr_html_()
    frame = res.to_frame()
    assert list(frame.columns) == ["estimate", "std_err", "t", "p", "lower", "upper"]


def test_other_frame_libraries(electricity):
    """A pyarrow table is converted once to pandas (polars: the test below)."""
    pa = pytest.importorskip("pyarrow")
    table = pa.Table.from_pandas(electricity)
    a = fc.ConditionalLogit(table, choice="choice", obs="chid", alt="alt", x=ELEC_X).fit()
    b = fc.ConditionalLogit(electricity, choice="choice", obs="chid", alt="alt", x=ELEC_X).fit()
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())


def test_polars_frame(electricity):
    """A polars DataFrame is converted once to pandas: the same bits."""
    pl = pytest.importorskip("polars")
    frame = pl.from_pandas(electricity)
    a = fc.ConditionalLogit(frame, choice="choice", obs="chid", alt="alt", x=ELEC_X).fit()
    b = fc.ConditionalLogit(electricity, choice="choice", obs="chid", alt="alt", x=ELEC_X).fit()
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())
    np.testing.assert_array_equal(a.bse.to_numpy(), b.bse.to_numpy())


# ---- bad input ----

@pytest.fixture
def small():
    return pd.DataFrame({
        "obs": [1, 1, 1, 2, 2, 2, 3, 3, 3],
        "alt": ["a", "b", "c"] * 3,
        "choice": [1, 0, 0, 0, 1, 0, 0, 0, 1],
        "x": [1.0, 2.0, 0.5, 0.3, 1.2, 2.2, 0.1, 0.7, 3.0],
        "w": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0],
        "ok": [1, 1, 1, 1, 1, 0, 1, 1, 1],
    })


def make(df, **kw):
    base = dict(choice="choice", obs="obs", alt="alt", x=["x"])
    base.update(kw)
    return fc.ConditionalLogit(df, **base)


@pytest.mark.parametrize("edit, kw, match", [
    (lambda d: d.assign(choice=[1, 1, 0, 0, 1, 0, 0, 0, 1]), {},
     r"observation 1 has 2 chosen available rows in column 'choice'"),
    (lambda d: d.assign(choice=[0, 0, 0, 0, 1, 0, 0, 0, 1]), {},
     r"observation 1 has 0 chosen"),
    (lambda d: d.assign(choice=[1, 0, 0, 0, 0, 1, 0, 0, 1]), {"avail": "ok"},
     r"^observation 2 chose alternative 'c', which is unavailable \(row 5: choice column "
     r"'choice' is 1, avail column 'ok' is 0\)$"),
    # A choice column of strings: ChoiceDataError, naming the column and the observation.
    (lambda d: d.assign(choice=["yes", "no", "no", "no", "yes", "no", "no", "no", "yes"]), {},
     r"^choice column 'choice' must hold 0/1 or bool, not dtype \S+; observation 1 "
     r"\(alternative 'a', row 0\) has the value 'yes'$"),
    (lambda d: d.assign(choice=pd.Series([1, 0, 0, 0, "yes", 0, 0, 0, 1], dtype=object)), {},
     r"^choice column 'choice' must hold 0/1 or bool, not dtype object; observation 2 "
     r"\(alternative 'b', row 4\) has the value 'yes'$"),
    (lambda d: d.assign(choice=[1, np.nan, 0, 0, 1, 0, 0, 0, 1]), {},
     r"^choice column 'choice' must hold 0/1 or bool; observation 1 \(alternative 'b', row 1\) "
     r"has a missing value$"),
    (lambda d: d.assign(choice=[2, 0, 0, 0, 1, 0, 0, 0, 1]), {},
     r"choice column 'choice' must hold 0/1 or bool; observation 1 \(alternative 'a'.*the value 2"),
    (lambda d: d.assign(x=[1.0, np.nan, 0.5, 0.3, 1.2, 2.2, 0.1, 0.7, 3.0]), {},
     r"column 'x' has a missing or infinite value in observation 1 \(alternative 'b', row 1\)"),
    (lambda d: d.assign(w=[1.0, 2.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0]), {"weights": "w"},
     r"weights column 'w' varies within observation 1"),
    (lambda d: d.assign(w=-d["w"]), {"weights": "w"},
     r"^weights column 'w' must be finite and >= 0; observation 1 has -1\.0$"),
    (lambda d: d.assign(w=[1.0, 1.0, 1.0, 2.0, 2.0, 2.0, np.inf, np.inf, np.inf]),
     {"weights": "w"}, r"^weights column 'w' must be finite and >= 0; observation 3 has inf$"),
    # A missing weight in a row other than an observation's first one.
    (lambda d: d.assign(w=[1.0, 1.0, 1.0, 2.0, np.nan, 2.0, 1.0, 1.0, 1.0]), {"weights": "w"},
     r"^weights column 'w' has a missing value in observation 2 \(alternative 'b', row 4\)$"),
    (lambda d: d.assign(w=[np.nan, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0]), {"weights": "w"},
     r"^weights column 'w' has a missing value in observation 1 \(alternative 'a', row 0\)$"),
    (lambda d: d.assign(ok=[1, 1, 1, 1, 1, 2, 1, 1, 1]), {"avail": "ok"},
     r"^avail column 'ok' must hold 0/1 or bool; observation 2 \(alternative 'c', row 5\) has "
     r"the value 2$"),
    (lambda d: d.assign(ok=["y"] * 9), {"avail": "ok"},
     r"^avail column 'ok' must hold 0/1 or bool, not dtype \S+; observation 1 \(alternative "
     r"'a', row 0\) has the value 'y'$"),
    (lambda d: d.assign(ok=[0, 0, 0, 1, 1, 1, 1, 1, 1], choice=[0, 0, 0, 0, 1, 0, 0, 0, 1]),
     {"avail": "ok"}, r"observation 1 has no available alternative"),
    (lambda d: d.assign(alt=["a", "a", "c"] * 3), {},
     r"observation 1 has two rows for alternative 'a'"),
    (lambda d: d.assign(obs=[1, 1, None, 2, 2, 2, 3, 3, 3]), {}, r"column 'obs' has missing values"),
    (lambda d: d.assign(alt=["a", "b", "c", "a", None, "c", "a", "b", "c"]), {},
     r"^column 'alt' has missing values \(observation 2, row 4\)$"),
])
def test_data_errors(small, edit, kw, match):
    with pytest.raises(fc.ChoiceDataError, match=match):
        make(edit(small.copy()), **kw)


def test_argument_errors(small):
    with pytest.raises(KeyError, match="column 'nope' is not in the data"):
        make(small, x=["nope"])
    with pytest.raises(TypeError, match="column 'alt' must hold numbers"):
        make(small, x=["alt"])
    with pytest.raises(ValueError, match=r"asc='z' is not an alternative"):
        make(small, asc="z")
    with pytest.raises(ValueError, match="no parameters"):
        make(small, x=[])
    with pytest.raises(TypeError, match="data must be a data frame"):
        fc.ConditionalLogit(np.zeros((3, 3)), choice="c", obs="o", alt="a", x=["x"])
    model = make(small)
    with pytest.raises(ValueError, match="cov must be"):
        model.fit(cov="sandwich")
    with pytest.raises(ValueError, match="needs cluster="):
        model.fit(cov="cluster")
    with pytest.raises(ValueError, match="params must have 1 values"):
        model.loglik([1.0, 2.0])
    with pytest.raises(KeyError, match="'nope' is not a parameter"):
        model.fit().wtp("nope", "x")
    with pytest.raises(fc.ChoiceDataError, match="cluster column 'w' varies within observation 1"):
        make(small.assign(w=[1, 2, 1, 2, 2, 2, 1, 1, 1])).fit(cov="cluster", cluster="w")
    # A missing cluster label names the observation; in an unavailable row it is allowed.
    with pytest.raises(fc.ChoiceDataError,
                       match=r"^cluster column 'cl2' has a missing value in observation 1 "
                             r"\(alternative 'b', row 1\)$"):
        make(small.assign(cl2=[1, np.nan, 1, 2, 2, 2, 3, 3, 3])).fit(cov="cluster", cluster="cl2")
    res = make(small.assign(cl2=[1, 1, 1, 2, 2, np.nan, 3, 3, 3]), avail="ok").fit(
        cov="cluster", cluster="cl2")
    assert res.n_clusters == 3
    # So are missing weights and choices in unavailable rows.
    res = make(small.assign(w=[1.0, 1.0, 1.0, 2.0, 2.0, np.nan, 1.0, 1.0, 1.0],
                            choice=[1, 0, 0, 0, 1, np.nan, 0, 0, 1]), avail="ok", weights="w").fit()
    assert res.converged


def test_not_identified_and_separated(rng):
    df = synthetic(rng, 100, 3)
    df["const"] = 1.0
    with pytest.raises(fc.NotIdentifiedError, match="'const' is not identified"):
        fit(df, x=["x0", "const"])
    df["copy"] = 2 * df["x0"] - df["x1"]
    with pytest.raises(fc.NotIdentifiedError, match=r"'x0', 'x1', 'copy' are not identified"):
        fit(df, x=["x0", "x1", "copy"])
    df["perfect"] = df["choice"] * 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(fc.NotIdentifiedError,
                           match=r"separated by 'perfect': the chosen alternative has the largest "
                                 r"'perfect' in every observation \(strictly in 100 of 100\); the "
                                 r"estimates diverge"):
            fit(df, x=["x0", "perfect"])
        # Quasi-separation: the variable predicts half of the observations.
        df["half"] = np.where(df["obs"] % 2 == 1, df["choice"], 0.0)
        n_odd = df.drop_duplicates("obs")["obs"].mod(2).sum()
        with pytest.raises(fc.NotIdentifiedError,
                           match=rf"separated by 'half': the chosen alternative has the largest "
                                 rf"'half' in every observation \(strictly in {n_odd} of 100\)"):
            fit(df, x=["x0", "x1", "half"])
        # Two columns that separate alone, one of each sign, both named.
        df["never"] = np.where(df["obs"] % 2 == 0, -df["choice"], 0.0)
        with pytest.raises(fc.NotIdentifiedError,
                           match=r"separated by 'half', 'never': .*largest 'half'.*; the "
                                 r"chosen alternative has the smallest 'never'.*drop these"):
            fit(df, x=["half", "x0", "never"])
        # Separated by a combination only: the parameters along the flat direction.
        df["a"] = df["choice"] + df["x1"]
        with pytest.raises(fc.NotIdentifiedError,
                           match=r"separated by a combination of .*'a'.*no column separates them "
                                 r"alone") as exc:
            fit(df, x=["x0", "x1", "a"])
        assert "'x1'" in str(exc.value)


def test_separation_names_the_column_on_electricity(electricity):
    """On real data the separating column is named, not the high-information
    columns that moved most along the flat direction."""
    df = electricity.assign(perfect=electricity["choice"])
    with pytest.raises(fc.NotIdentifiedError) as exc:
        fc.ConditionalLogit(df, choice="choice", obs="chid", alt="alt",
                            x=[*ELEC_X, "perfect"]).fit()
    message = str(exc.value)
    assert message.startswith("the choices are separated by 'perfect': the chosen alternative "
                              "has the largest 'perfect' in every observation (strictly in "
                              "4308 of 4308)")
    for name in ELEC_X:
        assert repr(name) not in message


def test_import_is_light():
    """fastscore.choice imports pandas and SciPy when used, not when imported."""
    import subprocess
    import sys

    code = ("import sys, fastscore.choice; "
            "print(sorted(m for m in ('pandas', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_memory_one_design_matrix(rng):
    """Making the model allocates one (rows, k) design matrix and little else
    (index arrays of one entry a row); a fit allocates no (rows, k) array."""
    import tracemalloc

    k = 20
    df = synthetic(rng, 5000, 5, k=k)
    names = [f"x{j}" for j in range(k)]
    fit(df.iloc[:2500], x=names)  # imports and first-call allocations, not counted below
    tracemalloc.start()
    try:
        model = fc.ConditionalLogit(df, choice="choice", obs="obs", alt="alt", x=names)
        held, construct = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        model.fit()
        fitting = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    # Beyond X: index arrays (an entry a row) and a block's finiteness mask.
    from fastscore.choice._data import BLOCK_DOUBLES

    assert construct < 1.3 * model.X.nbytes + BLOCK_DOUBLES
    assert fitting < 0.1 * model.X.nbytes
