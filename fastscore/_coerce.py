"""Input coercion for fastscore.score: the slow path for non-canonical input.

``fastscore.score`` (compiled, in ``src/_core.pyx``) takes float32/float64
arrays and an ``int`` action as they are; anything else comes here once to be
converted, then goes back to the compiled checks.  The errors raised here are
about types (``TypeError``); shapes and values are checked in the kernel.
"""
from __future__ import annotations

import operator

import numpy as np

__all__ = ["coerce"]

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def coerce(phi, theta, a, mask):
    """(phi, theta, a, mask) in the canonical form the kernel reads."""
    phi = _as_kernel_array(phi, "phi")
    theta = _as_kernel_array(theta, "theta")
    a = _as_actions(a, batch=phi.ndim == 3)
    mask = None if mask is None else _as_mask(mask)
    return phi, theta, a, mask


def _reject_masked(x, name: str) -> None:
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray, whose mask would be ignored; "
            "pass plain arrays and the legal actions as mask="
        )


def _as_kernel_array(x, name: str) -> np.ndarray:
    """A float32/float64 array, native and aligned, last axis contiguous."""
    _reject_masked(x, name)
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype not in _KERNEL_DTYPES:  # ints, bools, float16, longdouble, byte-swapped
        dtype = arr.dtype.newbyteorder("=")
        arr = arr.astype(dtype if dtype in _KERNEL_DTYPES else np.float64)
    if not arr.flags.aligned:
        arr = arr.copy()
    if arr.size and arr.ndim and arr.shape[-1] > 1 and arr.strides[-1] != arr.itemsize:
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
    _reject_masked(a, "a")
    arr = np.asarray(a)
    if arr.dtype.kind == "O":
        arr = _object_actions(arr)
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise TypeError(f"a must be an array of integer action indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.intp).max:
        raise IndexError(f"a holds {arr.max()}, out of range for any number of actions")
    arr = arr.astype(np.intp, copy=False)
    return arr if arr.flags.aligned else arr.copy()


def _object_actions(arr: np.ndarray) -> np.ndarray:
    """An object array of Python/NumPy integers as intp (bools rejected)."""
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               for v in arr.flat):
        raise TypeError("a must be an array of integer action indices, got dtype object")
    try:
        return arr.astype(np.intp)
    except OverflowError:
        raise IndexError(
            f"a holds {max(arr.flat, key=abs)}, out of range for any number of actions"
        ) from None


def _as_mask(mask) -> np.ndarray:
    _reject_masked(mask, "mask")
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {arr.dtype}")
    return arr
