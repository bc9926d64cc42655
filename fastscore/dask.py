"""fastscore over Dask arrays: the same functions, one task per chunk of states.

``import fastscore.dask`` needs Dask (``pip install "fastscore[dask]"``);
``import fastscore`` never imports it.

Layout
------
Padded data: ``phi`` (B, N, d) chunked along the batch axis only; ``a``,
``weights`` (B,) and a per-state ``mask`` (B, N) chunked like it (a shared
mask (N,) goes to every chunk).  Long-format data: ``phi`` (rows, d) chunked
along the rows, with every chunk boundary on a state boundary, plus NumPy
``offsets`` (B + 1,); :func:`rechunk_to_states` moves chunk boundaries onto
state boundaries and :func:`state_chunks` gives the matching chunks of the
per-state arrays.  ``theta`` is a NumPy array, sent to every chunk.  NumPy
inputs are accepted and wrapped (a NumPy ``phi`` becomes one chunk, or takes
the batch chunks of a Dask ``a``).

Each chunk of states is one task that calls the in-memory function
(``fastscore.score`` ...) on that chunk, so per-state results are bit for bit
those of the in-memory call.  :func:`loglik` sums the chunks' partial
(value, gradient, Hessian) by a pairwise tree in a fixed order (level by
level, neighbours left to right, an odd last one carried up), so the same
chunks give the same bits whatever the scheduler and the number of workers;
:func:`tree_sum` is that reduction for in-memory partials.

Nothing is computed when a graph is built, except one call of the in-memory
function on a single zero state, which checks ``theta``, ``temperature`` and
the other scalar arguments at once and gives the result dtypes.  Per-chunk
errors (an action out of range, NaN in ``phi``) surface at compute time with
the chunk's global state range appended to the in-memory message.

:class:`MixedLogit` is ``fastscore.choice.MixedLogit`` on a Dask DataFrame
whose partitions hold whole panels, on a ``dask.distributed`` cluster: each
partition's model and draws are built and kept on a worker, each evaluation
is one task per partition returning its panels' values and scores, and the
client sums them in panel order as the kernel does and runs the in-memory
fit's steps, so the fit is the in-memory fit bit for bit.  It imports
``dask.dataframe`` and ``distributed`` when a model is made.
"""
from __future__ import annotations

import functools
import operator

import dask.array as da
import numpy as np
from dask.base import tokenize as _tokenize
from dask.highlevelgraph import HighLevelGraph as _HighLevelGraph

import fastscore as _fs
from fastscore.choice import _mixed

__all__ = [
    "score",
    "log_prob",
    "entropy",
    "probs",
    "sample",
    "loglik",
    "rechunk_to_states",
    "state_chunks",
    "tree_sum",
    "MixedLogit",
]


# --------------------------------------------------------------------------
# Layout: which states and rows each chunk holds, checked once
# --------------------------------------------------------------------------

class _Layout:
    """phi as a Dask array, plus per chunk its state range and (long format)
    its row range and local offsets."""

    def __init__(self, phi, offsets, like=None):
        self.ragged = offsets is not None
        phi = _as_dask_phi(phi, self.ragged, like)
        self.phi = phi
        self.d = phi.shape[-1]
        self.row_chunks = phi.chunks[0]
        if self.ragged:
            offsets = _as_offsets(offsets, phi.shape[0])
            self.n_states = len(offsets) - 1
            bounds = _state_bounds(offsets, self.row_chunks)
            self.state_chunks = tuple(int(n) for n in np.diff(bounds))
            rows = np.concatenate([[0], np.cumsum(self.row_chunks)]).astype(np.intp)
            self.local_offsets = [
                offsets[bounds[k] : bounds[k + 1] + 1] - rows[k] for k in range(len(self.row_chunks))
            ]
        else:
            self.n_states = phi.shape[0]
            self.state_chunks = self.row_chunks
            bounds = np.concatenate([[0], np.cumsum(self.state_chunks)]).astype(np.intp)
            self.local_offsets = [None] * len(self.row_chunks)
        self.bounds = [int(b) for b in bounds]
        self.row_bounds = [0] + [int(r) for r in np.cumsum(self.row_chunks)]
        self.n_chunks = len(self.row_chunks)

    def phi_key(self, k):
        return (self.phi.name, k, 0) if self.ragged else (self.phi.name, k, 0, 0)


def _is_dask(x) -> bool:
    return isinstance(x, da.Array)


