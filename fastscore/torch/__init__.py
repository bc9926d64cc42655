"""fastscore for PyTorch: the policy's quantities as differentiable functions.

Each function takes CPU tensors, runs fastscore's compiled kernel on NumPy
views of their memory (no copy) and returns a tensor with a gradient: with
respect to the parameters ``theta`` and, when it requires grad, to the
features ``phi`` (the output of a network).  The phi form
``z_k = phi_k . theta / tau`` is here; the state-input form
``z = (s @ W + b) / tau`` is :mod:`fastscore.torch.matrix`.

* :func:`log_prob` -- ``log pi(a)``, a 0-d tensor or (B,)
* :func:`entropy` -- ``H(pi)``
* :func:`kl` -- ``KL(pi_ref || pi)`` against a fixed reference ``theta_ref``
* :func:`loglik` -- ``sum_b w_b log pi_b(a_b) + beta sum_b H(pi_b)``, a 0-d tensor

Tensors must be on the CPU, float32 or float64 (all of one dtype), and in a
layout NumPy reads in place (``phi``'s last axis contiguous); anything else
raises rather than be copied silently.  ``import fastscore`` does not import
this module nor PyTorch (``pip install "fastscore[torch]"``).
"""
from __future__ import annotations


import numpy as np
import torch
from torch.autograd.function import once_differentiable as _once_differentiable

import fastscore

from . import _numpy
from ._bridge import (
    Inputs as _Inputs,
    check_constant as _check_constant,
    index_view as _index_view,
    per_state_sum as _per_state_sum,
    residual as _residual,
    result as _result,
    spread as _spread,
    temperature_of as _temperature_of,
    weights_view as _weights_view,
)

__all__ = ["log_prob", "entropy", "kl", "loglik"]

_Tensor = torch.Tensor


def _options(mask, temperature, offsets) -> dict:
    """The keyword arguments of the NumPy-level calls (tensors as views)."""
    return dict(mask=_index_view(mask, "mask"), temperature=_temperature_of(temperature),
                offsets=_index_view(offsets, "offsets"))


def _offsets(kw):
    """offsets as intp for the NumPy finishing steps (fastscore checked them)."""
    return None if kw["offsets"] is None else np.asarray(kw["offsets"], dtype=np.intp)


def _phi_grad(cz, theta, temperature):
    """dL/dphi_k = dL/dz_k theta / tau (exactly 0 for masked actions)."""
    return torch.from_numpy(cz[..., None] * (theta / theta.dtype.type(temperature)))


def _tensor(x, dtype):
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


def _theta_of_weights(phi, theta, a, g, kw):
    """sum_b g_b score_b: fastscore.loglik with weights g (one pass); g with
    NaN or inf (which loglik refuses as weights) through the scores."""
    g = np.reshape(g, -1)
    if np.isfinite(g).all():
        return fastscore.loglik(phi, theta, a, weights=g, grad=True, **kw)[1]
    return g @ np.reshape(fastscore.score(phi, theta, a, **kw), (g.size, -1))


