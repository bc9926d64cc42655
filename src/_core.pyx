# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, binding=True
"""Compiled core of fastscore: the one-pass softmax score kernel.

Layers (design.md, section 5):

* ``score`` is the public entry point (``fastscore.score``).  Arguments
  already in canonical form (NumPy arrays of the kernel's dtypes, an ``int``
  action) are validated by C-level checks in ``score_canonical``, which also
  allocates the result; anything else is first converted by
  ``fastscore._coerce.coerce`` (Python), so the common call pays nothing for
  rare input types.
* ``run_batch`` drives the threads; it holds no Python objects.
* ``partial_*`` and ``state_score`` are ``noexcept nogil`` helpers working on
  one state, or one chunk of rows of one state.

A state's work is held in a ``Partial``: the running maximum logit ``m``, the
normaliser ``l = sum_k exp(z_k - m)`` and ``g = sum_k exp(z_k - m) (phi_a -
phi_k)``.  Partials over disjoint rows merge associatively; the score is
``(g / l) / tau``.  Companions of the same pass (log pi(a), entropy) add fields
to ``Partial`` and a ``partial_finish_*`` of their own.
"""

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsSsize_t, PyLong_CheckExact
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, exp, fabs, fma, isfinite
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp
import operator
import os

import numpy as np

from fastscore._coerce import coerce

cnp.import_array()
fs_init(os.environ.get("FASTSCORE_NO_FMA", "").strip().lower() in ("1", "true", "yes", "on"))