def _check_known(x, name):
    if any(np.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError(
            f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() first"
        )


def _as_dask_phi(phi, ragged, like):
    if not _is_dask(phi):
        phi = np.asarray(phi)
        chunks = {i: -1 for i in range(phi.ndim)}
        if like is not None and phi.ndim >= 1 and like.shape[0] == phi.shape[0] and not ragged:
            chunks[0] = like.chunks[0]
        phi = da.from_array(phi, chunks=chunks)
    _check_known(phi, "phi")
    want = 2 if ragged else 3
    if phi.ndim != want:
        if ragged:
            raise ValueError(
                f"with offsets, phi must be 2-D (rows, d) in long format, got shape {phi.shape}"
            )
        if phi.ndim == 2:
            raise ValueError(
                "fastscore.dask takes a batch: phi (B, N, d) chunked along B, or long-format "
                "rows (rows, d) with offsets=; for one state (N, d) call fastscore directly "
                "on phi.compute()"
            )
        raise ValueError(f"phi must be 3-D (B, N, d), got shape {phi.shape}")
    names = ("the feature axis",) if ragged else ("the action axis", "the feature axis")
    for axis, what in zip(range(1, phi.ndim), names):
        if len(phi.chunks[axis]) > 1:
            fix = "{1: -1}" if ragged else "{1: -1, 2: -1}"
            raise ValueError(
                f"phi is chunked along {what} (axis {axis}, chunks {phi.chunks[axis]}); "
                f"fastscore.dask splits only the {'row' if ragged else 'batch'} axis: "
                f"use phi.rechunk({fix})"
            )
    return phi


def _as_offsets(offsets, n_rows):
    if _is_dask(offsets):
        raise TypeError(
            "offsets must be a NumPy array (the task graph depends on their values); "
            "pass offsets.compute()"
        )
    off = np.asarray(offsets)
    if off.ndim != 1 or off.size == 0:
        raise ValueError(f"offsets must be 1-D (B + 1,), got shape {off.shape}")
    if off.dtype.kind not in "iu":
        raise TypeError(f"offsets must be integers, got dtype {off.dtype}")
    off = off.astype(np.int64)
    if off[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {off[0]}")
    if off[-1] != n_rows:
        raise ValueError(f"offsets[-1] must be the number of rows of phi ({n_rows}), got {off[-1]}")
    if off.size > 1 and np.any(np.diff(off) < 0):
        b = int(np.argmax(np.diff(off) < 0))
        raise ValueError(f"offsets must be nondecreasing: offsets[{b + 1}] < offsets[{b}]")
    return off


def _state_bounds(offsets, row_chunks):
    """For row chunks on state boundaries: the first state of every chunk
    (and B at the end).  Empty states on a boundary go to the later chunk."""
    rows = np.cumsum(row_chunks)[:-1]
    idx = np.searchsorted(offsets, rows, side="left")
    bad = (idx >= len(offsets)) | (offsets[np.minimum(idx, len(offsets) - 1)] != rows)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise ValueError(
            f"the row chunks of phi must end on state boundaries: chunk {k} ends at row "
            f"{rows[k]}, inside a state; use fastscore.dask.rechunk_to_states(phi, offsets)"
        )
    return np.concatenate([[0], idx, [len(offsets) - 1]]).astype(np.intp)


def state_chunks(offsets, row_chunks):
    """The number of states in each chunk of long-format rows.

    Parameters
    ----------
    offsets : numpy.ndarray of int, shape (B + 1,)
        Long-format offsets, as for the in-memory functions.
    row_chunks : tuple of int, or a Dask array's chunks
        The row chunks (``phi.chunks[0]``, or ``phi.chunks``); every chunk
        must end on a state boundary.

    Returns
    -------
    tuple of int
        The states in each chunk: chunk ``a`` and ``weights`` (B,) with it,
        ``a.rechunk((state_chunks(offsets, phi.chunks[0]),))``.

    Raises
    ------
    TypeError, ValueError
        For bad offsets, or a chunk that ends inside a state.

    Examples
    --------
    >>> import numpy as np, fastscore.dask as fd
    >>> fd.state_chunks(np.array([0, 2, 5, 6, 9]), (5, 4))
    (2, 2)
    """
    if isinstance(row_chunks, tuple) and row_chunks and isinstance(row_chunks[0], tuple):
        row_chunks = row_chunks[0]
    row_chunks = tuple(int(c) for c in row_chunks)
    off = _as_offsets(offsets, sum(row_chunks))
    return tuple(int(n) for n in np.diff(_state_bounds(off, row_chunks)))


def rechunk_to_states(x, offsets, rows_per_chunk=None):
    """Rechunk long-format rows ``x`` (rows, ...) so that every chunk boundary
    falls on a state boundary.

    Each boundary (the current ones, or every ``rows_per_chunk`` rows) moves
    to the nearest state boundary; a state longer than a chunk gets a chunk
    of its own.  Use it for ``phi`` and a long-format ``mask``; the
    per-state arrays take ``state_chunks(offsets, result.chunks[0])``.

    Parameters
    ----------
    x : dask.array.Array or array_like, shape (rows, ...)
        Long-format rows; a NumPy array is wrapped.
    offsets : numpy.ndarray of int, shape (B + 1,)
        Long-format offsets, ``offsets[-1] == len(x)``.
    rows_per_chunk : int, optional
        Aim for chunks of this many rows instead of keeping the current
        boundaries.

    Returns
    -------
    dask.array.Array
        ``x`` with its row chunks on state boundaries.

    Raises
    ------
    TypeError, ValueError
        For bad offsets, unknown chunk sizes or ``rows_per_chunk < 1``.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastscore.dask as fd
    >>> offsets = np.array([0, 2, 5, 6, 9])                 # states of 2, 3, 1 and 3 rows
    >>> x = da.zeros((9, 2), chunks=(4, 2))                 # boundaries at rows 4, 8: inside states
    >>> fd.rechunk_to_states(x, offsets).chunks[0]
    (5, 4)
    >>> fd.rechunk_to_states(x, offsets, rows_per_chunk=3).chunks[0]
    (2, 4, 3)
    """
    if not _is_dask(x):
        x = da.from_array(np.asarray(x), chunks=-1)
    _check_known(x, "x")
    n_rows = x.shape[0]
    off = _as_offsets(offsets, n_rows)
    if rows_per_chunk is None:
        targets = np.cumsum(x.chunks[0])[:-1]
    else:
        rows_per_chunk = operator.index(rows_per_chunk)
        if rows_per_chunk < 1:
            raise ValueError(f"rows_per_chunk must be >= 1, got {rows_per_chunk}")
        targets = np.arange(rows_per_chunk, n_rows, rows_per_chunk)
    hi = np.minimum(np.searchsorted(off, targets, side="left"), len(off) - 1)
    lo = np.maximum(hi - 1, 0)
    up, down = off[hi], off[lo]
    snapped = np.where(up - targets <= targets - down, up, down)
    cuts = np.unique(snapped[(snapped > 0) & (snapped < n_rows)])
    edges = np.concatenate([[0], cuts, [n_rows]])
    chunks = tuple(int(c) for c in np.diff(edges)) if n_rows else (0,)
    return x.rechunk({0: chunks})


def _per_chunk_array(x, name, lay, *, rows=False, tail=None):
    """``x`` checked: a Dask array chunked like the layout's states (or rows)
    along axis 0 and unchunked beyond, or a NumPy array of the right length
    (each task then gets its slice as a constant: no extra tasks, and the
    slice travels with the task instead of from wherever a task made it)."""
    chunks0 = lay.row_chunks if rows else lay.state_chunks
    n0 = sum(chunks0)
    what = "rows" if rows else "states"
    if _is_dask(x):
        _check_known(x, name)
    else:
        x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] != n0 or (tail is not None and x.shape[1:] != tail):
        want = (n0,) + (tail or ())
        raise ValueError(f"{name} must have shape {want} (one entry per {what[:-1]}), got {x.shape}")
    if not _is_dask(x):
        return x
    for axis in range(1, x.ndim):
        if len(x.chunks[axis]) > 1:
            raise ValueError(
                f"{name} is chunked along axis {axis} (chunks {x.chunks[axis]}); "
                f"use {name}.rechunk({{{axis}: -1}})"
            )
    if x.chunks[0] != chunks0:
        how = (
            "phi.chunks[0]" if not lay.ragged
            else ("phi.chunks[0]" if rows else "fastscore.dask.state_chunks(offsets, phi.chunks[0])")
        )
        raise ValueError(
            f"{name} has chunks {x.chunks[0]} along its first axis, but phi's chunks of {what} "
            f"are {chunks0}; rechunk it: {name}.rechunk({{0: {how}}})"
        )
    return x


class _Inputs:
    """Everything a chunk's task needs: keys of Dask inputs, constants."""

    def __init__(self, phi, theta, offsets, arrays, mask):
        if _is_dask(theta):
            raise TypeError(
                "theta must be a NumPy array (it is sent to every chunk); pass theta.compute()"
            )
        like = next((x for x in arrays.values() if _is_dask(x)), None)
        self.lay = lay = _Layout(phi, offsets, like)
        self.theta = theta
        self.deps = [lay.phi]
        self.arrays = {}  # name -> (Dask or NumPy array, sliced by rows?)
        for name, x in arrays.items():
            if x is not None:
                self.arrays[name] = (_per_chunk_array(x, name, lay), False)
        self.mask_const = None
        if mask is not None:
            m = mask if _is_dask(mask) else np.asarray(mask)
            if lay.ragged:
                self.arrays["mask"] = (_per_chunk_array(m, "mask", lay, rows=True), True)
            elif m.ndim == 2:
                self.arrays["mask"] = (
                    _per_chunk_array(m, "mask", lay, tail=(lay.phi.shape[1],)), False
                )
            elif _is_dask(m):
                if m.ndim != 1:
                    raise ValueError(f"mask must be (N,) or (B, N), got shape {m.shape}")
                _check_known(m, "mask")
                if len(m.chunks[0]) > 1:
                    raise ValueError("a shared mask (N,) must be one chunk: use mask.rechunk(-1)")
                self.mask_const = m
                self.deps.append(m)
            else:
                self.mask_const = m  # the in-memory call checks its shape
        self.deps.extend(x for x, _ in self.arrays.values() if _is_dask(x))

    def task_args(self, k):
        """Names and values (keys or constants) of chunk k's array arguments."""
        names, values = [], []
        lay = self.lay
        for name, (x, by_rows) in self.arrays.items():
            names.append(name)
            if _is_dask(x):
                values.append((x.name, k) + (0,) * (x.ndim - 1))
            else:
                b = lay.row_bounds if by_rows else lay.bounds
                values.append(x[b[k] : b[k + 1]])
        if self.mask_const is not None:
            names.append("mask")
            m = self.mask_const
            values.append((m.name, 0) if _is_dask(m) else m)
        if self.lay.ragged:
            names.append("offsets")
            values.append(self.lay.local_offsets[k])
        return tuple(names), values


def _run_chunk(func, b0, b1, names, static, phi, *values):
    """One chunk: the in-memory call, with the chunk's states in any error."""
    kwargs = dict(static)
    kwargs.update(zip(names, values))
    try:
        return func(phi, **kwargs)
    except (ValueError, IndexError, TypeError) as exc:
        try:
            err = type(exc)(f"{exc} (fastscore.dask: in the chunk of states {b0}:{b1})")
        except Exception:  # pragma: no cover - an exception type with another signature
            raise exc
        raise err from exc


def _tasks(inp, func, static, name, *, sample=False):
    """{(name, k): task} for every chunk; ``static`` are the constant kwargs."""
    lay = inp.lay
    dsk = {}
    for k in range(lay.n_chunks):
        b0, b1 = lay.bounds[k], lay.bounds[k + 1]
        names, values = inp.task_args(k)
        st = dict(static, theta=inp.theta)
        if sample:
            st["state_offset"] = b0
        dsk[(name, k)] = (
            functools.partial(_run_chunk, func, b0, b1, names, st),
            lay.phi_key(k),
            *values,
        )
    return dsk


def _array(dsk_extra, name, deps, chunks, dtype):
    graph = _HighLevelGraph.from_collections(name, dsk_extra, dependencies=deps)
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype=dtype))


