"""The textbook NumPy implementations: the baselines of the benchmarks.

They are what a user would write: logits by a matrix product, a stable
softmax, then the quantity from its formula (``phi_a - pi @ phi`` for the
score, ``log softmax`` for log pi, ``-sum pi log pi`` for the entropy, a
padded covariance for the Hessian).  They read ``phi`` several times and
materialise logits, probabilities and (for ``loglik``) (B, d) and (B, d, d)
temporaries; they compute in the input precision and lose relative accuracy
where the policy is nearly deterministic.  They only check what NumPy itself
checks; the functions in ``fastscore`` are the validated API, with the same
signatures.
"""
from __future__ import annotations

from typing import Optional as _Optional, Union as _Union

import numpy as np
from numpy.typing import ArrayLike as _ArrayLike, NDArray as _NDArray

__all__ = [
    "entropy", "kl", "log_prob", "loglik", "probs", "sample", "score",
    "matrix_score", "matrix_log_prob", "matrix_entropy", "matrix_probs", "matrix_loglik",
    "matrix_entropy_grad", "matrix_kl", "matrix_sample_score",
]


def _padded(phi, theta, mask, offsets):
    """(phi (B, N, d), theta, legal (B, N), one_state, dtype, unpad) as a user
    pads long-format data: unpad maps a (B, N) result back to rows."""
    phi = np.asarray(phi)
    theta = np.asarray(theta)
    dtype = np.result_type(phi, theta, np.float32)
    if dtype not in (np.float32, np.float64):
        dtype = np.float64
    phi = phi.astype(dtype, copy=False)
    theta = theta.astype(dtype, copy=False)
    unpad = None
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=np.intp)
        sizes = np.diff(offsets)
        n = int(sizes.max()) if sizes.size else 0
        state = np.repeat(np.arange(sizes.size), sizes)
        col = np.arange(offsets[-1]) - offsets[state]
        padded = np.zeros((sizes.size, n, phi.shape[1]), dtype)
        padded[state, col] = phi
        legal = np.zeros((sizes.size, n), bool)
        legal[state, col] = True if mask is None else np.asarray(mask, bool)
        phi, one = padded, False

        def unpad(x):
            return x[state, col]
    else:
        one = phi.ndim == 2
        if one:
            phi = phi[None]
        shape = phi.shape[:2]
        legal = np.ones(shape, bool) if mask is None else np.broadcast_to(
            np.asarray(mask, bool), shape)
    return phi, theta, legal, one, dtype, unpad


def _log_softmax(phi, theta, legal, dtype, temperature):
    logits = (phi @ theta) / dtype.type(temperature)
    logits = np.where(legal, logits, -np.inf)
    logits = logits - logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def _finish(result, one, out):
    if one:
        result = result[0]
    if out is not None:
        out[...] = result
        return out
    return result


def score(
    phi: _ArrayLike,
    theta: _ArrayLike,
    a: _Union[int, _ArrayLike],
    *,
    mask: _Optional[_ArrayLike] = None,
    temperature: float = 1.0,
    offsets: _Optional[_ArrayLike] = None,
    out: _Optional[_NDArray[np.floating]] = None,
    n_threads: _Optional[int] = None,
) -> _NDArray[np.floating]:
    r"""Score :math:`\nabla_\theta \log \pi(a)` in plain NumPy: ``(phi_a - pi @ phi) / tau``.

    Same signature and result as :func:`fastscore.score`; ``n_threads`` is
    accepted and ignored (NumPy's BLAS has its own threads).
    """
    phi, theta, legal, one, dtype, _ = _padded(phi, theta, mask, offsets)
    a = np.asarray(a, dtype=np.intp).reshape(-1)
    pi = np.exp(_log_softmax(phi, theta, legal, dtype, temperature))
    phi = np.where(legal[..., None], phi, 0)  # masked rows may hold NaN
    mean_phi = np.einsum("bn,bnd->bd", pi, phi)
    result = (phi[np.arange(phi.shape[0]), a] - mean_phi) / dtype.type(temperature)
    return _finish(result, one, out)


def log_prob(phi, theta, a, *, mask=None, temperature=1.0, offsets=None, out=None,
             n_threads=None):
    """log pi(a) in plain NumPy (log-softmax, then the taken entries)."""
    phi, theta, legal, one, dtype, _ = _padded(phi, theta, mask, offsets)
    a = np.asarray(a, dtype=np.intp).reshape(-1)
    logp = _log_softmax(phi, theta, legal, dtype, temperature)
    return _finish(logp[np.arange(logp.shape[0]), a], one, out)


def entropy(phi, theta, *, mask=None, temperature=1.0, offsets=None, grad=False, out=None,
            n_threads=None):
    """H(pi) = -sum pi log pi in plain NumPy (masked actions count 0); with
    grad=True also its gradient (_entropy_grad)."""
    if grad:
        return _entropy_grad(phi, theta, mask, temperature, offsets, out)
    phi, theta, legal, one, dtype, _ = _padded(phi, theta, mask, offsets)
    logp = _log_softmax(phi, theta, legal, dtype, temperature)
    pi = np.exp(logp)
    h = -np.where(legal, pi * np.where(legal, logp, 0), 0).sum(axis=1)
    return _finish(h, one, out)


