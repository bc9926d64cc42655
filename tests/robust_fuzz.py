"""Adversarial fuzzing of fastscore's public functions (hypothesis).

Run by ``tests/test_fuzz.py`` in a child process (a crash then fails a test
instead of killing pytest), or by hand::

    python tests/robust_fuzz.py score --examples 20000

Each example builds a valid call from the registry (``robust_cases``), then
breaks zero or more of its arguments with the mutators below, each of which
says which argument names an error may blame, and whether it preserves the
values and dtypes (then the call must succeed with bitwise the result of the
unbroken call).  Every call must

* return a finite result of the right shape and dtype that agrees with the
  NumPy reference (where the reference is defined), leaving every input
  unmodified; or
* raise TypeError, ValueError or IndexError whose message names a blamed
  argument (MemoryError only for absurd sizes);

and never crash or hang (the parent test has a timeout; faulthandler dumps
the stack of a hung or crashed child).  The example being run is written to
``--last`` first, so a crash is reported with its input.
"""
from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import fractions
import os
import re
import sys
import tempfile
import warnings

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import robust_cases as rc  # noqa: E402

DOCUMENTED = (TypeError, ValueError, IndexError)

# Messages accepted although they name no argument: each is a finding
# reported to the lead and pinned by a strict xfail in test_error_messages.py.
KNOWN_UNNAMED: list[str] = []

# Results known to be wrong, accepted (and counted as "known-bad") so the
# fuzz keeps finding new things; each pinned by a strict xfail in
# test_fuzz_findings.py.  (entry name prefix, predicate(kw, result arrays)).
KNOWN_BAD_RESULTS: list = []


def _known_bad(entry, kw, res):
    arrays = rc.as_arrays(res)
    return any(entry.name.startswith(prefix) and pred(kw, arrays)
               for prefix, pred in KNOWN_BAD_RESULTS)


DELETE = object()


class Sub(np.ndarray):
    """A plain ndarray subclass: must behave as its base class."""


@dataclasses.dataclass
class Mut:
    name: str        # argument
    how: str         # mutator name
    blame: frozenset  # names an error may mention
    preserving: bool = False  # same values and dtype: must succeed, same bits
    absurd: bool = False      # MemoryError allowed


# ---------------------------------------------------------------------------
# Helpers building unusual arrays holding the same values.

def byteswapped(x):
    return x.astype(x.dtype.newbyteorder())


def unaligned(x):
    buf = np.empty(x.nbytes + 1, np.uint8)
    y = buf[1:].view(x.dtype).reshape(x.shape)
    y[...] = x
    return y


def strided(x, axis=-1):
    if x.ndim == 0:
        return x
    shape = list(x.shape)
    shape[axis] *= 2
    big = np.zeros(shape, x.dtype)
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(None, None, 2)
    v = big[tuple(idx)]
    v[...] = x
    return v


def reversed_view(x, axis=0):
    if x.ndim == 0:
        return x
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(None, None, -1)
    return np.flip(x, axis).copy()[tuple(idx)]


def readonly(x):
    y = np.array(x, copy=True)
    y.flags.writeable = False
    return y


_TMP = tempfile.mkdtemp(prefix="fastscore-fuzz-")
_memmap_count = [0]


def memmapped(x, mode="r"):
    if x.size == 0:
        return x
    _memmap_count[0] += 1
    path = os.path.join(_TMP, f"m{_memmap_count[0] % 8}.dat")
    m = np.memmap(path, dtype=x.dtype, mode="w+", shape=x.shape)
    m[...] = x
    m.flush()
    del m
    return np.memmap(path, dtype=x.dtype, mode=mode, shape=x.shape)


ODD_DTYPES = ["bool", "int8", "uint8", "int16", "int32", "int64", "uint64", "float16",
              "float32", "float64", "longdouble", "complex64", "complex128", "object", "U8",
              "S8", "datetime64[s]", "timedelta64[s]", "V8", [("x", "f8")]]


def _list_preserves(x):
    """x.tolist() comes back as x (same dtype and shape) through np.asarray."""
    y = np.asarray(x.tolist())
    return y.dtype == x.dtype and y.shape == x.shape