def _probe(func, lay, theta, **kwargs):
    """Call the in-memory function on one zero state: checks theta and the
    scalar arguments now, and gives the result (for its dtypes)."""
    if _is_dask(theta):
        raise TypeError("theta must be a NumPy array (it is sent to every chunk); pass theta.compute()")
    phi0 = np.zeros((1, 1, lay.d), dtype=lay.phi.dtype)
    return func(phi0, theta, **kwargs)


def _common(temperature, n_threads):
    st = {"temperature": temperature}
    if n_threads is not None:
        st["n_threads"] = n_threads
    return st


def _per_state(func, name, phi, theta, a, mask, offsets, static, *, kind):
    """A per-state function: kind 'vector' (B, d), 'scalar' (B,), 'probs'."""
    arrays = {} if a is None else {"a": a}
    inp = _Inputs(phi, theta, offsets, arrays, mask)
    lay = inp.lay
    probe_kw = dict(static)
    if a is not None:
        probe_kw["a"] = np.zeros(1, dtype=np.intp)
    dtype = np.asarray(_probe(func, lay, theta, **probe_kw)).dtype
    token = _tokenize(name, lay.phi, theta, inp.arrays, inp.mask_const, lay.local_offsets, static)
    out = f"fastscore-{name}-{token}"
    dsk = _tasks(inp, func, static, out)
    if kind == "vector":
        dsk = {(out, k, 0): t for (_, k), t in dsk.items()}
        chunks = (lay.state_chunks, (lay.d,))
    elif kind == "scalar":
        chunks = (lay.state_chunks,)
    elif lay.ragged:  # probs, long format: one per row
        chunks = (lay.row_chunks,)
    else:
        dsk = {(out, k, 0): t for (_, k), t in dsk.items()}
        chunks = (lay.state_chunks, (lay.phi.shape[1],))
    return _array(dsk, out, inp.deps, chunks, dtype)


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------

def score(phi, theta, a, *, mask=None, temperature=1.0, offsets=None, n_threads=None):
    """:func:`fastscore.score` per chunk of states: a lazy (B, d) Dask array.

    Parameters
    ----------
    phi : dask.array.Array or array_like, shape (B, N, d), or (rows, d) with offsets
        Chunked along the batch (long format: the rows, every chunk ending on
        a state boundary, see :func:`rechunk_to_states`) and not along the
        other axes.  A NumPy array is wrapped.
    theta : numpy.ndarray, shape (d,)
        Sent to every task.
    a : dask.array.Array or array_like of int, shape (B,)
        The taken action of each state, chunked like the states of ``phi``
        (:func:`state_chunks` in long format); a NumPy array is sliced per
        task.
    mask : dask.array.Array or array_like of bool, optional
        (N,) for every state (one chunk), or per state (B, N) chunked like
        ``phi`` (long format: (rows,) chunked like its rows).
    temperature : float, default 1.0
        ``tau > 0``, as in memory.
    offsets : numpy.ndarray of int, shape (B + 1,), optional
        Long format, as for the in-memory call; a NumPy array, since the
        graph depends on its values.
    n_threads : int, optional
        Passed to every chunk's call (``None``: what OpenMP allows in the
        worker; Dask's worker processes set ``OMP_NUM_THREADS=1``).

    Returns
    -------
    dask.array.Array, shape (B, d)
        Chunked like the states of ``phi``; every chunk is bit for bit the
        in-memory result for its states.

    Raises
    ------
    TypeError, ValueError
        When the graph is built: a layout that splits a state or chunks an
        axis other than the batch, arrays chunked unlike ``phi``, a Dask
        ``theta`` or ``offsets``, and what the in-memory call raises for
        ``theta``, ``temperature`` and ``n_threads`` (checked by one call on
        a zero state).
    IndexError, TypeError, ValueError
        At compute time, the in-memory call's errors for a chunk's data (an
        action out of range, NaN in ``phi``), with the chunk's global state
        range appended to the message.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastscore.dask as fd
    >>> phi = da.from_array(np.tile(np.eye(2), (4, 1, 1)), chunks=(2, 2, 2))
    >>> theta, a = np.zeros(2), np.array([0, 1, 0, 1])
    >>> fd.score(phi, theta, a).compute()
    array([[ 0.5, -0.5],
           [-0.5,  0.5],
           [ 0.5, -0.5],
           [-0.5,  0.5]])
    """
    static = _common(temperature, n_threads)
    return _per_state(_fs.score, "score", phi, theta, a, mask, offsets, static, kind="vector")


def log_prob(phi, theta, a, *, mask=None, temperature=1.0, offsets=None, n_threads=None):
    """:func:`fastscore.log_prob` per chunk of states: a lazy (B,) Dask array.

    Parameters
    ----------
    phi : dask.array.Array or array_like, shape (B, N, d), or (rows, d) with offsets
        Chunked along the batch (long format: the rows, every chunk ending on
        a state boundary, see :func:`rechunk_to_states`) and not along the
        other axes.  A NumPy array is wrapped.
    theta : numpy.ndarray, shape (d,)
        Sent to every task.
    a : dask.array.Array or array_like of int, shape (B,)
        The taken action of each state, chunked like the states of ``phi``
        (:func:`state_chunks` in long format); a NumPy array is sliced per
        task.
    mask : dask.array.Array or array_like of bool, optional
        (N,) for every state (one chunk), or per state (B, N) chunked like
        ``phi`` (long format: (rows,) chunked like its rows).
    temperature : float, default 1.0
        ``tau > 0``, as in memory.
    offsets : numpy.ndarray of int, shape (B + 1,), optional
        Long format, as for the in-memory call; a NumPy array, since the
        graph depends on its values.
    n_threads : int, optional
        Passed to every chunk's call (``None``: what OpenMP allows in the
        worker; Dask's worker processes set ``OMP_NUM_THREADS=1``).

    Returns
    -------
    dask.array.Array, shape (B,)
        Chunked like the states of ``phi``, bit for bit the in-memory result.

    Raises
    ------
    TypeError, ValueError
        When the graph is built: a layout that splits a state or chunks an
        axis other than the batch, arrays chunked unlike ``phi``, a Dask
        ``theta`` or ``offsets``, and what the in-memory call raises for
        ``theta``, ``temperature`` and ``n_threads`` (checked by one call on
        a zero state).
    IndexError, TypeError, ValueError
        At compute time, the in-memory call's errors for a chunk's data (an
        action out of range, NaN in ``phi``), with the chunk's global state
        range appended to the message.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastscore.dask as fd
    >>> phi = da.from_array(np.tile(np.eye(2), (4, 1, 1)), chunks=(2, 2, 2))
    >>> theta, a = np.zeros(2), np.array([0, 1, 0, 1])
    >>> fd.log_prob(phi, theta, a).compute()
    array([-0.69314718, -0.69314718, -0.69314718, -0.69314718])
    """
    func = _need("log_prob")
    static = _common(temperature, n_threads)
    return _per_state(func, "log_prob", phi, theta, a, mask, offsets, static, kind="scalar")


