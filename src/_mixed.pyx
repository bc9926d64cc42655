# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, binding=True
"""Compiled kernel of the mixed logit's simulated log-likelihood.

Layers: ``fastscore._mixedlogit.simulated_loglik`` checks and converts the
arrays; ``simulated_loglik_arrays`` here takes them in canonical form (C
order float64 / intp, already checked), releases the GIL and spreads the
panels over the OpenMP threads; each panel is one call of the C panel
function of fastscore_mixed.h (one per instruction set, picked at import)
into the panel's own slots, and the panels' values and gradients are summed
in panel order by one thread, so the bits do not depend on the thread count.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport floor
from libc.string cimport memcpy
from libc.stdlib cimport free, malloc

cimport numpy as cnp

from _common cimport FS_OPENMP, as_thread_count, fs_log1p

import numpy as np

cnp.import_array()


cdef extern from "fastscore_mixed.h" nogil:
    ctypedef struct fsx_problem:
        const double *X
        const Py_ssize_t *offsets
        const Py_ssize_t *chosen
        const Py_ssize_t *panel_offsets
        const double *draws
        Py_ssize_t draws_sp, draws_sr, draws_sj
        const int *kinds
        const Py_ssize_t *rcol
        const double *params
        Py_ssize_t k, q, R, Rp
        Py_ssize_t n_params, max_rows, max_panel_rows
        int chol, want_grad, want_hess
        double log_R
    ctypedef void (*fsx_panel_fn)(const fsx_problem *, Py_ssize_t, double *, double *,
                                  double *, double *, double *) noexcept nogil
    const int FSX_LANES
    Py_ssize_t fsx_scratch_doubles(const fsx_problem *pb)
    int fsx_isa_available(int isa)
    fsx_panel_fn fsx_isa_panel(int isa)


cdef extern from "fastscore_ndtri.h" nogil:
    void fs_ndtri_block(double *x, Py_ssize_t n)


# Below this many multiply-adds (rows x draws x columns) a call runs on one
# thread: a fork/join would cost more than it saves.
cdef enum:
    PARALLEL_MIN_WORK = 200000

BAD_ARRAYS = "inconsistent arrays (fastscore._mixedlogit.simulated_loglik checks and names them)"

ISA_NAMES = ("avx512f", "avx2", "baseline")

cdef int _isa = 2
cdef fsx_panel_fn _panel = fsx_isa_panel(2)


def isa_levels():
    """The instruction sets whose copy of the panel kernel this CPU and build
    can run, best first."""
    return tuple(ISA_NAMES[i] for i in range(3) if fsx_isa_available(i))


def set_isa(name):
    """Use the panel kernel compiled for ``name`` (one of isa_levels(), or
    None for the best); return the previous name.  Every copy gives the same
    bits: this exists to test that."""
    global _isa, _panel
    cdef str old = ISA_NAMES[_isa]
    if name is None:
        name = isa_levels()[0]
    if name not in ISA_NAMES or not fsx_isa_available(ISA_NAMES.index(name)):
        raise ValueError(f"isa must be one of {isa_levels()} or None, got {name!r}")
    _isa = ISA_NAMES.index(name)
    _panel = fsx_isa_panel(_isa)
    return old


def current_isa():
    return ISA_NAMES[_isa]


set_isa(None)


cdef void sum_panels(const double *x, const double *w, Py_ssize_t P, Py_ssize_t stride,
                     Py_ssize_t n, double *out) noexcept nogil:
    """out[a] = sum_p w[p] x[p stride + a] (w NULL: weight 1) in panel order,
    compensated (Neumaier), so long panel lists lose nothing to the sum."""
    cdef Py_ssize_t p, a
    cdef double s, c, t, y
    for a in range(n):
        s = 0.0
        c = 0.0
        for p in range(P):
            y = x[p * stride + a] if w == NULL else w[p] * x[p * stride + a]
            t = s + y
            if abs(s) >= abs(y):
                c += (s - t) + y
            else:
                c += (y - t) + s
            s = t
        out[a] = s + c


def simulated_loglik_arrays(const double[:, ::1] X, const Py_ssize_t[::1] offsets,
                            const Py_ssize_t[::1] chosen, const Py_ssize_t[::1] panel_offsets,
                            const double[:, :, :] draws, const int[::1] kinds,
                            const Py_ssize_t[::1] rcol, const double[::1] params,
                            const double[::1] weights, bint chol, bint want_grad,
                            bint want_scores, bint want_post, object n_threads,
                            bint want_hess=False):
    """(ll, grad, panel_scores, posterior, panel_values, hessian,
    panel_hessians), each None unless asked (panel_values always, and
    panel_hessians with the Hessian), for
    arrays already checked by fastscore._mixedlogit (weights may be None).
    Only what memory safety needs is checked again here."""
    cdef fsx_problem pb
    cdef Py_ssize_t P = panel_offsets.shape[0] - 1
    cdef Py_ssize_t k = X.shape[1], q = rcol.shape[0], R = draws.shape[1]
    cdef Py_ssize_t n_params = params.shape[0], p, size
    cdef int nt = as_thread_count(n_threads)
    cdef double *scr
    cdef int failed[1]
    cdef double ll
    cdef fsx_panel_fn panel = _panel
    cdef Py_ssize_t S = chosen.shape[0], s, n, max_rows = 1, max_panel_rows = 0, kept
    if (draws.shape[0] != P or draws.shape[2] != q or kinds.shape[0] != k or R < 1
            or offsets.shape[0] != S + 1 or P < 0 or panel_offsets[0] != 0
            or panel_offsets[P] != S or offsets[0] != 0 or offsets[S] != X.shape[0]
            or (weights is not None and weights.shape[0] != P)
            or n_params != k + (q * (q + 1) // 2 if chol else q)):
        raise ValueError(BAD_ARRAYS)
    for s in range(S):
        n = offsets[s + 1] - offsets[s]
        if n < 1 or chosen[s] < 0 or chosen[s] >= n:
            raise ValueError(BAD_ARRAYS)
        max_rows = max(max_rows, n)
    for p in range(P):
        if panel_offsets[p + 1] <= panel_offsets[p]:
            raise ValueError(BAD_ARRAYS)
        kept = (offsets[panel_offsets[p + 1]] - offsets[panel_offsets[p]]
                - (panel_offsets[p + 1] - panel_offsets[p]))
        max_panel_rows = max(max_panel_rows, kept)
    for s in range(3):
        if draws.strides[s] < 0 or draws.strides[s] % sizeof(double):
            raise ValueError(BAD_ARRAYS)
    for s in range(q):
        if rcol[s] < 0 or rcol[s] >= k or kinds[rcol[s]] == 0:
            raise ValueError(BAD_ARRAYS)
    pb.X = &X[0, 0] if X.shape[0] > 0 else NULL
    pb.offsets = &offsets[0]
    pb.chosen = &chosen[0] if chosen.shape[0] > 0 else NULL
    pb.panel_offsets = &panel_offsets[0]
    pb.draws = &draws[0, 0, 0] if draws.size > 0 else NULL
    pb.draws_sp = draws.strides[0] // sizeof(double)
    pb.draws_sr = draws.strides[1] // sizeof(double)
    pb.draws_sj = draws.strides[2] // sizeof(double)
    pb.kinds = &kinds[0] if k > 0 else NULL
    pb.rcol = &rcol[0] if q > 0 else NULL
    pb.params = &params[0] if n_params > 0 else NULL
    pb.k = k
    pb.q = q
    pb.R = R
    pb.Rp = (R + FSX_LANES - 1) // FSX_LANES * FSX_LANES
    pb.n_params = n_params
    pb.max_rows = max_rows
    pb.chol = chol
    pb.want_grad = want_grad or want_scores or want_hess
    pb.want_hess = want_hess
    pb.max_panel_rows = max_panel_rows if pb.want_grad else 0
    pb.log_R = fs_log1p(<double>(R - 1))

    cdef cnp.ndarray ll_p = np.empty(P)
    cdef cnp.ndarray scores = np.empty((P if pb.want_grad else 0, n_params))
    cdef cnp.ndarray post = np.empty((P if want_post else 0, k))
    cdef cnp.ndarray hess_p = np.empty((P if want_hess else 0, n_params, n_params))
    cdef double *hv = <double *>cnp.PyArray_DATA(hess_p)
    cdef Py_ssize_t nn = n_params * n_params
    cdef double *llv = <double *>cnp.PyArray_DATA(ll_p)
    cdef double *sv = <double *>cnp.PyArray_DATA(scores)
    cdef double *pv = <double *>cnp.PyArray_DATA(post)
    cdef const double *wv = &weights[0] if weights is not None and P > 0 else NULL
    size = fsx_scratch_doubles(&pb)
    failed[0] = 0
    cdef double work = <double>offsets[offsets.shape[0] - 1] * pb.Rp * (k + 1)
    if not (FS_OPENMP and nt > 1 and P > 1 and work >= PARALLEL_MIN_WORK):
        nt = 1
    with nogil, parallel(num_threads=nt):
        scr = <double *>malloc(size * sizeof(double))
        for p in prange(P, schedule='dynamic'):
            if scr == NULL:
                failed[0] = 1
            else:
                panel(&pb, p, scr, llv + p, sv + p * n_params if pb.want_grad else NULL,
                      pv + p * k if want_post else NULL, hv + p * nn if want_hess else NULL)
        free(scr)
    if failed[0]:
        raise MemoryError("no memory for the mixed-logit kernel's per-thread scratch")
    cdef cnp.ndarray grad = None
    sum_panels(llv, wv, P, 1, 1, &ll)
    if want_grad:
        grad = np.empty(n_params)
        sum_panels(sv, wv, P, n_params, n_params, <double *>cnp.PyArray_DATA(grad))
    cdef cnp.ndarray hess = None
    if want_hess:
        hess = np.empty((n_params, n_params))
        sum_panels(hv, wv, P, nn, nn, <double *>cnp.PyArray_DATA(hess))
    return (ll, grad, scores if want_scores else None, post if want_post else None, ll_p, hess,
            hess_p if want_hess else None)


def panel_sum_arrays(const double[:, ::1] x, const double[::1] w):
    """(n,) the columns of x (P, n) summed over the panels as
    simulated_loglik_arrays sums them (w None: weight 1)."""
    cdef Py_ssize_t P = x.shape[0], n = x.shape[1]
    if w is not None and w.shape[0] != P:
        raise ValueError(BAD_ARRAYS)
    out = np.empty(n)
    cdef double[::1] o = out
    if n > 0:
        sum_panels(&x[0, 0] if P > 0 else NULL, &w[0] if w is not None and P > 0 else NULL,
                   P, n, n, &o[0])
    return out


# The Halton generator.  A point's coordinate is SciPy's sum
# sum_j T[j][digit_j] taken in the order j = 0, 1, ... (least significant
# digit first, up to 53 terms in base 2).  The low HALTON_TABLE digits' part
# of that sum is a table lookup (its entries summed in the same order).  The
# higher digits are the same for a block of base^m consecutive indices; their
# terms, added one by one to a partial sum x that stays in one binade
# [2^e, 2^(e+1)), each add their value rounded to that binade's spacing (x is
# a multiple of it), so their whole effect is one exact addition per binade,
# computed once a block.  Points where that does not hold (the sum would
# leave its binade, a rounding tie, a tiny x) take the sum term by term.
cdef enum:
    HALTON_MAX_DIGITS = 64
    HALTON_TABLE = 2048  # entries of a column's low-digit table (16 KiB; base^1 if larger)
    HALTON_BINADES = 8  # x >= 2^-8 takes the fast path


cdef double halton_sum(const double *T, Py_ssize_t stride, Py_ssize_t count, long base,
                       long long idx) noexcept nogil:
    """The radical inverse of idx term by term, in SciPy's order."""
    cdef double acc = 0.0
    cdef Py_ssize_t j
    for j in range(count):
        acc += T[j * stride + <int>(idx % base)]
        idx = idx // base
    return acc


