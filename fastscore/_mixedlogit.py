"""The mixed logit's simulated log-likelihood on arrays (the kernel of
``fastscore.choice.MixedLogit``; see docs/mixed_logit.md).

``simulated_loglik`` checks and converts the arrays once, then calls the
compiled kernel (``fastscore._mixed``): one pass per panel over its rows with
the draws in the vector lanes, panels over the OpenMP threads, the same bits
for every thread count and instruction set.
"""
from __future__ import annotations

import numpy as np

from . import _mixed

__all__ = ["simulated_loglik", "prepare", "Prepared", "panel_sum", "FIXED", "NORMAL", "LOGNORMAL", "TRIANGULAR", "UNIFORM"]

FIXED, NORMAL, LOGNORMAL, TRIANGULAR, UNIFORM = 0, 1, 2, 3, 4


def _float_array(x, name, ndim):
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real (float) array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _draws_array(x):
    """draws as float64 (P, R, q), C order or with each column's draws
    contiguous (a transposed view of a (P, q, R) array, which the kernel reads
    without gathering); any other layout is copied to C order."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"draws must be a real (float) array, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"draws must be 3-dimensional, got shape {arr.shape}")
    if arr.dtype == np.float64 and np.transpose(arr, (0, 2, 1)).flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=np.float64)


def _index_array(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.intp).max:
        raise ValueError(f"{name} has values beyond the intp range")
    return np.ascontiguousarray(arr, dtype=np.intp)


def _offsets(x, name, n_items, what, items):
    arr = _index_array(x, name)
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must have at least one entry (0), got shape {arr.shape}")
    if arr[0] != 0:
        raise ValueError(f"{name}[0] must be 0, got {arr[0]}")
    if arr[-1] != n_items:
        raise ValueError(f"{name}[-1] must be the number of {items} ({n_items}), got {arr[-1]}")
    steps = np.diff(arr)
    if steps.size and steps.min() < 1:
        bad = int(np.argmax(steps < 1))
        raise ValueError(
            f"{name} must be strictly increasing (each {what} owns at least one of the {items}); "
            f"{name}[{bad}] = {arr[bad]}, {name}[{bad + 1}] = {arr[bad + 1]}")
    return arr


def simulated_loglik(X, offsets, chosen, panel_offsets, draws, kinds, params, *, weights=None,
                     chol=False, grad=False, panel_scores=False, posterior=False,
                     panel_values=False, hessian=False, panel_hessians=False, n_threads=None):
    """The simulated log-likelihood of a mixed logit,
    ``sum_p w_p log((1/R) sum_r prod_{s in p} pi_s(chosen_s; beta_pr))``,
    computed in log space.

    X (rows, k): one row per available alternative, situations contiguous;
    offsets (S + 1,): situation s owns rows offsets[s]:offsets[s + 1];
    chosen (S,): the chosen row within its situation; panel_offsets (P + 1,):
    panel p owns situations panel_offsets[p]:panel_offsets[p + 1] (one draw of
    the coefficients each); draws (P, R, q): standard draws of the q random
    columns in column order (N(0, 1) for normal and lognormal columns, the
    standard triangular or uniform on [-1, 1]; C order, or fastest the
    transposed view ``D.transpose(0, 2, 1)`` of a (P, q, R) array D); kinds (k,): 0 fixed, 1 normal,
    2 lognormal, 3 triangular, 4 uniform; params: the k locations, then the q
    spreads, or with ``chol=True`` (all random columns normal) the
    q (q + 1) / 2 Cholesky entries row by row.  The coefficient of column j
    is m_j (fixed), m_j + s_j xi (normal, triangular, uniform; m + L xi with
    chol) or exp(m_j + s_j xi) (lognormal).

    ``simulated_loglik(...)`` is ``prepare(...)(params, ...)``: a caller
    evaluating many parameter vectors on the same data prepares once, so that
    the data's checks (a pass over the draws among them) run once.

    Returns the float, or a tuple (LL, then grad (n_params,), panel_scores
    (P, n_params): each panel's unweighted gradient of its log simulated
    likelihood, posterior (P, k): each panel's conditional mean coefficients,
    panel_values (P,): each panel's log simulated likelihood, unweighted,
    hessian (n_params, n_params): the exact Hessian of LL, panel_hessians
    (P, n_params, n_params): each panel's, unweighted, for those asked).  LL, grad and hessian are the compensated sums of the panels'
    values in panel order (``panel_sum``), so a caller holding the panels in
    parts gets the same bits by summing their outputs with it.
    """
    return prepare(X, offsets, chosen, panel_offsets, draws, kinds, weights=weights, chol=chol)(
        params, grad=grad, panel_scores=panel_scores, posterior=posterior,
        panel_values=panel_values, hessian=hessian, panel_hessians=panel_hessians,
        n_threads=n_threads)


def prepare(X, offsets, chosen, panel_offsets, draws, kinds, *, weights=None, chol=False):
    """The data of ``simulated_loglik`` checked and converted once: a
    ``Prepared`` to call with the parameters."""
    X = _float_array(X, "X", 2)
    rows, k = X.shape
    kinds_arr = np.asarray(kinds)
    if kinds_arr.dtype.kind not in "iu":
        raise TypeError(f"kinds must be an integer array, got dtype {kinds_arr.dtype}")
    if kinds_arr.shape != (k,):
        raise ValueError(f"kinds must have shape ({k},) (one code per column of X), "
                         f"got {kinds_arr.shape}")
    if kinds_arr.size and (kinds_arr.min() < 0 or kinds_arr.max() > 4):
        bad = kinds_arr[(kinds_arr < 0) | (kinds_arr > 4)][0]
        raise ValueError("kinds codes must be 0 (fixed), 1 (normal), 2 (lognormal), "
                         f"3 (triangular) or 4 (uniform), got {bad}")
    kinds_c = np.ascontiguousarray(kinds_arr, dtype=np.intc)
    rcol = np.flatnonzero(kinds_c).astype(np.intp)
    q = rcol.size

    offsets = _offsets(offsets, "offsets", rows, "situation", "rows of X")
    S = offsets.shape[0] - 1
    chosen = _index_array(chosen, "chosen")
    if chosen.shape[0] != S:
        raise ValueError(f"chosen must have shape ({S},) (one per situation), got {chosen.shape}")
    sizes = np.diff(offsets)
    if S and ((chosen < 0) | (chosen >= sizes)).any():
        s = int(np.argmax((chosen < 0) | (chosen >= sizes)))
        raise ValueError(f"chosen[{s}] = {chosen[s]} is out of range for situation {s}, "
                         f"which has {sizes[s]} rows")
    panel_offsets = _offsets(panel_offsets, "panel_offsets", S, "panel", "situations")
    P = panel_offsets.shape[0] - 1

    draws = _draws_array(draws)
    if draws.shape[0] != P or draws.shape[2] != q:
        raise ValueError(f"draws must have shape ({P}, R, {q}) (panels, draws, random columns), "
                         f"got {draws.shape}")
    if draws.shape[1] < 1:
        raise ValueError("draws must hold at least one draw (R >= 1)")
    if not np.isfinite(draws).all():
        raise ValueError("draws must be finite")

    chol = bool(chol)
    if chol and (kinds_c[rcol] != NORMAL).any():
        raise ValueError("chol=True needs every random column to be normal (kinds 1)")
    if weights is not None:
        weights = _float_array(weights, "weights", 1)
        if weights.shape != (P,):
            raise ValueError(f"weights must have shape ({P},) (one per panel), "
                             f"got {weights.shape}")
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError("weights must be finite and >= 0")
    return Prepared(X, offsets, chosen, panel_offsets, draws, kinds_c, rcol, weights, chol)


class Prepared:
    """Checked arrays of one mixed-logit problem (from ``prepare``); call it
    with ``params`` and the outputs as ``simulated_loglik`` takes them."""

    def __init__(self, X, offsets, chosen, panel_offsets, draws, kinds, rcol, weights, chol):
        self._arrays = (X, offsets, chosen, panel_offsets, draws, kinds, rcol)
        self._weights, self._chol = weights, chol
        k, q = X.shape[1], rcol.size
        self.n_params = k + (q * (q + 1) // 2 if chol else q)
        self._what = f"k = {k} locations, then {self.n_params - k} " + (
            "Cholesky entries" if chol else "spreads")

    def __call__(self, params, *, grad=False, panel_scores=False, posterior=False,
                 panel_values=False, hessian=False, panel_hessians=False, n_threads=None):
        params = _float_array(params, "params", 1)
        if params.shape[0] != self.n_params:
            raise ValueError(f"params must have shape ({self.n_params},) ({self._what}), "
                             f"got {params.shape}")
        if not np.isfinite(params).all():
            raise ValueError("params must be finite")
        ll, g, scores, post, values, hess, hess_p = _mixed.simulated_loglik_arrays(
            *self._arrays, params, self._weights, self._chol, bool(grad), bool(panel_scores),
            bool(posterior), n_threads, bool(hessian or panel_hessians))
        out = [ll] + [x for x, want in ((g, grad), (scores, panel_scores), (post, posterior),
                                        (values, panel_values), (hess, hessian),
                                        (hess_p, panel_hessians)) if want]
        return out[0] if len(out) == 1 else tuple(out)


def panel_sum(values, weights=None):
    """sum_p w_p values[p] (values (P,) or (P, n): summed over axis 0) in
    panel order, compensated: what ``simulated_loglik`` does with its panels'
    outputs, the same bits."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    if v.ndim not in (1, 2):
        raise ValueError(f"values must be 1- or 2-dimensional, got shape {v.shape}")
    w = None
    if weights is not None:
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape != (v.shape[0],):
            raise ValueError(f"weights must have shape ({v.shape[0]},), got {w.shape}")
    out = _mixed.panel_sum_arrays(v.reshape(v.shape[0], -1), w)
    return float(out[0]) if v.ndim == 1 else out
