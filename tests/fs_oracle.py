"""Extended-precision oracle for the fastscore tests.

Everything here is computed in ``np.longdouble``, which on x86-64 Linux is the
80-bit x87 format: a 64-bit significand, unit roundoff 2**-64 ~ 5.4e-20.
Inputs are first turned into float64 (exact for float32, float16, ints up to
2**53 and bools), so the oracle works "from the same values" the kernel sees.

Error budget of the oracle itself (what makes it fit to check 1e-12):

* logits ``z_k = sum_j phi_kj theta_j / tau`` for a float64 theta: every
  product of two doubles is split exactly into two doubles (Dekker's
  TwoProduct), ``math.fsum`` sums the 2 d parts with one correct rounding and
  a second ``fsum`` gives the exact residual, so ``s + r`` is the dot product
  to ~2**-106 relative; it is then rounded to longdouble and divided by tau:
  ``|dz_k| <= 2 eps_ld |z_k|``.  :func:`logit_error_bound` returns this bound;
  the accuracy tests assert it is far below the tolerance they check, and
  ``test_accuracy.py::test_oracle_logits_are_exact`` checks it against exact
  rational arithmetic.
* for a longdouble theta (finite differences) the products are rounded to 64
  bits and summed pairwise: ``|dz_k| <= (log2 d + 3) eps_ld sum_j |phi_kj theta_j|``.
* ``exp``, the normaliser and the weighted sum ``sum_k pi_k (phi_a - phi_k)``
  add a relative error of a few ``N eps_ld`` of ``sum_k pi_k |phi_a - phi_k|``.

The score is formed as ``sum_k pi_k (phi_a - phi_k)``, never as
``phi_a - E[phi]``: the latter cancels catastrophically when ``pi(a) -> 1``.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

LD = np.longdouble
EPS_LD = float(np.finfo(LD).eps)
#: True when longdouble really has more precision than double (x86-64 Linux).
EXTENDED = EPS_LD < 1e-18

#: Largest relative error seen per accuracy case; printed at the end of the run
#: by conftest.pytest_terminal_summary.
MEASURED: dict[str, float] = defaultdict(float)


def record(case: str, err: float) -> None:
    MEASURED[case] = max(MEASURED[case], float(err))


def _f64(x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(arr.dtype)
    return arr.astype(np.float64)


def _legal(mask, n_states: int, n: int) -> np.ndarray:
    if mask is None:
        return np.ones((n_states, n), dtype=bool)
    return np.broadcast_to(np.asarray(mask, dtype=bool), (n_states, n))


_SPLITTER = 134217729.0  # 2**27 + 1


def _split(x):
    c = _SPLITTER * x
    hi = c - (c - x)
    return hi, x - hi


def _dot_double_double(rows: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """rows @ theta (float64 inputs) to ~2**-106 relative, as longdouble.

    Exact while no product over- or underflows (|x| < 1e290 and no subnormal
    products), which holds for every input the tests give the oracle.
    """
    if rows.shape[-1] == 0:
        return np.zeros(rows.shape[:-1], dtype=LD)
    with np.errstate(over="raise", invalid="raise"):
        p = rows * theta
        rh, rl = _split(rows)
        th, tl = _split(theta)
        e = ((rh * th - p) + rh * tl + rl * th) + rl * tl
    parts = np.concatenate([p, e], axis=-1).reshape(-1, 2 * rows.shape[-1]).tolist()
    z = np.empty(len(parts), dtype=LD)
    for k, terms in enumerate(parts):
        s = math.fsum(terms)
        terms.append(-s)
        r = math.fsum(terms)
        z[k] = LD(s) + LD(r)
    return z.reshape(rows.shape[:-1])


def logits(phi_rows, theta, temperature=1.0) -> np.ndarray:
    """z = phi_rows @ theta / tau in longdouble.

    float64 theta: double-double dot product (error 2 eps_ld |z|).  longdouble
    theta (finite differences): products and pairwise sum in longdouble.
    """
    theta = np.asarray(theta)
    if theta.dtype == LD and LD is not np.float64:
        p = np.asarray(phi_rows, dtype=LD)
        return (p * theta).sum(axis=-1) / LD(temperature)
    rows = np.asarray(phi_rows, dtype=np.float64)
    return _dot_double_double(rows, np.asarray(theta, dtype=np.float64)) / LD(temperature)


def _state(phi, theta, a, legal, tau):
    rows = np.flatnonzero(legal)
    z = logits(phi[rows], theta, tau)
    w = np.exp(z - z.max())
    pi = w / w.sum()
    diff = phi[a].astype(LD) - phi[rows].astype(LD)
    return (pi[:, None] * diff).sum(axis=0) / LD(tau), rows, pi, diff


def _per_state(phi, theta, a, mask, temperature, reduce) -> np.ndarray:
    """reduce(*_state(...)) for each state, stacked like the score."""
    phi = _f64(phi)
    theta = _f64(theta)
    batch = phi.ndim == 3
    phis = phi if batch else phi[None]
    acts = np.asarray(a).reshape(-1)
    legal = _legal(mask, phis.shape[0], phis.shape[1])
    out = np.empty((phis.shape[0], phis.shape[2]), dtype=LD)
    for b in range(phis.shape[0]):
        out[b] = reduce(*_state(phis[b], theta, int(acts[b]), legal[b], temperature))
    return out if batch else out[0]


def score(phi, theta, a, *, mask=None, temperature=1.0) -> np.ndarray:
    """The score in longdouble: (1/tau) sum_k pi_k (phi_a - phi_k)."""
    return _per_state(phi, theta, a, mask, temperature, lambda g, rows, pi, diff: g)


def score_all_actions(phi, theta, *, mask=None, temperature=1.0) -> np.ndarray:
    """(N, d): the score of every action a of one state (rows of masked actions
    are left NaN)."""
    phi = _f64(phi)
    legal = _legal(mask, 1, phi.shape[0])[0]
    rows = np.flatnonzero(legal)
    z = logits(phi[rows], _f64(theta), temperature)
    w = np.exp(z - z.max())
    pi = w / w.sum()
    p = phi[rows].astype(LD)
    out = np.full(phi.shape, np.nan, dtype=LD)
    for i, a in enumerate(rows):
        out[a] = (pi[:, None] * (p[i] - p)).sum(axis=0) / LD(temperature)
    return out


def condition_scale(phi, theta, a, *, mask=None, temperature=1.0) -> np.ndarray:
    """S_i = (1/tau) sum_k pi_k |phi_ai - phi_ki|, componentwise (longdouble).

    A backward-stable evaluation of the score has componentwise error of order
    (unit roundoff) x (N + |z|max) x S_i; S_i >= |score_i|, with equality when
    there is no cancellation.
    """
    return _per_state(
        phi, theta, a, mask, temperature,
        lambda g, rows, pi, diff: (pi[:, None] * np.abs(diff)).sum(axis=0) / LD(temperature))


def probabilities(phi, theta, *, mask=None, temperature=1.0) -> np.ndarray:
    """pi over the N actions of one state (0 for masked ones), longdouble."""
    phi = _f64(phi)
    legal = _legal(mask, 1, phi.shape[0])[0]
    rows = np.flatnonzero(legal)
    z = logits(phi[rows], _f64(theta), temperature)
    w = np.exp(z - z.max())
    pi = np.zeros(phi.shape[0], dtype=LD)
    pi[rows] = w / w.sum()
    return pi


def prob_not_a(phi, theta, a, *, mask=None, temperature=1.0):
    """1 - pi(a), computed as sum_{k != a} pi_k so that it keeps its digits."""
    pi = probabilities(phi, theta, mask=mask, temperature=temperature)
    return np.delete(pi, a).sum()


def log_pi(phi, theta_ld, a, *, mask=None, temperature=1.0):
    """log pi(a) of one state for a longdouble theta: z_a - logsumexp(z)."""
    phi = _f64(phi)
    legal = _legal(mask, 1, phi.shape[0])[0]
    rows = np.flatnonzero(legal)
    z = logits(phi[rows], theta_ld, temperature)
    m = z.max()
    za = z[np.searchsorted(rows, a)]
    return (za - m) - np.log(np.exp(z - m).sum())


def logit_error_bound(phi, theta, *, mask=None, temperature=1.0) -> float:
    """Bound on the oracle's absolute logit error for a float64 theta:
    2 eps_ld max_k |z_k| (see the module docstring)."""
    phi = _f64(phi)
    if phi.size == 0:
        return 0.0
    z = np.abs(np.asarray(phi @ _f64(theta), dtype=np.float64)) / temperature
    if mask is not None:
        z = np.where(np.broadcast_to(np.asarray(mask, dtype=bool), z.shape), z, 0.0)
    return float(2.01 * EPS_LD * z.max())


def rel_err(got, want) -> float:
    """||got - want||_2 / ||want||_2 in longdouble; for a batch, the max over states."""
    got = np.asarray(got).astype(LD)
    want = np.asarray(want, dtype=LD)
    if want.ndim == 1:
        got, want = got[None], want[None]
    num = np.sqrt((np.square(got - want)).sum(axis=-1))
    den = np.sqrt(np.square(want).sum(axis=-1))
    if np.any(den == 0):
        raise ValueError("relative error of a zero vector: pick another test case")
    return float((num / den).max())


# ---------------------------------------------------------------------------
# The phi-form family (issue 8): log pi(a), entropy, probabilities, and the
# weighted log-likelihood with its gradient and Hessian.
#
# Built like the score oracle, from the exact (double-double) logits, state
# by state in longdouble, in forms that do not cancel:
#
# * m = max_k z_k held by row k*, w_k = exp(z_k - m) (w_k* = 1 exactly),
#   r = sum_{k != k*} w_k, pi_k = w_k / (1 + r);
# * log pi(a) = (z_a - m) - log1p(r): keeps its relative accuracy as
#   pi(a) -> 1 (log pi(a) ~ -r);
# * H = log1p(r) + sum_k pi_k (m - z_k): two non-negative terms;
# * Cov_pi(phi) = sum_k pi_k (y_k - g)(y_k - g)^T with y_k = phi_k - phi_c and
#   g = sum_k pi_k y_k, shifted by the row c of the most probable action: a
#   sum of positive semidefinite terms (no cancellation between the terms),
#   centred on a row whose own centred term is -g exactly, so a nearly
#   one-hot policy (Cov ~ 1 - pi_c) keeps its relative accuracy.  The
#   Hessian does not depend on the taken action; this oracle does not use it.
#
# None of it uses fastscore.reference.

def iter_states(phi, mask=None, offsets=None):
    """(rows (n, d) float64, legal (n,) bool) of each state; and whether the
    layout is a batch (padded 3-D or ragged)."""
    phi = _f64(phi)
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=np.intp)
        legal_all = (np.ones(phi.shape[0], bool) if mask is None
                     else np.asarray(mask, dtype=bool))
        out = [(phi[offsets[b]:offsets[b + 1]], legal_all[offsets[b]:offsets[b + 1]])
               for b in range(len(offsets) - 1)]
        return out, True
    batch = phi.ndim == 3
    phis = phi if batch else phi[None]
    legal = _legal(mask, phis.shape[0], phis.shape[1])
    return [(phis[b], legal[b]) for b in range(phis.shape[0])], batch


def _softmax_parts(rows, legal, theta, tau, cache=None):
    """(legal row indices, z, m, kmax position, w, r) of one state, longdouble.

    With a cache dict, states that are the same memory (zero-stride batches
    of copies) are computed once."""
    key = None
    if cache is not None:
        key = (rows.__array_interface__["data"][0], rows.shape, rows.strides, legal.tobytes())
        if key in cache:
            return cache[key]
    idx = np.flatnonzero(legal)
    if idx.size == 0:
        raise ValueError("every action masked")
    z = logits(rows[idx], theta, tau)
    j = int(np.argmax(z))
    m = z[j]
    w = np.exp(z - m)
    r = np.delete(w, j).sum() if w.size > 1 else LD(0)  # w[j] == 1 kept apart
    parts = (idx, z, m, j, w, r)
    if key is not None:
        cache[key] = parts
    return parts


def _state_results(rows, legal, theta, a, tau, cache):
    """Every oracle quantity of one state: dict of log_prob (if a is not None),
    entropy, probs (n,), score and cov (d, d) (if a is not None)."""
    idx, z, m, j, w, r = _softmax_parts(rows, legal, theta, tau, cache)
    pi = w / (LD(1) + r)
    res = {"entropy": np.log1p(r) + (pi * (m - z)).sum()}
    probs = np.zeros(rows.shape[0], dtype=LD)
    probs[idx] = pi
    res["probs"] = probs
    if a is not None:
        pos = int(np.searchsorted(idx, a))
        assert pos < idx.size and idx[pos] == a, "the taken action is masked"
        res["log_prob"] = (z[pos] - m) - np.log1p(r)
        p = rows[idx].astype(LD)
        res["score"] = (pi[:, None] * (p[pos] - p)).sum(axis=0) / LD(tau)
        # Cov, centred on the most probable row j (see above); it does not
        # depend on a, so copies of one state share it
        key = ("cov", rows.__array_interface__["data"][0], rows.shape, rows.strides,
               legal.tobytes())
        if key not in cache:
            y = p - p[j]
            g = (pi[:, None] * y).sum(axis=0)
            c = y - g
            c[j] = -g
            cache[key] = (c * pi[:, None]).T @ c
        res["cov"] = cache[key]
    return res


def family_all(phi, theta, a=None, *, weights=None, mask=None, temperature=1.0,
               offsets=None) -> dict:
    """All of the family at once (logits computed once per distinct state):
    log_prob, entropy, probs in fastscore's layouts, and with a taken action
    value, gradient and hessian of loglik -- longdouble."""
    states, batch = iter_states(phi, mask, offsets)
    theta = _f64(theta)
    cache: dict = {}
    acts = None if a is None else np.asarray(a).reshape(-1)
    per = [_state_results(r, l, theta, None if acts is None else int(acts[b]), temperature,
                          cache) for b, (r, l) in enumerate(states)]
    out = {}
    ent = np.array([p["entropy"] for p in per], dtype=LD)
    out["entropy"] = ent if batch else ent[0]
    if offsets is not None:
        out["probs"] = np.concatenate([p["probs"] for p in per])
    else:
        pr = np.stack([p["probs"] for p in per])
        out["probs"] = pr if batch else pr[0]
    if acts is not None:
        lp = np.array([p["log_prob"] for p in per], dtype=LD)
        out["log_prob"] = lp if batch else lp[0]
        w = (np.ones(len(per)) if weights is None else _f64(weights)).astype(LD)
        tau = LD(temperature)
        out["value"] = (w * lp).sum()
        out["gradient"] = sum(w[b] * per[b]["score"] for b in range(len(per)))
        out["hessian"] = -sum(w[b] * per[b]["cov"] for b in range(len(per))) / (tau * tau)
    return out


def family_log_prob(phi, theta, a, *, mask=None, temperature=1.0, offsets=None):
    """log pi(a) per state (longdouble): a scalar for one state, else (B,)."""
    return family_all(phi, theta, a, mask=mask, temperature=temperature,
                      offsets=offsets)["log_prob"]


def family_entropy(phi, theta, *, mask=None, temperature=1.0, offsets=None):
    """H(pi) per state (longdouble): a scalar for one state, else (B,)."""
    return family_all(phi, theta, mask=mask, temperature=temperature,
                      offsets=offsets)["entropy"]


def family_probs(phi, theta, *, mask=None, temperature=1.0, offsets=None):
    """pi in the layout of fastscore.probs: (N,), (B, N) or (total rows,)."""
    return family_all(phi, theta, mask=mask, temperature=temperature,
                      offsets=offsets)["probs"]


def family_loglik(phi, theta, a, *, weights=None, mask=None, temperature=1.0, offsets=None):
    """(value, gradient (d,), Hessian (d, d)) in longdouble:
    sum_b w_b log pi_b(a_b), sum_b w_b score_b, -sum_b w_b Cov_b / tau^2."""
    r = family_all(phi, theta, a, weights=weights, mask=mask, temperature=temperature,
                   offsets=offsets)
    return r["value"], r["gradient"], r["hessian"]


def rel_err_elementwise(got, want, floor=2.2250738585072014e-308) -> float:
    """max_i |got_i - want_i| / |want_i| over the entries with |want_i| >= floor
    (float64's normal range); 0 where both are exactly 0."""
    got = np.asarray(got).astype(LD).reshape(-1)
    want = np.asarray(want, dtype=LD).reshape(-1)
    sel = np.abs(want) >= floor
    if not sel.any():
        return 0.0
    return float((np.abs(got[sel] - want[sel]) / np.abs(want[sel])).max())


def rel_err_frobenius(got, want) -> float:
    got = np.asarray(got).astype(LD)
    want = np.asarray(want, dtype=LD)
    den = np.sqrt(np.square(want).sum())
    if den == 0:
        raise ValueError("relative error of a zero matrix: pick another test case")
    return float(np.sqrt(np.square(got - want).sum()) / den)


# ---------------------------------------------------------------------------
# The policy-gradient objectives: the entropy's gradient and KL(pi_ref || pi),
# state by state in mpmath at 60 digits from the exact products phi_kj theta_j
# (mpmath's fsum of exact mpf products), so that the KL of nearly equal
# policies, a sum that cancels to 1e-14 in its direct form
# sum pi_ref log(pi_ref / pi), still has its digits.  None of it uses
# fastscore.reference.

def _mp_state(rows, legal, theta, tau):
    import mpmath as mp
    idx = np.flatnonzero(legal)
    z = [mp.fsum(mp.mpf(float(x)) * mp.mpf(float(t)) for x, t in zip(rows[k], theta))
         / mp.mpf(float(tau)) for k in idx]
    j = max(range(len(z)), key=lambda k: z[k])
    # log pi_k = (z_k - m) - log1p(r): a nearly one-hot state's log pi of its
    # most probable action (~ -r) survives, which m + log(1 + r) would round away
    r = mp.fsum(mp.exp(zk - z[j]) for k, zk in enumerate(z) if k != j)
    return idx, [(zk - z[j]) - mp.log1p(r) for zk in z]


def entropy_grad(phi, theta, *, mask=None, temperature=1.0, offsets=None):
    """(H, dH/dtheta) per state, dH = -(1/tau) sum_k pi_k (log pi_k + H) phi_k, as float64."""
    import mpmath as mp
    states, batch = iter_states(phi, mask, offsets)
    theta = _f64(theta)
    hs, gs = [], []
    with mp.workdps(60):
        for rows, legal in states:
            idx, lp = _mp_state(rows, legal, theta, temperature)
            pi = [mp.exp(x) for x in lp]
            h = -mp.fsum(p * x for p, x in zip(pi, lp))
            g = [-mp.fsum(p * (x + h) * mp.mpf(float(rows[k, j])) for p, x, k in zip(pi, lp, idx))
                 / mp.mpf(float(temperature)) for j in range(rows.shape[1])]
            hs.append(float(h))
            gs.append([float(v) for v in g])
    hs, gs = np.array(hs), np.array(gs)
    return (hs, gs) if batch else (hs[0], gs[0])


def kl(phi, theta_ref, theta, *, mask=None, temperature=1.0, offsets=None):
    """(KL(pi_ref || pi), its gradient in theta) per state, as float64."""
    import mpmath as mp
    states, batch = iter_states(phi, mask, offsets)
    theta_ref, theta = _f64(theta_ref), _f64(theta)
    ks, gs = [], []
    with mp.workdps(60):
        for rows, legal in states:
            idx, lr = _mp_state(rows, legal, theta_ref, temperature)
            _, lq = _mp_state(rows, legal, theta, temperature)
            pr = [mp.exp(x) for x in lr]
            k = mp.fsum(p * (x - y) for p, x, y in zip(pr, lr, lq))
            g = [mp.fsum((mp.exp(y) - p) * mp.mpf(float(rows[kk, j]))
                         for p, y, kk in zip(pr, lq, idx)) / mp.mpf(float(temperature))
                 for j in range(rows.shape[1])]
            ks.append(float(k))
            gs.append([float(v) for v in g])
    ks, gs = np.array(ks), np.array(gs)
    return (ks, gs) if batch else (ks[0], gs[0])
