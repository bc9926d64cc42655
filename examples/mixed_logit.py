"""Mixed logit (random coefficients) with fastscore.choice on two real data sets.

1. Train's electricity-supplier panel (examples/data/electricity_long.csv):
   361 people, 4308 choice situations of 4 suppliers, six attributes, every
   coefficient normal and one draw of the coefficients per person (panel).
   xlogit's benchmark reaches log-likelihood -3891.718 at 500 Halton draws;
   other draws land within simulation noise of it.  Then each person's
   conditional mean of the price coefficient (the posterior given their
   choices), the start of a segment analysis.
2. The fishing-mode data (examples/data/fishing_long.csv): 1182 anglers, a
   normal coefficient on catch and alternative constants.

Run: ``python examples/mixed_logit.py [--draws 500]`` (needs pandas:
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


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=500, help="draws per person (default 500)")
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
    print(f"model, fit and robust standard errors in {seconds:.2f} s")
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
