"""The NumPy side of the bridge: the per-action coefficients dL/dz that no
compiled call returns.

The values are fastscore's (``entropy``, ``kl``, ``loglik(...,
entropy_weight=)``, and the same in ``fastscore.matrix``), and so are the
parameters' gradients of the phi form, of the state-input loglik, and of
the state-input entropy with one weight for all states (fused calls:
``grad=True``; loglik's entropy bonus).  dL/dz per action is still needed

* for the features' gradient (``phi``; ``s``, which in ``kl`` also moves the
  reference's logits);
* for the state-input kl's and per-state-weighted entropy's parameter
  gradient, where ``grad=True`` would form one (k, N) gradient per state (a
  (B, k, N) array) when the bridge needs only their weighted sum.

It is finished here from ``probs`` and the fused calls' values (the entropy
``H``, the KL).

Conventions: ``z`` are the logits, ``pi = softmax(z)``; per-action arrays
have the shape of ``probs``' result ((N,), (B, N) or (total rows,) with
offsets); masked actions get exactly 0 in every coefficient.
"""
from __future__ import annotations

import numpy as np

import fastscore

from ._bridge import legal_of, matmul, rowsum, spread


def entropy_coef(pi, H, offsets):
    """dH/dz_k = -pi_k (log pi_k + H): exactly 0 where pi_k = 0 (masked, or
    underflowed, where the limit of pi log pi is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        c = -pi * (np.log(pi) + spread(H, offsets))
    return np.where(pi > 0, c, pi.dtype.type(0))


def entropy_dz(phi, theta, g, H, *, mask, temperature, offsets):
    """g_b dH_b/dz per action through probs (phi form)."""
    pi = fastscore.probs(phi, theta, mask=mask, temperature=temperature, offsets=offsets)
    offs = None if offsets is None else np.asarray(offsets, dtype=np.intp)
    return entropy_coef(pi, H, offs) * spread(g, offs)


def entropy_dz_matrix(s, W, b, g, H, *, mask, temperature):
    """entropy_dz of the state-input form."""
    import fastscore.matrix as fm

    pi = fm.probs(s, W, b=b, mask=mask, temperature=temperature)
    return entropy_coef(pi, H, None) * spread(g, None)


def kl_dz(pi_ref, delta, kl, legal, offsets, probs_of):
    """dKL/dz = pi - pi_ref and dKL/dz_ref = pi_ref (d - KL) per action, in
    float64, from pi_ref, delta = z_ref - z (computed from the parameters'
    difference, so nothing large cancels) and the fused call's KL.

    With d_k = log pi_ref_k - log pi_k = delta_k + c (c, the difference of the
    log-normalisers, from log1p of a sum of expm1), pi - pi_ref = pi_ref
    expm1(-d) does not cancel for close policies.  Where pi_ref underflows
    (pi_ref_k < tiny) that product loses pi_k: there, and in c, pi comes from
    ``probs_of()``.
    """
    lost = legal & (pi_ref < np.finfo(pi_ref.dtype).tiny)
    keep = legal & ~lost
    pr = pi_ref.astype(np.float64)
    delta = np.where(keep, delta.astype(np.float64), 0.0)
    # Centred on its pi_ref-mean, delta is small wherever the divergence is.
    delta = np.where(keep, delta - spread(rowsum(pr * delta, offsets), offsets), 0.0)
    shift = np.log1p(rowsum(pr * np.expm1(-delta), offsets))  # log(Z / Z_ref) after centring
    pi = None
    if lost.any():
        # Z / Z_ref counts the lost actions through pi's mass on the others.
        pi = probs_of().astype(np.float64)
        with np.errstate(divide="ignore"):
            shift = shift - np.log(rowsum(np.where(keep, pi, 0.0), offsets))
    d = np.where(keep, delta + spread(shift, offsets), 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        coef = pr * np.expm1(-d)
    if pi is not None:
        coef = np.where(lost, pi - pr, coef)
    return coef, pr * (d - spread(np.asarray(kl, dtype=np.float64), offsets))


def kl_dz_phi(phi, theta_ref, theta, kl, *, mask, temperature, offsets):
    """kl_dz of the phi form."""
    kw = dict(mask=mask, temperature=temperature, offsets=offsets)
    pi_ref = fastscore.probs(phi, theta_ref, **kw)
    delta = matmul(phi, theta_ref - theta) / theta.dtype.type(temperature)
    offs = None if offsets is None else np.asarray(offsets, dtype=np.intp)
    return kl_dz(pi_ref, delta, kl, legal_of(mask, pi_ref.shape), offs,
                 lambda: fastscore.probs(phi, theta, **kw))


def kl_dz_matrix(s, W_ref, W, b_ref, b, kl, *, mask, temperature):
    """kl_dz of the state-input form (b_ref and b both given or both None)."""
    import fastscore.matrix as fm

    pi_ref = fm.probs(s, W_ref, b=b_ref, mask=mask, temperature=temperature)
    delta = matmul(s, W_ref - W)
    if b is not None:
        delta = delta + (b_ref - b)
    delta = delta / W.dtype.type(temperature)
    return kl_dz(pi_ref, delta, kl, legal_of(mask, pi_ref.shape), None,
                 lambda: fm.probs(s, W, b=b, mask=mask, temperature=temperature))
