"""The public API: coerce what needs coercing, then call the compiled entry."""
from __future__ import annotations

import operator
from typing import Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._core import _score

__all__ = ["score"]

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
    r"""Score function of a linear softmax policy: :math:`\nabla_\theta \log \pi(a)`.

    With logits :math:`z_k = \phi_k \cdot \theta / \tau` over the legal
    actions and :math:`\pi = \mathrm{softmax}(z)`,

    .. math::

        \nabla_\theta \log \pi(a)
        = \frac{1}{\tau}\Big(\phi_a - \sum_k \pi_k \phi_k\Big)
        = \frac{1}{\tau} \sum_k \pi_k (\phi_a - \phi_k).

    The kernel evaluates the last form in one pass over ``phi`` with an
    online softmax, accumulating in double precision, so the result keeps
    full relative accuracy even when the policy is nearly deterministic.

    Parameters
    ----------
    phi : array_like, shape (N, d) or (B, N, d)
        Features of the N actions of one state, or of a batch of B states.
        Real numeric; float32 and float64 are used as they are, anything
        else is converted to float64.
    theta : array_like, shape (d,)
        Policy parameters, shared by the batch.
    a : int or array_like of int, shape (B,)
        The taken action: an integer for one state, one per state for a batch.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions.  Masked actions get probability exactly 0 and their
        rows of ``phi`` are never read (they may hold anything, NaN included).
        The taken action must be legal.
    temperature : float, default 1.0
        Softmax temperature ``tau > 0``.  The result is the true gradient,
        factor ``1 / tau`` included.
    out : ndarray, shape (d,) or (B, d), optional
        Where to write the result.  Its dtype must be the result dtype:
        float32 when ``phi`` and ``theta`` are both float32, else float64.
    n_threads : int, optional
        OpenMP threads.  ``None`` uses what OpenMP allows now, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl`` apply.  Small work always
        runs on the calling thread.  The result does not depend on it.

    Returns
    -------
    ndarray, shape (d,) or (B, d)
        The score; ``out`` if it was given.

    Raises
    ------
    IndexError
        An action outside ``[0, N)``.
    TypeError
        Non-real (complex, string, object) arrays, a non-integer action, or
        ``out`` of the wrong dtype.
    ValueError
        Wrong shapes; N = 0; the taken action masked; NaN or inf in
        ``theta`` or in a legal row of ``phi`` (or logits that overflow);
        ``temperature`` not finite and positive; ``n_threads < 1``.

    See Also
    --------
    fastscore.reference.score : the same function in plain NumPy.

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> phi = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> fastscore.score(phi, np.zeros(2), 0)
    array([ 0.5, -0.5])
    """
    result = _score(phi, theta, a, mask, temperature, out, n_threads)
    if result is NotImplemented:
        phi = _as_kernel_array(phi, "phi")
        theta = _as_kernel_array(theta, "theta")
        a = _as_actions(a, batch=phi.ndim == 3)
        mask = None if mask is None else _as_mask(mask)
        result = _score(phi, theta, a, mask, temperature, out, n_threads)
        if result is NotImplemented:  # pragma: no cover - coercion is complete
            raise RuntimeError("fastscore: arguments could not be put in canonical form")
    return result


def _as_kernel_array(x, name: str) -> np.ndarray:
    """A float32/float64 array, native and aligned, last axis contiguous."""
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype not in _KERNEL_DTYPES:  # ints, bools, float16, longdouble, byte-swapped
        dtype = arr.dtype.newbyteorder("=")
        arr = arr.astype(dtype if dtype in _KERNEL_DTYPES else np.float64)
    if not arr.flags.aligned or (
        arr.ndim and arr.shape[-1] > 1 and arr.strides[-1] != arr.itemsize
    ):
        arr = np.ascontiguousarray(arr)
    return arr


def _as_actions(a, batch: bool):
    """An int for one state, an intp array for a batch."""
    if not batch:
        if isinstance(a, (bool, np.bool_)) or a is None:
            raise TypeError(f"a must be an integer action index, got {type(a).__name__}")
        try:
            return operator.index(a)
        except TypeError:
            raise TypeError(
                f"a must be an integer action index for one state, got {type(a).__name__}"
            ) from None
    arr = np.asarray(a)
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise TypeError(f"a must be an array of integer action indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.intp).max:
        raise IndexError(f"a holds {arr.max()}, out of range for any number of actions")
    return arr.astype(np.intp, copy=False)


def _as_mask(mask) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {arr.dtype}")
    return arr
