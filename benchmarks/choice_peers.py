"""One choice-model fit by one tool, timed in its own process.

    python benchmarks/choice_peers.py TOOL DATASET REPEATS [DRAWS]

TOOL is fastscore, xlogit, biogeme (conditional logit) or jaxlogit (mixed
logit only); DATASET a key of ``DATASETS``; DRAWS the mixed logit's draws
per panel.  Prints
one JSON line: the best and median seconds of REPEATS fits with standard
errors (data loading and imports excluded, each timed separately), the
log-likelihood, the iterations and the standard errors.  The bench's
``--choice`` table runs it once per tool and data set, so that no tool's
import, JIT or threads disturb another's.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"

# Each data set: the CSV, the columns, and the model (generic x, the reference
# alternative of the constants, alternative-specific columns).
DATASETS = {
    "electricity": dict(file="electricity_long.csv", obs="chid", alt="alt", choice="choice",
                        x=["pf", "cl", "loc", "wk", "tod", "seas"], asc=None, x_by_alt={}),
    "fishing": dict(file="fishing_long.csv", obs="id", alt="alt", choice="choice",
                    x=["price", "catch"], asc="beach", x_by_alt={"income": "beach"}),
    # Mixed logits: every random coefficient normal, Halton draws.
    "electricity-mixed": dict(file="electricity_long.csv", obs="chid", alt="alt", choice="choice",
                              x=["pf", "cl", "loc", "wk", "tod", "seas"], asc=None, x_by_alt={},
                              panel="id", random=["pf", "cl", "loc", "wk", "tod", "seas"]),
    # xlogit's artificial benchmark's shape (4000 observations x 3 alternatives,
    # 10 variables, 3 of them normal), drawn here from a mixed logit.
    "artificial-mixed": dict(file=None, obs="id", alt="alt", choice="choice",
                             x=[f"x{j}" for j in range(10)], asc=None, x_by_alt={}, panel=None,
                             random=["x0", "x1", "x2"]),
}


def load(name):
    import pandas as pd

    spec = DATASETS[name]
    if spec["file"] is None:
        return artificial(), spec
    return pd.read_csv(DATA / spec["file"]), spec


def artificial(n_obs=4000, n_alt=3, k=10, seed=0):
    """A long-format data set from a mixed logit: coefficients 1 to -1, the
    first three normal with standard deviation 1."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n_obs, n_alt, k)) * 2
    beta = np.tile(np.linspace(1.0, -1.0, k), (n_obs, 1))
    beta[:, :3] += rng.standard_normal((n_obs, 3))
    u = np.einsum("njk,nk->nj", X, beta) + rng.gumbel(size=(n_obs, n_alt))
    y = (u == u.max(1, keepdims=True)).astype(int)
    frame = {f"x{j}": X[..., j].ravel() for j in range(k)}
    return pd.DataFrame({"id": np.repeat(np.arange(n_obs), n_alt),
                         "alt": np.tile(np.arange(n_alt), n_obs), "choice": y.ravel(), **frame})


def fit_fastscore(df, spec, draws=None):
    import fastscore.choice as fc

    common = dict(choice=spec["choice"], obs=spec["obs"], alt=spec["alt"], x=spec["x"],
                  asc=spec["asc"], x_by_alt=spec["x_by_alt"])
    if "random" in spec:
        model = fc.MixedLogit(df, random={c: "normal" for c in spec["random"]},
                              panel=spec["panel"], n_draws=draws, draws="halton", seed=0, **common)
    else:
        model = fc.ConditionalLogit(df, **common)
    res = model.fit()
    return res.llf, res.niter, list(res.bse)


def fit_xlogit(df, spec, draws=None):
    import numpy as np
    from xlogit import MixedLogit, MultinomialLogit

    if "random" in spec:
        model = MixedLogit()
        model.fit(X=df[spec["x"]], y=df[spec["choice"]], varnames=spec["x"], ids=df[spec["obs"]],
                  alts=df[spec["alt"]], randvars={c: "n" for c in spec["random"]},
                  panels=df[spec["panel"]] if spec["panel"] else None, n_draws=draws,
                  random_state=0, verbose=0)
        return float(model.loglikelihood), int(model.total_iter), list(np.asarray(model.stderr))

    # xlogit's alternative-specific columns (isvars) and constants share one
    # base alternative; the data sets here use the same reference for both.
    varnames = list(spec["x"])
    isvars = list(spec["x_by_alt"])
    frame = df
    model = MultinomialLogit()
    model.fit(X=frame[varnames + isvars], y=frame[spec["choice"]], varnames=varnames + isvars,
              isvars=isvars or None, ids=frame[spec["obs"]], alts=frame[spec["alt"]],
              fit_intercept=spec["asc"] is not None,
              base_alt=spec["asc"] if spec["asc"] is not None else None, verbose=0)
    return float(model.loglikelihood), int(model.total_iter), list(np.asarray(model.stderr))


