"""``python -m fastscore bench --choice``: fastscore.choice against the peers
that are installed, each fit in its own process (``benchmarks/choice_peers.py``),
and the estimator's front end against a Newton loop on arrays already laid out.

    python -m fastscore bench --choice [--quick] [--peer-python PATH ...]

``--peer-python`` names more interpreters to look for peers in (biogeme
needs pandas < 3, so it often lives in an environment of its own); a tool
runs under the first interpreter that has it, fastscore under this one.  Times are the best of a few
fits with standard errors, imports and data loading excluded; ``vs
fastscore`` is the peer's time over ours.

Then the mixed logit's kernel curve (``mixed_curve``): one evaluation of the
simulated log-likelihood and its gradient on the electricity panel at several
numbers of draws and of panels, against its multiply-add floor.
"""
from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import measure

ROOT = Path(__file__).resolve().parent.parent.parent
PEERS = ROOT / "benchmarks" / "choice_peers.py"
# Published log-likelihoods the conditional-logit fits must reach (mlogit,
# xlogit), to 1e-3.
PUBLISHED = {"electricity": -4958.649, "fishing": -1215.138}

# (model, data set, draws, fastscore's repeats, in the quick table too); the
# peers' mixed-logit fits (10-100 s each) are timed once.
ROWS = [
    ("conditional logit", "electricity", None, 9, True),
    ("conditional logit", "fishing", None, 9, True),
    ("mixed logit", "electricity-mixed", 500, 3, True),
    ("mixed logit", "electricity-mixed", 1000, 3, False),
    ("mixed logit", "artificial-mixed", 500, 3, False),
    ("mixed logit", "artificial-mixed", 1000, 3, False),
]
TOOLS = {"conditional logit": ["fastscore", "xlogit", "biogeme"],
         "mixed logit": ["fastscore", "xlogit", "jaxlogit"]}
# Seconds one peer process may take (jaxlogit's mixed logit: about 90 s).
TIMEOUT = 900
MODULES = {"fastscore": "fastscore.choice", "xlogit": "xlogit", "biogeme": "biogeme.biogeme",
           "jaxlogit": "jaxlogit"}


def repeats_for(tool, model, repeats):
    """The peers' mixed logits take 10-100 s a fit and are timed once;
    biogeme's first fit compiles its model, so it is timed twice."""
    if tool == "fastscore":
        return repeats
    if model == "mixed logit":
        return 1
    return 2 if tool == "biogeme" else repeats


def has_module(python, module):
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True).returncode == 0


def run_peer(python, tool, data, repeats, draws, timeout):
    cmd = [python, str(PEERS), tool, data, str(repeats)]
    if draws is not None:
        cmd.append(str(draws))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"tool": tool, "error": tail[:120]}
    return json.loads(lines[-1])


def front_end(n_obs, n_alt, k, repeats):
    """(model + fit seconds, Newton-loop seconds) on the same data: the
    estimator from a DataFrame against the README's loop on the arrays."""
    import numpy as np
    import pandas as pd

    import fastscore
    import fastscore.choice as fc

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_obs * n_alt, k))
    beta = rng.normal(scale=0.3, size=k)
    z = (X @ beta).reshape(n_obs, n_alt) + rng.gumbel(size=(n_obs, n_alt))
    chosen = z.argmax(1).astype(np.intp)
    y = np.zeros((n_obs, n_alt), np.int8)
    y[np.arange(n_obs), chosen] = 1
    names = [f"x{j}" for j in range(k)]
    df = pd.DataFrame({"obs": np.repeat(np.arange(n_obs), n_alt),
                       "alt": np.tile(np.arange(n_alt), n_obs), "choice": y.ravel(),
                       **{n: X[:, j] for j, n in enumerate(names)}})
    offsets = np.arange(0, n_obs * n_alt + 1, n_alt)

    def newton_loop():
        b = np.zeros(k)
        for _ in range(100):
            ll, g, H = fastscore.loglik(X, b, chosen, offsets=offsets, grad=True, hess=True)
            step = np.linalg.solve(H, g)
            t = 1.0
            while t > 1e-8 and fastscore.loglik(X, b - t * step, chosen, offsets=offsets) < ll:
                t /= 2
            b = b - t * step
            if np.max(np.abs(t * step)) < 1e-10:
                break
        ll, g, H = fastscore.loglik(X, b, chosen, offsets=offsets, grad=True, hess=True)
        return np.sqrt(np.diag(np.linalg.inv(-H)))

    def estimator():
        return fc.ConditionalLogit(df, choice="choice", obs="obs", alt="alt", x=names).fit().bse

    # The model's design matrix is fresh memory on every construction, the
    # loop's arrays are not.  On a VM that hands freed memory back to its host,
    # touching it again costs up to 2 us a page (10^7 x 20 doubles: 3 s against
    # 0.2 s; docs/choice.md), so each timed construction follows an untimed
    # one whose memory it reuses at once.
    best = {"estimator": float("inf"), "loop": float("inf")}
    for _ in range(repeats):
        for name, f in (("loop", newton_loop), ("warm-up", estimator), ("estimator", estimator)):
            t0 = time.perf_counter()
            f()
            if name in best:
                best[name] = min(best[name], time.perf_counter() - t0)
    return best["estimator"], best["loop"]