class _LogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phi, theta, x, a, kw):
        ctx.save_for_backward(phi, theta)
        ctx.x, ctx.a, ctx.kw = x, a, kw
        return _result(fastscore.log_prob(x["phi"], x["theta"], a, **kw), x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        ctx.saved_tensors  # raises if phi or theta were modified in place
        x, a, kw = ctx.x, ctx.a, ctx.kw
        phi, theta, g = x["phi"], x["theta"], grad.numpy()
        d_phi = d_theta = None
        if ctx.needs_input_grad[1]:
            d_theta = _tensor(_theta_of_weights(phi, theta, a, g, kw), x.dtype)
        if ctx.needs_input_grad[0]:
            offs = _offsets(kw)
            cz = _residual(fastscore.probs(phi, theta, **kw), a, offs) * _spread(g, offs)
            d_phi = _phi_grad(cz, theta, kw["temperature"])
        return d_phi, d_theta, None, None, None


# entropy, kl and loglik compute the parameters' gradient in forward, fused with
# the value, when backward will want it: ctx.needs_input_grad says which inputs
# require grad, and grad_on (torch.is_grad_enabled() at the call, since forward
# itself runs with grad disabled) whether a graph is recorded at all.


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phi, theta, x, kw, grad_on):
        ctx.save_for_backward(phi, theta)
        ctx.x, ctx.kw = x, kw
        ctx.dH = None
        if grad_on and ctx.needs_input_grad[1]:
            ctx.H, ctx.dH = fastscore.entropy(x["phi"], x["theta"], grad=True, **kw)
        else:
            ctx.H = fastscore.entropy(x["phi"], x["theta"], **kw)
        return _result(ctx.H, x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        ctx.saved_tensors  # raises if phi or theta were modified in place
        x, kw = ctx.x, ctx.kw
        phi, theta, g = x["phi"], x["theta"], grad.numpy()
        d_phi = d_theta = None
        if ctx.needs_input_grad[1]:
            d_theta = _tensor(_per_state_sum(g, ctx.dH), x.dtype)
        if ctx.needs_input_grad[0]:
            cz = _numpy.entropy_dz(phi, theta, g, ctx.H, **kw)
            d_phi = _phi_grad(cz, theta, kw["temperature"])
        return d_phi, d_theta, None, None, None


class _KL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phi, theta, x, kw, grad_on):
        ctx.save_for_backward(phi, theta)
        ctx.x, ctx.kw = x, kw
        ctx.dkl = None
        if grad_on and ctx.needs_input_grad[1]:
            ctx.kl, ctx.dkl = fastscore.kl(x["phi"], x["theta_ref"], x["theta"], grad=True, **kw)
        else:
            ctx.kl = fastscore.kl(x["phi"], x["theta_ref"], x["theta"], **kw)
        return _result(ctx.kl, x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        ctx.saved_tensors
        x, kw = ctx.x, ctx.kw
        phi, theta, theta_ref, g = x["phi"], x["theta"], x["theta_ref"], grad.numpy()
        d_phi = d_theta = None
        if ctx.needs_input_grad[1]:
            d_theta = _tensor(_per_state_sum(g, ctx.dkl), x.dtype)
        if ctx.needs_input_grad[0]:
            dz, dz_ref = _numpy.kl_dz_phi(phi, theta_ref, theta, ctx.kl, **kw)
            g = _spread(g.astype(np.float64), _offsets(kw))
            tau = kw["temperature"]
            # phi also moves the reference's logits (theta_ref is the constant).
            d_phi = _phi_grad((dz * g).astype(phi.dtype), theta, tau) + \
                _phi_grad((dz_ref * g).astype(phi.dtype), theta_ref, tau)
        return d_phi, d_theta, None, None, None


class _Loglik(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phi, theta, weights, x, a, w, beta, kw, grad_on):
        ctx.save_for_backward(phi, theta, weights)
        ctx.x, ctx.a, ctx.w, ctx.beta, ctx.kw = x, a, w, beta, kw
        need_theta = grad_on and ctx.needs_input_grad[1]
        out = fastscore.loglik(x["phi"], x["theta"], a, weights=w, entropy_weight=beta,
                               grad=need_theta, **kw)
        value, ctx.d_theta = out if need_theta else (out, None)
        return torch.tensor(value, dtype=x.dtype)

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad):
        ctx.saved_tensors
        x, a, w, beta, kw = ctx.x, ctx.a, ctx.w, ctx.beta, ctx.kw
        phi, theta, g = x["phi"], x["theta"], float(grad)
        d_phi = d_theta = d_w = None
        if ctx.needs_input_grad[1]:
            d_theta = _tensor(g * ctx.d_theta, x.dtype)
        if ctx.needs_input_grad[0]:
            offs = _offsets(kw)
            pi = fastscore.probs(phi, theta, **kw)
            cz = _residual(pi, a, offs)
            if w is not None:
                cz = cz * (np.reshape(w, -1)[0] if pi.ndim == 1 and offs is None
                           else _spread(w, offs))
            if beta:
                H = fastscore.entropy(phi, theta, **kw)
                cz = cz + beta * _numpy.entropy_coef(pi, H, offs)
            d_phi = _phi_grad((g * cz).astype(phi.dtype), theta, kw["temperature"])
        if ctx.needs_input_grad[2]:
            lp = fastscore.log_prob(phi, theta, a, **kw)
            d_w = _tensor(g * np.reshape(lp, np.shape(w)), x.dtype)
        return d_phi, d_theta, d_w, None, None, None, None, None, None


# ---------------------------------------------------------------------------
# The public functions.

