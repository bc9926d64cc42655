"""fastscore for PyTorch, the state-input form: ``pi = softmax((s @ W + b) / tau)``.

The functions of :mod:`fastscore.torch` for the state-input form of
:mod:`fastscore.matrix`: differentiable in the weights ``W`` (k, N), the
bias ``b`` (N,) and, when it requires grad, the state ``s`` ((k,) or
(B, k), the output of a network): with ``r = dL/dz`` per action,
``dL/dW = s^T r / tau``, ``dL/db = sum r / tau``, ``dL/ds = r W^T / tau``.

* :func:`log_prob`, :func:`entropy`, :func:`kl` -- a 0-d tensor or (B,)
* :func:`loglik` -- ``sum_i w_i log pi(a_i | s_i) + beta sum_i H_i``, 0-d

The tensors may have any strides (the kernel reads them in place); they
must be on the CPU, float32 or float64, all of one dtype.
"""
from __future__ import annotations

from typing import Optional as _Optional

import numpy as np
import torch
from torch.autograd.function import once_differentiable as _once_differentiable

import fastscore.matrix as fm

from . import _numpy
from ._bridge import (
    Inputs as _Inputs,
    check_constant as _check_constant,
    index_view as _index_view,
    matmul as _matmul,
    residual as _residual,
    result as _result,
    spread as _spread,
    temperature_of as _temperature_of,
    weights_view as _weights_view,
)

__all__ = ["log_prob", "entropy", "kl", "loglik"]

_Tensor = torch.Tensor


def _options(mask, temperature) -> dict:
    return dict(mask=_index_view(mask, "mask"), temperature=_temperature_of(temperature))


def _tensor(x, dtype):
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def _grads(ctx, x, cz, kw, ref=None, params=True):
    """(dL/ds, dL/dW, dL/db) from dL/dz (cz, (N,) or (B, N)) for the inputs
    that need them (dL/ds alone unless params); ref: (W_ref, dL/dz_ref) of
    kl's reference logits, which move with s too."""
    s, W = x["s"], x["W"]
    tau = W.dtype.type(kw["temperature"])
    need = (ctx.needs_input_grad[0], params and ctx.needs_input_grad[1],
            params and ctx.needs_input_grad[2])
    cz2 = np.atleast_2d(cz)
    d_s = d_W = d_b = None
    if need[0]:
        ds = _matmul(cz, W.T)
        if ref is not None:
            ds = ds + _matmul(ref[1], ref[0].T)
        d_s = _tensor(ds / tau, x.dtype)
    if need[1]:
        d_W = _tensor(_matmul(np.atleast_2d(s).T, cz2) / tau, x.dtype)
    if need[2]:
        d_b = _tensor(cz2.sum(axis=0) / tau, x.dtype)
    return d_s, d_W, d_b


def _param_grads(ctx, grads, b, dtype):
    """(dL/dW, dL/db) for the inputs that need them, from (gW, gb) (gb None
    without a bias)."""
    gW, gb = grads if b is not None else (grads, None)
    need = ctx.needs_input_grad
    return (_tensor(gW, dtype) if need[1] else None,
            _tensor(gb, dtype) if need[2] and gb is not None else None)


def _first_legal(mask, s):
    """An action legal in every state (the first one): loglik's a where its
    weights are 0."""
    if mask is None:
        return 0 if s.ndim == 1 else np.zeros(s.shape[0], np.intp)
    legal = np.asarray(mask, dtype=bool)
    if s.ndim == 2 and legal.ndim == 1:
        legal = np.broadcast_to(legal, (s.shape[0], legal.size))
    return np.argmax(legal, axis=-1)


def _param_grads_of_weights(s, W, a, b, g, kw):
    """(dW, db) = sum_i g_i score_i: fastscore.matrix.loglik with weights g
    (one pass); g with NaN or inf (which loglik refuses) through the scores."""
    if np.isfinite(g).all():
        grad = fm.loglik(s, W, a, b=b, weights=g, grad=True, **kw)[1]
        return grad if b is not None else (grad, None)
    scores = fm.score(s, W, a, b=b, **kw)
    scores = scores if b is not None else (scores, None)
    return tuple(None if x is None else np.tensordot(g, x, axes=g.ndim) for x in scores)