cdef void halton_block(const double *T, Py_ssize_t stride, Py_ssize_t count, long base,
                       Py_ssize_t m, long long block, double *tail) noexcept nogil:
    """tail[i] for x in binade [2^(-1-i), 2^-i): what the terms of digits m
    and above of the block's indices add to x, exactly (the sum of the terms
    rounded to that binade's spacing 2^(-53-i)), or -1 where that shortcut
    does not hold for the binade (a tie, or a sum that leaves it)."""
    cdef double c[HALTON_MAX_DIGITS]
    cdef Py_ssize_t j, i, nc = count - m
    cdef double scale = 9007199254740992.0  # 2^53: 1 / spacing, binade 0
    cdef double k, f, fr
    cdef long long D
    for j in range(nc):
        c[j] = T[(m + j) * stride + <int>(block % base)]
        block = block // base
    for i in range(HALTON_BINADES):
        D = 0
        for j in range(nc):
            k = c[j] * scale  # exact: a power of two
            f = floor(k)
            fr = k - f
            if fr == 0.5:
                D = -1
                break
            D += <long long>f + (fr > 0.5)
            if D >= (<long long>1 << 52):
                D = -1
                break
        tail[i] = -1.0 if D < 0 else <double>D / scale
        scale *= 2.0


cdef inline int exponent_field(double x) noexcept nogil:
    cdef unsigned long long bits
    memcpy(&bits, &x, 8)
    return <int>(bits >> 52)