_OPTIONS = """
    mask : array_like or tensor of bool, shape (N,), (B, N) or (total rows,), optional
        Legal actions; masked ones get probability exactly 0, and their
        features' gradient is exactly 0.
    temperature : float, default 1.0
        ``tau > 0`` (a constant: no gradient).
    offsets : array_like or tensor of int, shape (B + 1,), optional
        Ragged action sets: ``phi`` is 2-D, state ``b`` owns rows
        ``offsets[b]:offsets[b + 1]`` (as in :func:`fastscore.score`)."""

_PHI = """
    phi : torch.Tensor, shape (N, d), (B, N, d), or (total rows, d) with offsets
        Features, float32 or float64, on the CPU, last axis contiguous.  It
        may require grad (the output of a network)."""

_RAISES = """
    Raises
    ------
    TypeError
        A tensor not on the CPU, of another dtype than float32/float64,
        tensors of mixed dtypes, a non-tensor where a tensor is expected.
    ValueError
        A layout fastscore would have to copy (``phi``'s last axis not
        contiguous); and what the NumPy-level function raises."""


def _doc(text):
    return text.replace("{phi}", _PHI).replace("{options}", _OPTIONS).replace("{raises}", _RAISES)


def log_prob(phi: _Tensor, theta: _Tensor, a, *, mask=None, temperature: float = 1.0,
             offsets=None) -> _Tensor:
    x = _Inputs({"phi": phi, "theta": theta}, contiguous_last=("phi",))
    return _LogProb.apply(phi, theta, x, _index_view(a, "a"), _options(mask, temperature, offsets))


log_prob.__doc__ = _doc(r"""Log-probability :math:`\log \pi(a)` of the taken actions, differentiable.

    The value is :func:`fastscore.log_prob`'s, bit for bit.  Its gradient
    with respect to ``theta`` is the weighted sum of scores (one
    :func:`fastscore.loglik` pass with the incoming gradient as weights); with
    respect to ``phi``, :math:`\partial \log \pi(a) / \partial \phi_k =
    \theta (1[k = a] - \pi_k) / \tau`.

    Parameters
    ----------{phi}
    theta : torch.Tensor, shape (d,)
        Parameters, the same dtype as ``phi``.
    a : int, or array_like or tensor of int, shape (B,)
        The taken action of each state.{options}

    Returns
    -------
    torch.Tensor, shape () or (B,)
        In the dtype of the inputs.
{raises}

    Examples
    --------
    >>> import torch, fastscore.torch as ft
    >>> theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    >>> ft.log_prob(torch.eye(2, dtype=torch.float64), theta, 0).backward()
    >>> theta.grad
    tensor([ 0.5000, -0.5000], dtype=torch.float64)
    """)


def entropy(phi: _Tensor, theta: _Tensor, *, mask=None, temperature: float = 1.0,
            offsets=None) -> _Tensor:
    x = _Inputs({"phi": phi, "theta": theta}, contiguous_last=("phi",))
    return _Entropy.apply(phi, theta, x, _options(mask, temperature, offsets),
                          torch.is_grad_enabled())


entropy.__doc__ = _doc(r"""Entropy :math:`H(\pi)` of each state's policy, differentiable.

    The value is :func:`fastscore.entropy`'s, bit for bit, and the gradient
    in ``theta`` the same call's (``grad=True``).  In ``phi`` it goes
    through the logits: :math:`\partial H / \partial z_k = -\pi_k (\log
    \pi_k + H)` (exactly 0 for masked actions), then :math:`z_k = \phi_k
    \cdot \theta / \tau`.

    Parameters
    ----------{phi}
    theta : torch.Tensor, shape (d,)
        Parameters, the same dtype as ``phi``.{options}

    Returns
    -------
    torch.Tensor, shape () or (B,)
        Each state's entropy, in the dtype of the inputs.
{raises}

    Examples
    --------
    >>> import torch, fastscore.torch as ft
    >>> H = ft.entropy(torch.eye(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    >>> round(H.item(), 6)  # log 4
    1.386294
    """)


def kl(phi: _Tensor, theta_ref: _Tensor, theta: _Tensor, *, mask=None,
       temperature: float = 1.0, offsets=None) -> _Tensor:
    _check_constant(theta_ref, "theta_ref")
    x = _Inputs({"phi": phi, "theta_ref": theta_ref, "theta": theta}, contiguous_last=("phi",))
    return _KL.apply(phi, theta, x, _options(mask, temperature, offsets), torch.is_grad_enabled())