cdef extern from "fastscore_simd.h" nogil:
    ctypedef struct fs_theta:
        const double *val
        const double *hi
        const double *lo
        int huge
    Py_ssize_t fs_padded(Py_ssize_t d)
    const double FS_SPLIT_MAX
    void fs_split(double x, double *hi, double *lo)
    double fs_dot2_f64(const double *x, const fs_theta *t, Py_ssize_t n, double *rest)
    double fs_dot2_f32(const float *x, const fs_theta *t, Py_ssize_t n, double *rest)
    double fs_dot_f32(const float *x, const fs_theta *t, Py_ssize_t n)
    void fs_block_acc_f64(double *g, const double *xa, const double **rows, const double *w,
                          int nr, Py_ssize_t d)
    void fs_block_acc_f32(double *g, const float *xa, const float **rows, const double *w,
                          int nr, Py_ssize_t d)
    double fs_sum_f64(const double *x, Py_ssize_t n)
    int fs_store_f64(char *out, Py_ssize_t stride, const double *g, double scale, double tau,
                     Py_ssize_t n)
    int fs_store_f32(char *out, Py_ssize_t stride, const double *g, double scale, double tau,
                     Py_ssize_t n)
    const char *fs_simd_level()
    struct fs_kernel_set:
        const char *level
    fs_kernel_set fs_kern
    void fs_init(int force_split)


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FS_OPENMP 1
    static int fs_omp_max_threads(void) { return omp_get_max_threads(); }
    static int fs_omp_num_procs(void) { return omp_get_num_procs(); }
    #else
    #define FS_OPENMP 0
    static int fs_omp_max_threads(void) { return 1; }
    static int fs_omp_num_procs(void) { return 1; }
    #endif
    /* Keep the first failing state (and its status) whatever the thread count. */
    static void fs_record_failure(Py_ssize_t b, int st, Py_ssize_t *bad, int *first) {
    #ifdef _OPENMP
    #pragma omp critical(fastscore_failure)
    #endif
        {
            if (b < *bad) {
                *bad = b;
                *first = st;
            }
        }
    }
    #ifndef FASTSCORE_CFLAGS
    #define FASTSCORE_CFLAGS "unknown"
    #endif
    """
    const int FS_OPENMP
    const char *FASTSCORE_CFLAGS
    int fs_omp_max_threads() nogil
    int fs_omp_num_procs() nogil
    void fs_record_failure(Py_ssize_t b, int st, Py_ssize_t *bad, int *first) nogil


ctypedef fused real_t:
    float
    double


cdef enum:
    # Rows whose logits are computed before the running max is updated once.
    BLOCK_ROWS = 32
    # Rows of one partial state.  States with more rows are split into chunks
    # of exactly this size and the partials merged left to right, whatever the
    # thread count, so the result does not depend on it.
    CHUNK_ROWS = 1024
    # Elements of phi below which a call runs on the calling thread: a
    # fork/join costs microseconds, a small call's whole budget.
    PARALLEL_MIN_WORK = 1 << 16
    # Elements of phi below which the GIL is kept (releasing it costs more).
    NOGIL_MIN_WORK = 1 << 12
    # theta up to this length is prepared in a stack buffer.
    STACK_D = 256

cdef enum Status:
    OK = 0
    NONFINITE_LOGIT = 1
    NONFINITE_RESULT = 2
    NO_MEMORY = 3
    ACTION_CHANGED = 4


cdef struct Problem:
    # Everything shared by the states of one call; strides are in bytes.
    const char *phi
    Py_ssize_t phi_sb, phi_sn
    Py_ssize_t n_actions, d
    fs_theta theta
    double tau
    const char *act
    Py_ssize_t act_s
    const char *mask          # NULL: every action legal
    Py_ssize_t mask_sb, mask_sn
    char *out
    Py_ssize_t out_sb, out_sd
    bint out_f32


cdef struct Partial:
    double m      # running maximum logit (-inf while empty) ...
    double m_lo   # ... as the unevaluated sum m + m_lo
    double l      # sum_k exp(z_k - m)
    double *g     # (d,): sum_k exp(z_k - m) (phi_a - phi_k)


# ---------------------------------------------------------------------------
# Helpers: one row, one chunk of rows, one state.

cdef inline double row_logit(const real_t *row, const Problem *pr, double *z_lo) noexcept nogil:
    """Logit phi_k . theta / tau of one row as an unevaluated sum z + z_lo.

    float64 results keep the logit to about twice the working precision, so
    exp(z_k - m) is accurate even for logits in the thousands; float32
    results need no more than a double (z_lo = 0).
    """
    cdef double s, s_lo, z
    if real_t is float:
        if pr.out_f32:
            z_lo[0] = 0.0
            s = fs_dot_f32(row, &pr.theta, pr.d)
            return s if pr.tau == 1.0 else s / pr.tau
        s = fs_dot2_f32(row, &pr.theta, pr.d, &s_lo)
    else:
        s = fs_dot2_f64(row, &pr.theta, pr.d, &s_lo)
    if pr.tau == 1.0:
        z_lo[0] = s_lo
        return s
    z = s / pr.tau
    z_lo[0] = (fma(-z, pr.tau, s) + s_lo) / pr.tau  # fma: s - z tau, exactly
    return z


cdef inline void block_accumulate(double *g, const real_t *row_a, const real_t **rows,
                                  const double *w, int n_rows, Py_ssize_t d) noexcept nogil:
    if real_t is double:
        fs_block_acc_f64(g, row_a, rows, w, n_rows, d)
    else:
        fs_block_acc_f32(g, row_a, rows, w, n_rows, d)


cdef inline void partial_clear(Partial *p, Py_ssize_t d) noexcept nogil:
    p.m = -INFINITY
    p.m_lo = 0.0
    p.l = 0.0
    memset(p.g, 0, d * sizeof(double))


cdef inline double exp_diff(double x, double x_lo, double y, double y_lo) noexcept nogil:
    """exp((x + x_lo) - (y + y_lo)) for x <= y."""
    return exp((x - y) + (x_lo - y_lo))


cdef void partial_raise_max(Partial *p, double m_new, double m_new_lo, Py_ssize_t d) noexcept nogil:
    """Re-express p relative to a larger maximum m_new + m_new_lo."""
    cdef double c
    cdef Py_ssize_t i
    if p.l != 0.0:
        c = exp_diff(p.m, p.m_lo, m_new, m_new_lo)
        p.l *= c
        for i in range(d):
            p.g[i] *= c
    p.m = m_new
    p.m_lo = m_new_lo


cdef Status partial_add_rows(Partial *p, const Problem *pr, const real_t *phi_b,
                             const char *mask_b, Py_ssize_t a,
                             Py_ssize_t k0, Py_ssize_t k1) noexcept nogil:
    """Add rows [k0, k1) of one state to p, reading each row of phi once."""
    cdef double z[BLOCK_ROWS]
    cdef double z_lo[BLOCK_ROWS]
    cdef double weights[BLOCK_ROWS]
    cdef const real_t *rows[BLOCK_ROWS]
    cdef double zk, w, block_max, block_max_lo
    cdef Py_ssize_t kb, ke, k
    cdef int n_rows
    cdef const real_t *row_a = <const real_t *>(<const char *>phi_b + a * pr.phi_sn)
    kb = k0
    while kb < k1:
        ke = min(kb + BLOCK_ROWS, k1)
        for k in range(kb, ke):
            if mask_b != NULL and not mask_b[k * pr.mask_sn]:
                z[k - kb] = -INFINITY
                continue
            zk = row_logit(<const real_t *>(<const char *>phi_b + k * pr.phi_sn), pr,
                           &z_lo[k - kb])
            if not (isfinite(zk) and isfinite(z_lo[k - kb])):
                return NONFINITE_LOGIT
            z[k - kb] = zk
        # The block's maximum in a loop of its own: a branch on a logit that
        # mispredicts inside the loop above, where the logit arrives late,
        # discards the next row's dot product already under way.
        block_max = -INFINITY
        block_max_lo = 0.0
        for k in range(ke - kb):
            if z[k] > block_max:
                block_max = z[k]
                block_max_lo = z_lo[k]
        if block_max > p.m:
            partial_raise_max(p, block_max, block_max_lo, pr.d)
        n_rows = 0
        for k in range(kb, ke):
            if z[k - kb] == -INFINITY:
                continue
            w = exp_diff(z[k - kb], z_lo[k - kb], p.m, p.m_lo)
            p.l += w
            if k != a and w != 0.0:
                rows[n_rows] = <const real_t *>(<const char *>phi_b + k * pr.phi_sn)
                weights[n_rows] = w
                n_rows += 1
        block_accumulate(p.g, row_a, rows, weights, n_rows, pr.d)
        kb = ke
    return OK


cdef void partial_merge(Partial *dst, const Partial *src, Py_ssize_t d) noexcept nogil:
    """dst += src.  Merging into an empty partial copies src (signed zeros
    included), so a state's first chunk gives the same bits whether it was
    computed in place or merged."""
    cdef double c
    cdef Py_ssize_t i
    if src.l == 0.0:
        return
    if dst.l == 0.0:
        dst.m = src.m
        dst.m_lo = src.m_lo
        dst.l = src.l
        memcpy(dst.g, src.g, d * sizeof(double))
        return
    if src.m > dst.m:
        partial_raise_max(dst, src.m, src.m_lo, d)
    c = exp_diff(src.m, src.m_lo, dst.m, dst.m_lo)
    dst.l += c * src.l
    for i in range(d):
        dst.g[i] += c * src.g[i]


cdef Status partial_finish_score(const Partial *p, const Problem *pr, Py_ssize_t b) noexcept nogil:
    """Write score = (g / l) / tau to row b of the result (l * tau may overflow)."""
    cdef char *o = pr.out + b * pr.out_sb
    cdef int finite
    if pr.out_f32:
        finite = fs_store_f32(o, pr.out_sd, p.g, 1.0 / p.l, pr.tau, pr.d)
    else:
        finite = fs_store_f64(o, pr.out_sd, p.g, 1.0 / p.l, pr.tau, pr.d)
    return OK if finite else NONFINITE_RESULT


cdef inline double work_of(const Problem *pr, Py_ssize_t n_states) noexcept nogil:
    """Elements of phi a call reads (plus one per row): what decides whether
    threads, and releasing the GIL, pay for themselves."""
    return <double>n_states * pr.n_actions * (pr.d + 1)


cdef inline Py_ssize_t n_chunks_of(Py_ssize_t n) noexcept nogil:
    return (n + CHUNK_ROWS - 1) // CHUNK_ROWS


cdef inline Py_ssize_t state_action(const Problem *pr, Py_ssize_t b) noexcept nogil:
    return (<const Py_ssize_t *>(pr.act + b * pr.act_s))[0]


cdef Status state_chunk(Partial *p, const Problem *pr, const real_t *phi, Py_ssize_t b,
                        Py_ssize_t c) noexcept nogil:
    """Partial of chunk c of state b."""
    cdef const char *mask_b = NULL
    cdef Py_ssize_t a = state_action(pr, b)
    if pr.mask != NULL:
        mask_b = pr.mask + b * pr.mask_sb
    partial_clear(p, pr.d)
    if a < 0 or a >= pr.n_actions:
        # Checked before the pass; only another thread writing to `a` during
        # the call gets here.  Never read a row through it.
        return ACTION_CHANGED
    return partial_add_rows(p, pr, <const real_t *>(<const char *>phi + b * pr.phi_sb), mask_b,
                            a, c * CHUNK_ROWS, min((c + 1) * CHUNK_ROWS, pr.n_actions))


cdef Status state_score(const Problem *pr, const real_t *phi, Py_ssize_t b,
                        double *scratch) noexcept nogil:
    """Score of state b on the calling thread; scratch holds 2 d doubles."""
    cdef Py_ssize_t c, n_chunks = n_chunks_of(pr.n_actions)
    cdef Partial acc, tmp
    acc.g = scratch
    tmp.g = scratch + pr.d
    cdef Status st = state_chunk(&acc, pr, phi, b, 0)
    for c in range(1, n_chunks):
        if st != OK:
            return st
        st = state_chunk(&tmp, pr, phi, b, c)
        partial_merge(&acc, &tmp, pr.d)
    if st != OK:
        return st
    return partial_finish_score(&acc, pr, b)


# ---------------------------------------------------------------------------
# Thread drivers.

cdef Status run_serial(const Problem *pr, const real_t *phi, Py_ssize_t n_states,
                       Py_ssize_t *bad) noexcept nogil:
    """All states on the calling thread, no OpenMP region."""
    cdef double stack[2 * STACK_D]
    cdef double *scratch = stack
    cdef Py_ssize_t b
    cdef Status st = OK
    if pr.d > STACK_D:
        scratch = <double *>malloc(2 * pr.d * sizeof(double))
        if scratch == NULL:
            bad[0] = 0
            return NO_MEMORY
    for b in range(n_states):
        st = state_score(pr, phi, b, scratch)
        if st != OK:
            bad[0] = b
            break
    if scratch != stack:
        free(scratch)
    return st


cdef Status run_states(const Problem *pr, const real_t *phi, Py_ssize_t n_states,
                       int n_threads, Py_ssize_t *bad) noexcept nogil:
    """Threads over the batch: each state done serially by one thread.

    Guided scheduling: a thread that loses its core to another process does
    not hold the others back.  Which thread does a state never changes its
    result, so the schedule cannot change the bits.
    """
    cdef Py_ssize_t b, d = pr.d
    cdef double *buf
    cdef Status st
    cdef int first = OK
    bad[0] = n_states
    with parallel(num_threads=n_threads):
        buf = <double *>malloc((2 * d + 1) * sizeof(double))
        for b in prange(n_states, schedule='guided'):
            if buf == NULL:
                st = NO_MEMORY
            else:
                st = state_score(pr, phi, b, buf)
            if st != OK:
                fs_record_failure(b, st, bad, &first)
        free(buf)
    return <Status>first


cdef Status run_chunks(const Problem *pr, const real_t *phi, Py_ssize_t n_states,
                       int n_threads, bint threaded, Py_ssize_t *bad) noexcept nogil:
    """Threads over the chunks of each state in turn, for few large states.

    Every chunk's partial is kept and merged left to right afterwards, so
    neither the thread count nor the (guided) schedule changes the result.
    """
    cdef Py_ssize_t b, c, d = pr.d, n_chunks = n_chunks_of(pr.n_actions)
    cdef Partial *parts = <Partial *>malloc(n_chunks * sizeof(Partial))
    cdef double *slab = <double *>malloc(((n_chunks + 1) * d + 1) * sizeof(double))
    cdef Status *status = <Status *>malloc(n_chunks * sizeof(Status))
    cdef Partial acc
    cdef Status st = OK
    bad[0] = 0
    if parts == NULL or slab == NULL or status == NULL:
        free(parts)
        free(slab)
        free(status)
        return NO_MEMORY
    for c in range(n_chunks):
        parts[c].g = slab + c * d
    acc.g = slab + n_chunks * d
    for b in range(n_states):
        for c in prange(n_chunks, schedule='guided', num_threads=n_threads,
                        use_threads_if=threaded):
            status[c] = state_chunk(&parts[c], pr, phi, b, c)
        partial_clear(&acc, d)
        for c in range(n_chunks):
            if status[c] != OK:
                st = status[c]
                break
            partial_merge(&acc, &parts[c], d)
        if st == OK:
            st = partial_finish_score(&acc, pr, b)
        if st != OK:
            bad[0] = b
            break
    free(parts)
    free(slab)
    free(status)
    return st


cdef Status run_batch(const Problem *pr, const real_t *phi, Py_ssize_t n_states,
                      int n_threads, Py_ssize_t *bad) noexcept nogil:
    """Pick how to spread the work.  Both ways give bitwise the same result."""
    cdef Py_ssize_t n_chunks = n_chunks_of(pr.n_actions)
    cdef bint threaded = FS_OPENMP and n_threads > 1 and work_of(pr, n_states) >= PARALLEL_MIN_WORK
    if threaded and n_chunks >= n_threads and n_states < 4 * n_threads:
        return run_chunks(pr, phi, n_states, n_threads, threaded, bad)
    if threaded and n_states > 1:
        return run_states(pr, phi, n_states, n_threads, bad)
    return run_serial(pr, phi, n_states, bad)


cdef Status run(const Problem *pr, bint phi_f64, Py_ssize_t n_states, int n_threads,
               Py_ssize_t *bad) noexcept nogil:
    if phi_f64:
        return run_batch(pr, <const double *>pr.phi, n_states, n_threads, bad)
    return run_batch(pr, <const float *>pr.phi, n_states, n_threads, bad)


# ---------------------------------------------------------------------------
# The def entry point.

cdef inline bint is_native_aligned(cnp.ndarray arr) noexcept:
    return cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_ISALIGNED(arr)


cdef inline bint is_real_kernel_array(object x) noexcept:
    """A base-class NumPy array of float32 or float64 the kernel reads as it is
    (subclasses, such as masked arrays, go through coercion)."""
    if not cnp.PyArray_CheckExact(x):
        return False
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    return (t == cnp.NPY_DOUBLE or t == cnp.NPY_FLOAT) and is_native_aligned(<cnp.ndarray>x)


cdef void byte_extent(cnp.ndarray arr, char **lo, char **hi) noexcept:
    """[lo, hi) bounds the bytes of arr."""
    cdef char *start = <char *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t i, step, low = 0, high = cnp.PyArray_ITEMSIZE(arr)
    if cnp.PyArray_SIZE(arr) == 0:
        lo[0] = hi[0] = start
        return
    for i in range(cnp.PyArray_NDIM(arr)):
        step = cnp.PyArray_STRIDES(arr)[i] * (cnp.PyArray_DIMS(arr)[i] - 1)
        if step < 0:
            low += step
        else:
            high += step
    lo[0] = start + low
    hi[0] = start + high


cdef check_out_disjoint(cnp.ndarray out, tuple inputs):
    """ValueError if the bytes of out may overlap those of an input array."""
    cdef char *out_lo
    cdef char *out_hi
    cdef char *lo
    cdef char *hi
    byte_extent(out, &out_lo, &out_hi)
    for x in inputs:
        if cnp.PyArray_Check(x):
            byte_extent(<cnp.ndarray>x, &lo, &hi)
            if out_lo < hi and lo < out_hi:
                raise ValueError("out must not share memory with phi, theta, a or mask")


cdef double as_temperature(object temperature) except? -1.0:
    cdef double tau
    if PyFloat_CheckExact(temperature):
        tau = PyFloat_AS_DOUBLE(temperature)
    elif isinstance(temperature, (bool, np.bool_, str, bytes)):
        raise TypeError(
            f"temperature must be a real number, got {type(temperature).__name__}")
    else:
        try:
            tau = float(temperature)
        except (TypeError, ValueError):
            raise TypeError(
                f"temperature must be a real number, got {type(temperature).__name__}") from None
    if not (tau > 0.0 and isfinite(tau)):
        raise ValueError(f"temperature must be finite and > 0, got {tau!r}")
    return tau


# More threads than this only cost thread creation (or exhaust it): the result
# is the same for every count.  Read once: omp_get_num_procs() is a system call.
cdef int MAX_THREADS = max(8, 4 * fs_omp_num_procs())


cdef int as_thread_count(object n_threads) except -1:
    cdef Py_ssize_t n
    if n_threads is None:
        return fs_omp_max_threads()
    if PyLong_CheckExact(n_threads):
        try:
            n = PyLong_AsSsize_t(n_threads)
        except OverflowError:
            n = MAX_THREADS if n_threads > 0 else 0
    elif isinstance(n_threads, (bool, np.bool_)):
        raise TypeError("n_threads must be an integer or None, got bool")
    else:
        try:
            return as_thread_count(operator.index(n_threads))
        except TypeError:
            raise TypeError(
                f"n_threads must be an integer or None, got {type(n_threads).__name__}") from None
    if n < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return <int>min(n, MAX_THREADS)


cdef Py_ssize_t prepare_theta(cnp.ndarray theta, Py_ssize_t d, double *buf, fs_theta *t) noexcept:
    """Copy theta into buf as double with its Dekker split.  Returns the index of
    the first non-finite entry, or -1."""
    cdef Py_ssize_t i, dp = fs_padded(d)
    cdef const char *src = <const char *>cnp.PyArray_DATA(theta)
    cdef Py_ssize_t s = cnp.PyArray_STRIDES(theta)[0]
    cdef bint f32 = cnp.PyArray_TYPE(theta) == cnp.NPY_FLOAT
    cdef double *val = buf
    cdef double *hi = buf + dp
    cdef double *lo = buf + 2 * dp
    cdef double v
    memset(buf, 0, 3 * dp * sizeof(double))
    t.huge = 0
    for i in range(d):
        if f32:
            v = (<const float *>(src + i * s))[0]
        else:
            v = (<const double *>(src + i * s))[0]
        if not isfinite(v):
            return i
        val[i] = v
        fs_split(v, &hi[i], &lo[i])
        if fabs(v) > FS_SPLIT_MAX:
            t.huge = 1
    t.val = val
    t.hi = hi
    t.lo = lo
    return -1


cdef Py_ssize_t first_bad_action(const Problem *pr, Py_ssize_t n_states) noexcept nogil:
    """The first state whose action is out of range or masked, or -1."""
    cdef Py_ssize_t b, a
    for b in range(n_states):
        a = state_action(pr, b)
        if a < 0 or a >= pr.n_actions:
            return b
        if pr.mask != NULL and not pr.mask[b * pr.mask_sb + a * pr.mask_sn]:
            return b
    return -1


cdef raise_bad_action(const Problem *pr, Py_ssize_t b, bint batch):
    cdef Py_ssize_t k, a = state_action(pr, b), n = pr.n_actions
    where = f"a[{b}]" if batch else "a"
    if a < 0 or a >= n or pr.mask == NULL:
        raise IndexError(f"{where} = {a} is out of range for N = {n} actions")
    cdef const char *mask_b = pr.mask + b * pr.mask_sb
    for k in range(n):
        if mask_b[k * pr.mask_sn]:
            raise ValueError(f"the taken action {where} = {a} is masked (illegal)")
    state = f" of state {b}" if batch else ""
    raise ValueError(f"every action{state} is masked; at least one must be legal")


cdef object score_canonical(object phi, object theta, object a, object mask, object temperature,
                            object out, object n_threads):
    """Score of canonical inputs; NotImplemented when an argument needs coercion.

    Canonical: phi a float32/float64 array (native byte order, aligned) whose
    last axis is contiguous; theta a float32/float64 array; a an int (one
    state) or an intp array (batch); mask None or a bool array.
    """
    if not is_real_kernel_array(phi):
        return NotImplemented
    cdef cnp.ndarray phi_arr = <cnp.ndarray>phi
    cdef int ndim = cnp.PyArray_NDIM(phi_arr)
    cdef bint batch = ndim == 3
    if ndim != 2 and ndim != 3:
        raise ValueError(
            f"phi must be 2-D (N, d) for one state or 3-D (B, N, d) for a batch, "
            f"got a {ndim}-D array")
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(phi_arr)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(phi_arr)
    cdef Py_ssize_t n_states = dims[0] if batch else 1
    cdef Problem pr
    pr.n_actions = dims[ndim - 2]
    pr.d = dims[ndim - 1]
    pr.phi = <const char *>cnp.PyArray_DATA(phi_arr)
    pr.phi_sb = strides[0] if batch else 0
    pr.phi_sn = strides[ndim - 2]
    if (pr.d > 1 and strides[ndim - 1] != cnp.PyArray_ITEMSIZE(phi_arr)
            and cnp.PyArray_SIZE(phi_arr) > 0):
        return NotImplemented

    if not is_real_kernel_array(theta):
        return NotImplemented
    cdef cnp.ndarray theta_arr = <cnp.ndarray>theta
    if cnp.PyArray_NDIM(theta_arr) != 1 or cnp.PyArray_DIMS(theta_arr)[0] != pr.d:
        raise ValueError(
            f"theta must have shape ({pr.d},) to match phi's last axis, got {np.shape(theta)}")

    cdef Py_ssize_t a_single
    cdef cnp.ndarray a_arr = None
    if not batch:
        if not PyLong_CheckExact(a):
            return NotImplemented
        try:
            a_single = PyLong_AsSsize_t(a)
        except OverflowError:
            raise IndexError(f"a = {a} is out of range for N = {pr.n_actions} actions") from None
        pr.act = <const char *>&a_single
        pr.act_s = 0
    else:
        if not (cnp.PyArray_CheckExact(a) and cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_INTP
                and is_native_aligned(<cnp.ndarray>a)):
            return NotImplemented
        a_arr = <cnp.ndarray>a
        if cnp.PyArray_NDIM(a_arr) != 1 or cnp.PyArray_DIMS(a_arr)[0] != n_states:
            raise ValueError(
                f"a must have shape ({n_states},), one action per state, got {np.shape(a)}")
        pr.act = <const char *>cnp.PyArray_DATA(a_arr)
        pr.act_s = cnp.PyArray_STRIDES(a_arr)[0]

    cdef cnp.ndarray mask_arr = None
    pr.mask = NULL
    if mask is not None:
        if not (cnp.PyArray_CheckExact(mask) and cnp.PyArray_TYPE(<cnp.ndarray>mask) == cnp.NPY_BOOL):
            return NotImplemented
        mask_arr = <cnp.ndarray>mask
        if cnp.PyArray_NDIM(mask_arr) == 1 and cnp.PyArray_DIMS(mask_arr)[0] == pr.n_actions:
            pr.mask_sb = 0
            pr.mask_sn = cnp.PyArray_STRIDES(mask_arr)[0]
        elif (batch and cnp.PyArray_NDIM(mask_arr) == 2
              and cnp.PyArray_DIMS(mask_arr)[0] == n_states
              and cnp.PyArray_DIMS(mask_arr)[1] == pr.n_actions):
            pr.mask_sb = cnp.PyArray_STRIDES(mask_arr)[0]
            pr.mask_sn = cnp.PyArray_STRIDES(mask_arr)[1]
        else:
            expected = f"({pr.n_actions},) or ({n_states}, {pr.n_actions})" if batch \
                else f"({pr.n_actions},)"
            raise ValueError(f"mask must have shape {expected}, got {np.shape(mask)}")
        pr.mask = <const char *>cnp.PyArray_DATA(mask_arr)

    pr.tau = as_temperature(temperature)
    cdef int n_threads_ = as_thread_count(n_threads)

    cdef int out_type = cnp.NPY_DOUBLE
    if cnp.PyArray_TYPE(phi_arr) == cnp.NPY_FLOAT and cnp.PyArray_TYPE(theta_arr) == cnp.NPY_FLOAT:
        out_type = cnp.NPY_FLOAT
    cdef cnp.npy_intp out_dims[2]
    out_dims[0] = n_states
    out_dims[1] = pr.d
    cdef cnp.ndarray out_arr
    if out is None:
        out_arr = cnp.PyArray_EMPTY(ndim - 1, &out_dims[2 - (ndim - 1)], out_type, 0)
    else:
        if not cnp.PyArray_Check(out):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        out_arr = <cnp.ndarray>out
        if cnp.PyArray_TYPE(out_arr) != out_type or not cnp.PyArray_ISNOTSWAPPED(out_arr):
            raise TypeError(
                f"out must have dtype {'float32' if out_type == cnp.NPY_FLOAT else 'float64'} "
                f"(native byte order) for these inputs, got {out.dtype}")
        if (cnp.PyArray_NDIM(out_arr) != ndim - 1
                or cnp.PyArray_DIMS(out_arr)[ndim - 2] != pr.d
                or (batch and cnp.PyArray_DIMS(out_arr)[0] != n_states)):
            expected = f"({n_states}, {pr.d})" if batch else f"({pr.d},)"
            raise ValueError(f"out must have shape {expected}, got {np.shape(out)}")
        if not cnp.PyArray_ISWRITEABLE(out_arr) or not cnp.PyArray_ISALIGNED(out_arr):
            raise ValueError("out must be a writeable, aligned array")
        for i in range(cnp.PyArray_NDIM(out_arr)):
            if (cnp.PyArray_STRIDES(out_arr)[i] == 0 and cnp.PyArray_DIMS(out_arr)[i] > 1
                    and cnp.PyArray_SIZE(out_arr) > 0):
                raise ValueError("out must not overlap itself (it has a zero stride)")
        check_out_disjoint(out_arr, (phi_arr, theta_arr, a_arr, mask_arr))
    pr.out = <char *>cnp.PyArray_DATA(out_arr)
    pr.out_sb = cnp.PyArray_STRIDES(out_arr)[0] if batch else 0
    pr.out_sd = cnp.PyArray_STRIDES(out_arr)[ndim - 2]
    pr.out_f32 = out_type == cnp.NPY_FLOAT

    if pr.n_actions == 0:
        raise ValueError("phi has no actions (N = 0); a state needs at least one")
    cdef Py_ssize_t bad_action = first_bad_action(&pr, n_states)
    if bad_action >= 0:
        raise_bad_action(&pr, bad_action, batch)

    cdef double theta_stack[3 * STACK_D]
    cdef double *theta_buf = theta_stack
    if pr.d > STACK_D:
        theta_buf = <double *>malloc(3 * fs_padded(pr.d) * sizeof(double))
        if theta_buf == NULL:
            raise MemoryError()
    cdef Py_ssize_t bad_theta = prepare_theta(theta_arr, pr.d, theta_buf, &pr.theta)
    cdef Py_ssize_t bad_state = 0
    cdef Status st = OK
    cdef bint phi_f64 = cnp.PyArray_TYPE(phi_arr) == cnp.NPY_DOUBLE
    cdef bint release = work_of(&pr, n_states) >= NOGIL_MIN_WORK
    if bad_theta < 0 and n_states > 0:
        if release:
            with nogil:
                st = run(&pr, phi_f64, n_states, n_threads_, &bad_state)
        else:
            st = run(&pr, phi_f64, n_states, n_threads_, &bad_state)
    if theta_buf != theta_stack:
        free(theta_buf)

    if bad_theta >= 0:
        raise ValueError(f"theta contains NaN or inf (theta[{bad_theta}])")
    if st != OK:
        raise_status(st, bad_state, batch)
    return out_arr


def score(phi, theta, a, *, mask=None, temperature=1.0, out=None, n_threads=None):
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

    Notes
    -----
    Entries of ``phi`` must stay below half the largest float64 (about
    9e307) in magnitude: the kernel forms ``phi_a - phi_k``, and a call whose
    differences overflow raises rather than return a wrong number.  If a call
    raises, the contents of ``out`` are unspecified.

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
    result = score_canonical(phi, theta, a, mask, temperature, out, n_threads)
    if result is not NotImplemented:
        return result
    if cnp.PyArray_Check(out):
        # The kernel sees coerced copies: check out against what the caller passed.
        check_out_disjoint(<cnp.ndarray>out, (phi, theta, a, mask))
    phi, theta, a, mask = coerce(phi, theta, a, mask)
    result = score_canonical(phi, theta, a, mask, temperature, out, n_threads)
    if result is NotImplemented:
        raise RuntimeError("fastscore: internal error, coerced input is not canonical")
    return result


cdef raise_status(Status st, Py_ssize_t b, bint batch):
    cdef str state = f"state {b}" if batch else "the state"
    if st == NO_MEMORY:
        raise MemoryError("fastscore: could not allocate per-thread scratch")
    if st == ACTION_CHANGED:
        raise RuntimeError(f"a changed during the call (another thread wrote to it) in {state}")
    if st == NONFINITE_LOGIT:
        raise ValueError(
            f"non-finite logit in {state}: phi has NaN or inf in an unmasked row, "
            f"or phi @ theta / temperature overflows")
    raise ValueError(f"the score of {state} overflows (it is not finite in the output dtype)")


def build_info():
    """What this build of the kernel has: a dict for fastscore.show_config()."""
    return {
        "openmp": bool(FS_OPENMP),
        "max_threads": fs_omp_max_threads(),
        "simd": fs_simd_level().decode(),
        "float64_logits": f"compensated dot product, TwoProduct by {fs_kern.level.decode()}",
        "cflags": FASTSCORE_CFLAGS.decode(),
    }


def read_pass(const double[::1] x, int n_threads):
    """Sum x with n_threads threads: a read-only pass at memory speed.

    The benchmark times it over as many bytes as phi holds to measure this
    machine's read bandwidth, the roofline of the score kernel.
    """
    cdef Py_ssize_t n = x.shape[0], block = 1 << 15
    cdef Py_ssize_t n_blocks = (n + block - 1) // block, i
    cdef double total = 0.0
    cdef int nt = max(n_threads, 1)
    cdef bint threaded = FS_OPENMP and nt > 1
    if n == 0:
        return 0.0
    with nogil:
        for i in prange(n_blocks, schedule='static', num_threads=nt, use_threads_if=threaded):
            total += fs_sum_f64(&x[i * block], min(block, n - i * block))
    return total