cdef void halton_run(const double *T, Py_ssize_t stride, Py_ssize_t count, long base,
                     const double *low, Py_ssize_t m, Py_ssize_t bm,
                     long long first, Py_ssize_t n, double lo, double hi,
                     double *tail, long long *tail_block, double *out) noexcept nogil:
    """out[r] for r < n: the scrambled radical inverse of index first + r,
    clipped to [lo, hi]; low[L] the sum of the terms of the m low digits of
    L < bm = base^m; tail the halton_block of block *tail_block (updated
    here: consecutive panels mostly share a block)."""
    cdef long long block = first // bm
    cdef Py_ssize_t L = <Py_ssize_t>(first % bm), r
    cdef int e, i
    cdef double x, y
    if block != tail_block[0]:
        halton_block(T, stride, count, base, m, block, tail)
        tail_block[0] = block
    for r in range(n):
        x = low[L]
        # x in binade i = 1022 - e, [2^(-1-i), 2^-i); 0 has field 0
        e = exponent_field(x)
        i = 1022 - e
        y = -1.0
        if 0 <= i < HALTON_BINADES and tail[i] >= 0.0:
            y = x + tail[i]  # exact while in x's binade
            if exponent_field(y) != e:
                y = -1.0
        if y < 0.0:
            y = halton_sum(T, stride, count, base, first + r)
        out[r] = min(max(y, lo), hi)
        L += 1
        if L == bm:
            L = 0
            block += 1
            halton_block(T, stride, count, base, m, block, tail)
            tail_block[0] = block