def entropy(phi, theta, *, mask=None, temperature=1.0, offsets=None, n_threads=None):
    """:func:`fastscore.entropy` per chunk of states: a lazy (B,) Dask array.

    Parameters
    ----------
    phi : dask.array.Array or array_like, shape (B, N, d), or (rows, d) with offsets
        Chunked along the batch (long format: the rows, every chunk ending on
        a state boundary, see :func:`rechunk_to_states`) and not along the
        other axes.  A NumPy array is wrapped.
    theta : numpy.ndarray, shape (d,)
        Sent to every task.
    mask : dask.array.Array or array_like of bool, optional
        (N,) for every state (one chunk), or per state (B, N) chunked like
        ``phi`` (long format: (rows,) chunked like its rows).
    temperature : float, default 1.0
        ``tau > 0``, as in memory.
    offsets : numpy.ndarray of int, shape (B + 1,), optional
        Long format, as for the in-memory call; a NumPy array, since the
        graph depends on its values.
    n_threads : int, optional
        Passed to every chunk's call (``None``: what OpenMP allows in the
        worker; Dask's worker processes set ``OMP_NUM_THREADS=1``).

    Returns
    -------
    dask.array.Array, shape (B,)
        Chunked like the states of ``phi``, bit for bit the in-memory result.

    Raises
    ------
    TypeError, ValueError
        When the graph is built: a layout that splits a state or chunks an
        axis other than the batch, arrays chunked unlike ``phi``, a Dask
        ``theta`` or ``offsets``, and what the in-memory call raises for
        ``theta``, ``temperature`` and ``n_threads`` (checked by one call on
        a zero state).
    IndexError, TypeError, ValueError
        At compute time, the in-memory call's errors for a chunk's data (an
        action out of range, NaN in ``phi``), with the chunk's global state
        range appended to the message.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastscore.dask as fd
    >>> phi = da.from_array(np.tile(np.eye(2), (4, 1, 1)), chunks=(2, 2, 2))
    >>> theta, a = np.zeros(2), np.array([0, 1, 0, 1])
    >>> fd.entropy(phi, theta).compute()
    array([0.69314718, 0.69314718, 0.69314718, 0.69314718])
    """
    func = _need("entropy")
    static = _common(temperature, n_threads)
    return _per_state(func, "entropy", phi, theta, None, mask, offsets, static, kind="scalar")


def probs(phi, theta, *, mask=None, temperature=1.0, offsets=None, n_threads=None):
    """:func:`fastscore.probs` per chunk of states: a lazy (B, N) Dask array,
    or (rows,) chunked like ``phi`` in long format.

    Parameters
    ----------
    phi : dask.array.Array or array_like, shape (B, N, d), or (rows, d) with offsets
        Chunked along the batch (long format: the rows, every chunk ending on
        a state boundary, see :func:`rechunk_to_states`) and not along the
        other axes.  A NumPy array is wrapped.
    theta : numpy.ndarray, shape (d,)
        Sent to every task.
    mask : dask.array.Array or array_like of bool, optional
        (N,) for every state (one chunk), or per state (B, N) chunked like
        ``phi`` (long format: (rows,) chunked like its rows).
    temperature : float, default 1.0
        ``tau > 0``, as in memory.
    offsets : numpy.ndarray of int, shape (B + 1,), optional
        Long format, as for the in-memory call; a NumPy array, since the
        graph depends on its values.
    n_threads : int, optional
        Passed to every chunk's call (``None``: what OpenMP allows in the
        worker; Dask's worker processes set ``OMP_NUM_THREADS=1``).

    Returns
    -------
    dask.array.Array, shape (B, N) or (rows,)
        Bit for bit the in-memory result; 0 for masked actions.

    Raises
    ------
    TypeError, ValueError
        When the graph is built: a layout that splits a state or chunks an
        axis other than the batch, arrays chunked unlike ``phi``, a Dask
        ``theta`` or ``offsets``, and what the in-memory call raises for
        ``theta``, ``temperature`` and ``n_threads`` (checked by one call on
        a zero state).
    IndexError, TypeError, ValueError
        At compute time, the in-memory call's errors for a chunk's data (an
        action out of range, NaN in ``phi``), with the chunk's global state
        range appended to the message.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastscore.dask as fd
    >>> phi = da.from_array(np.tile(np.eye(2), (4, 1, 1)), chunks=(2, 2, 2))
    >>> theta, a = np.zeros(2), np.array([0, 1, 0, 1])
    >>> fd.probs(phi, theta).compute()
    array([[0.5, 0.5],
           [0.5, 0.5],
           [0.5, 0.5],
           [0.5, 0.5]])
    """
    func = _need("probs")
    static = _common(temperature, n_threads)
    return _per_state(func, "probs", phi, theta, None, mask, offsets, static, kind="probs")


def sample(phi, theta, *, seed=None, mask=None, temperature=1.0, offsets=None, n_threads=None):
    """:func:`fastscore.sample` per chunk of states: lazy ``(actions, log_probs)``.

    With an integer ``seed`` every chunk draws what the in-memory call draws
    for its states (each chunk passes its first state's global index as
    ``state_offset``), so the actions equal ``fastscore.sample(phi, theta,
    seed=seed)`` whatever the chunks.  ``None`` or a ``numpy.random.Generator``
    draws the 64-bit key now, when the graph is built, as the in-memory call
    does (one draw from the Generator), shared by all chunks: recomputing
    the graph gives the same actions.

    Parameters
    ----------
    phi : dask.array.Array or array_like, shape (B, N, d), or (rows, d) with offsets
        Chunked along the batch (long format: the rows, every chunk ending on
        a state boundary, see :func:`rechunk_to_states`) and not along the
        other axes.  A NumPy array is wrapped.
    theta : numpy.ndarray, shape (d,)
        Sent to every task.
    seed : int in [0, 2**64), numpy.random.Generator or None
        The key of the counter-based generator, as in memory.
    mask : dask.array.Array or array_like of bool, optional
        (N,) for every state (one chunk), or per state (B, N) chunked like
        ``phi`` (long format: (rows,) chunked like its rows).
    temperature : float, default 1.0
        ``tau > 0``, as in memory.
    offsets : numpy.ndarray of int, shape (B + 1,), optional
        Long format, as for the in-memory call; a NumPy array, since the
        graph depends on its values.
    n_threads : int, optional
        Passed to every chunk's call (``None``: what OpenMP allows in the
        worker; Dask's worker processes set ``OMP_NUM_THREADS=1``).

    Returns
    -------
    actions : dask.array.Array of intp, shape (B,)
        The drawn actions (indices within their state), what the in-memory
        call draws.
    log_probs : dask.array.Array, shape (B,)
        Each bitwise ``log_prob`` of the drawn action.

    Raises
    ------
    TypeError, ValueError
        When the graph is built: a layout that splits a state or chunks an
        axis other than the batch, arrays chunked unlike ``phi``, a Dask
        ``theta`` or ``offsets``, and what the in-memory call raises for
        ``theta``, ``temperature`` and ``n_threads`` (checked by one call on
        a zero state).
    IndexError, TypeError, ValueError
        At compute time, the in-memory call's errors for a chunk's data (an
        action out of range, NaN in ``phi``), with the chunk's global state
        range appended to the message.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastscore, fastscore.dask as fd
    >>> rng = np.random.default_rng(0)
    >>> phi_np, theta = rng.standard_normal((6, 5, 3)), rng.standard_normal(3)
    >>> actions, log_probs = fd.sample(da.from_array(phi_np, chunks=(2, 5, 3)), theta, seed=7)
    >>> bool(np.array_equal(actions.compute(), fastscore.sample(phi_np, theta, seed=7)[0]))
    True
    """
    func = _need("sample")
    # The key the in-memory call would draw (one draw from a Generator).
    static = dict(_common(temperature, n_threads), seed=_fs._core._seed_key(seed))
    inp = _Inputs(phi, theta, offsets, {}, mask)
    lay = inp.lay
    acts0, logp0 = _probe(func, lay, theta, **static)
    token = _tokenize("sample", lay.phi, theta, inp.arrays, inp.mask_const, lay.local_offsets, static)
    pair = f"fastscore-sample-{token}"
    dsk = _tasks(inp, func, static, pair, sample=True)
    graph = _HighLevelGraph.from_collections(pair, dsk, dependencies=inp.deps)
    out = []
    for i, (tag, dtype) in enumerate(
        (("actions", np.asarray(acts0).dtype), ("log_probs", np.asarray(logp0).dtype))
    ):
        name = f"fastscore-sample-{tag}-{token}"
        layer = {(name, k): (operator.getitem, (pair, k), i) for k in range(lay.n_chunks)}
        g = _HighLevelGraph(
            {**graph.layers, name: layer},
            {**graph.dependencies, name: {pair}},
        )
        out.append(da.Array(g, name, (lay.state_chunks,), meta=np.empty((0,), dtype=dtype)))
    return tuple(out)