def probs(phi, theta, *, mask=None, temperature=1.0, offsets=None, out=None, n_threads=None):
    """softmax(phi @ theta / tau) in plain NumPy."""
    phi, theta, legal, one, dtype, unpad = _padded(phi, theta, mask, offsets)
    pi = np.exp(_log_softmax(phi, theta, legal, dtype, temperature))
    if unpad is not None:
        pi = unpad(pi)
    return _finish(pi, one, out)


def sample(phi, theta, *, seed=None, mask=None, temperature=1.0, offsets=None, state_offset=0,
           score=False, n_threads=None):
    """One action per state from softmax(phi @ theta / tau), and its log pi.

    One state: ``rng.choice(N, p=pi)``, as a user writes it; a batch: the
    inverse CDF of each row at one uniform.  The same distribution as
    :func:`fastscore.sample`, not the same draws (another generator).  With
    score=True also the score of the drawn actions (:func:`score`)."""
    if score:
        drawn = sample(phi, theta, seed=seed, mask=mask, temperature=temperature,
                       offsets=offsets)
        return drawn + (globals()["score"](phi, theta, drawn[0], mask=mask,
                                          temperature=temperature, offsets=offsets),)
    rng = np.random.default_rng(seed)
    phi, theta, legal, one, dtype, _ = _padded(phi, theta, mask, offsets)
    logp = _log_softmax(phi, theta, legal, dtype, temperature)
    pi = np.exp(logp)
    if one:
        action = int(rng.choice(pi.shape[1], p=pi[0] / pi[0].sum()))
        return action, float(logp[0, action])
    cdf = np.cumsum(pi, axis=1)
    u = rng.random(pi.shape[0]) * cdf[:, -1]
    actions = np.minimum((cdf <= u[:, None]).sum(axis=1), pi.shape[1] - 1)
    return actions, logp[np.arange(pi.shape[0]), actions]