kl.__doc__ = _doc(r"""KL divergence :math:`\mathrm{KL}(\pi_\mathrm{ref} \,\|\, \pi)` per state, differentiable in ``theta``.

    :math:`\pi_\mathrm{ref}` is the policy of ``theta_ref`` (a fixed
    reference, such as the policy that collected the data), :math:`\pi` that
    of ``theta``, on the same features.  The value is :func:`fastscore.kl`'s,
    bit for bit: computed from the parameters' difference and as a sum of
    non-negative terms, so a small divergence keeps its relative accuracy
    (no :math:`\pi - \pi_\mathrm{ref}` cancellation).  The gradient in
    ``theta`` is the same call's (``grad=True``), :math:`\partial
    \mathrm{KL} / \partial z_k = \pi_k - \pi_{\mathrm{ref},k}`; with
    respect to ``phi`` it also counts the reference's logits, which ``phi``
    moves too.

    Parameters
    ----------{phi}
    theta_ref : torch.Tensor, shape (d,)
        The reference parameters, a constant: a tensor that requires grad is
        refused (pass ``theta_ref.detach()``).
    theta : torch.Tensor, shape (d,)
        The parameters of the policy, the same dtype as ``phi``.{options}

    Returns
    -------
    torch.Tensor, shape () or (B,)
        Each state's KL divergence, in the dtype of the inputs.
{raises}
        Also ``theta_ref`` requiring grad, and policies whose logits differ
        by more than about 16384 (as :func:`fastscore.kl`).

    Examples
    --------
    >>> import torch, fastscore.torch as ft
    >>> phi = torch.eye(2, dtype=torch.float64)
    >>> ref, theta = torch.zeros(2, dtype=torch.float64), torch.tensor([0.0, 1e-4], dtype=torch.float64)
    >>> float(ft.kl(phi, ref, theta))  # about (1e-4)^2 / 8
    1.2499999...e-09
    """)


def loglik(phi: _Tensor, theta: _Tensor, a, *, weights=None, entropy_weight: float = 0.0,
           mask=None, temperature: float = 1.0, offsets=None) -> _Tensor:
    x = _Inputs({"phi": phi, "theta": theta}, contiguous_last=("phi",))
    w = _weights_view(weights, x.dtype)
    beta = float(entropy_weight)
    if not np.isfinite(beta):
        raise ValueError(f"entropy_weight must be finite, got {entropy_weight}")
    w_tensor = weights if isinstance(weights, torch.Tensor) and weights.requires_grad else None
    return _Loglik.apply(phi, theta, w_tensor, x, _index_view(a, "a"), w, beta,
                         _options(mask, temperature, offsets), torch.is_grad_enabled())


loglik.__doc__ = _doc(r"""Weighted log-likelihood with an entropy bonus, differentiable: a policy-gradient objective.

    .. math::

        \ell = \sum_b w_b \log \pi_b(a_b) + \beta \sum_b H(\pi_b)

    With advantages as ``weights``, ``-loglik(...)`` is the REINFORCE /
    actor-critic loss to minimise, ``entropy_weight`` its entropy
    regularisation.  The value and the gradient in ``theta``, the entropy
    term included, come from one :func:`fastscore.loglik` pass with
    ``entropy_weight`` (float64 accumulation; the result is rounded to the
    inputs' dtype).

    Parameters
    ----------{phi}
    theta : torch.Tensor, shape (d,)
        Parameters, the same dtype as ``phi``.
    a : array_like or tensor of int, shape (B,), or int for one state
        The taken action of each state.
    weights : tensor or array_like, shape (B,) (``(1,)`` for one state), optional
        Finite per-state weights, default 1.  A tensor that requires grad
        gets the gradient :math:`\log \pi_b(a_b)`.
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
    >>> import torch, fastscore.torch as ft
    >>> phi = torch.eye(2, dtype=torch.float64).repeat(3, 1, 1)   # 3 states, 2 actions
    >>> theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    >>> ft.loglik(phi, theta, [0, 0, 1]).backward()
    >>> theta.grad
    tensor([ 0.5000, -0.5000], dtype=torch.float64)
    """)