def loglik(phi, theta, a, *, weights=None, grad=False, hess=False, mask=None,
           temperature=1.0, offsets=None, n_threads=None):
    """:func:`fastscore.loglik` over chunks of states, summed in a fixed order.

    Every chunk computes its partial sums with the in-memory
    ``fastscore.loglik``; the partials are added by :func:`tree_sum`'s
    pairwise tree, so the bits depend on the chunks only, not on the
    scheduler or the workers.  Compute the outputs together
    (``dask.compute(*result)``) to read the data once.  Only ``theta`` goes
    to each task and ``1 + d + d*d`` numbers come back per chunk.

    Parameters
    ----------
    phi : dask.array.Array or array_like, shape (B, N, d), or (rows, d) with offsets
        Chunked along the batch (long format: the rows, every chunk ending on
        a state boundary, see :func:`rechunk_to_states`) and not along the
        other axes.  A NumPy array is wrapped.
    theta : numpy.ndarray, shape (d,)
        Sent to every task.
    a : dask.array.Array or array_like of int, shape (B,)
        The taken action of each state, chunked like the states of ``phi``
        (:func:`state_chunks` in long format); a NumPy array is sliced per
        task.
    weights : dask.array.Array or array_like, shape (B,), optional
        Chunked like ``a``; any sign, finite.  Default: all 1.
    grad : bool, default False
        Also return the gradient (d,).
    hess : bool, default False
        Also return the Hessian (d, d).
    mask : dask.array.Array or array_like of bool, optional
        (N,) for every state (one chunk), or per state (B, N) chunked like
        ``phi`` (long format: (rows,) chunked like its rows).
    temperature : float, default 1.0
        ``tau > 0``, as in memory.
    offsets : numpy.ndarray of int, shape (B + 1,), optional
        Long format, as for the in-memory call; a NumPy array, since the
        graph depends on its values.
    n_threads : int, optional
        Passed to every chunk's call (``None``: what OpenMP allows in the
        worker; Dask's worker processes set ``OMP_NUM_THREADS=1``).

    Returns
    -------
    dask.array.Array or tuple of them
        Lazy 0-d / (d,) / (d, d) arrays, as the in-memory call returns them:
        ``value``, ``(value, gradient)``, ``(value, hessian)`` or
        ``(value, gradient, hessian)``, float64.

    Raises
    ------
    TypeError, ValueError
        When the graph is built: a layout that splits a state or chunks an
        axis other than the batch, arrays chunked unlike ``phi``, a Dask
        ``theta`` or ``offsets``, and what the in-memory call raises for
        ``theta``, ``temperature`` and ``n_threads`` (checked by one call on
        a zero state).
    IndexError, TypeError, ValueError
        At compute time, the in-memory call's errors for a chunk's data (an
        action out of range, NaN in ``phi``), with the chunk's global state
        range appended to the message.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastscore.dask as fd
    >>> phi = da.from_array(np.tile(np.eye(2), (4, 1, 1)), chunks=(2, 2, 2))
    >>> theta, a = np.zeros(2), np.array([0, 1, 0, 1])
    >>> import dask
    >>> value, grad = dask.compute(*fd.loglik(phi, theta, a, grad=True))
    >>> float(value), grad
    (-2.772588722239781, array([0., 0.]))
    """
    func = _need("loglik")
    static = dict(_common(temperature, n_threads), grad=bool(grad), hess=bool(hess))
    inp = _Inputs(phi, theta, offsets, {"a": a, "weights": weights}, mask)
    lay = inp.lay
    probe_kw = dict(static, a=np.zeros(1, dtype=np.intp))
    parts0 = _as_parts(_probe(func, lay, theta, **probe_kw))
    token = _tokenize("loglik", lay.phi, theta, inp.arrays, inp.mask_const, lay.local_offsets, static)
    part = f"fastscore-loglik-part-{token}"
    dsk = _tasks(inp, func, static, part)
    dsk = {key: (_as_parts, task) for key, task in dsk.items()}
    level = [(part, k) for k in range(lay.n_chunks)]
    if not level:  # no chunks at all: the sum over no states
        zero = tuple(np.zeros_like(p) for p in parts0)
        dsk[(part, 0)] = zero
        level = [(part, 0)]
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for i in range(0, len(level) - 1, 2):
            key = (f"fastscore-loglik-sum-{token}", depth, i // 2)
            dsk[key] = (_add_parts, level[i], level[i + 1])
            nxt.append(key)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    total = level[0]
    graph = _HighLevelGraph.from_collections(part, dsk, dependencies=inp.deps)
    outs = []
    tags = ["value"] + ["grad"] * bool(grad) + ["hess"] * bool(hess)
    for i, p in enumerate(parts0):
        name = f"fastscore-loglik-{tags[i]}-{token}"
        key = (name,) + (0,) * p.ndim
        g = _HighLevelGraph(
            {**graph.layers, name: {key: (operator.getitem, total, i)}},
            {**graph.dependencies, name: {part}},
        )
        chunks = tuple((n,) for n in p.shape)
        outs.append(da.Array(g, name, chunks, meta=np.empty((0,) * p.ndim, dtype=p.dtype)))
    return outs[0] if len(outs) == 1 else tuple(outs)


def _as_parts(result):
    """The in-memory loglik result as a tuple of arrays (value first)."""
    if isinstance(result, tuple):
        return tuple(np.asarray(r, dtype=np.float64) for r in result)
    return (np.asarray(result, dtype=np.float64),)


def _add_parts(p, q):
    return tuple(x + y for x, y in zip(p, q))


def tree_sum(parts):
    """Sum partials as :func:`loglik` does: pairwise, level by level,
    neighbours left to right, an odd last one carried to the next level.

    Parameters
    ----------
    parts : list of arrays, or of tuples of arrays
        In-memory partials, e.g. one ``fastscore.loglik(..., grad=True)``
        result per chunk of states.

    Returns
    -------
    array or tuple of arrays
        The sum, in the order that gives :func:`loglik`'s bits for the same
        chunks.

    Raises
    ------
    ValueError
        For no partials.

    Examples
    --------
    >>> import numpy as np, fastscore.dask as fd
    >>> fd.tree_sum([(1.0, np.ones(2)), (2.0, np.ones(2)), (3.0, np.ones(2))])
    (6.0, array([3., 3.]))
    """
    level = list(parts)
    if not level:
        raise ValueError("tree_sum of no partials")
    while len(level) > 1:
        nxt = [
            _add_parts(level[i], level[i + 1]) if isinstance(level[i], tuple)
            else level[i] + level[i + 1]
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _need(name):
    func = getattr(_fs, name, None)
    if func is None:
        raise NotImplementedError(
            f"fastscore.{name} is not in this build of fastscore ({_fs.__version__}); "
            f"fastscore.dask.{name} wraps it"
        )
    return func


# --------------------------------------------------------------------------
# The mixed logit on a Dask DataFrame partitioned by panel
# --------------------------------------------------------------------------

class MixedLogit:
    """:class:`fastscore.choice.MixedLogit` fitted on a Dask DataFrame whose
    partitions hold whole panels, on a ``dask.distributed`` cluster: the same
    estimates, standard errors and log-likelihood, bit for bit.

    Each partition becomes, on a worker, the in-memory model of its rows
    (with the whole data set's alternatives, so the parameters are the
    same) and its panels' draws; it stays there, in the workers' memory,
    while this object lives.  No worker holds more than its partitions.
    Every evaluation of the simulated log-likelihood is one task per
    partition, which returns each of its panels' log simulated likelihood
    and score; the client adds them in panel order with
    ``fastscore._mixedlogit.panel_sum``, the compensated sum the in-memory
    kernel uses, so the value and gradient are those of one in-memory call.
    The client runs the in-memory fit's own steps (the conditional logit's
    Newton for the start, BFGS from the BHHH matrix, the exact Hessian, the
    sandwich) on those evaluations.

    Parameters
    ----------
    data : dask.dataframe.DataFrame, or str or os.PathLike
        Long-format data, as for the in-memory model, every panel's rows in
        one partition (without ``panel``, every observation's); a path is
        read with ``dask.dataframe.read_parquet``.  Partitions may come in
        any order and hold any set of whole panels (one Parquet file per
        range of panels is the usual layout); empty partitions are left out.
    choice, obs, alt, x, random, panel, n_draws, draws, seed, correlated, asc, x_by_alt, avail, weights
        As for :class:`fastscore.choice.MixedLogit`.  Panels are numbered
        in the order of their sorted labels over the whole data set, and
        panel p takes the rows ``p`` of the in-memory draws: with
        ``"halton"`` and ``"sobol"`` each partition's worker makes its own
        panels' points (the sequence fast-forwarded to point
        ``p * n_draws``); with ``"mlhs"``, ``"random"`` or an array of
        uniforms (panels, n_draws, random columns) the client holds the
        whole array once and sends each partition its rows.
    client : distributed.Client, optional
        The cluster; default: the current client (``distributed.get_client()``).

    Attributes
    ----------
    param_names : list of str
        As for the in-memory model.
    n_partitions : int
        The partitions with rows (one task each per evaluation).
    n_panels, nobs, n_single : int
        Panels, observations in the likelihood and observations left out
        (one available alternative), over all partitions.

    Raises
    ------
    ValueError
        A panel (without ``panel``, an observation) with rows in two
        partitions, naming it and the partitions; no client.
    TypeError
        ``data`` not a Dask DataFrame or a path.
    ChoiceDataError, KeyError, ValueError
        The in-memory model's errors for a partition's data and for the
        arguments, raised on the worker, with ``(fastscore.dask: in
        partition k)`` appended; an observation in two panels
        (``ChoiceDataError``), as in memory.

    Notes
    -----
    Each evaluation moves ``8 (1 + n_params)`` bytes per panel from the
    workers to the client (the panels' values and scores; the
    conditional-logit start's Newton steps ``8 (1 + k + k^2)``, the final
    Hessian ``8 (1 + n_params + n_params^2)``), and the
    client holds per-panel and per-observation vectors (labels, weights,
    sizes): this is for data sets whose rows, times the draws, outgrow one
    machine, not for billions of panels.  Bitwise equality with the
    in-memory fit holds for the same build of fastscore on the client and
    the workers (the kernel's instruction-set copies give the same bits).

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd, distributed
    >>> import fastscore.choice as fc, fastscore.dask as fd
    >>> df = pd.read_csv("examples/data/fishing_long.csv")
    >>> ddf = dd.from_pandas(df.set_index("id"), npartitions=3).reset_index()  # whole observations
    >>> client = distributed.Client(processes=False, n_workers=1, dashboard_address=None)
    >>> kw = dict(choice="choice", obs="id", alt="alt", x=["price", "catch"],
    ...           random={"catch": "normal"}, asc="beach", n_draws=50)
    >>> res = fd.MixedLogit(ddf, client=client, **kw).fit()
    >>> mem = fc.MixedLogit(df, **kw).fit()
    >>> res.params.equals(mem.params), res.bse.equals(mem.bse), res.llf == mem.llf
    (True, True, True)
    >>> client.close()
    """

    def __init__(self, data, choice, obs, alt, x, random, panel=None, n_draws=1000,
                 draws="halton", seed=0, correlated=False, asc=None, x_by_alt=None, avail=None,
                 weights=None, *, client=None):
        from .choice._data import label_codes

        self._client = client = _distributed_client(client)
        frames = client.compute(_as_ddf(data).to_delayed())
        by = obs if panel is None else panel
        method = draws if isinstance(draws, str) else "given"
        if isinstance(draws, str) and draws not in _mixed.DRAWS:
            _mixed.uniform_draws(draws, 0, 1, 1, seed)  # its error
        scans = self._gather([
            client.submit(_on_partition, k, _scan, f, (alt, by, obs), pure=False)
            for k, f in enumerate(frames)])
        keep = [k for k, s in enumerate(scans) if s is not None]
        if not keep:
            raise ValueError("data has no rows")
        scans = [scans[k] for k in keep]
        _one_partition_each([s[1] for s in scans], keep, by, panel is None)
        if panel is not None:
            _one_partition_each([s[2] for s in scans], keep, obs, True, panel=panel)
        alt_values = np.concatenate([s[0] for s in scans])
        alt_labels = label_codes(_pandas().DataFrame({"alt": alt_values}), "alt")[1]

        kw = dict(choice=choice, obs=obs, alt=alt, x=x, random=random, panel=panel,
                  n_draws=n_draws, draws=method, seed=seed, correlated=correlated, asc=asc,
                  x_by_alt=x_by_alt, avail=avail, weights=weights)
        parts = [client.submit(_on_partition, k, _build, frames[k], alt_labels, kw, pure=False)
                 for k in keep]
        del frames
        facts = self._gather([client.submit(_on_partition, k, _facts, p, pure=False)
                              for k, p in zip(keep, parts)])
        first = facts[0]
        self._names = first["names"]
        self.kinds = first["kinds"]
        self._cl_names = self._names[:self.kinds.size]
        self.random = first["random"]
        self.correlated = bool(correlated)
        self.choice, self.obs, self.alt, self.panel = choice, obs, alt, panel
        self.n_draws, self.seed, self.draws_method = int(n_draws), seed, method
        self._partition_ids = keep
        self.n_partitions = len(keep)
        self.nobs = int(sum(f["nobs"] for f in facts))
        self.n_single = int(sum(f["n_single"] for f in facts))

        # Panels numbered in the order of their sorted labels, as in memory.
        counts = [f["panel_labels"].size for f in facts]
        codes, self.panel_labels = label_codes(
            _pandas().DataFrame({"panel": np.concatenate([f["panel_labels"] for f in facts])}),
            "panel")
        self.n_panels = P = int(codes.size)
        bounds = np.r_[0, np.cumsum(counts)]
        self._rows = [codes[bounds[i]:bounds[i + 1]] for i in range(len(facts))]
        self._in_order = bool(np.array_equal(codes, np.arange(P)))
        self.w_panel = None if first["w_panel"] is None else self._assemble(
            [f["w_panel"] for f in facts])
        situations = self._assemble([f["situations"] for f in facts])
        sizes = np.concatenate([f["sizes"] for f in facts])
        if not self._in_order:  # situations in panel order, each panel's in its own
            owner = np.repeat(np.concatenate(self._rows), np.concatenate(
                [f["situations"] for f in facts]))
            sizes = sizes[np.argsort(owner, kind="stable")]
        w_obs = None if self.w_panel is None else np.repeat(self.w_panel, situations)
        self._llnull = _mixed.null_loglik(np.r_[0, np.cumsum(sizes)], w_obs)
        self._panel_name = first["panel_name"]

        # The draws: panel p takes rows p of the in-memory model's.
        q = len(self.random)
        if method in ("halton", "sobol"):
            how = [("rows", method, rows, P, self.n_draws, q, seed) for rows in self._rows]
        else:
            u = self._uniforms(draws, P) if method == "given" else _mixed.uniform_draws(
                method, P, self.n_draws, q, seed)
            how = [("given", client.scatter(np.ascontiguousarray(u[rows]))) for rows in
                   self._rows]
            del u
        self._parts = [client.submit(_on_partition, k, _with_draws, p, h, pure=False)
                       for k, p, h in zip(keep, parts, how)]
        del parts
        self._gather([client.submit(_on_partition, k, _ok, p, pure=False)
                      for k, p in zip(keep, self._parts)])

    # Shared with the in-memory model: parameters from an array, dict or
    # Series, and the check of an array of draws.
    _params = _mixed.MixedLogit._params
    _uniforms = _mixed.MixedLogit._uniforms

    @property
    def param_names(self):
        """The parameters' names, in the order of ``params`` and every result."""
        return list(self._names)

    def _gather(self, futures):
        return self._client.gather(futures)

    def _map(self, func, *args):
        """func(partition, *args) on every partition's worker, in partition order."""
        return self._gather([
            self._client.submit(_on_partition, k, func, p, *args, pure=False)
            for k, p in zip(self._partition_ids, self._parts)])

    def _assemble(self, pieces):
        """Per-panel pieces of the partitions as one array in panel order."""
        if self._in_order:
            return np.concatenate(pieces)
        out = np.empty((self.n_panels,) + pieces[0].shape[1:], dtype=pieces[0].dtype)
        for rows, piece in zip(self._rows, pieces):
            out[rows] = piece
        return out

    def _evaluate(self, theta, scores=False, hessian=False, n_threads=None, grad=True):
        """(value, gradient[, panel scores][, Hessian]) or the value alone,
        from every partition's panels, summed in panel order."""
        from ._mixedlogit import panel_sum

        if hessian:
            out = self._map(_hessian_partition, theta, n_threads)
        else:
            out = self._map(_evaluate_partition, theta, grad, n_threads)
        ll = panel_sum(self._assemble([o[0] for o in out]), self.w_panel)
        if not grad:
            return ll
        S = self._assemble([o[1] for o in out])
        result = [ll, panel_sum(S, self.w_panel)] + [S] * bool(scores)
        if hessian:
            n = len(self._names)
            Hp = self._assemble([o[2] for o in out])
            result.append(panel_sum(Hp.reshape(self.n_panels, n * n), self.w_panel).reshape(n, n))
        return tuple(result)

    def loglik(self, params, grad=False, panel_scores=False, n_threads=None):
        """The simulated log-likelihood at ``params``, as the in-memory
        model's ``loglik`` gives it (the same bits).

        Parameters
        ----------
        params : array_like, dict or pandas.Series
            Values in ``param_names`` order, or keyed by name.
        grad : bool
            Also return the exact gradient (n_params,).
        panel_scores : bool
            Also return each panel's gradient of its log simulated
            likelihood, unweighted (P, n_params), panels in order.
        n_threads : int, optional
            Threads of the kernel in each task.

        Returns
        -------
        float, or tuple
            The value, then the asked outputs in the order grad,
            panel_scores.

        Examples
        --------
        >>> import pandas as pd, dask.dataframe as dd, distributed
        >>> import fastscore.choice as fc, fastscore.dask as fd
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> kw = dict(choice="choice", obs="id", alt="alt", x=["price", "catch"],
        ...           random={"catch": "normal"}, n_draws=20)
        >>> parts = dd.from_pandas(df.set_index("id"), npartitions=2).reset_index()
        >>> memory = fc.MixedLogit(df, **kw)
        >>> with distributed.Client(processes=False, n_workers=1, dashboard_address=None) as c:
        ...     model = fd.MixedLogit(parts, client=c, **kw)
        ...     value, grad = model.loglik([-0.02, 0.9, 0.3], grad=True)
        >>> bool(value == memory.loglik([-0.02, 0.9, 0.3]))
        True
        """
        theta = self._params(params)
        if not (grad or panel_scores):
            return self._evaluate(theta, n_threads=n_threads, grad=False)
        ll, g, S = self._evaluate(theta, scores=True, n_threads=n_threads)
        return tuple([ll] + [v for v, want in ((g, grad), (S, panel_scores)) if want])

    def hessian(self, params, n_threads=None):
        """The exact Hessian of the simulated log-likelihood, as the
        in-memory model's ``hessian`` gives it (the same bits).

        Parameters
        ----------
        params : array_like, dict or pandas.Series
            Where to take it.
        n_threads : int, optional
            Threads of the kernel in each task.

        Returns
        -------
        numpy.ndarray
            (n_params, n_params).

        Examples
        --------
        >>> import pandas as pd, dask.dataframe as dd, distributed
        >>> import fastscore.choice as fc, fastscore.dask as fd
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> kw = dict(choice="choice", obs="id", alt="alt", x=["price", "catch"],
        ...           random={"catch": "normal"}, n_draws=20)
        >>> parts = dd.from_pandas(df.set_index("id"), npartitions=2).reset_index()
        >>> memory = fc.MixedLogit(df, **kw)
        >>> with distributed.Client(processes=False, n_workers=1, dashboard_address=None) as c:
        ...     model = fd.MixedLogit(parts, client=c, **kw)
        ...     H = model.hessian([-0.02, 0.9, 0.3])
        >>> bool((H == memory.hessian([-0.02, 0.9, 0.3])).all())
        True
        """
        return self._evaluate(self._params(params), hessian=True, n_threads=n_threads)[2]

    def start_values(self, n_threads=None):
        """The default starting values of ``fit``: those of the in-memory
        model, bit for bit (its conditional logit by Newton's method, each
        step's sums from the partitions' panels).

        Parameters
        ----------
        n_threads : int, optional
            Threads of the kernels in each task.

        Returns
        -------
        numpy.ndarray
            The conditional logit's estimates for the means, 0.1 for the
            spreads, as :meth:`fastscore.choice.MixedLogit.start_values`.

        Examples
        --------
        >>> import pandas as pd, dask.dataframe as dd, distributed
        >>> import fastscore.choice as fc, fastscore.dask as fd
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> kw = dict(choice="choice", obs="id", alt="alt", x=["price", "catch"],
        ...           random={"catch": "normal"}, n_draws=20)
        >>> parts = dd.from_pandas(df.set_index("id"), npartitions=2).reset_index()
        >>> memory = fc.MixedLogit(df, **kw)
        >>> with distributed.Client(processes=False, n_workers=1, dashboard_address=None) as c:
        ...     model = fd.MixedLogit(parts, client=c, **kw)
        ...     start = model.start_values()
        >>> start.tobytes() == memory.start_values().tobytes()
        True
        """
        def parts(beta, hess):
            out = self._map(_cl_partition, beta, hess, n_threads)
            return tuple(self._assemble([o[i] for o in out]) for i in range(len(out[0])))

        def separating():
            from .choice._optim import combine_separating_counts, separating_from_counts

            return separating_from_counts(combine_separating_counts(
                self._map(_separating_partition)))

        return _mixed.start_newton(parts, self.w_panel, self.kinds, len(self.random),
                                   self.correlated, self._cl_names, separating=separating)

    def fit(self, start=None, method="bfgs", cov="hessian", cluster=None, maxiter=500,
            tol=1e-6, n_threads=None):
        """Maximise the simulated log-likelihood: the in-memory ``fit``'s
        steps, each evaluation a task per partition.

        Parameters
        ----------
        start, method, cov, cluster, maxiter, tol
            As for :meth:`fastscore.choice.MixedLogit.fit`.
        n_threads : int, optional
            Threads of the kernel in each task (the bits do not depend on
            it; Dask's worker processes set ``OMP_NUM_THREADS=1``).

        Returns
        -------
        fastscore.choice.MixedLogitResults
            Its params, bse, llf, Hessian and covariance are the in-memory
            fit's bit for bit; ``individual_coefficients()`` is computed on
            the workers; ``predict()`` is not available (it needs the rows:
            predict with an in-memory model of the data wanted).

        Raises
        ------
        ValueError
            As the in-memory ``fit``: a bad ``method``, ``cov`` or ``cluster``,
            fewer than two clusters.
        ChoiceDataError
            A cluster column that varies within a panel, from its partition.

        Examples
        --------
        >>> import pandas as pd, dask.dataframe as dd, distributed
        >>> import fastscore.choice as fc, fastscore.dask as fd
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> kw = dict(choice="choice", obs="id", alt="alt", x=["price", "catch"],
        ...           random={"catch": "normal"}, n_draws=20)
        >>> parts = dd.from_pandas(df.set_index("id"), npartitions=2).reset_index()
        >>> memory = fc.MixedLogit(df, **kw)
        >>> with distributed.Client(processes=False, n_workers=1, dashboard_address=None) as c:
        ...     model = fd.MixedLogit(parts, client=c, **kw)
        ...     res = model.fit(cov="robust")
        >>> mem = memory.fit(cov="robust")
        >>> res.params.equals(mem.params), res.bse.equals(mem.bse), res.llf == mem.llf
        (True, True, True)
        """
        from .choice._data import label_codes
        from .choice._optim import check_cov

        if method != "bfgs":
            raise ValueError(f"method must be 'bfgs', got {method!r}")
        check_cov(cov, cluster, maxiter)
        groups = n_clusters = None
        if cluster is not None:
            values = self._assemble(self._map(_cluster_partition, cluster))
            groups, labels = label_codes(_pandas().DataFrame({"cluster": values}), "cluster")
            n_clusters = len(labels)
            if n_clusters < 2:
                raise ValueError(f"cov='cluster' needs two or more clusters in {cluster!r}")
        theta = self.start_values(n_threads) if start is None else self._params(start)
        theta, cov_matrix, ll, H, niter, evaluations, converged = _mixed.fit_steps(
            lambda t, scores=False, hessian=False: self._evaluate(t, scores, hessian, n_threads),
            theta, self._names,
            self.w_panel, cov, groups, maxiter, tol)
        return _DaskMixedLogitResults(self, theta, cov_matrix, ll, self._llnull, niter,
                                      converged, cov, cluster, n_clusters, method="BFGS",
                                      evaluations=evaluations, hessian=H)


class _DaskMixedLogitResults(_mixed.MixedLogitResults):
    """MixedLogitResults of a fastscore.dask.MixedLogit fit."""

    def individual_coefficients(self, n_threads=None):
        from .choice._data import label

        pd = _pandas()
        m = self.model
        post = m._assemble(m._map(_posterior_partition, self.params.to_numpy(), n_threads))
        rand = np.flatnonzero(m.kinds)
        index = pd.Index([label(v) for v in m.panel_labels], name=m._panel_name)
        return pd.DataFrame(post[:, rand], index=index, columns=[m._names[j] for j in rand])

    individual_coefficients.__doc__ = _mixed.MixedLogitResults.individual_coefficients.__doc__

    def predict(self, data=None):
        """Not available for a fit on partitions: simulate with an in-memory
        ``fastscore.choice.MixedLogit`` of the data wanted, at ``params``."""
        raise NotImplementedError(
            "predict() of a fastscore.dask.MixedLogit fit is not available (it needs the rows "
            "in memory); make a fastscore.choice.MixedLogit of the data wanted and use "
            "MixedLogitResults.params")


def _pandas():
    import pandas as pd

    return pd


def _distributed_client(client):
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - distributed is in the dask extra's docs
        raise ImportError(
            "fastscore.dask.MixedLogit runs on a dask.distributed cluster: pip install "
            "distributed") from exc
    if client is None:
        try:
            client = distributed.get_client()
        except ValueError:
            raise ValueError(
                "fastscore.dask.MixedLogit needs a dask.distributed Client: pass client=, or "
                "make one first (distributed.Client(...))") from None
    return client


def _as_ddf(data):
    import os

    import dask.dataframe as dd

    if isinstance(data, (str, os.PathLike)):
        data = dd.read_parquet(data)
    if not isinstance(data, dd.DataFrame):
        raise TypeError(
            f"data must be a dask.dataframe.DataFrame whose partitions hold whole panels "
            f"(e.g. dask.dataframe.read_parquet(path)), or the path of a Parquet data set; "
            f"got {type(data).__name__}")
    return data


def _one_partition_each(labels, partition_ids, column, is_obs, panel=None):
    """Every label in one partition only; else the error naming it."""
    pd = _pandas()
    from .choice._data import ChoiceDataError, label

    values = pd.Series(np.concatenate(labels))
    owner = np.repeat(np.asarray(partition_ids), [len(v) for v in labels])
    known = values.notna().to_numpy()
    dup = np.zeros(len(values), dtype=bool)
    dup[known] = values[known].duplicated(keep=False).to_numpy()
    if not dup.any():
        return
    first = values[dup].iloc[0]
    where = sorted(set(owner[dup & (values == first).to_numpy()]))
    parts = f"partitions {', '.join(map(str, where[:-1]))} and {where[-1]} of the data"
    if panel is not None:
        raise ChoiceDataError(
            f"panel column {panel!r} varies within observation {label(first)!r} (its rows are "
            f"in {parts})")
    what = "observation" if is_obs else "panel"
    raise ValueError(
        f"{what} {label(first)!r} (column {column!r}) has rows in {parts}: "
        f"fastscore.dask.MixedLogit needs each {what}'s rows in one partition "
        f"(write the data partitioned by {what}, e.g. one Parquet file per range of "
        f"{column!r})" + ("; without panel= each observation is its own panel" if is_obs else ""))


# The tasks, on the workers: each gets its partition's index for its errors.

def _on_partition(k, func, *args):
    try:
        return func(*args)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        try:
            err = type(exc)(f"{msg} (fastscore.dask: in partition {k})")
        except Exception:  # pragma: no cover - an exception type with another signature
            raise exc
        raise err from exc


def _scan(frame, columns):
    """None for an empty partition; else the distinct values of the
    alternative, panel (or observation) and observation columns."""
    from .choice._data import as_frame, check_columns

    frame = as_frame(frame)
    check_columns(frame, list(dict.fromkeys(columns)))
    if len(frame) == 0:
        return None
    return tuple(frame[c].drop_duplicates().to_numpy() for c in columns)


class _Partition(_mixed.MixedLogit):
    """One partition's in-memory model, its alternatives the data set's; its
    draws set by _with_draws."""

    def __init__(self, frame, alt_labels, kw):
        self._fixed_alt_labels = alt_labels
        super().__init__(frame, **kw)

    def _uniforms(self, draws, n_panels):
        return np.empty((n_panels, 0, len(self.random)))

    def __getstate__(self):
        # The kernel's prepared problem is made again where the partition
        # lands (Dask may move it between workers).
        return dict(self.__dict__, _prepared=None)


def _build(frame, alt_labels, kw):
    return _Partition(frame, alt_labels, kw)


def _facts(part):
    return {
        "names": part.param_names, "kinds": part.kinds, "random": part.random,
        "panel_labels": np.asarray(part.panel_labels), "panel_name": part.panel or part.obs,
        "situations": np.diff(part.panel_offsets), "sizes": np.diff(part.offsets),
        "w_panel": part.w_panel, "nobs": part.nobs, "n_single": part.n_single,
    }


def _with_draws(part, how):
    """The partition with its panels' draws, laid out as the in-memory
    model's (each column's draws contiguous)."""
    import copy

    if how[0] == "rows":
        own = _mixed.uniform_draws_rows(how[1], how[2], *how[3:])  # a fresh array, laid out
    else:
        u = how[1]  # the client's slice: copied, as standard_draws overwrites it
        own = np.empty((u.shape[0], u.shape[2], u.shape[1])).transpose(0, 2, 1)
        own[...] = u
    part = copy.copy(part)
    rand = [n for n in part._spec.x if n in part.random]
    part.xi = _mixed.standard_draws(own, [part.random[n] for n in rand])
    part._prepared = None
    return part


def _ok(part):
    return True


def _evaluate_partition(part, theta, grad, n_threads):
    """The partition's panels' values (and scores)."""
    out = part._kernel(theta, panel_scores=grad, panel_values=True, n_threads=n_threads)
    return (out[2], out[1]) if grad else (out[1],)


def _hessian_partition(part, theta, n_threads):
    """The partition's panels' values, scores and Hessians (P, n, n)."""
    _, scores, values, H = part._kernel(theta, panel_scores=True, panel_values=True,
                                        panel_hessians=True, n_threads=n_threads)
    return values, scores, H


def _cl_partition(part, beta, hess, n_threads):
    return _mixed.cl_panel_parts(part.X, part.offsets, part.chosen, part.panel_offsets, beta,
                                 hess, n_threads)


def _posterior_partition(part, theta, n_threads):
    return part._kernel(theta, posterior=True, n_threads=n_threads)[1]


def _separating_partition(part):
    from .choice._optim import separating_counts

    return separating_counts(part.X, part.chosen, part.offsets, part.w)


def _cluster_partition(part, cluster):
    codes, labels = part._cluster_labels(cluster, "panel")
    return np.asarray(labels)[codes]