def loglik(phi, theta, a, *, weights=None, grad=False, hess=False, mask=None, temperature=1.0,
           offsets=None, entropy_weight=0.0, n_threads=None):
    """sum_b w_b log pi_b(a_b), its gradient sum_b w_b score_b and Hessian
    -sum_b w_b Cov_b(phi) / tau^2, as a user writes them with (B, d) and
    (B, d, d) temporaries; entropy_weight adds beta sum_b H_b (not with hess)."""
    if entropy_weight != 0:
        if hess:
            raise ValueError("hess=True with entropy_weight != 0 is not supported")
        plain = loglik(phi, theta, a, weights=weights, grad=grad, mask=mask,
                       temperature=temperature, offsets=offsets)
        h, dh = _entropy_grad(phi, theta, mask, temperature, offsets, None)
        h, dh = np.atleast_1d(h), np.atleast_2d(dh)
        if not grad:
            return plain + entropy_weight * float(h.sum())
        return (plain[0] + entropy_weight * float(h.sum()),
                plain[1] + entropy_weight * dh.sum(axis=0))
    phi, theta, legal, _, dtype, _ = _padded(phi, theta, mask, offsets)
    a = np.asarray(a, dtype=np.intp).reshape(-1)
    b = np.arange(phi.shape[0])
    w = np.ones(phi.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    tau = dtype.type(temperature)
    logp = _log_softmax(phi, theta, legal, dtype, temperature)
    value = float(w @ logp[b, a])
    if not (grad or hess):
        return value
    pi = np.exp(logp)
    phi = np.where(legal[..., None], phi, 0)
    mean_phi = np.einsum("bn,bnd->bd", pi, phi)
    result = [value]
    if grad:
        result.append(w @ ((phi[b, a] - mean_phi) / tau))
    if hess:
        centred = phi - mean_phi[:, None, :]
        cov = np.einsum("bn,bni,bnj->bij", pi, centred, centred)
        result.append(-np.einsum("b,bij->ij", w, cov) / (tau * tau))
    return tuple(result)


def _entropy_grad(phi, theta, mask, temperature, offsets, out):
    """(H, dH/dtheta) with dH = -(1/tau) sum_k pi_k (log pi_k + H) phi_k, as a
    user writes it (masked actions count 0)."""
    phi, theta, legal, one, dtype, _ = _padded(phi, theta, mask, offsets)
    logp = _log_softmax(phi, theta, legal, dtype, temperature)
    pi = np.exp(logp)
    logp = np.where(legal, logp, 0)
    h = -(pi * logp).sum(axis=1)
    coef = np.where(legal, pi * (logp + h[:, None]), 0)
    phi = np.where(legal[..., None], phi, 0)
    dh = -np.einsum("bn,bnd->bd", coef, phi) / dtype.type(temperature)
    out_h, out_g = (None, None) if out is None else out
    return _finish(h, one, out_h), _finish(dh, one, out_g)


def kl(phi, theta_ref, theta, *, mask=None, temperature=1.0, offsets=None, grad=False, out=None,
       n_threads=None):
    """KL(pi_ref || pi) = sum pi_ref (log pi_ref - log pi) and, with grad=True,
    its gradient in theta (1/tau) sum_k (pi_k - pi_ref_k) phi_k, as a user
    writes them (it loses relative accuracy for nearly equal policies)."""
    theta = np.asarray(theta)
    phi, theta_ref, legal, one, dtype, _ = _padded(phi, theta_ref, mask, offsets)
    dtype = np.result_type(dtype, theta)
    phi = phi.astype(dtype, copy=False)
    lr = _log_softmax(phi, theta_ref.astype(dtype), legal, dtype, temperature)
    lp = _log_softmax(phi, theta.astype(dtype), legal, dtype, temperature)
    pr = np.exp(lr)
    value = np.where(legal, pr * (np.where(legal, lr, 0) - np.where(legal, lp, 0)), 0).sum(axis=1)
    out_v, out_g = (out, None) if not grad or out is None else out
    value = _finish(value, one, out_v)
    if not grad:
        return value
    phi = np.where(legal[..., None], phi, 0)
    g = np.einsum("bn,bnd->bd", np.exp(lp) - pr, phi) / dtype.type(temperature)
    return value, _finish(g, one, out_g)


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
                  entropy_weight=0.0, n_threads=None):
    """sum_i w_i log pi(a_i | s_i) + beta sum_i H_i and, with grad, its gradient
    sum_i outer(s_i, w_i (e_a_i - pi_i) - beta pi_i (log pi_i + H_i)) / tau.

    The batch gradient a user writes: S.T @ R with R = w (onehot - P) / tau
    (plus the entropy's term).
    """
    s, z, p = _matrix_probs(s, W, b, mask, temperature)
    a = np.asarray(a)
    logl = np.log(np.exp(z).sum(axis=-1))
    za = np.take_along_axis(z, a.reshape(z.shape[:-1] + (1,)), axis=-1)[..., 0]
    lp = za - logl
    w = np.ones_like(lp) if weights is None else np.asarray(weights, dtype=p.dtype)
    value = (w * lp).sum()
    if entropy_weight:
        with np.errstate(invalid="ignore"):
            logp = np.where(p > 0, z - logl[..., None], 0.0)
        H = -(p * logp).sum(axis=-1)
        value = value + entropy_weight * H.sum()
    if not grad:
        return value
    r = (_onehot(a, p.shape, p.dtype) - p) * (w[..., None] / p.dtype.type(temperature))
    if entropy_weight:
        r = r - (entropy_weight / p.dtype.type(temperature)) * p * (logp + H[..., None])
    if s.ndim == 1:
        gw, gb = np.outer(s, r), r
    else:
        gw, gb = s.T @ r, r.sum(axis=0)
    return (value, gw) if b is None else (value, (gw, gb))


def matrix_entropy_grad(s, W, *, b=None, mask=None, temperature=1.0):
    """(H, dH/dW) (or (H, (dH/dW, dH/db)) with b) in plain NumPy.

    dH/dz = -p (log p + H), masked actions 0; the gradient is outer(s, that) / tau.
    """
    s, z, p = _matrix_probs(s, W, b, mask, temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, z - np.log(np.exp(z).sum(axis=-1, keepdims=True)), 0)
    H = -(p * logp).sum(axis=-1)
    c = -p * (logp + H[..., None]) / p.dtype.type(temperature)
    gw = s[..., :, None] * c[..., None, :]
    return (H, gw) if b is None else (H, (gw, c))


def matrix_kl(s, W_ref, W, *, b_ref=None, b=None, mask=None, temperature=1.0, grad=False,
              out=None, n_threads=None):
    """KL(pi_ref || pi) = sum pi_ref (log pi_ref - log pi) per state and, with
    grad=True, its gradient in W, outer(s, pi - pi_ref) / tau (and in b,
    (pi - pi_ref) / tau), as a user writes them (it loses relative accuracy
    for nearly equal policies)."""
    s, zr, pr = _matrix_probs(s, W_ref, b_ref, mask, temperature)
    _, zq, pq = _matrix_probs(s, W, b, mask, temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = zr - np.log(np.exp(zr).sum(axis=-1, keepdims=True))
        lq = zq - np.log(np.exp(zq).sum(axis=-1, keepdims=True))
        value = np.where(pr > 0, pr * (lr - lq), 0).sum(axis=-1)
    if out is not None:
        out[...] = value
        value = out
    if not grad:
        return value
    c = (pq - pr) / pq.dtype.type(temperature)
    gw = s[..., :, None] * c[..., None, :]
    return (value, gw) if b is None else (value, (gw, c))


def matrix_sample_score(s, W, a, *, b=None, mask=None, temperature=1.0):
    """The score of given (drawn) actions, as sample(score=True) returns it."""
    return matrix_score(s, W, a, b=b, mask=mask, temperature=temperature)
