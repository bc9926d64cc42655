"""Mixed logit (random coefficients) with fastscore.choice on two real data sets.

1. Train's electricity-supplier panel (examples/data/electricity_long.csv):
   361 people, 4308 choice situations of 4 suppliers, six attributes, every
   coefficient normal and one draw of the coefficients per person (panel).
   The estimates are printed next to the published ones of the same model:
   xlogit's README (github.com/arteagac/xlogit, README.rst, "Quick start":
   ``MixedLogit`` on this file with the six coefficients normal,
   ``panels=df['id']``, 600 Halton draws), log-likelihood -3888.413.  xlogit
   simulates with its own Halton draws, so the two agree within simulation
   noise, not to the digit (with 500 draws xlogit reaches -3891.718); a
   spread's sign is not identified, so the spreads compare in absolute
   value.  Then each person's conditional mean of the price coefficient (the
   posterior given their choices), the start of a segment analysis.
2. The fishing-mode data (examples/data/fishing_long.csv): 1182 anglers, a
   normal coefficient on catch and alternative constants.

Run: ``python examples/mixed_logit.py [--draws 600]`` (needs pandas:
``pip install "fastscore[choice]"``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import fastscore.choice as fc

DATA = Path(__file__).resolve().parent / "data"
ELECTRICITY = ["pf", "cl", "loc", "wk", "tod", "seas"]
# xlogit's README.rst (github.com/arteagac/xlogit), "Quick start": the
# electricity panel, six normal coefficients, 600 Halton draws, as printed.
XLOGIT_README = {
    "source": "xlogit README (github.com/arteagac/xlogit), 600 Halton draws",
    "llf": -3888.413,
    "params": {"pf": -0.9996286, "cl": -0.2355334, "loc": 2.2307891, "wk": 1.6251657,
               "tod": -9.6067367, "seas": -9.7892800, "sd.pf": 0.2357813, "sd.cl": 0.4025377,
               "sd.loc": 1.9262893, "sd.wk": -1.2192931, "sd.tod": 2.3354462,
               "sd.seas": -1.4200913},
    "bse": {"pf": 0.0331488, "cl": 0.0220401, "loc": 0.1164263, "wk": 0.0918755,
            "tod": 0.3112721, "seas": 0.2913063, "sd.pf": 0.0181892, "sd.cl": 0.0220183,
            "sd.loc": 0.1187850, "sd.wk": 0.0944581, "sd.tod": 0.1741859, "sd.seas": 0.2095869},
}


def against_published(res, ref=XLOGIT_README) -> str:
    """Our estimates next to the published ones (spreads in absolute value:
    their sign is not identified), and the difference in our standard
    errors."""
    lines = [f"Against {ref['source']}:",
             f"{'':<10}{'fastscore':>12}{'(s.e.)':>10}{'published':>12}{'(s.e.)':>10}"
             f"{'diff / s.e.':>13}"]
    for name, theirs in ref["params"].items():
        ours, se = float(res.params[name]), float(res.bse[name])
        if name.startswith("sd."):
            ours, theirs = abs(ours), abs(theirs)
        lines.append(f"{name:<10}{ours:>12.4f}{se:>10.4f}{theirs:>12.4f}{ref['bse'][name]:>10.4f}"
                     f"{(ours - theirs) / se:>13.2f}")
    lines.append(f"{'log-lik.':<10}{res.llf:>12.3f}{'':>10}{ref['llf']:>12.3f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=600,
                    help="draws per person (default 600, as the published fit)")
    args = ap.parse_args(argv)

    elec = pd.read_csv(DATA / "electricity_long.csv")
    t0 = time.perf_counter()
    model = fc.MixedLogit(elec, choice="choice", obs="chid", alt="alt", x=ELECTRICITY,
                          random={c: "normal" for c in ELECTRICITY}, panel="id",
                          n_draws=args.draws, draws="halton", seed=0)
    res = model.fit(cov="robust")
    seconds = time.perf_counter() - t0
    print(f"Electricity suppliers (Train), every coefficient normal, {args.draws} Halton draws")
    print(res.summary())
    print(f"model, fit and robust standard errors in {seconds:.2f} s\n")
    print(against_published(res))
    post = res.individual_coefficients()["pf"]
    print(f"\nEach person's conditional mean price coefficient: mean {post.mean():.3f}, "
          f"quartiles {post.quantile(0.25):.3f} / {post.median():.3f} / {post.quantile(0.75):.3f}")

    fish = pd.read_csv(DATA / "fishing_long.csv")
    t0 = time.perf_counter()
    fishing = fc.MixedLogit(fish, choice="choice", obs="id", alt="alt", x=["price", "catch"],
                            random={"catch": "normal"}, asc="beach", n_draws=args.draws,
                            seed=0).fit()
    seconds = time.perf_counter() - t0
    print(f"\nFishing mode (Herriges and Kling), a normal coefficient on catch, "
          f"{args.draws} Halton draws")
    print(fishing.summary())
    print(f"model, fit and standard errors in {seconds:.2f} s")
    return {"electricity": res, "fishing": fishing}


if __name__ == "__main__":
    main()