def fit_jaxlogit(df, spec, draws=None):
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)  # the float64 the other tools compute in
    from jaxlogit.mixed_logit import ConfigData, MixedLogit

    config = ConfigData(panels=df[spec["panel"]].to_numpy() if spec["panel"] else None,
                        n_draws=draws, random_state=0)
    model = MixedLogit()
    model.fit(X=df[spec["x"]].to_numpy(dtype=float), y=df[spec["choice"]].to_numpy(),
              varnames=spec["x"], alts=df[spec["alt"]].to_numpy(), ids=df[spec["obs"]].to_numpy(),
              randvars={c: "n" for c in spec["random"]}, config=config, verbose=0)
    return float(model.loglikelihood), int(model.total_iter), list(np.asarray(model.stderr))


def fit_biogeme(df, spec, draws=None):
    import biogeme.biogeme as bio
    import biogeme.database as db
    from biogeme import models
    from biogeme.expressions import Beta, Variable

    wide, alts = _wide(df, spec)
    betas = {c: Beta(c, 0, None, None, 0) for c in spec["x"]}
    V = {}
    for j, a in enumerate(alts):
        v = sum(betas[c] * Variable(f"{c}_{j}") for c in spec["x"])
        if spec["asc"] is not None and a != spec["asc"]:
            v = v + Beta(f"asc_{j}", 0, None, None, 0)
        for col, ref in spec["x_by_alt"].items():
            if a != ref:
                v = v + Beta(f"{col}_{j}", 0, None, None, 0) * Variable(f"{col}_{j}")
        V[j] = v
    av = {j: Variable(f"av_{j}") for j in range(len(alts))}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # biogeme writes its parameter file to the working directory
        try:
            b = bio.BIOGEME(db.Database("bench", wide),
                            models.loglogit(V, av, Variable("CHOICE")),
                            generate_html=False, generate_yaml=False, save_iterations=False)
            b.model_name = "bench"
            res = b.estimate()
        finally:
            os.chdir(cwd)
    ll = float(res.final_log_likelihood)
    se = [res.get_parameter_std_err(name) for name in res.get_beta_values()]
    messages = res.raw_estimation_results.optimization_messages
    niter = next((int(v) for k, v in messages.items() if "iteration" in k.lower()), -1)
    return ll, niter, se


def _wide(df, spec):
    """Biogeme's wide layout: one row per observation, columns <var>_<j>."""
    import pandas as pd

    alts = sorted(df[spec["alt"]].unique())
    code = {a: j for j, a in enumerate(alts)}
    cols = list(dict.fromkeys(spec["x"] + list(spec["x_by_alt"])))
    frame = df.assign(_j=df[spec["alt"]].map(code))
    wide = frame.pivot(index=spec["obs"], columns="_j", values=cols)
    wide.columns = [f"{c}_{j}" for c, j in wide.columns]
    chosen = frame[frame[spec["choice"]] == 1].set_index(spec["obs"])["_j"]
    wide["CHOICE"] = chosen.loc[wide.index].to_numpy()
    for j in range(len(alts)):
        present = wide[f"{cols[0]}_{j}"].notna()
        wide[f"av_{j}"] = present.astype(float)
    wide = wide.fillna(0.0).reset_index(drop=True).astype(float)
    return pd.DataFrame(wide), alts


FITS = {"fastscore": fit_fastscore, "xlogit": fit_xlogit, "biogeme": fit_biogeme,
        "jaxlogit": fit_jaxlogit}
MODULES = {"fastscore": "fastscore.choice", "xlogit": "xlogit", "biogeme": "biogeme.biogeme",
           "jaxlogit": "jaxlogit"}


def main(argv):
    tool, name, repeats = argv[0], argv[1], int(argv[2])
    draws = int(argv[3]) if len(argv) > 3 else None
    t0 = time.perf_counter()
    fit = FITS[tool]
    try:
        __import__(MODULES[tool])
    except ImportError as exc:
        print(json.dumps({"tool": tool, "missing": str(exc)}))
        return
    import_s = time.perf_counter() - t0
    df, spec = load(name)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ll, niter, se = fit(df, spec, draws)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"tool": tool, "data": name, "draws": draws, "best": min(times),
                      "median": statistics.median(times), "first": times[0],
                      "import": import_s, "ll": ll, "niter": niter, "se": se}))


if __name__ == "__main__":
    main(sys.argv[1:])