class _LogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, W, b, x, a, kw):
        ctx.save_for_backward(s, W, b)
        ctx.x, ctx.a, ctx.kw = x, a, kw
        return _result(fm.log_prob(x["s"], x["W"], a, b=x["b"], **kw), x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        ctx.saved_tensors  # raises if an input was modified in place
        x, a, kw = ctx.x, ctx.a, ctx.kw
        s, W, b, g = x["s"], x["W"], x["b"], grad.numpy()
        d_s = d_W = d_b = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gW, gb = _param_grads_of_weights(s, W, a, b, g, kw)
            d_W = _tensor(gW, x.dtype) if ctx.needs_input_grad[1] else None
            d_b = _tensor(gb, x.dtype) if ctx.needs_input_grad[2] else None
        if ctx.needs_input_grad[0]:
            pi = fm.probs(s, W, b=b, **kw)
            cz = _residual(pi, a, None) * _spread(g, None)
            d_s = _tensor(_matmul(cz, W.T) / W.dtype.type(kw["temperature"]), x.dtype)
        return d_s, d_W, d_b, None, None, None


# As in fastscore.torch: loglik's grad_on is torch.is_grad_enabled() at the
# call, read there because forward runs with grad disabled.


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, W, b, x, kw):
        ctx.save_for_backward(s, W, b)
        ctx.x, ctx.kw = x, kw
        ctx.H = fm.entropy(x["s"], x["W"], b=x["b"], **kw)
        return _result(ctx.H, x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        ctx.saved_tensors
        x, kw = ctx.x, ctx.kw
        s, W, b, g = x["s"], x["W"], x["b"], grad.numpy()
        need = ctx.needs_input_grad
        if (need[1] or need[2]) and g.size and np.isfinite(g).all() and (g == g.flat[0]).all():
            # One weight for all states (a sum or mean of H): loglik's fused
            # entropy bonus with zero log-likelihood weights is g sum H, its
            # gradient one BLAS pass.
            grads = fm.loglik(s, W, _first_legal(kw["mask"], s), b=b, weights=np.zeros_like(g),
                              entropy_weight=float(g.flat[0]), grad=True, **kw)[1]
            d_W, d_b = _param_grads(ctx, grads, b, x.dtype)
            d_s = None
            if need[0]:
                cz = _numpy.entropy_dz_matrix(s, W, b, g, ctx.H, **kw)
                d_s = _grads(ctx, x, cz, kw, params=False)[0]
        else:
            # A weight per state: fm.entropy(grad=True) would form the (B, k, N)
            # per-state gradients; dH/dz per action and one matrix product
            # give their weighted sum from (B, N) arrays.
            d_s, d_W, d_b = _grads(ctx, x, _numpy.entropy_dz_matrix(s, W, b, g, ctx.H, **kw), kw)
        return d_s, d_W, d_b, None, None


class _KL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, W, b, x, b_pair, kw):
        ctx.save_for_backward(s, W, b)
        ctx.x, ctx.b_pair, ctx.kw = x, b_pair, kw
        ctx.kl = fm.kl(x["s"], x["W_ref"], x["W"], b_ref=b_pair[0], b=b_pair[1], **kw)
        return _result(ctx.kl, x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        # fm.kl(grad=True) gives (B, k, N) per-state gradients (memory B k N,
        # written and read again); dKL/dz per action and one matrix product
        # give their weighted sum from (B, N) arrays.
        ctx.saved_tensors
        x, kw = ctx.x, ctx.kw
        dz, dz_ref = _numpy.kl_dz_matrix(x["s"], x["W_ref"], x["W"], *ctx.b_pair, ctx.kl, **kw)
        dtype, g = x["W"].dtype, _spread(grad.numpy().astype(np.float64), None)
        ref = (x["W_ref"], (dz_ref * g).astype(dtype)) if ctx.needs_input_grad[0] else None
        return (*_grads(ctx, x, (dz * g).astype(dtype), kw, ref), None, None, None)


class _Loglik(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, W, b, weights, x, a, w, beta, kw, grad_on):
        ctx.save_for_backward(s, W, b, weights)
        ctx.x, ctx.a, ctx.w, ctx.beta, ctx.kw = x, a, w, beta, kw
        need_params = grad_on and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2])
        out = fm.loglik(x["s"], x["W"], a, b=x["b"], weights=w, entropy_weight=beta,
                        grad=need_params, **kw)
        value, ctx.grads = out if need_params else (out, None)
        return torch.tensor(float(value), dtype=x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        ctx.saved_tensors
        x, a, w, beta, kw = ctx.x, ctx.a, ctx.w, ctx.beta, ctx.kw
        s, W, b, g = x["s"], x["W"], x["b"], float(grad)
        need = ctx.needs_input_grad
        d_s = d_W = d_b = d_w = None
        if need[1] or need[2]:
            d_W, d_b = _param_grads(ctx, ctx.grads, b, x.dtype)
            d_W = None if d_W is None else g * d_W
            d_b = None if d_b is None else g * d_b
        if need[0]:
            pi = fm.probs(s, W, b=b, **kw)
            cz = _residual(pi, a, None)
            if w is not None:
                cz = cz * _spread(w, None)
            if beta:
                cz = cz + beta * _numpy.entropy_coef(pi, fm.entropy(s, W, b=b, **kw), None)
            d_s = _tensor(g * _matmul(cz, W.T) / W.dtype.type(kw["temperature"]), x.dtype)
        if need[3]:
            lp = fm.log_prob(s, W, a, b=b, **kw)
            d_w = _tensor(g * np.reshape(lp, np.shape(w)), x.dtype)
        return d_s, d_W, d_b, d_w, None, None, None, None, None, None


# ---------------------------------------------------------------------------
# The public functions.

_STATE = """
    s : torch.Tensor, shape (k,) or (B, k)
        One state or a batch, float32 or float64, on the CPU.  It may
        require grad (the output of a network).
    W : torch.Tensor, shape (k, N)
        Weights, the same dtype."""

_OPTIONS = """
    mask : array_like or tensor of bool, shape (N,) or (B, N), optional
        Legal actions (masked ones get probability exactly 0).
    temperature : float, default 1.0
        ``tau > 0`` (a constant: no gradient)."""

_RAISES = """
    Raises
    ------
    TypeError
        A tensor not on the CPU, of another dtype than float32/float64,
        tensors of mixed dtypes, a non-tensor where a tensor is expected.
    ValueError
        What the function of :mod:`fastscore.matrix` raises."""


def _doc(text):
    return text.replace("{state}", _STATE).replace("{options}", _OPTIONS).replace(
        "{raises}", _RAISES)


def log_prob(s: _Tensor, W: _Tensor, a, *, b: _Optional[_Tensor] = None, mask=None,
             temperature: float = 1.0) -> _Tensor:
    x = _Inputs({"s": s, "W": W, "b": b})
    return _LogProb.apply(s, W, b, x, _index_view(a, "a"), _options(mask, temperature))


log_prob.__doc__ = _doc(r"""Log-probability :math:`\log \pi(a \mid s)`, differentiable in ``W``, ``b`` and ``s``.

    The value is :func:`fastscore.matrix.log_prob`'s, bit for bit; the
    parameters' gradient is one :func:`fastscore.matrix.loglik` pass with
    the incoming gradient as weights; :math:`\partial / \partial s = W (e_a
    - \pi) / \tau`.

    Parameters
    ----------{state}
    a : int, or array_like or tensor of int, shape (B,)
        The taken action(s).
    b : torch.Tensor, shape (N,), optional
        Bias.{options}

    Returns
    -------
    torch.Tensor, shape () or (B,)
        In the dtype of the inputs.
{raises}

    Examples
    --------
    >>> import torch, fastscore.torch.matrix as ftm
    >>> W = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    >>> ftm.log_prob(torch.eye(3, dtype=torch.float64), W, [0, 1, 0]).sum().backward()
    >>> W.grad
    tensor([[ 0.5000, -0.5000],
            [-0.5000,  0.5000],
            [ 0.5000, -0.5000]], dtype=torch.float64)
    """)


def entropy(s: _Tensor, W: _Tensor, *, b: _Optional[_Tensor] = None, mask=None,
            temperature: float = 1.0) -> _Tensor:
    x = _Inputs({"s": s, "W": W, "b": b})
    return _Entropy.apply(s, W, b, x, _options(mask, temperature))


entropy.__doc__ = _doc(r"""Entropy :math:`H(\pi(\cdot \mid s))`, differentiable in ``W``, ``b`` and ``s``.

    The value is :func:`fastscore.matrix.entropy`'s, bit for bit; the
    gradient goes through the logits, :math:`\partial H / \partial z_k =
    -\pi_k (\log \pi_k + H)` (exactly 0 for masked actions).

    Parameters
    ----------{state}
    b : torch.Tensor, shape (N,), optional
        Bias.{options}

    Returns
    -------
    torch.Tensor, shape () or (B,)
        Each state's entropy, in the dtype of the inputs.
{raises}

    Examples
    --------
    >>> import torch, fastscore.torch.matrix as ftm
    >>> H = ftm.entropy(torch.ones(2, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64))
    >>> round(H.item(), 6)  # log 4
    1.386294
    """)


def _bias_pair(x):
    """(b_ref, b) for fastscore.matrix.kl: both or neither, as it takes them
    (the same error for the same mistake)."""
    b_ref, b = x["b_ref"], x["b"]
    if (b_ref is None) != (b is None):
        raise ValueError(
            "give both b_ref and b, or neither: the two policies' biases (a policy without "
            "one has b = 0)")
    return b_ref, b


def kl(s: _Tensor, W_ref: _Tensor, W: _Tensor, *, b_ref: _Optional[_Tensor] = None,
       b: _Optional[_Tensor] = None, mask=None, temperature: float = 1.0) -> _Tensor:
    _check_constant(W_ref, "W_ref")
    _check_constant(b_ref, "b_ref")
    x = _Inputs({"s": s, "W_ref": W_ref, "W": W, "b_ref": b_ref, "b": b})
    return _KL.apply(s, W, b, x, _bias_pair(x), _options(mask, temperature))


kl.__doc__ = _doc(r"""KL divergence :math:`\mathrm{KL}(\pi_\mathrm{ref} \,\|\, \pi)` per state, differentiable in ``W``, ``b`` and ``s``.

    :math:`\pi_\mathrm{ref}` comes from the constant reference ``W_ref``,
    ``b_ref``; :math:`\pi` from ``W``, ``b``; both at the same states.  As
    :func:`fastscore.torch.kl`: accurate for small divergences,
    :math:`\partial \mathrm{KL} / \partial z_k = \pi_k - \pi_{\mathrm{ref},k}`,
    and the gradient in ``s`` also counts the reference's logits.

    Parameters
    ----------{state}
    W_ref : torch.Tensor, shape (k, N)
        The reference weights (a tensor that requires grad is refused: pass
        ``W_ref.detach()``).
    b_ref, b : torch.Tensor, shape (N,), optional
        The biases of the reference and of the policy: both, or neither.{options}

    Returns
    -------
    torch.Tensor, shape () or (B,)
        Each state's KL divergence, in the dtype of the inputs.
{raises}
        Also ``W_ref`` or ``b_ref`` requiring grad, and policies whose
        logits differ by more than about 16384 (as
        :func:`fastscore.matrix.kl`).

    Examples
    --------
    >>> import torch, fastscore.torch.matrix as ftm
    >>> s, W = torch.ones(1, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    >>> float(ftm.kl(s, W, W + torch.tensor([[0.0, 1e-4]], dtype=torch.float64)))
    1.2499999...e-09
    """)


def loglik(s: _Tensor, W: _Tensor, a, *, b: _Optional[_Tensor] = None, weights=None,
           entropy_weight: float = 0.0, mask=None, temperature: float = 1.0) -> _Tensor:
    x = _Inputs({"s": s, "W": W, "b": b})
    w = _weights_view(weights, x.dtype)
    beta = float(entropy_weight)
    if not np.isfinite(beta):
        raise ValueError(f"entropy_weight must be finite, got {entropy_weight}")
    w_tensor = weights if isinstance(weights, torch.Tensor) and weights.requires_grad else None
    return _Loglik.apply(s, W, b, w_tensor, x, _index_view(a, "a"), w, beta,
                         _options(mask, temperature), torch.is_grad_enabled())


loglik.__doc__ = _doc(r"""Weighted log-likelihood with an entropy bonus, differentiable in ``W``, ``b``, ``s`` (and ``weights``).

    .. math::

        \ell = \sum_i w_i \log \pi(a_i \mid s_i) + \beta \sum_i H(\pi(\cdot \mid s_i))

    The value and the parameters' gradient, the entropy term included, come
    from one :func:`fastscore.matrix.loglik` pass with ``entropy_weight`` (in
    the inputs' precision).

    Parameters
    ----------{state}
    a : int, or array_like or tensor of int, shape (B,)
        The taken action(s).
    b : torch.Tensor, shape (N,), optional
        Bias.
    weights : tensor or array_like, shape (B,) (a scalar for one state), optional
        Finite weights (returns, advantages), default 1.  A tensor that
        requires grad gets the gradient :math:`\log \pi(a_i \mid s_i)`.
    entropy_weight : float, default 0.0
        :math:`\beta`; the entropies are not weighted by ``weights``.{options}

    Returns
    -------
    torch.Tensor, shape ()
        The weighted log-likelihood (with the entropy term), in the dtype of
        the inputs.
{raises}

    Examples
    --------
    >>> import torch, fastscore.torch.matrix as ftm
    >>> W = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    >>> ftm.loglik(torch.eye(3, dtype=torch.float64), W, [0, 1, 0]).backward()
    >>> W.grad[0]
    tensor([ 0.5000, -0.5000], dtype=torch.float64)
    """)
