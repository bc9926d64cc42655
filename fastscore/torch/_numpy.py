"""The NumPy side of the bridge that fastscore's compiled API does not cover
yet: the entropy's and the KL divergence's gradients, and the KL value.

Everything else the bridge needs is one call of a fastscore function (values
by ``log_prob``, ``entropy``, ``loglik``; parameter gradients of the
log-likelihood by ``loglik(..., grad=True)``; probabilities by ``probs``).
Here the missing pieces are finished in NumPy from ``probs``; the fused calls
``fastscore.entropy(..., grad=True)``, ``fastscore.kl`` and
``fastscore.loglik(..., entropy_weight=)`` (and the same in
``fastscore.matrix``) replace :func:`entropy_param_vjp`, :func:`kl_terms`'s
callers and the entropy term of the loglik bridges when they land.

Conventions: ``z`` are the logits, ``pi = softmax(z)``; per-action arrays
have the shape of ``probs``' result ((N,), (B, N) or (total rows,) with
offsets); masked actions get exactly 0 in every coefficient.
"""
from __future__ import annotations

import numpy as np

import fastscore

from ._bridge import legal_of, rowsum, spread


def entropy_coef(pi, H, offsets):
    """dH/dz_k = -pi_k (log pi_k + H): exactly 0 where pi_k = 0 (masked, or
    underflowed, where the limit of pi log pi is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        c = -pi * (np.log(pi) + spread(H, offsets))
    return np.where(pi > 0, c, pi.dtype.type(0))


def rows_vjp(phi, coef, mask):
    """sum over actions (and states) of coef_k phi_k: the gradient in theta of
    a function of the logits, up to 1 / tau.  Masked rows of phi may hold
    anything (NaN included): when they spoil the product, it is taken again
    over the legal rows alone."""
    g = np.tensordot(coef, phi, axes=coef.ndim)
    if mask is not None and not np.isfinite(g).all():
        legal = legal_of(mask, coef.shape)
        g = coef[legal] @ phi[legal]
    return g


def entropy_dz(phi, theta, g, H, *, mask, temperature, offsets):
    """g_b dH_b/dz per action through probs, for ``fastscore.entropy(...,
    grad=True)`` to replace where the parameters' gradient is all a call
    needs (the features' gradient needs pi in any case)."""
    pi = fastscore.probs(phi, theta, mask=mask, temperature=temperature, offsets=offsets)
    offs = None if offsets is None else np.asarray(offsets, dtype=np.intp)
    return entropy_coef(pi, H, offs) * spread(g, offs)


def _expm1_plus(d):
    """exp(-d) - 1 + d >= 0 with a small relative error: a series where the
    two terms cancel (|d| < 1/4), expm1 elsewhere."""
    small = np.abs(d) < 0.25
    x = np.where(small, d, 0.0)
    # sum_{n >= 2} (-x)^n / n! = x^2/2 (1 - x/3 (1 - x/4 (1 - ...))), to x^16
    # (the first term left out is below 1e-17 of x^2 / 2).
    acc = np.ones_like(x)
    for n in range(16, 2, -1):
        acc = 1 - x * acc / n
    return np.where(small, 0.5 * x * x * acc, np.expm1(-d) + d)


def kl_terms(pi_ref, delta, legal, offsets, probs_of):
    """KL(pi_ref || pi) per state, dKL/dz = pi - pi_ref and dKL/dz_ref =
    pi_ref (d - KL) per action, from pi_ref and delta = z_ref - z (computed
    from the parameters' difference, so nothing large cancels).  In float64
    throughout.

    With d_k = log pi_ref_k - log pi_k = delta_k + c (c, the difference of the
    log-normalisers, from log1p of a sum of expm1), KL = sum_k pi_ref_k (d_k +
    expm1(-d_k)): non-negative terms (the expm1 parts sum to 0), so a small
    divergence keeps its relative accuracy, and pi - pi_ref = pi_ref
    expm1(-d) does not cancel either.  Where pi_ref underflows (pi_ref_k <
    tiny) that product loses pi_k: there, and in c, pi comes from
    ``probs_of()`` (the value overflows only when pi's mass on the other
    actions underflows too).
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
        terms = pr * _expm1_plus(d)
        coef = pr * np.expm1(-d)
    if pi is not None:
        # pi_ref ~ 0: the term pi_ref (d + expm1(-d)) is pi - pi_ref (+ pi_ref d, < tiny).
        terms = np.where(lost, pi - pr, terms)
        coef = np.where(lost, pi - pr, coef)
    kl = rowsum(terms, offsets)
    return kl, coef, pr * (d - spread(kl, offsets))


def kl_phi(phi, theta_ref, theta, *, mask, temperature, offsets):
    """kl_terms of the phi form, for
    ``fastscore.kl`` to replace."""
    kw = dict(mask=mask, temperature=temperature, offsets=offsets)
    pi_ref = fastscore.probs(phi, theta_ref, **kw)
    delta = np.tensordot(phi, theta_ref - theta, axes=1) / theta.dtype.type(temperature)
    offs = None if offsets is None else np.asarray(offsets, dtype=np.intp)
    return kl_terms(pi_ref, delta, legal_of(mask, pi_ref.shape), offs,
                    lambda: fastscore.probs(phi, theta, **kw))


def kl_matrix(s, W_ref, W, b_ref, b, *, mask, temperature):
    """kl_terms of the state-input form, for
    ``fastscore.matrix.kl`` to replace."""
    import fastscore.matrix as fm

    pi_ref = fm.probs(s, W_ref, b=b_ref, mask=mask, temperature=temperature)
    delta = s @ (W_ref - W)
    if b_ref is not None or b is not None:
        delta = delta + ((0 if b_ref is None else b_ref) - (0 if b is None else b))
    delta = delta / W.dtype.type(temperature)
    return kl_terms(pi_ref, delta, legal_of(mask, pi_ref.shape), None,
                    lambda: fm.probs(s, W, b=b, mask=mask, temperature=temperature))


def entropy_dz_matrix(s, W, b, g, H, *, mask, temperature):
    """entropy_dz of the state-input form, for ``fastscore.matrix.entropy(...,
    grad=True)`` to replace where only the parameters' gradient is needed."""
    import fastscore.matrix as fm

    pi = fm.probs(s, W, b=b, mask=mask, temperature=temperature)
    return entropy_coef(pi, H, None) * spread(g, None)