# The mixed logit's kernel curve: Train's electricity panel, six normal
# coefficients, a panel per person; the draws at all panels, then the first
# panels (their rows) at CURVE_SHARE_DRAWS draws.
ELECTRICITY = ROOT / "examples" / "data" / "electricity_long.csv"
ELECTRICITY_X = ["pf", "cl", "loc", "wk", "tod", "seas"]
CURVE_DRAWS = (125, 250, 500, 1000)
CURVE_SHARES = (0.25, 0.5, 1.0)
CURVE_SHARE_DRAWS = 500
# (runs, iterations a run) of benchmarks/harness/peak_fma.c: the best run counts.
PEAK_RUNS = (25, 4_000_000)


def madds(rows, n_draws, k):
    """Multiply-adds of one evaluation's floor: rows x draws x coefficients
    for the utilities, as many again for the gradient."""
    return 2.0 * rows * n_draws * k


def electricity_mixed(n_draws, data=None):
    """The electricity panel's mixed logit, every coefficient normal, Halton
    draws (seed 0)."""
    import pandas as pd

    import fastscore.choice as fc

    df = pd.read_csv(ELECTRICITY) if data is None else data
    return fc.MixedLogit(df, choice="choice", obs="chid", alt="alt", x=ELECTRICITY_X,
                         random={c: "normal" for c in ELECTRICITY_X}, panel="id",
                         n_draws=n_draws, draws="halton", seed=0)


def curve_problems(draws, shares, share_draws):
    """[(R, panels, arrays)]: ``arrays`` the kernel's (X, offsets, chosen,
    panel_offsets, draws, kinds) from a MixedLogit with R draws, for every R
    of ``draws`` at all panels, then for the first share of the panels (and
    their rows) at ``share_draws``; and the parameters, the model's start."""
    import pandas as pd

    df = pd.read_csv(ELECTRICITY)
    models = {R: electricity_mixed(R, df) for R in sorted({*draws, share_draws})}
    params = models[share_draws].start_values()
    problems = []

    def add(R, n_panels):
        m = models[R]
        s = int(m.panel_offsets[n_panels])
        rows = int(m.offsets[s])
        # Slices of the first axes keep each array's layout (the draws stay
        # the transposed view of a (P, q, R) array the kernel reads directly).
        arrays = (m.X[:rows], m.offsets[:s + 1], m.chosen[:s], m.panel_offsets[:n_panels + 1],
                  m.xi[:n_panels], m.kinds)
        if all((R, n_panels) != (r, p) for r, p, _ in problems):
            problems.append((R, n_panels, arrays))

    n_all = models[share_draws].n_panels
    for R in draws:
        add(R, n_all)
    for share in shares:
        add(share_draws, max(1, round(share * n_all)))
    return problems, params


