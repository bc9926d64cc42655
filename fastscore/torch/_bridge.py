"""Tensors in and out of the NumPy-level functions, checked once for both forms.

Every tensor the kernels read is handed over as a NumPy view of its memory
(``tensor.detach().numpy()``): no copy is ever made on the user's behalf, so a
tensor whose layout fastscore would have to copy is refused with a message
that says how to make the copy.  Results come back as tensors sharing the
NumPy result's memory (``torch.from_numpy``).
"""
from __future__ import annotations

import numpy as np
import torch

_FLOATS = (torch.float32, torch.float64)


def _tensor_view(t: torch.Tensor, name: str) -> np.ndarray:
    """The NumPy view of a CPU, strided tensor's memory (never a copy)."""
    if t.device.type != "cpu":
        raise TypeError(
            f"{name} is on device '{t.device}': fastscore.torch computes on the CPU; pass "
            f"{name}.cpu() (a copy) and move the result back")
    if t.layout != torch.strided:
        raise TypeError(f"{name} is a {t.layout} tensor; pass a dense one ({name}.to_dense())")
    if t.is_conj() or t.is_neg():
        raise ValueError(
            f"{name} is a lazy conjugate or negative view, which NumPy cannot read in place; "
            f"pass {name}.resolve_conj().resolve_neg() (a copy)")
    return t.detach().numpy()


class Inputs:
    """The float tensors of one call: their common dtype and NumPy views."""

    def __init__(self, tensors: dict, contiguous_last: tuple = ()):
        """``tensors`` maps argument names to tensors (None: not given);
        those named in ``contiguous_last`` must have a contiguous last axis
        (the phi-form kernel reads feature rows in place)."""
        given = {n: t for n, t in tensors.items() if t is not None}
        for name, t in given.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(
                    f"{name} must be a torch.Tensor, got {type(t).__name__} (wrap an array with "
                    f"torch.from_numpy, which shares its memory)")
            if t.dtype not in _FLOATS:
                raise TypeError(
                    f"{name} must be float32 or float64, got {t.dtype}: fastscore computes in "
                    f"those two dtypes only (convert with {name}.to(torch.float32), a copy)")
        dtypes = {t.dtype for t in given.values()}
        if len(dtypes) > 1:
            names = ", ".join(f"{n} {str(t.dtype).replace('torch.', '')}" for n, t in given.items())
            raise TypeError(
                f"mixed dtypes ({names}): pass every float tensor in one dtype, float32 or "
                f"float64 (convert one with .to(...))")
        self.dtype = dtypes.pop()
        self.np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        self.views = {}
        for name, t in given.items():
            v = _tensor_view(t, name)
            if name in contiguous_last and v.ndim and v.size and v.shape[-1] > 1 \
                    and v.strides[-1] != v.itemsize:
                raise ValueError(
                    f"{name} has strides {tuple(t.stride())}: its last axis (the features) is "
                    f"not contiguous, which fastscore would have to copy; pass "
                    f"{name}.contiguous() to make that copy")
            self.views[name] = v

    def __getitem__(self, name):
        return self.views.get(name)


def index_view(x, name: str):
    """Actions, a mask or offsets: a tensor as its NumPy view, anything else
    as it is (fastscore checks and converts those)."""
    if isinstance(x, torch.Tensor):
        v = _tensor_view(x, name)
        return v.item() if v.ndim == 0 and name == "a" else v
    return x


def weights_view(w, dtype):
    """Weights as a NumPy array (a tensor's view; array-likes converted to the
    call's dtype, a copy of the caller's own small array)."""
    if w is None:
        return None
    if isinstance(w, torch.Tensor):
        if w.dtype not in _FLOATS:
            w = w.to(dtype)
        elif w.dtype != dtype:
            raise TypeError(
                f"mixed dtypes: weights is {str(w.dtype).replace('torch.', '')} but the other "
                f"inputs are {str(dtype).replace('torch.', '')}; convert one with .to(...)")
        return _tensor_view(w, "weights")
    return np.asarray(w, dtype=np.float32 if dtype == torch.float32 else np.float64)


def temperature_of(temperature):
    """A float (a 0-d tensor without grad is accepted; there is no gradient
    with respect to the temperature)."""
    if isinstance(temperature, torch.Tensor):
        if temperature.requires_grad:
            raise TypeError("temperature requires grad: fastscore.torch takes the temperature "
                            "as a constant; pass a float or temperature.detach()")
        return float(temperature)
    return temperature


def matmul(a, b):
    """a @ b, by PyTorch on views of the arrays.  NumPy's OpenBLAS runs its
    own threads, which on few cores fight fastscore's OpenMP threads still
    spinning after a kernel (on 2 cores a (4096, 64) x (64, 10) product took
    2.4 ms right after fastscore.matrix.kl, 0.14 ms alone); PyTorch's BLAS
    runs on the OpenMP pool that fastscore uses too."""
    if a.dtype != b.dtype:
        dtype = np.result_type(a, b)
        a, b = a.astype(dtype), b.astype(dtype)
    return (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()


def per_state_sum(g, per_state):
    """sum_b g_b G_b: the incoming gradient g (a 0-d or (B,) array) against a
    fused call's per-state gradients G ((d,) or (B, d))."""
    return g * per_state if g.ndim == 0 else matmul(g, per_state)


def check_constant(t, name: str) -> None:
    """The reference policy of kl is a constant of the objective."""
    if isinstance(t, torch.Tensor) and t.requires_grad:
        raise ValueError(
            f"{name} requires grad: kl treats the reference policy as a constant and gives "
            f"no gradient for it; pass {name}.detach()")


def result(x, dtype: torch.dtype) -> torch.Tensor:
    """A tensor of the call's dtype from a NumPy result (sharing its memory
    when it already has that dtype; a Python float becomes a 0-d tensor)."""
    if isinstance(x, np.ndarray) and x.ndim:
        t = torch.from_numpy(x)
        return t if t.dtype == dtype else t.to(dtype)
    return torch.tensor(float(x), dtype=dtype)


# ---------------------------------------------------------------------------
# Per-action arrays: the shape of probs' result, (N,), (B, N), or (total rows,)
# with offsets (then each state's actions are a run of rows).


def rowsum(x, offsets):
    """Per-state sums of a per-action array."""
    if offsets is None:
        return x.sum(axis=-1)
    return np.add.reduceat(x, offsets[:-1]) if offsets.size > 1 else np.zeros(0, x.dtype)


def spread(v, offsets):
    """A per-state array repeated over each state's actions (broadcastable)."""
    if offsets is None:
        return np.asarray(v)[..., None]
    return np.repeat(v, np.diff(offsets))


def legal_of(mask, shape):
    """The mask as a bool array of the per-action shape (all True without one)."""
    if mask is None:
        return np.ones(shape, bool)
    return np.broadcast_to(np.asarray(mask, dtype=bool), shape)


def residual(pi, a, offsets):
    """e_a - pi per action (d log pi(a) / dz), weighted per state later; the
    taken action's 1 - pi_a is the sum of the other probabilities, which
    keeps its relative accuracy as pi_a -> 1."""
    taken = np.zeros(pi.shape, bool)
    if offsets is not None:
        taken[offsets[:-1] + np.asarray(a, dtype=np.intp)] = True
    elif pi.ndim == 1:
        taken[a] = True
    else:
        taken[np.arange(pi.shape[0]), np.asarray(a, dtype=np.intp)] = True
    r = -pi
    r[taken] = rowsum(np.where(taken, 0, pi), offsets)
    return r
