"""Conditional logit (McFadden) with fastscore.choice, on two real data sets.

1. Greene's travel-mode data (bundled with statsmodels): 210 travellers
   between Sydney and Melbourne, each choosing air, train, bus or car, one
   row per traveller and mode.  The utility of mode j for traveller i is

       U_ij = ASC_j + b_gc GC_ij + b_ttme TTME_ij + g HINC_i [j = air] + e_ij

   (car is the reference).  Greene, Econometric Analysis (5th ed.), Table
   21.11 publishes the estimates and standard errors this prints; then the
   same fit with each traveller weighted by party size.
2. Train's electricity-supplier data (examples/data/electricity_long.csv):
   4308 choice situations of 361 people, six attributes; mlogit and xlogit
   publish the log-likelihood -4958.649.  Standard errors clustered by person.

Run: ``python examples/conditional_logit.py`` (needs pandas and statsmodels:
``pip install "fastscore[examples]"``).
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

import fastscore.choice as fc

DATA = Path(__file__).resolve().parent / "data"


def travel_mode() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.modechoice.load_pandas().data
    data["mode"] = data["mode"].map({1: "air", 2: "train", 3: "bus", 4: "car"})
    data["hinc_air"] = data["hinc"] * (data["mode"] == "air")
    return data


def main() -> dict:
    data = travel_mode()
    t0 = time.perf_counter()
    model = fc.ConditionalLogit(data, choice="choice", obs="individual", alt="mode",
                                x=["gc", "ttme", "hinc_air"], asc="car")
    res = model.fit()
    seconds = time.perf_counter() - t0
    print("Travel mode (Greene, Table 21.11)")
    print(res.summary())
    print(f"model and fit in {seconds * 1e3:.1f} ms")

    weighted = fc.ConditionalLogit(data, choice="choice", obs="individual", alt="mode",
                                   x=["gc", "ttme", "hinc_air"], asc="car", weights="psize").fit()
    print("\nThe same, each traveller weighted by party size")
    print(weighted.summary())

    elec = pd.read_csv(DATA / "electricity_long.csv")
    t0 = time.perf_counter()
    model = fc.ConditionalLogit(elec, choice="choice", obs="chid", alt="alt",
                                x=["pf", "cl", "loc", "wk", "tod", "seas"])
    clustered = model.fit(cov="cluster", cluster="id")
    seconds = time.perf_counter() - t0
    print("\nElectricity suppliers (Train), standard errors clustered by person")
    print(clustered.summary())
    print(f"model and fit in {seconds * 1e3:.1f} ms")
    print("\nWillingness to pay for a local supplier, in cents per kWh:")
    print(clustered.wtp("loc", "pf").to_string())
    return {"travel": res, "weighted": weighted, "electricity": clustered}


if __name__ == "__main__":
    main()