def mixed_curve(repeats=9, threads=None, draws=None, shares=None, share_draws=None, out=None):
    """Print the curve: for each (draws, panels) one evaluation of the value
    and the gradient (``fastscore._mixedlogit``, its data prepared once, as
    ``MixedLogit`` evaluates; the median of ``repeats``, the problems
    interleaved), the multiply-add floor at the measured FMA peak of one core
    times the threads, the ratio and the time per (row x draw).  Without a C
    compiler (or AVX2) the floor is said to be unavailable.  ``draws``,
    ``shares`` and ``share_draws`` default to ``CURVE_DRAWS``,
    ``CURVE_SHARES`` and ``CURVE_SHARE_DRAWS``, the peak's runs to
    ``PEAK_RUNS`` (read at the call).  Returns the rows as dicts."""
    from fastscore._mixedlogit import prepare

    out = sys.stdout if out is None else out
    threads = measure.default_threads() if threads is None else threads
    problems, params = curve_problems(CURVE_DRAWS if draws is None else draws,
                                      CURVE_SHARES if shares is None else shares,
                                      CURVE_SHARE_DRAWS if share_draws is None else share_draws)
    peak, why = measure.peak_fma_rates(*PEAK_RUNS)
    calls = []
    for R, n_panels, arrays in problems:
        f = prepare(*arrays)
        calls.append(lambda f=f: f(params, grad=True, n_threads=threads))
    for call in calls:  # a warm-up each
        call()
    times = [[] for _ in calls]
    for _ in range(repeats):
        for i, call in enumerate(calls):
            t0 = time.perf_counter()
            call()
            times[i].append(time.perf_counter() - t0)
    n_all = problems[0][2][3].size - 1 if problems else 0
    print(f"\nmixed logit, one evaluation of the value and gradient: electricity panel "
          f"({ELECTRICITY.name}), {len(ELECTRICITY_X)} normal coefficients, panel 'id', "
          f"Halton draws; {threads} thread{'s' if threads != 1 else ''}, median of {repeats}",
          file=out)
    if peak is None:
        print(f"floor unavailable: {why}", file=out)
    else:
        print(f"peak of one core: {peak.fma / 1e9:.2f} G FMA/s, {peak.mul_add / 1e9:.2f} G "
              f"separate mul+add/s ({peak.isa}, benchmarks/harness/peak_fma.c); floor: rows x "
              f"draws x {len(ELECTRICITY_X)} multiply-adds, twice (utilities and gradient), at "
              f"the FMA peak x {threads}", file=out)
    header = (f"{'draws':>6}{'panels':>8}{'rows':>8}{'madds':>10}{'time':>11}{'floor':>11}"
              f"{'time/floor':>12}{'ns/(row x draw)':>17}")
    print(header, file=out)
    print("-" * len(header), file=out)
    rows_out = []
    for (R, n_panels, arrays), t in zip(problems, times):
        rows, k = arrays[0].shape
        work = madds(rows, R, k)
        median = statistics.median(t)
        floor = None if peak is None else work / (peak.fma * threads)
        ratio = "-" if floor is None else f"{median / floor:.2f}"
        per = median / (rows * R) * 1e9
        panels = f"{n_panels}" if n_panels == n_all else f"{n_panels}/{n_all}"
        print(f"{R:>6}{panels:>8}{rows:>8}{work / 1e6:>9.1f}M{measure.format_time(median):>11}"
              f"{'-' if floor is None else measure.format_time(floor):>11}{ratio:>12}"
              f"{per:>17.3f}", file=out, flush=True)
        rows_out.append(dict(draws=R, panels=n_panels, rows=rows, madds=work, seconds=median,
                             floor=floor, ns_per_row_draw=per))
    return rows_out


def fmt_s(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def main(args):
    """Print the table; 1 if a conditional-logit fit misses its published
    log-likelihood."""
    pythons = [sys.executable] + list(args.peer_python or [])
    where = {tool: next((p for p in pythons if has_module(p, module)), None)
             for tool, module in MODULES.items()}
    print(f"# CPU: {_cpu()}; Python {platform.python_version()}; peers: "
          + ", ".join(f"{t} ({'missing' if p is None else p})" for t, p in where.items()))
    header = (f"{'model':<18}{'data':<19}{'draws':>6}  {'tool':<10}{'fit':>10}{'vs fastscore':>14}"
              f"{'log-likelihood':>16}{'iter':>6}")
    print(header)
    print("-" * len(header))
    status = 0
    for model, data, draws, repeats, in_quick in ROWS:
        if args.quick and not in_quick:
            continue
        ours = None
        for tool in TOOLS[model]:
            python = where[tool]
            if python is None:
                continue
            n = repeats_for(tool, model, repeats)
            print(f"{model} {data} {draws or ''} {tool}...", file=sys.stderr, flush=True)
            res = run_peer(python, tool, data, n, draws, TIMEOUT)
            if "error" in res or "missing" in res:
                print(f"{model:<18}{data:<19}{draws or '':>6}  {tool:<10}  "
                      f"{res.get('error') or res.get('missing')}")
                status |= tool == "fastscore"
                continue
            if tool == "fastscore":
                ours = res
                if data in PUBLISHED and abs(res["ll"] - PUBLISHED[data]) > 1e-3:
                    status = 1
            ratio = f"{res['best'] / ours['best']:.1f}x" if ours else "-"
            print(f"{model:<18}{data:<19}{draws or '':>6}  {tool:<10}{fmt_s(res['best']):>10}"
                  f"{ratio:>14}{res['ll']:>16.3f}{res['niter']:>6}", flush=True)
    print("mixed-logit kernel curve...", file=sys.stderr, flush=True)
    mixed_curve(repeats=5 if args.quick else 9, threads=args.threads)
    n = 100_000 if args.quick else 1_000_000
    est, loop = front_end(n, 10, 20, 2 if args.quick else 3)
    print(f"\nfront end: {n} observations x 10 alternatives x 20 variables from a DataFrame, "
          f"model and fit {fmt_s(est)}; the Newton loop on laid-out arrays {fmt_s(loop)}; "
          f"ratio {est / loop:.2f} (target <= 1.3)")
    return status


def _cpu():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

