"""Input coercion for the compiled entry points: the slow path for
non-canonical input.

The functions in ``src/_core.pyx`` take float32/float64 arrays, ``int``
actions, bool masks and intp offsets as they are; anything else comes here
once to be converted, then goes back to the compiled checks.  The errors
raised here are about types and kinds (``TypeError``, and ``ValueError`` for
values no conversion can fix); shapes are checked in the compiled code.
"""
from __future__ import annotations

import operator

import numpy as np

__all__ = ["coerce", "coerce_finite", "coerce_theta", "coerce_weights", "split_out"]

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def coerce(phi, theta, a, mask, offsets, takes_action: bool = True):
    """(phi, theta, a, mask, offsets) in the canonical form the kernel reads;
    ``a`` is left alone for the functions that take no action."""
    phi = _as_kernel_array(phi, "phi", ragged_hint=offsets is None)
    theta = _as_kernel_array(theta, "theta")
    if offsets is not None:
        offsets = _as_index_array(offsets, "offsets")
    if takes_action:
        a = _as_actions(a, batch=phi.ndim == 3 or offsets is not None)
    mask = None if mask is None else _as_mask(mask)
    return phi, theta, a, mask, offsets


def coerce_weights(weights, n_states: int) -> np.ndarray:
    """weights as a contiguous float64 (B,) array of finite values."""
    _reject_masked(weights, "weights")
    w = _as_array(weights, "weights")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"weights must be real numbers, got dtype {w.dtype}")
    # C-contiguous and aligned: the kernel reads weights[b] as a double
    # (ascontiguousarray alone keeps an unaligned float64 array as it is).
    w = np.require(w, dtype=np.float64, requirements=("C", "A"))
    if w.shape != (n_states,):
        raise ValueError(f"weights must have shape ({n_states},), one per state, got {w.shape}")
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise ValueError(f"weights contains NaN or inf (weights[{bad[0]}] = {w[bad[0]]})")
    return w


def _reject_masked(x, name: str) -> None:
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray, whose mask would be ignored; "
            "pass plain arrays and the legal actions as mask="
        )


def _as_array(x, name: str, ragged_hint: bool = False) -> np.ndarray:
    """np.asarray(x), with errors that name the argument."""
    try:
        return np.asarray(x)
    except ValueError as exc:
        if "inhomogeneous" not in str(exc):
            raise
        hint = ("; for states with different numbers of actions, stack their rows into "
                "one 2-D array and pass offsets=" if ragged_hint else "")
        raise ValueError(f"{name} is a ragged nested sequence, not an array{hint}") from None


def _as_kernel_array(x, name: str, ragged_hint: bool = False) -> np.ndarray:
    """A float32/float64 array, native and aligned, last axis contiguous."""
    _reject_masked(x, name)
    arr = _as_array(x, name, ragged_hint)
    kind = arr.dtype.kind
    if kind == "O":
        arr = _object_reals(arr, name)
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


def _object_reals(arr: np.ndarray, name: str) -> np.ndarray:
    """An object array of real numbers as float64: what a pandas column with
    missing values (None, pd.NA) arrives as; say so rather than 'dtype object'."""
    flat = list(arr.flat)
    if any(v is None or type(v).__name__ in ("NAType", "NaTType") for v in flat):
        raise TypeError(
            f"{name} holds missing values (None or pd.NA, dtype object); fill or drop them "
            f"first (e.g. DataFrame.dropna()), then pass a float array")
    if not all(isinstance(v, (int, float, np.integer, np.floating)) for v in flat):
        raise TypeError(f"{name} must be a real numeric array, got dtype object")
    return arr.astype(np.float64)


def _as_index_array(x, name: str) -> np.ndarray:
    """A native, aligned intp array of indices (actions of a batch, offsets)."""
    _reject_masked(x, name)
    arr = _as_array(x, name)
    if arr.dtype.kind == "O":
        arr = _object_ints(arr, name)
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        raise TypeError(f"{name} must be an array of integer indices, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.intp).max:
        raise IndexError(f"{name} holds {arr.max()}, out of range for any array")
    arr = arr.astype(np.intp, copy=False)
    return arr if arr.flags.aligned and arr.dtype.isnative else arr.copy()


def _object_ints(arr: np.ndarray, name: str) -> np.ndarray:
    """An object array of Python/NumPy integers as intp (bools rejected)."""
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
               for v in arr.flat):
        raise TypeError(f"{name} must be an array of integer indices, got dtype object")
    try:
        return arr.astype(np.intp)
    except OverflowError:
        raise IndexError(f"{name} holds {max(arr.flat, key=abs)}, out of range") from None


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
    return _as_index_array(a, "a")


def _as_mask(mask) -> np.ndarray:
    """A bool array; integer arrays holding only 0 and 1 are accepted."""
    _reject_masked(mask, "mask")
    arr = _as_array(mask, "mask")
    if arr.dtype.kind in "iu":
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(
                "mask must be boolean; an integer mask may hold only 0 and 1, got "
                f"{arr[~np.isin(arr, (0, 1))].flat[0]}")
        return arr.astype(np.bool_)
    if arr.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {arr.dtype}")
    return arr


def coerce_theta(theta, name: str) -> np.ndarray:
    """A second parameter vector (kl's theta) as a float32/float64 1-D array."""
    arr = _as_kernel_array(theta, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, shape (d,), got shape {arr.shape}")
    return arr


def coerce_finite(x, name: str) -> float:
    """A scalar option (loglik's entropy_weight, sample's decay and weight) as
    a finite float."""
    if isinstance(x, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def split_out(out, grad: bool):
    """(out for the values, out for the gradients) of a call with grad=: a pair
    (either may be None) with grad=True, else (out, None)."""
    if not grad or out is None:
        return out, None
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(
            f"with grad=True, out must be a pair (out for the values, out for the "
            f"gradients), either None, got {type(out).__name__}")
    return out
