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

__all__ = ["score"]


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