def as_dtype(x, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.asarray(x).astype(dtype)
        except (TypeError, ValueError, OverflowError):
            return np.zeros(np.shape(x), dtype)


# ---------------------------------------------------------------------------
# Mutators by argument kind.  Each: (draw, entry, name, value, ctx) -> (value, Mut).

def _generic_array(draw, x, name, blame_shape, ctx):
    """Representation and shape changes of any array argument."""
    x = np.asarray(x)
    same = frozenset([name])
    how = draw(st.sampled_from([
        "byteswap", "unaligned", "strided", "strided0", "reversed", "readonly", "memmap",
        "memmap-rw", "subclass", "fortran", "list", "dtype", "0d", "scalar", "add-axis",
        "drop-axis", "transpose", "truncate", "extend", "empty-axis", "masked-array",
        "matrix", "broadcast-first",
    ]))
    pres = lambda v: (v, Mut(name, how, same, preserving=True))  # noqa: E731
    shape_mut = lambda v: (v, Mut(name, how, blame_shape))  # noqa: E731
    if how == "byteswap":
        return pres(byteswapped(x))
    if how == "unaligned":
        return pres(unaligned(x))
    if how == "strided":
        return pres(strided(x, -1))
    if how == "strided0":
        return pres(strided(x, 0))
    if how == "reversed":
        return pres(reversed_view(x, draw(st.integers(0, max(x.ndim - 1, 0)))))
    if how == "readonly":
        return pres(readonly(x))
    if how == "memmap":
        return pres(memmapped(x, "r"))
    if how == "memmap-rw":
        return pres(memmapped(x, "r+"))
    if how == "subclass":
        return pres(x.view(Sub))
    if how == "fortran":  # np.asfortranarray makes a 0-d array 1-d
        y = np.asfortranarray(x)
        return (pres(y) if y.shape == x.shape else shape_mut(y))
    if how == "list":
        lst = x.tolist()
        same_dtype = np.asarray(lst).dtype == x.dtype and np.asarray(lst).shape == x.shape
        return lst, Mut(name, how, blame_shape | same, preserving=bool(same_dtype))
    if how == "dtype":
        dt = draw(st.sampled_from(ODD_DTYPES))
        y = as_dtype(x, dt)
        return y, Mut(name, how, blame_shape | same, preserving=y.dtype == x.dtype)
    if how == "0d":
        return shape_mut(np.asarray(x.flat[0] if x.size else 0.0, dtype=x.dtype))
    if how == "scalar":
        return shape_mut(x.flat[0].item() if x.size else 0)
    if how == "add-axis":
        return shape_mut(x[None])
    if how == "drop-axis":
        return shape_mut(x[0] if x.ndim and x.shape[0] else x.reshape(-1))
    if how == "transpose":
        return shape_mut(x.T)
    if how == "truncate":
        return shape_mut(x[..., :-1] if x.ndim else x)
    if how == "extend":
        return shape_mut(np.concatenate([x, x], axis=-1) if x.ndim else x)
    if how == "empty-axis":
        ax = draw(st.integers(0, max(x.ndim - 1, 0)))
        if x.ndim == 0:
            return shape_mut(x.reshape(1)[:0])
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(0, 0)
        return shape_mut(x[tuple(idx)])
    if how == "masked-array":
        return np.ma.masked_array(x), Mut(name, how, same)
    if how == "matrix":
        if x.ndim != 2:
            return pres(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asmatrix(x), Mut(name, how, blame_shape | same)
    if how == "broadcast-first":
        # zero strides: every entry along axis 0 is the first one (read-only)
        if x.ndim == 0 or x.shape[0] == 0:
            return pres(x)
        return np.broadcast_to(x[:1], x.shape), Mut(name, how, blame_shape | same)
    raise AssertionError(how)


SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 3e38, 1e-310, 5e-324, 1e154]


def _float_values(draw, x, name, blame):
    x = np.array(x, copy=True)
    how = draw(st.sampled_from(["special-one", "special-all", "negate", "scale", "zeros"]))
    if x.dtype.kind not in "f" or x.size == 0:
        return x, Mut(name, how, blame)
    if how == "special-one":
        v = draw(st.sampled_from(SPECIALS))
        with np.errstate(all="ignore"):
            x.flat[draw(st.integers(0, x.size - 1))] = v
    elif how == "special-all":
        v = draw(st.sampled_from(SPECIALS))
        with np.errstate(all="ignore"):
            x[...] = v
    elif how == "negate":
        x = -x
    elif how == "scale":
        with np.errstate(all="ignore"):
            x = x * draw(st.sampled_from([1e-300, 1e-30, 1e3, 1e30, 1e150, 1e300]))
    else:
        x[...] = 0
    return x, Mut(name, how, blame)


def mut_features(draw, entry, name, x, ctx):
    blame = frozenset(entry.params)  # phi's shape decides every other shape
    if draw(st.booleans()):
        return _float_values(draw, x, name,
                             frozenset([name, "theta", "temperature", "W", "b", "s"]))
    return _generic_array(draw, x, name, blame, ctx)


def mut_params(draw, entry, name, x, ctx):
    if draw(st.booleans()):
        return _float_values(draw, x, name, frozenset([name, "phi", "temperature", "s", "W"]))
    return _generic_array(draw, x, name, frozenset([name, "phi", "s", "W"]), ctx)


def mut_actions(draw, entry, name, a, ctx):
    p = ctx["problem"]
    blame = frozenset([name, "offsets"])
    n = _n_actions(p)
    batch = isinstance(p.a, np.ndarray)
    if batch and not (isinstance(a, np.ndarray) and a.ndim == 1):
        a = p.a
    if not batch:
        v = draw(st.sampled_from([
            -1, -n - 1, n, n + 7, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**70, -2**70,
            True, False, 1.0, np.nan, None, "1", [0], np.int8(0), np.uint64(0), np.int64(n),
            np.array(0), np.array([0]), np.float64(0), np.bool_(True), 1 + 0j,
            np.uint64(2**64 - 1),
        ]))
        preserving = isinstance(v, (np.integer, np.ndarray)) and not isinstance(v, np.bool_) \
            and np.ndim(v) == 0 and int(v) == 0 and a == 0
        return v, Mut(name, f"single:{v!r}", blame | {"phi"}, preserving=preserving)
    how = draw(st.sampled_from(["value", "dtype", "short", "long", "2d", "bool", "float",
                                "object-huge", "list", "none", "generic"]))
    a = np.array(a, copy=True)
    if how == "value" and a.size:
        i = draw(st.integers(0, a.size - 1))
        a[i] = draw(st.sampled_from([-1, n, n + 1, 2**31, 2**62, -2**62, 2**63 - 1]))
        return a, Mut(name, how, blame)
    if how == "dtype":
        dt = draw(st.sampled_from(["int8", "uint8", "int16", "uint16", "int32", "uint32",
                                   "int64", "uint64"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = a.astype(dt)
        return b, Mut(name, how, blame, preserving=bool(np.array_equal(b.astype(np.intp), a)))
    if how == "short":
        return a[:-1], Mut(name, how, blame | {"phi"})
    if how == "long":
        return np.concatenate([a, a[:1]]), Mut(name, how, blame | {"phi"})
    if how == "2d":
        return a[:, None], Mut(name, how, blame)
    if how == "bool":
        return a.astype(bool), Mut(name, how, blame)
    if how == "float":
        return a.astype(float), Mut(name, how, blame)
    if how == "object-huge":
        b = a.astype(object)
        if b.size:
            b[0] = 2**70
        return b, Mut(name, how, blame)
    if how == "list":
        return a.tolist(), Mut(name, how, blame, preserving=_list_preserves(a))
    if how == "none":
        return None, Mut(name, how, blame)
    return _generic_array(draw, a, name, blame | {"phi"}, ctx)


def _n_actions(p):
    if isinstance(p, rc.MatrixProblem):
        return p.W.shape[1]
    if p.layout == "ragged":
        return int(np.min(np.diff(p.offsets))) if len(p.offsets) > 1 else 1
    return p.phi.shape[-2]


def mut_mask(draw, entry, name, m, ctx):
    p = ctx["problem"]
    blame = frozenset([name, "a", "phi", "offsets", "s", "W"])
    phi_rows = _mask_shape(p)
    if m is None:
        m = np.ones(phi_rows, bool)
    m = np.array(m, copy=True)
    how = draw(st.sampled_from(["all-false", "taken-masked", "int01", "int2", "float",
                                "uint8", "random", "list", "generic"]))
    if how == "all-false":
        return np.zeros_like(m), Mut(name, how, blame)
    if how == "taken-masked":
        m[...] = False
        return m, Mut(name, how, blame)
    if how == "int01":
        return m.astype(np.int64), Mut(name, how, blame)
    if how == "int2":
        return m.astype(np.int64) * 2, Mut(name, how, blame)
    if how == "float":
        return m.astype(float), Mut(name, how, blame)
    if how == "uint8":
        return m.astype(np.uint8), Mut(name, how, blame)
    if how == "random":
        flags = draw(st.lists(st.booleans(), min_size=m.size, max_size=m.size))
        return np.array(flags, bool).reshape(m.shape), Mut(name, how, blame)
    if how == "list":
        return m.tolist(), Mut(name, how, blame, preserving=ctx["kw"].get(name) is not None
                               and _list_preserves(m))
    return _generic_array(draw, m, name, blame, ctx)


def _mask_shape(p):
    if isinstance(p, rc.MatrixProblem):
        N = p.W.shape[1]
        return (N,) if p.layout == "single" else (np.shape(p.s)[0], N)
    return p.phi.shape[:-1]


def mut_offsets(draw, entry, name, o, ctx):
    blame = frozenset([name, "phi", "a", "weights", "mask"])
    if o is None:  # a padded call given offsets: an error naming them, never "preserving"
        return np.array([0, 1]), Mut(name, "added", blame)
    o = np.array(o, copy=True)
    how = draw(st.sampled_from(["decreasing", "start", "end-short", "end-long", "short",
                                "negative", "huge", "bool", "float", "2d", "dtype", "list",
                                "generic"]))
    if how == "decreasing" and len(o) > 2:
        o[1], o[2] = o[2], o[1] - 1
    elif how == "start":
        o[0] += 1
    elif how == "end-short":
        o[-1] -= 1
    elif how == "end-long":
        o[-1] += 1
    elif how == "short":
        o = o[:-1]
    elif how == "negative":
        o[draw(st.integers(0, len(o) - 1))] = -1
    elif how == "huge":
        o[draw(st.integers(0, len(o) - 1))] = draw(st.sampled_from([2**31, 2**62, 2**63 - 1]))
    elif how == "bool":
        return o.astype(bool), Mut(name, how, blame)
    elif how == "float":
        return o.astype(float), Mut(name, how, blame)
    elif how == "2d":
        return o[:, None], Mut(name, how, blame)
    elif how == "dtype":
        dt = draw(st.sampled_from(["int32", "int64", "uint64", "uint32", "int16"]))
        return o.astype(dt), Mut(name, how, blame, preserving=True)
    elif how == "list":
        return o.tolist(), Mut(name, how, blame, preserving=_list_preserves(o))
    else:
        return _generic_array(draw, o, name, blame, ctx)
    return o, Mut(name, how, blame)


def mut_weights(draw, entry, name, w, ctx):
    blame = frozenset([name, "a", "phi", "offsets", "s"])
    w = np.asarray(w)
    how = draw(st.sampled_from(["values", "short", "2d", "int", "generic"]))
    if how == "values":
        return _float_values(draw, w, name, blame)
    if w.ndim == 0:  # one state of fastscore.matrix: a scalar weight
        if how in ("short", "2d"):
            return w.reshape(1, 1)[:, :1 if how == "2d" else 0], Mut(name, how, blame)
    if how == "short":
        return w[:-1], Mut(name, how, blame)
    if how == "2d":
        return w[:, None], Mut(name, how, blame)
    if how == "int":
        return w.astype(np.int64), Mut(name, how, blame)
    return _generic_array(draw, w, name, blame, ctx)


TEMPERATURES = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1e308, 1e-310, 5e-324, 1e-300, 2,
                np.float32(0.5), np.float64(2.0), np.int64(3), "2.0", None, True,
                np.array(2.0), np.array([2.0]), 1 + 0j, fractions.Fraction(1, 2), [1.0],
                np.float16(1.5), np.longdouble(0.7)]


def mut_temperature(draw, entry, name, t, ctx):
    v = draw(st.sampled_from(TEMPERATURES))
    return v, Mut(name, f"{v!r}", frozenset([name, "phi", "theta", "s", "W"]))


def mut_out(draw, entry, name, out, ctx):
    p = ctx["problem"]
    blame = frozenset([name])
    if entry.out_shape is None:
        return DELETE, Mut(name, "none", blame)
    shape = entry.out_shape(p)
    if isinstance(p, rc.MatrixProblem):
        dt = rc.matrix_result_dtype(p)
        if shape and isinstance(shape[0], tuple):  # score with a bias: (out_W, out_b)
            return _mut_out_pair(draw, name, shape, dt, ctx)
    else:
        dt = rc.result_dtype(p)
    how = draw(st.sampled_from(["valid", "strided", "fortran", "wrong-dtype", "bigendian",
                                "wrong-shape", "readonly", "broadcast", "unaligned",
                                "alias-phi", "alias-theta", "list", "subclass"]))
    if how == "valid":
        return np.full(shape, np.nan, dt), Mut(name, how, blame, preserving=True)
    if how == "strided":
        big = np.full(shape[:-1] + (2 * shape[-1],) if shape else (2,), np.nan, dt)
        return (big[..., ::2] if shape else big[0:1].reshape(())), \
            Mut(name, how, blame, preserving=True)
    if how == "fortran":  # np.asfortranarray makes a 0-d array 1-d
        y = np.asfortranarray(np.full(shape, np.nan, dt))
        return y, Mut(name, how, blame, preserving=y.shape == tuple(shape))
    if how == "subclass":
        return np.full(shape, np.nan, dt).view(Sub), Mut(name, how, blame, preserving=True)
    if how == "wrong-dtype":
        other = draw(st.sampled_from([np.float32, np.float64, np.int64, np.complex128,
                                      np.longdouble, np.float16]))
        return np.empty(shape, other), Mut(name, how, blame,
                                           preserving=np.dtype(other) == np.dtype(dt))
    if how == "bigendian":
        return np.empty(shape, np.dtype(dt).newbyteorder()), Mut(name, how, blame)
    if how == "wrong-shape":
        bad = draw(st.sampled_from([shape + (1,), shape[:-1], (0,), (1,) + shape,
                                    tuple(s + 1 for s in shape)]))
        return np.empty(bad, dt), Mut(name, how, blame)
    if how == "readonly":
        o = np.empty(shape, dt)
        o.flags.writeable = False
        return o, Mut(name, how, blame)
    if how == "broadcast":
        return np.broadcast_to(np.empty(shape[-1:] if shape else (), dt), shape), \
            Mut(name, how, blame, preserving=False)
    if how == "unaligned":
        return unaligned(np.empty(shape, dt)), Mut(name, how, blame)
    if how == "alias-phi":
        phi = ctx["kw"].get("phi")
        size = int(np.prod(shape))
        if isinstance(phi, np.ndarray) and phi.dtype == dt and phi.size >= size \
                and phi.flags.c_contiguous and phi.flags.writeable:
            return phi.reshape(-1)[:size].reshape(shape), Mut(name, how, blame)
        return np.empty(shape, dt), Mut(name, how, blame, preserving=True)
    if how == "alias-theta":
        theta = ctx["kw"].get("theta")
        if isinstance(theta, np.ndarray) and theta.shape == shape and theta.dtype == dt:
            return theta, Mut(name, how, blame)
        return np.empty(shape, dt), Mut(name, how, blame, preserving=True)
    return np.empty(shape, dt).tolist(), Mut(name, how, blame)


def _mut_out_pair(draw, name, shapes, dt, ctx):
    """out= of fastscore.matrix.score with a bias: the pair (out_W, out_b)."""
    blame = frozenset([name])
    how = draw(st.sampled_from(["pair-valid", "pair-list", "pair-one", "pair-swapped",
                                "pair-wrong-dtype", "pair-readonly", "pair-alias",
                                "pair-triple", "pair-strided"]))
    valid = tuple(np.full(sh, np.nan, dt) for sh in shapes)
    other = np.float64 if dt == np.float32 else np.float32
    if how == "pair-valid":
        return valid, Mut(name, how, blame, preserving=True)
    if how == "pair-strided":
        outs = []
        for sh in shapes:
            big = np.full(sh[:-1] + (2 * sh[-1],), np.nan, dt)
            outs.append(big[..., ::2])
        return tuple(outs), Mut(name, how, blame, preserving=True)
    if how == "pair-list":
        return list(valid), Mut(name, how, blame)
    if how == "pair-one":
        return valid[0], Mut(name, how, blame)
    if how == "pair-swapped":
        return valid[::-1], Mut(name, how, blame)
    if how == "pair-wrong-dtype":
        i = draw(st.integers(0, 1))
        outs = list(valid)
        outs[i] = outs[i].astype(other)
        return tuple(outs), Mut(name, how, blame)
    if how == "pair-readonly":
        valid[1].flags.writeable = False
        return valid, Mut(name, how, blame)
    if how == "pair-alias":  # out_b is a view of out_W's memory
        w = valid[0]
        n = shapes[1]
        flat = w.reshape(-1)
        if flat.size >= int(np.prod(n)):
            return (w, flat[:int(np.prod(n))].reshape(n)), Mut(name, how, blame)
        return valid, Mut(name, how, blame, preserving=True)
    return valid + (valid[1],), Mut(name, how, blame)


THREADS = [None, 1, 2, 3, 8, np.int64(2), np.uint8(3), 2**40, 0, -1, -2**70, 1.5, "2", True,
           np.float64(2.0), [2]]


def mut_n_threads(draw, entry, name, v, ctx):
    v = draw(st.sampled_from(THREADS))
    ok = v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1)
    return v, Mut(name, f"{v!r}", frozenset([name]), preserving=ok)


SEEDS = [None, 0, 1, 2**32, 2**63, 2**64 - 1, np.uint64(7), np.int64(5), -1, 2**64, 2**70,
         1.5, "x", True, [1]]


def mut_seed(draw, entry, name, v, ctx):
    v = draw(st.sampled_from(SEEDS))
    return v, Mut(name, f"{v!r}", frozenset([name]))


def mut_flag(draw, entry, name, v, ctx):
    v = draw(st.sampled_from([True, False, np.bool_(True), 1, 0, "yes", None, 2.0]))
    return v, Mut(name, f"{v!r}", frozenset([name]))


def mut_bias(draw, entry, name, x, ctx):
    """b (N,) of fastscore.matrix, or absent (then a bias of zeros: the same
    policy, another result structure for score and loglik)."""
    p = ctx["problem"]
    N = p.W.shape[1]
    if x is None:
        how = draw(st.sampled_from(["zeros", "wrong-length", "list"]))
        if how == "zeros":
            dt = np.asarray(p.W).dtype
            return np.zeros(N, dt), Mut(name, "added-zeros", frozenset([name]))
        if how == "wrong-length":
            return np.zeros(N + 1), Mut(name, how, frozenset([name, "W"]))
        return [0.0] * N, Mut(name, how, frozenset([name]))
    if draw(st.booleans()):
        return _float_values(draw, x, name, frozenset([name, "s", "W", "temperature"]))
    return _generic_array(draw, x, name, frozenset([name, "W", "s", "mask"]), ctx)


def mut_states(draw, entry, name, x, ctx):
    return mut_features(draw, entry, name, x, ctx)


def mut_matrix(draw, entry, name, x, ctx):
    return mut_features(draw, entry, name, x, ctx)


MUTATORS = {
    "features": mut_features, "params": mut_params, "actions": mut_actions, "mask": mut_mask,
    "offsets": mut_offsets, "weights": mut_weights, "temperature": mut_temperature,
    "out": mut_out, "n_threads": mut_n_threads, "seed": mut_seed, "flag": mut_flag,
    "states": mut_states, "matrix": mut_matrix, "bias": mut_bias,
    "matrix_ref": mut_matrix, "bias_ref": mut_bias,
}


# ---------------------------------------------------------------------------
# Base problems.

SIZES = st.one_of(
    # tiny (most examples)
    st.tuples(st.integers(0, 4), st.integers(1, 5), st.integers(0, 4)),
    # d beyond the stack buffers (malloc'd scratch and theta)
    st.tuples(st.integers(1, 2), st.integers(1, 4), st.sampled_from([255, 256, 257, 300])),
    # large enough for the threaded drivers: chunks of one state, states
    st.sampled_from([(1, 2100, 32), (2, 1100, 40), (70, 40, 32)]),
)


def base_problem(draw, entry):
    B, N, d = draw(SIZES)
    layout = draw(st.sampled_from(entry.layouts))
    if layout == "single":
        B = 1
    elif B == 0 and layout == "ragged":
        B = 1
    dtype = draw(st.sampled_from(["f64", "f32", "mixed"]))
    dt, tdt = {"f64": (np.float64, np.float64), "f32": (np.float32, np.float32),
               "mixed": (np.float32, np.float64)}[dtype]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    masked = draw(st.booleans())
    tau = draw(st.sampled_from([1.0, 0.5, 2.0, 0.1]))
    if entry.problem_kind == "matrix":
        if tdt != dt:  # "mixed": W float64, s float32
            dt = np.float64
        bias = draw(st.booleans())
        p = rc.make_matrix_problem(rng, "batch" if layout != "single" else "single", B=B,
                                   N=N, d=d, dtype=dt, masked=masked, temperature=tau,
                                   bias=bias)
        if dtype == "mixed":
            p.s = p.s.astype(np.float32)
        flags = {f: draw(st.booleans()) for f in entry.needs_flags}
        return p, rc.matrix_call_kwargs(entry, p, flags=flags)
    p = rc.make_problem(rng, layout, B=B, N=N, d=d, dtype=dt, theta_dtype=tdt,
                        masked=masked, temperature=tau)
    flags = {f: draw(st.booleans()) for f in entry.needs_flags}
    return p, entry.call_kwargs(p, flags=flags)


# ---------------------------------------------------------------------------
# Checking one call.

def _names_blamed(msg: str, blame) -> bool:
    for name in blame:
        pat = rf"\b{re.escape(name)}\b" if len(name) == 1 else rf"\b{re.escape(name)}"
        if re.search(pat, msg):
            return True
    return False


def problem_from_kwargs(entry, p, kw):
    """The problem the (possibly mutated) arguments describe, in float64, as
    the reference should see it; raises when it has no clear meaning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if isinstance(p, rc.MatrixProblem):
            s = _real(kw["s"])
            layout = "single" if s.ndim == 1 else "batch"
            a = _ints(kw["a"]) if "a" in kw else p.a
            if layout == "single" and "a" in kw:
                a = int(a)
            w = kw.get("weights")
            w = np.ones(() if layout == "single" else s.shape[0]) if w is None else _real(w)
            q = rc.MatrixProblem(layout, s, _real(kw["W"]), a,
                                 _bools(kw["mask"]) if kw.get("mask") is not None else None,
                                 w, _tau(kw.get("temperature", 1.0)),
                                 _real(kw["b"]) if kw.get("b") is not None else None)
            return q
        phi = _real(kw["phi"])
        offsets = kw.get("offsets")
        layout = "ragged" if offsets is not None else ("batch" if phi.ndim == 3 else "single")
        a = kw.get("a", p.a)
        a = _ints(a)
        if layout == "single":
            a = int(a)
        return rc.Problem(layout, phi, _real(kw["theta"]), a,
                          _bools(kw["mask"]) if kw.get("mask") is not None else None,
                          None if offsets is None else _ints(offsets),
                          _real(kw.get("weights", p.weights)), _tau(kw.get("temperature", 1.0)))


def _real(x):
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError("not real")
    return x.astype(np.float64)


def _ints(x):
    x = np.asarray(x)
    if x.dtype.kind not in "iu" and not (x.dtype.kind == "O"):
        raise TypeError("not ints")
    return x.astype(np.intp)


def _bools(x):
    x = np.asarray(x)
    if x.dtype.kind not in "biu":
        raise TypeError("not bool")
    return x.astype(bool)


def _tau(t):
    t = float(t)
    if not (t > 0 and np.isfinite(t)):
        raise ValueError("bad tau")
    return t


def tolerance(q, result_dtype):
    """Absolute tolerance for a comparison with the float64 reference."""
    if isinstance(q, rc.MatrixProblem):
        return _matrix_tolerance(q, result_dtype)
    phi = np.asarray(q.phi if hasattr(q, "phi") else q.s, np.float64)
    theta = np.asarray(q.theta if hasattr(q, "theta") else q.W, np.float64)
    # masked rows may hold anything: only the finite entries set the scale
    amax = float(np.max(np.abs(phi), where=np.isfinite(phi), initial=0.0))
    tmax = float(np.max(np.abs(theta), where=np.isfinite(theta), initial=0.0))
    tau = q.temperature
    d = max(phi.shape[-1], 1)
    zmax = amax * tmax * d / tau
    n = max(phi.shape[-2] if phi.ndim >= 2 else 1, 1)
    eps = max(np.finfo(result_dtype).eps, np.finfo(np.float64).eps)
    w = float(np.sum(np.abs(getattr(q, "weights", [1.0])))) or 1.0
    with np.errstate(all="ignore"):
        scale = np.float64(1 + amax / tau) ** 2 * (1 + zmax) * w
        return float(64 * n * eps * scale + 1e-300)


def _matrix_tolerance(q, result_dtype):
    """As tolerance(), for z = (s @ W + b) / tau: k + 1 terms per logit, N actions."""
    s = np.asarray(q.s, np.float64)
    W = np.asarray(q.W, np.float64)
    b = np.zeros(0) if q.b is None else np.asarray(q.b, np.float64)
    amax = float(np.max(np.abs(s), where=np.isfinite(s), initial=0.0))
    if q.b is not None:
        amax = max(amax, 1.0)
    tmax = float(np.max(np.abs(np.concatenate([W.reshape(-1), b])), initial=0.0,
                        where=np.isfinite(np.concatenate([W.reshape(-1), b]))))
    tau = q.temperature
    zmax = amax * tmax * (W.shape[0] + 1) / tau
    n = max(W.shape[-1], 1)
    eps = max(np.finfo(result_dtype).eps, np.finfo(np.float64).eps)
    w = float(np.sum(np.abs(np.asarray(q.weights, np.float64)))) or 1.0
    with np.errstate(all="ignore"):
        scale = np.float64(1 + amax / tau) ** 2 * (1 + zmax) * w
        return float(64 * n * eps * scale + 1e-300)


def check_close(got, want, tol, what):
    got_l, want_l = rc.as_arrays(got), rc.as_arrays(want)
    assert len(got_l) == len(want_l), f"{what}: {len(got_l)} results, expected {len(want_l)}"
    for g, w in zip(got_l, want_l):
        assert g.shape == w.shape, f"{what}: shape {g.shape}, reference {w.shape}"
        if not np.all(np.isfinite(w)):
            continue  # reference undefined here
        err = np.max(np.abs(g.astype(np.float64) - w), initial=0.0)
        assert err <= tol, f"{what}: max abs error {err:.3e} > tolerance {tol:.3e}\n{g}\n{w}"


def snapshot(kw):
    snap = {}
    for k, v in kw.items():
        if k == "out":
            continue
        if isinstance(v, np.ndarray) and v.dtype.kind != "O":
            snap[k] = (v.copy(), v)
    return snap


def check_unmodified(snap):
    for k, (copy, orig) in snap.items():
        assert orig.tobytes() == copy.tobytes(), f"the call modified its input {k}"


def check_sample(entry, q, res):
    assert isinstance(res, tuple) and len(res) == 2, f"sample returned {type(res)}"
    actions, logp = (np.asarray(r) for r in res)
    assert actions.dtype.kind in "iu", f"sample actions dtype {actions.dtype}"
    assert np.all(np.isfinite(logp)) and np.all(logp <= 0), f"sample log_probs {logp}"
    acts = np.atleast_1d(actions)
    if isinstance(q, rc.MatrixProblem):
        states = q.logits()
        assert len(acts) == len(states), f"{len(acts)} actions for {len(states)} states"
        for (z, _, _), ab in zip(states, acts):
            assert 0 <= ab < z.shape[0], f"sampled action {ab} out of [0, {z.shape[0]})"
            assert z[ab] > -np.inf, f"sampled action {ab} is masked"
    else:
        states = q.states()
        assert len(acts) == len(states), f"{len(acts)} actions for {len(states)} states"
        for (x, _, m), ab in zip(states, acts):
            assert 0 <= ab < x.shape[0], f"sampled action {ab} out of [0, {x.shape[0]})"
            if m is not None:
                assert m[ab], f"sampled action {ab} is masked"
    q2 = dataclasses.replace(q, a=int(acts[0]) if q.layout == "single" else acts)
    if isinstance(q2, rc.MatrixProblem):
        want = rc._matrix_ref("log_prob")(q2, {})
    else:
        want = rc.ref_log_prob(q2)
    check_close(logp.astype(np.float64), want, tolerance(q2, logp.dtype), "sample log_probs")


def run_one(entry, p, base_kw, kw, muts, last_path=None):
    """Call entry with kw; raise AssertionError on any contract violation."""
    if last_path:
        with open(last_path, "w") as f:
            f.write(f"{entry.name} mutations={[(m.name, m.how) for m in muts]}\n")
            f.write(_describe(kw))
    snap = snapshot(kw)
    blame = frozenset().union(*(m.blame for m in muts)) if muts else frozenset()
    preserving = all(m.preserving for m in muts)
    absurd = any(m.absurd for m in muts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = entry.call(kw)
    except MemoryError:
        assert absurd, f"MemoryError without an absurd size: {muts}"
        return "MemoryError"
    except DOCUMENTED as e:
        msg = str(e)
        check_unmodified(snap)
        assert muts and not preserving, (
            f"a valid call raised {type(e).__name__}: {msg}\nmutations: {muts}")
        if not _names_blamed(msg, blame):
            assert any(re.search(k, msg) for k in KNOWN_UNNAMED), (
                f"{type(e).__name__} names none of {sorted(blame)}: {msg!r}\nmutations: {muts}")
        return type(e).__name__
    # success
    check_unmodified(snap)
    if "out" in kw and isinstance(kw["out"], np.ndarray):
        assert res is kw["out"], "the result is not out"
    elif isinstance(kw.get("out"), tuple):
        assert isinstance(res, tuple) and len(res) == len(kw["out"]) and all(
            r is o for r, o in zip(res, kw["out"])), "the result is not the arrays of out"
    if _known_bad(entry, kw, res):
        return "known-bad"
    for r in rc.as_arrays(res):
        assert r.dtype.kind in "fiu", f"result dtype {r.dtype}"
        if r.dtype.kind == "f":
            assert np.all(np.isfinite(r)), f"non-finite result {r}"
    if entry.deterministic and _seeded(entry, kw):
        again = entry.call(_fresh_out(kw))
        assert rc.bits(again) == rc.bits(res), "two identical calls differ"
    if preserving and base_kw is not None:
        base = entry.call(_fresh_out(base_kw))
        if isinstance(kw.get("out"), np.ndarray) and not isinstance(res, tuple):
            # The result is out, in out's dtype; the call without out may
            # return another one (a one-state log_prob/entropy of float32
            # inputs is the Python float computed in double): out holds
            # that value rounded to its dtype.
            base = np.asarray(base).astype(np.asarray(res).dtype)
        assert rc.bits(base) == rc.bits(res), (
            f"value-preserving mutations changed the result: {muts}\n{res}\n{base}")
    try:
        q = problem_from_kwargs(entry, p, kw)
    except Exception:
        return "ok-unchecked"
    if entry.result_kind == "sample":
        check_sample(entry, q, res)
        return "ok"
    try:
        with np.errstate(all="ignore"):
            want = entry.expected(q, kw)
    except Exception:
        return "ok-unchecked"
    out_dt = rc.as_arrays(res)[0].dtype
    check_close(res, want, tolerance(q, out_dt), entry.name)
    return "ok"


def _seeded(entry, kw):
    """Whether the call is reproducible: seed=None (fresh OS entropy) or a
    Generator (advanced by each call) give different draws every call."""
    for name, kind in entry.params.items():
        if kind == "seed" and name in kw and (
                kw[name] is None or isinstance(kw[name], np.random.Generator)):
            return False
    return True


def _fresh_out(kw):
    kw = dict(kw)
    o = kw.get("out")
    if isinstance(o, np.ndarray) and o.flags.writeable:
        kw["out"] = np.empty_like(o)
    elif isinstance(o, tuple) and all(isinstance(x, np.ndarray) and x.flags.writeable
                                      and not np.shares_memory(x, o[0]) for x in o[1:]):
        kw["out"] = tuple(np.empty_like(x) for x in o)
    return kw


def _describe(kw):
    lines = []
    for k, v in kw.items():
        if isinstance(v, np.ndarray):
            lines.append(f"  {k}: {type(v).__name__} dtype={v.dtype} shape={v.shape} "
                         f"strides={v.strides} flags(c={v.flags.c_contiguous}, "
                         f"aligned={v.flags.aligned}, writeable={v.flags.writeable})"
                         f" values={np.array2string(np.asarray(v).ravel()[:12])}")
        else:
            lines.append(f"  {k}: {v!r}"[:300])
    return "\n".join(lines) + "\n"


def example(draw, entry, last_path=None):
    p, kw = base_problem(draw, entry)
    base_kw = dict(kw)
    n_mut = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]))
    muts = []
    ctx = {"problem": p, "kw": kw}
    for _ in range(n_mut):
        name = draw(st.sampled_from(list(entry.params)))
        kind = entry.params[name]
        try:
            value, m = MUTATORS[kind](draw, entry, name, kw.get(name), ctx)
        except Exception:  # a second mutation of an already odd value: start over
            value, m = MUTATORS[kind](draw, entry, name, base_kw.get(name), ctx)
        if value is DELETE:
            kw.pop(name, None)
        else:
            kw[name] = value
        muts.append(m)
    return run_one(entry, p, base_kw, kw, muts, last_path)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("func")
    ap.add_argument("--examples", type=int,
                    default=int(os.environ.get("FASTSCORE_FUZZ_EXAMPLES", "300")))
    ap.add_argument("--last", default=None, help="write each example here before running it")
    ap.add_argument("--hang-seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    faulthandler.enable()
    entry = rc.BY_NAME[args.func]
    reason = entry.inactive_reason()
    if reason:
        print(f"SKIP {reason}")
        return 0
    outcomes = {}

    @settings(max_examples=args.examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(st.data())
    def fuzz(data):
        faulthandler.dump_traceback_later(args.hang_seconds, exit=True)
        try:
            r = example(data.draw, entry, args.last)
        finally:
            faulthandler.cancel_dump_traceback_later()
        outcomes[r] = outcomes.get(r, 0) + 1

    fuzz()
    print(f"{entry.name}: {sum(outcomes.values())} examples: "
          + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
