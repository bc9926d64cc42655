"""``python -m fastscore bench --loops``: whole training loops, four ways.

Users judge a library by their loop, not by one call.  Each loop here is
written the way a user of each tool writes it, doing the same arithmetic:

* ``fastscore``: the library's functions;
* ``numpy``: plain NumPy (``rng.choice`` for sampling, softmax by hand);
* ``torch``: PyTorch CPU tensors, with autograd where a PyTorch user uses it
  (``Categorical``, ``backward``, ``LBFGS``);
* ``numba``: one ``@njit`` function per loop body, the fused loop a
  performance-minded user writes.

Loops (time per step, or per fit):

* ``reinforce step``: one state in the state-input form (k = 64, N = 10):
  sample an action, its log pi, the score, accumulate ``advantage * score``;
* ``reinforce update``: a minibatch of 32 and of 4096 states: the
  advantage-weighted gradient and the mean entropy, then a parameter step;
* ``logit fit``: a conditional logit on synthetic data (1,000,000 x 10 x 20;
  ``--quick``: 100,000), fastscore by Newton (gradient and Hessian), NumPy by
  SciPy's BFGS with the NumPy gradient, PyTorch by L-BFGS with autograd; the
  table gives iterations and the log-likelihood reached.

With ``contention`` (as ``bench --loops`` runs it) the fastscore loops are
also timed with the default thread count and with ``n_threads=1`` while
another process keeps one core busy: the default must never be more than
1.1x slower.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import subprocess
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

import fastscore
from fastscore import reference

from .measure import cpu_name, default_threads, format_time

K, N_ACTIONS = 64, 10


def import_optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


# ---------------------------------------------------------------------------
# One REINFORCE step, one state.

def step_fastscore(matrix, s, W, acc, rng_seed, adv, n_threads=None):
    # One call: the draw, its log pi, and acc += adv * score (bitwise that sum).
    a, logp = matrix.sample(s, W, seed=rng_seed, trace=acc, weight=adv, n_threads=n_threads)
    return logp


def step_numpy(s, W, acc, rng, adv):
    z = s @ W
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    a = rng.choice(p.shape[0], p=p)
    logp = np.log(p[a])
    r = -p
    r[a] += 1.0
    acc += adv * np.outer(s, r)
    return logp


def step_torch(torch, s, W, adv):
    z = s @ W
    dist = torch.distributions.Categorical(logits=z)
    a = dist.sample()
    logp = dist.log_prob(a)
    (adv * logp).backward()  # accumulates adv * score into W.grad
    return logp


def numba_kernels(numba):
    """The @njit loop bodies (compiled on first call)."""

    @numba.njit(cache=False, fastmath=False)
    def step(s, W, acc, u, adv):
        k, n = W.shape
        z = np.empty(n)
        for j in range(n):
            t = 0.0
            for i in range(k):
                t += s[i] * W[i, j]
            z[j] = t
        m = z.max()
        total = 0.0
        for j in range(n):
            z[j] = np.exp(z[j] - m)
            total += z[j]
        a = n - 1
        c = 0.0
        for j in range(n):
            c += z[j] / total
            if u < c:
                a = j
                break
        logp = np.log(z[a] / total)
        for j in range(n):
            r = (1.0 if j == a else 0.0) - z[j] / total
            for i in range(k):
                acc[i, j] += adv * s[i] * r
        return logp

    @numba.njit(cache=False, fastmath=False, parallel=False)
    def update(S, W, A, adv, G):
        B, k = S.shape
        n = W.shape[1]
        G[:] = 0.0
        z = np.empty(n)
        ent = 0.0
        for b in range(B):
            for j in range(n):
                t = 0.0
                for i in range(k):
                    t += S[b, i] * W[i, j]
                z[j] = t
            m = z.max()
            total = 0.0
            for j in range(n):
                z[j] = np.exp(z[j] - m)
                total += z[j]
            for j in range(n):
                p = z[j] / total
                if p > 0:
                    ent -= p * np.log(p)
                r = adv[b] * ((1.0 if j == A[b] else 0.0) - p)
                for i in range(k):
                    G[i, j] += S[b, i] * r
        return ent / B

    return step, update


# ---------------------------------------------------------------------------
# One minibatch update.

def update_fastscore(matrix, S, W, A, adv, n_threads=None):
    _, g = matrix.loglik(S, W, A, weights=adv, grad=True, n_threads=n_threads)
    h = matrix.entropy(S, W, n_threads=n_threads).mean()
    return g, h


def update_numpy(S, W, A, adv):
    Z = S @ W
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    P /= P.sum(axis=1, keepdims=True)
    logP = np.log(P)
    h = -(P * logP).sum(axis=1).mean()
    R = -P
    R[np.arange(len(A)), A] += 1.0
    g = S.T @ (adv[:, None] * R)
    return g, h


def update_torch(torch, S, W, A, adv):
    W.grad = None
    logP = torch.log_softmax(S @ W, dim=1)
    loss = -(adv * logP[torch.arange(A.shape[0]), A]).sum()
    h = -(logP.exp() * logP).sum(dim=1).mean()
    loss.backward()
    return W.grad, h


# ---------------------------------------------------------------------------
# A conditional-logit fit.

def logit_data(n_obs: int, n_alt: int = 10, d: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    phi = rng.standard_normal((n_obs, n_alt, d))
    beta = rng.standard_normal(d) * 0.5
    chosen, _ = fastscore.sample(phi, beta, seed=seed)
    return phi, chosen


def fit_fastscore(phi, chosen, n_threads=None, tol=1e-8):
    beta = np.zeros(phi.shape[-1])
    for it in range(1, 100):
        ll, g, H = fastscore.loglik(phi, beta, chosen, grad=True, hess=True, n_threads=n_threads)
        step = np.linalg.solve(H, g)
        beta = beta - step
        if np.max(np.abs(step)) < tol:
            break
    return fastscore.loglik(phi, beta, chosen), it


def fit_numpy(phi, chosen):
    from scipy.optimize import minimize

    def negll(beta):
        ll, g = reference.loglik(phi, beta, chosen, grad=True)
        return -ll, -g

    res = minimize(negll, np.zeros(phi.shape[-1]), jac=True, method="BFGS",
                   options={"gtol": 1e-6 * len(chosen)})
    return -res.fun, res.nit


def fit_torch(torch, phi, chosen):
    X = torch.from_numpy(phi)
    y = torch.from_numpy(chosen)
    beta = torch.zeros(phi.shape[-1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([beta], max_iter=200, tolerance_grad=1e-6 * len(chosen),
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")
    rows = torch.arange(len(chosen))

    def closure():
        opt.zero_grad()
        loss = -torch.log_softmax(X @ beta, dim=1)[rows, y].sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        ll = torch.log_softmax(X @ beta, dim=1)[rows, y].sum().item()
    return ll, opt.state[opt._params[0]]["n_iter"]


# ---------------------------------------------------------------------------
# Timing.

@dataclasses.dataclass
class LoopRow:
    loop: str
    shape: str
    seconds: dict[str, float]  # per step (or per fit), by implementation
    extra: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. iterations

    def speedup(self, other: str) -> Optional[float]:
        if other not in self.seconds or "fastscore" not in self.seconds:
            return None
        return self.seconds[other] / self.seconds["fastscore"]


def per_step(func: Callable[[], Any], steps: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``steps`` calls, seconds per call."""
    func()  # warm-up (and JIT compilation)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(steps):
            func()
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def reinforce_rows(quick: bool, torch: Any, numba: Any) -> list[LoopRow]:
    import fastscore.matrix as matrix

    rng = np.random.default_rng(0)
    W = rng.standard_normal((K, N_ACTIONS)) * 0.1
    s = rng.standard_normal(K)
    steps, repeat = (300, 3) if quick else (2000, 5)
    acc = np.zeros_like(W)
    counter = iter(range(10**12))
    seconds = {
        "numpy": per_step(lambda: step_numpy(s, W, acc, rng, 0.5), steps, repeat),
        "fastscore": per_step(lambda: step_fastscore(matrix, s, W, acc, next(counter), 0.5),
                              steps, repeat),
    }
    if torch is not None:
        Wt = torch.from_numpy(W.copy()).requires_grad_()
        st = torch.from_numpy(s)
        seconds["torch"] = per_step(lambda: step_torch(torch, st, Wt, 0.5), steps, repeat)
    kernels = numba_kernels(numba) if numba is not None else None
    if kernels is not None:
        step, _ = kernels
        seconds["numba"] = per_step(lambda: step(s, W, acc, rng.random(), 0.5), steps, repeat)
    rows = [LoopRow("reinforce step", f"1 state, k={K}, N={N_ACTIONS}", seconds)]

    for B in (32, 4096):
        S = rng.standard_normal((B, K))
        A = rng.integers(0, N_ACTIONS, size=B)
        adv = rng.standard_normal(B)
        n_steps = max(20, steps // (1 if B == 32 else 20))
        seconds = {
            "numpy": per_step(lambda: update_numpy(S, W, A, adv), n_steps, repeat),
            "fastscore": per_step(lambda: update_fastscore(matrix, S, W, A, adv), n_steps, repeat),
        }
        if torch is not None:
            St, At, advt = torch.from_numpy(S), torch.from_numpy(A), torch.from_numpy(adv)
            Wt = torch.from_numpy(W.copy()).requires_grad_()
            seconds["torch"] = per_step(lambda: update_torch(torch, St, Wt, At, advt), n_steps,
                                        repeat)
        if kernels is not None:
            _, update = kernels
            G = np.empty_like(W)
            seconds["numba"] = per_step(lambda: update(S, W, A, adv, G), n_steps, repeat)
        rows.append(LoopRow("reinforce update", f"minibatch {B}, k={K}, N={N_ACTIONS}", seconds))
    return rows


def logit_row(quick: bool, torch: Any) -> LoopRow:
    n_obs = 100_000 if quick else 1_000_000
    phi, chosen = logit_data(n_obs)
    seconds: dict[str, float] = {}
    extra: dict[str, str] = {}
    runs = {"fastscore": lambda: fit_fastscore(phi, chosen), "numpy": lambda: fit_numpy(phi, chosen)}
    if torch is not None:
        runs["torch"] = lambda: fit_torch(torch, phi, chosen)
    for name, run in runs.items():
        start = time.perf_counter()
        ll, iterations = run()
        seconds[name] = time.perf_counter() - start
        extra[name] = f"{iterations} it, loglik {ll:.6f}"
    return LoopRow("logit fit", f"{n_obs}x10x20", seconds, extra)


@contextlib.contextmanager
def busy_core():
    """Another process keeping one core busy for the duration."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        yield
    finally:
        proc.kill()
        proc.wait()


def interleaved_medians(seconds_of: Callable[[Optional[int]], float],
                        repeat: int) -> dict[str, float]:
    """Median of ``repeat`` timings with the default thread count and with
    one thread, the two interleaved so that both see the same machine.
    ``seconds_of(n_threads)`` times one run."""
    runs: dict[str, list[float]] = {"default": [], "1 thread": []}
    for _ in range(repeat):
        for name, nt in (("default", None), ("1 thread", 1)):
            runs[name].append(seconds_of(nt))
    return {name: float(np.median(t)) for name, t in runs.items()}


def contention_rows(quick: bool) -> list[LoopRow]:
    """fastscore loops with the default thread count and with one thread, while
    another process keeps a core busy: default / 1 thread must stay <= 1.1.

    Each time is the median of ``repeat`` runs, the two thread settings
    interleaved: under contention the runs spread widely (the user's BLAS
    threads, the busy process and ours share two cores), and the best of a
    few runs of each picks a lucky run for one setting and not the other."""
    import fastscore.matrix as matrix

    rng = np.random.default_rng(1)
    W = rng.standard_normal((K, N_ACTIONS)) * 0.1
    steps, repeat = (100, 3) if quick else (200, 9)
    rows = []
    with busy_core():
        for B in (32, 4096):
            S = rng.standard_normal((B, K))
            A = rng.integers(0, N_ACTIONS, size=B)
            adv = rng.standard_normal(B)
            X = rng.standard_normal((128, 128))

            def loop(nt):
                update_fastscore(matrix, S, W, A, adv, n_threads=nt)
                X @ X  # the user's own NumPy work between calls (BLAS threads)

            seconds = interleaved_medians(
                lambda nt: per_step(functools.partial(loop, nt), steps, 1), repeat)
            rows.append(LoopRow("reinforce update, core busy", f"minibatch {B}", seconds))
        phi, chosen = logit_data(20_000 if quick else 100_000)

        def fit_seconds(nt):
            start = time.perf_counter()
            fit_fastscore(phi, chosen, n_threads=nt)
            return time.perf_counter() - start

        rows.append(LoopRow("logit fit, core busy", f"{len(chosen)}x10x20",
                            interleaved_medians(fit_seconds, min(repeat, 5))))
    return rows


def run(quick: bool, contention: bool, progress=sys.stderr) -> tuple[list[LoopRow], list[LoopRow]]:
    torch = import_optional("torch")
    numba = import_optional("numba")
    print("reinforce loops ...", file=progress, flush=True)
    rows = reinforce_rows(quick, torch, numba)
    print("logit fit ...", file=progress, flush=True)
    rows.append(logit_row(quick, torch))
    busy = []
    if contention:
        print("contention ...", file=progress, flush=True)
        busy = contention_rows(quick)
    return rows, busy


def format_table(rows: list[LoopRow], busy: list[LoopRow]) -> list[str]:
    impls = [i for i in ("numpy", "torch", "numba") if any(i in r.seconds for r in rows)]
    head = ["loop", "shape", "fastscore"] + impls + [f"vs {i}" for i in impls] + ["note"]
    body = []
    for r in rows:
        cells = [r.loop, r.shape, format_time(r.seconds["fastscore"])]
        cells += [format_time(r.seconds[i]) if i in r.seconds else "-" for i in impls]
        cells += [f"{r.speedup(i):.1f}x" if r.speedup(i) else "-" for i in impls]
        cells.append("; ".join(f"{k}: {v}" for k, v in r.extra.items()))
        body.append(cells)
    lines = _align(head, body)
    if busy:
        lines += ["", "with another process keeping one core busy (fastscore, default threads "
                  "vs n_threads=1; target: ratio <= 1.1)"]
        head = ["loop", "shape", "default", "1 thread", "default / 1 thread"]
        body = [[r.loop, r.shape, format_time(r.seconds["default"]),
                 format_time(r.seconds["1 thread"]),
                 f"{r.seconds['default'] / r.seconds['1 thread']:.2f}"] for r in busy]
        lines += _align(head, body)
    return lines


def _align(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i < 2 or i == len(cells) - 1 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in body]


def main(args: argparse.Namespace) -> int:
    """Run and print both tables (``--quick`` applies; threads and dtype are the loops' own)."""
    print(f"fastscore {fastscore.__version__} bench --loops on {cpu_name()}, "
          f"{default_threads()} threads by default")
    rows, busy = run(args.quick, contention=True)
    print("\n".join(format_table(rows, busy)))
    return 0
