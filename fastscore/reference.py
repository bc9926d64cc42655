"""The textbook NumPy implementation: the baseline of the benchmarks.

It is what a user would write: logits by a matrix product, a stable softmax,
then ``phi_a - pi @ phi``.  It reads ``phi`` twice and materialises the
logits and the probabilities; it computes in the input precision, and it loses
relative accuracy when the policy is nearly deterministic (the two terms of
the difference are then almost equal).  It only checks what NumPy itself
checks; ``fastscore.score`` is the validated API.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "score",
    "matrix_score",
    "matrix_log_prob",
    "matrix_entropy",
    "matrix_probs",
    "matrix_loglik",
]


def score(
    phi: ArrayLike,
    theta: ArrayLike,
    a: Union[int, ArrayLike],
    *,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    out: Optional[NDArray[np.floating]] = None,
    n_threads: Optional[int] = None,
) -> NDArray[np.floating]:
    r"""Score :math:`\nabla_\theta \log \pi(a)` in plain NumPy.

    Same signature and result as :func:`fastscore.score`;
    ``n_threads`` is accepted and ignored (NumPy's BLAS has its own threads).
    """
    phi = np.asarray(phi)
    theta = np.asarray(theta)
    dtype = np.result_type(phi, theta, np.float32)
    if dtype not in (np.float32, np.float64):
        dtype = np.float64
    phi = phi.astype(dtype, copy=False)
    theta = theta.astype(dtype, copy=False)
    batch = phi.ndim == 3
    if not batch:
        phi = phi[None]
    a = np.asarray(a, dtype=np.intp).reshape(-1)
    logits = (phi @ theta) / dtype.type(temperature)
    if mask is not None:
        legal = np.broadcast_to(np.asarray(mask, dtype=bool), logits.shape)
        logits = np.where(legal, logits, -np.inf)
        phi = np.where(legal[..., None], phi, 0)  # masked rows may hold NaN
    logits -= logits.max(axis=1, keepdims=True)
    pi = np.exp(logits)
    pi /= pi.sum(axis=1, keepdims=True)
    mean_phi = np.einsum("bn,bnd->bd", pi, phi)
    result = (phi[np.arange(phi.shape[0]), a] - mean_phi) / dtype.type(temperature)
    if not batch:
        result = result[0]
    if out is not None:
        out[...] = result
        return out
    return result


# ---------------------------------------------------------------------------
# The state-input form z = (s @ W + b) / tau (fastscore.matrix): what a user
# writes in NumPy.  Same signatures and results as the fastscore.matrix
# functions; computed in the input precision, ``1 - pi_a`` as ``onehot - p``
# (it loses relative accuracy as pi(a) -> 1); ``n_threads`` is ignored.


def _matrix_probs(s, W, b, mask, temperature):
    s = np.asarray(s)
    W = np.asarray(W)
    dtype = np.result_type(s, W, np.float32) if b is None else np.result_type(s, W, b, np.float32)
    if dtype not in (np.float32, np.float64):
        dtype = np.float64
    s = s.astype(dtype, copy=False)
    z = s @ W.astype(dtype, copy=False)
    if b is not None:
        z = z + np.asarray(b, dtype=dtype)
    z = z / dtype.type(temperature)
    if mask is not None:
        z = np.where(np.asarray(mask, dtype=bool), z, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return s, z, p


def _onehot(a, shape, dtype):
    e = np.zeros(shape, dtype=dtype)
    np.put_along_axis(e.reshape(-1, shape[-1]), np.asarray(a).reshape(-1, 1), 1, axis=1)
    return e


def matrix_probs(s, W, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None):
    """pi(. | s) for z = (s @ W + b) / tau, in plain NumPy."""
    p = _matrix_probs(s, W, b, mask, temperature)[2]
    if out is not None:
        out[...] = p
        return out
    return p


def matrix_log_prob(s, W, a, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None):
    """log pi(a | s) in plain NumPy: z_a - logsumexp(z)."""
    _, z, _ = _matrix_probs(s, W, b, mask, temperature)
    a = np.asarray(a)
    za = np.take_along_axis(z, a.reshape(z.shape[:-1] + (1,)), axis=-1)[..., 0]
    with np.errstate(divide="ignore"):
        result = za - np.log(np.exp(z).sum(axis=-1))
    if out is not None:
        out[...] = result
        return out
    return result


def matrix_entropy(s, W, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None):
    """Entropy of pi(. | s) in plain NumPy."""
    _, z, p = _matrix_probs(s, W, b, mask, temperature)
    with np.errstate(invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)
    result = -plogp.sum(axis=-1)
    if out is not None:
        out[...] = result
        return out
    return result


def matrix_score(s, W, a, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None):
    """outer(s, onehot - p) / tau (and (onehot - p) / tau with b) in plain NumPy."""
    s, _, p = _matrix_probs(s, W, b, mask, temperature)
    r = (_onehot(a, p.shape, p.dtype) - p) / p.dtype.type(temperature)
    gw = s[..., :, None] * r[..., None, :]
    result = gw if b is None else (gw, r)
    if out is not None:
        for o, x in zip(out if b is not None else (out,), result if b is not None else (result,)):
            o[...] = x
        return out
    return result


def matrix_loglik(s, W, a, *, b=None, weights=None, grad=False, mask=None, temperature=1.0,
                  n_threads=None):
    """sum_i w_i log pi(a_i | s_i) and, with grad, sum_i w_i outer(s_i, e_a_i - pi_i) / tau.

    The batch gradient a user writes: S.T @ R with R = w (onehot - P) / tau.
    """
    s, z, p = _matrix_probs(s, W, b, mask, temperature)
    a = np.asarray(a)
    za = np.take_along_axis(z, a.reshape(z.shape[:-1] + (1,)), axis=-1)[..., 0]
    lp = za - np.log(np.exp(z).sum(axis=-1))
    w = np.ones_like(lp) if weights is None else np.asarray(weights, dtype=p.dtype)
    value = (w * lp).sum()
    if not grad:
        return value
    r = (_onehot(a, p.shape, p.dtype) - p) * (w[..., None] / p.dtype.type(temperature))
    if s.ndim == 1:
        gw, gb = np.outer(s, r), r
    else:
        gw, gb = s.T @ r, r.sum(axis=0)
    return (value, gw) if b is None else (value, (gw, gb))