def halton_into(double[:, :, ::1] out, const Py_ssize_t[::1] panels,
                const double[:, :, ::1] tables, const Py_ssize_t[::1] counts,
                const long[::1] bases, double lo, double hi, object n_threads):
    """Fill out (P, q, R): out[i, d, r] the scrambled Halton coordinate d of
    point panels[i] R + r, from tables[d, j, v] = perm_dj(v) / base_d^(j + 1)
    (the products SciPy's generator forms), summed digit by digit in its
    order; panels over the threads (the same points for any number)."""
    cdef Py_ssize_t P = out.shape[0], q = out.shape[1], R = out.shape[2], p, d
    cdef Py_ssize_t stride = tables.shape[2]
    cdef int nt = as_thread_count(n_threads)
    if (tables.shape[0] != q or counts.shape[0] != q or bases.shape[0] != q
            or panels.shape[0] != P):
        raise ValueError(BAD_ARRAYS)
    for p in range(P):
        # indices up to 2^62: the digits' tables cover at least 2^53
        if panels[p] < 0 or panels[p] > (1 << 62) // max(R, 1):
            raise ValueError(BAD_ARRAYS)
    for d in range(q):
        if (counts[d] < 1 or counts[d] > HALTON_MAX_DIGITS or counts[d] > tables.shape[1]
                or bases[d] < 2 or bases[d] > stride):
            raise ValueError(BAD_ARRAYS)
    if P == 0 or q == 0 or R == 0:
        return
    if not (FS_OPENMP and nt > 1 and P > 1 and P * R * q >= PARALLEL_MIN_WORK):
        nt = 1
    # Each column's low-digit table: its m lowest digits' terms summed in
    # SciPy's order, for every value of those digits.
    ms = np.ones(q, dtype=np.intp)
    for d in range(q):
        while ms[d] < counts[d] and bases[d] ** (ms[d] + 1) <= HALTON_TABLE:
            ms[d] += 1
    bms = np.array([bases[d] ** ms[d] for d in range(q)], dtype=np.intp)
    lows = np.empty((q, bms.max()))
    cdef Py_ssize_t[::1] m_v = ms, bm_v = bms
    cdef double[:, ::1] low_v = lows
    cdef Py_ssize_t L
    for d in range(q):
        for L in range(bm_v[d]):
            low_v[d, L] = halton_sum(&tables[d, 0, 0], stride, m_v[d], bases[d], L)
    cdef double *tails
    cdef long long *blocks
    cdef int no_memory[1]
    cdef Py_ssize_t dd
    no_memory[0] = 0
    with nogil, parallel(num_threads=nt):
        # each thread's blocks of tails, one per column
        tails = <double *>malloc(q * HALTON_BINADES * sizeof(double))
        blocks = <long long *>malloc(q * sizeof(long long))
        if tails != NULL and blocks != NULL:
            for dd in range(q):
                blocks[dd] = -1
        for p in prange(P, schedule='static'):
            if tails == NULL or blocks == NULL:
                no_memory[0] = 1
            else:
                for d in range(q):
                    halton_run(&tables[d, 0, 0], stride, counts[d], bases[d], &low_v[d, 0],
                               m_v[d], bm_v[d], <long long>panels[p] * R, R, lo, hi,
                               &tails[d * HALTON_BINADES], &blocks[d], &out[p, d, 0])
        free(tails)
        free(blocks)
    if no_memory[0]:
        raise MemoryError("no memory for the Halton generator's per-thread tables")


def ndtri_columns(double[:, :, ::1] a, const Py_ssize_t[::1] cols, object n_threads):
    """a[p, j, :] = scipy.special.ndtri(a[p, j, :]) in place (the same bits)
    for a (P, q, R) and the columns j in cols; panels over the threads."""
    cdef Py_ssize_t P = a.shape[0], q = a.shape[1], R = a.shape[2], p, i
    cdef Py_ssize_t nc = cols.shape[0]
    cdef int nt = as_thread_count(n_threads)
    for i in range(nc):
        if cols[i] < 0 or cols[i] >= q:
            raise ValueError(BAD_ARRAYS)
    if P == 0 or R == 0 or nc == 0:
        return
    if not (FS_OPENMP and nt > 1 and P > 1 and P * R * nc >= PARALLEL_MIN_WORK):
        nt = 1
    with nogil:
        for p in prange(P, schedule='static', num_threads=nt):
            for i in range(nc):
                fs_ndtri_block(&a[p, cols[i], 0], R)
