# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, binding=True
"""Compiled core of fastscore: the whole linear softmax policy in one pass.

Layers (docs/design.md, "Layers" and "The one-pass algorithm"):

* The ``def`` entry points (``score``, ``log_prob``, ``entropy``, ``probs``,
  ``sample``, ``loglik``) share one validation path, ``prepare``: arguments
  already in canonical form (NumPy arrays of the kernel's dtypes, an ``int``
  action) are checked by C-level code that fills a ``Problem``; anything else
  is first converted by ``fastscore._coerce.coerce`` (Python), so the common
  call pays nothing for rare input types.  Each entry point then allocates
  its outputs and names them in ``Problem.outputs``.
* ``run`` drives the threads; it holds no Python objects.
* ``partial_*``, ``state_*`` and ``finish_*`` are ``noexcept nogil`` helpers
  working on one state, or one chunk of rows of one state.

A state's pass is held in a ``Partial``: the running maximum logit ``m``,
``r = sum_k exp(z_k - m)`` over every row but the one holding the maximum (so
the normaliser is ``l = 1 + r`` and ``log l = log1p(r)`` keeps its relative
accuracy when one action dominates), and, as the requested outputs need them,
the entropy sum ``S = sum_k exp(z_k - m) (m - z_k)``, the score sum
``g = sum_k exp(z_k - m) (phi_a - phi_k)``, the taken (or sampled) action's
logit and the Gumbel-max winner.  Partials over disjoint rows merge
associatively.  Every output is one finishing step on the same partial
(``finish_state``); ``probs`` and the Hessian also read the logits the pass
kept, and the Hessian sweeps the state's rows once more, centred on the mean
row the pass gives.
"""

from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, NAN, exp, expm1, fabs, fma, isfinite, isnan, log, log1p
from libc.stdint cimport uint64_t, uintptr_t
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp

import numpy as np

from fastscore._coerce import (
    coerce, coerce_finite, coerce_theta, coerce_weights, split_out,
)

from _common cimport (
    ALL_MASKED, FS_OPENMP, FS_SPLIT_MAX, KL_BIG, KL_EXACT, KL_FAR, NO_MEMORY, NONFINITE_LOGIT,
    NONFINITE_RESULT, OK, Choices, Status, as_temperature, as_thread_count, check_out,
    check_out_disjoint, expm1_minus, first_bad_choice, fs_clock_master, fs_dot2_f64, fs_init,
    fs_log1p, fs_now, fs_omp_max_threads, fs_padded, fs_record_failure, fs_split, fs_theta,
    fs_threads_judge, Room, is_real_kernel_array, one_action, own_actions, own_mask, own_offsets,
    init_kernels, p_expm1, raise_bad_choice, raise_common_status, raise_kl_far, releases_gil,
    seed_key, store_real, threads_pay,
)

cnp.import_array()
init_kernels()


cdef extern from "fastscore_simd.h" nogil:
    double fs_dot2_f32(const float *x, const fs_theta *t, Py_ssize_t n, double *rest)
    double fs_dot_f32(const float *x, const fs_theta *t, Py_ssize_t n)
    void fs_block_acc_f64(double *g, const double *xa, const double **rows, const double *w,
                          int nr, Py_ssize_t d)
    void fs_block_acc_f32(double *g, const float *xa, const float **rows, const double *w,
                          int nr, Py_ssize_t d)
    void fs_hess_acc_f64(double *C, Py_ssize_t dp, double *Y, const double *mu,
                         const double **rows, const double *w, int nr, Py_ssize_t d)
    void fs_hess_acc_f32(double *C, Py_ssize_t dp, double *Y, const double *mu,
                         const float **rows, const double *w, int nr, Py_ssize_t d)
    double fs_sum_f64(const double *x, Py_ssize_t n)
    enum:
        FS_NARROW_D
        FS_TILE_ROWS
    void fs_rows_dot_f32(const float **rows, int nr, const fs_theta *t, Py_ssize_t d, double *z)
    void fs_rows_dot2_f64(const double **rows, int nr, const fs_theta *t, Py_ssize_t d,
                          double *z, double *z_lo)
    void fs_rows_dot2_f32(const float **rows, int nr, const fs_theta *t, Py_ssize_t d,
                          double *z, double *z_lo)
    void fs_narrow_acc_f64(double *g, const double *xa, const double **rows, const double *w,
                           int nr, Py_ssize_t d)
    void fs_narrow_acc_f32(double *g, const float *xa, const float **rows, const double *w,
                           int nr, Py_ssize_t d)
    int fs_block_argmax(const double *z, int n)
    bint fs_block_finite(const double *z, const double *z_lo, int n)
    void fs_block_exp(const double *z, const double *z_lo, double m, double m_lo, int n,
                      double *w)
    int fs_store_f64(char *out, Py_ssize_t stride, const double *g, double scale, double tau,
                     Py_ssize_t n)
    int fs_store_f32(char *out, Py_ssize_t stride, const double *g, double scale, double tau,
                     Py_ssize_t n)
    const char *fs_simd_level()
    enum:
        FS_FUSED_RUN
        FS_FUSED_MAX_N
        FS_FUSED_MAX_D
        FS_FUSED_WASTE
        FS_FUSED_WASTE_D
        FS_FUSED_BLOCK
        FS_FUSED_SCORE
        FS_FUSED_LOGP
        FS_FUSED_ENTROPY
        FS_FUSED_LOGLIK
        FS_FUSED_LOGLIK_GRAD
    ctypedef Py_ssize_t (*fs_fused_fn)(const char *phi, Py_ssize_t phi_sb, Py_ssize_t phi_sn,
                                       const fs_theta *t, const char *act, Py_ssize_t act_s,
                                       const char *mask, Py_ssize_t mask_sb, Py_ssize_t mask_sn,
                                       const Py_ssize_t *offsets, Py_ssize_t b0, Py_ssize_t b1,
                                       Py_ssize_t b_pf, int n_padded, Py_ssize_t d,
                                       double tau, char *out, Py_ssize_t out_sb,
                                       Py_ssize_t out_sd, const double *weights, double *slot,
                                       int what) noexcept nogil
    struct fs_kernel_set:
        const char *level
        fs_fused_fn fused_f64       # float64 phi (and results)
        fs_fused_fn fused_f32_dot2  # float32 phi, float64 results: Dot2 logits
        fs_fused_fn fused_f32_dot   # float32 phi, float32 results: plain-dot logits
    fs_kernel_set fs_kern


cdef extern from "fastscore_rng.h" nogil:
    double fs_gumbel(uint64_t key, uint64_t state, uint64_t action)


cdef extern from *:
    """
    #ifndef FASTSCORE_CFLAGS
    #define FASTSCORE_CFLAGS "unknown"
    #endif
    """
    const char *FASTSCORE_CFLAGS


ctypedef fused real_t:
    float
    double


cdef enum:
    # Rows whose logits are computed before the running max is updated once
    # (FS_TILE_ROWS, the rows of a narrow tile, is the same).
    BLOCK_ROWS = 32
    # Rows of at most NARROW_D features take the narrow logits (rows in the
    # vector lanes; at most FS_NARROW_D), and rows of at most NARROW_ACC_D
    # the narrow accumulation (g in registers).
    NARROW_D = 64
    NARROW_ACC_D = 32
    # Rows of one partial state.  States with more rows are split into chunks
    # of exactly this size and the partials merged left to right, whatever the
    # thread count, so the result does not depend on it.
    CHUNK_ROWS = 1024
    # States with at least this many rows are "wide": with threads, their
    # chunks are spread over the threads (one state at a time) instead of
    # giving the whole state to one thread.
    WIDE_ROWS = 4 * CHUNK_ROWS
    # theta up to this length is prepared in a stack buffer.
    STACK_D = 256
    # Reductions (loglik) sum the states in at most this many groups of
    # consecutive states (fewer when a group's Hessian is large), fixed by
    # the data alone: the groups, and so the bits, never depend on threads.
    MAX_GROUPS = 64
    GROUP_SLOTS_DOUBLES = 1 << 23
    # Threads a call uses at most (as_thread_count caps n_threads below it).
    MAX_THREADS_CAP = 1024

# What a call computes (Problem.outputs).  Per-state results ...
cdef enum:
    OUT_SCORE = 1
    OUT_LOGP = 2
    OUT_ENTROPY = 4
    OUT_PROBS = 8
    OUT_SAMPLE = 16
    # ... and sums over the states, weighted (loglik).
    RED_VALUE = 32
    RED_GRAD = 64
    RED_HESS = 128
    # The policy-gradient objectives: the entropy's gradient (with
    # OUT_ENTROPY), KL(pi_ref || pi) and its gradient (the pass's theta is
    # theta_ref), the score of the sampled action (with OUT_SAMPLE), and
    # loglik's entropy bonus beta sum_b H_b (with RED_VALUE) and its gradient
    # (with RED_GRAD).
    OUT_ENT_GRAD = 256
    OUT_KL = 512
    OUT_KL_GRAD = 1024
    OUT_SAMPLE_SCORE = 2048
    RED_ENT = 4096
    RED_ENT_GRAD = 8192
    # What the pass must keep for them.
    NEED_G = OUT_SCORE | RED_GRAD | RED_HESS
    NEED_S = OUT_ENTROPY | RED_ENT
    ENT_GRAD = OUT_ENT_GRAD | RED_ENT_GRAD
    KL = OUT_KL | OUT_KL_GRAD
    # The logits kept for a sweep after the pass.
    NEED_Z = OUT_PROBS | RED_HESS | ENT_GRAD | KL
    NEED_ZA = OUT_LOGP | RED_VALUE
    REDUCE = RED_VALUE | RED_GRAD | RED_HESS | RED_ENT | RED_ENT_GRAD
    # Outputs that sweep the state's rows once more after the pass.
    SWEEP = ENT_GRAD | KL | OUT_SAMPLE_SCORE


cdef struct Problem:
    # Everything shared by the states of one call; strides are in bytes.
    const char *phi
    Py_ssize_t phi_sb, phi_sn
    Py_ssize_t n_actions          # rows per state (padded layout)
    const Py_ssize_t *offsets     # ragged layout: (B + 1,) validated copy; NULL: padded
    Py_ssize_t d, dp              # features, and d padded to the vector width
    fs_theta theta
    double tau
    const char *act               # NULL: no taken action (entropy, probs, sample)
    Py_ssize_t act_s
    Py_ssize_t act_one            # the action of one state (act points here)
    const char *mask              # NULL: every action legal
    Py_ssize_t mask_sb, mask_sn
    int outputs
    bint phi_f64                  # phi is float64 (else float32)
    bint out_f32                  # per-state float results are float32 ...
    bint logp_f32                 # ... log_prob/entropy too (not a one-state scalar)
    char *score
    Py_ssize_t score_sb, score_sd
    char *logp
    Py_ssize_t logp_s
    char *ent
    Py_ssize_t ent_s
    char *probs                   # padded: (b, k) at b sb + k sn; ragged: row0(b) + k at sn
    Py_ssize_t probs_sb, probs_sn
    char *action
    Py_ssize_t action_s
    uint64_t key                  # sampling: the call's key ...
    Py_ssize_t state_offset       # ... and the global index of state 0
    const double *weights         # loglik: (B,) contiguous; NULL: all 1
    double beta                   # loglik: the entropy's weight (RED_ENT)
    fs_theta theta2               # kl: theta - theta_ref (theta is theta_ref)
    char *grad2                   # entropy's or KL's gradient, (B, d) like score
    Py_ssize_t grad2_sb, grad2_sd
    fs_fused_fn fused_kern        # tiny states: by runs of states (run_fused); NULL: not


cdef struct StateView:
    const char *phi               # row 0 of the state
    const char *mask              # mask of row 0, or NULL
    Py_ssize_t n                  # rows
    Py_ssize_t row0               # index of row 0 among all rows of the call
    Py_ssize_t a                  # taken action, or -1


cdef struct Partial:
    double m          # running maximum logit (-inf while empty) ...
    double m_lo       # ... as the unevaluated sum m + m_lo
    Py_ssize_t kmax   # the row holding it
    double r          # sum_k exp(z_k - m) over the rows but kmax: l = 1 + r
    double S          # sum_k exp(z_k - m) (m - z_k)               (entropy)
    double za, za_lo  # logit of the taken / sampled action (NaN until seen)
    double best       # largest perturbed logit z_k + G_k           (sample)
    Py_ssize_t kbest  # its row
    double *g         # (d,): sum_k exp(z_k - m) (phi_a - phi_k)


cdef struct Work:
    # Per-thread scratch; NULL where the call does not need it.
    double *g0        # the state's own partial
    double *g1        # a second partial's, for merging chunks
    double *mu        # dp: the state's mean row E[phi] (Hessian)
    double *Y         # BLOCK_ROWS x dp centred rows (Hessian)
    double *z         # 2 per row of the widest state: z_k, z_lo_k (probs, Hessian)
    double *dz        # 1 per row of the widest state: kl's logit differences


# ---------------------------------------------------------------------------
# Helpers: one row, one block of rows, one state.

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


cdef inline bint block_logits(const real_t **rows, int n, const Problem *pr, double *z,
                              double *z_lo) noexcept nogil:
    """Logits z + z_lo of a block of n narrow rows (row_logit's contract; a
    NULL row, masked, gets z = -inf and is never read).  False if a logit
    is not finite."""
    cdef int k
    cdef double s
    if real_t is float and pr.out_f32:
        fs_rows_dot_f32(rows, n, &pr.theta, pr.d, z)
        for k in range(n):
            z_lo[k] = 0.0
            if pr.tau != 1.0:
                z[k] = z[k] / pr.tau
    else:
        if real_t is double:
            fs_rows_dot2_f64(rows, n, &pr.theta, pr.d, z, z_lo)
        else:
            fs_rows_dot2_f32(rows, n, &pr.theta, pr.d, z, z_lo)
        if pr.tau != 1.0:
            for k in range(n):
                s = z[k]
                z[k] = s / pr.tau
                z_lo[k] = (fma(-z[k], pr.tau, s) + z_lo[k]) / pr.tau  # fma: s - z tau, exactly
    # (masked rows read zeros: their logits are 0 here)
    if not fs_block_finite(z, z_lo, n):
        return False
    for k in range(n):
        if rows[k] == NULL:
            z[k] = -INFINITY
            z_lo[k] = 0.0
    return True


cdef inline double exp_diff(double x, double x_lo, double y, double y_lo) noexcept nogil:
    """exp((x + x_lo) - (y + y_lo)) for x <= y."""
    return exp((x - y) + (x_lo - y_lo))


cdef inline double diff2(double x, double x_lo, double y, double y_lo) noexcept nogil:
    """(x + x_lo) - (y + y_lo) rounded once more."""
    return (x - y) + (x_lo - y_lo)


cdef inline void scale_vec(double *x, Py_ssize_t n, double c) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        x[i] *= c


cdef inline void add_scaled(double *x, const double *y, Py_ssize_t n, double c) noexcept nogil:
    """x = x + c y (c = 1 multiplies exactly)."""
    cdef Py_ssize_t i
    for i in range(n):
        x[i] += c * y[i]


cdef inline void partial_clear(Partial *p, const Problem *pr) noexcept nogil:
    p.m = -INFINITY
    p.m_lo = 0.0
    p.kmax = -1
    p.r = 0.0
    p.S = 0.0
    p.za = NAN
    p.za_lo = 0.0
    p.best = -INFINITY
    p.kbest = -1
    if pr.outputs & NEED_G:
        memset(p.g, 0, pr.d * sizeof(double))


cdef void partial_rescale(Partial *p, const Problem *pr, double c) noexcept nogil:
    """Multiply the sums of p by c (a new, larger maximum)."""
    if pr.outputs & NEED_G:
        scale_vec(p.g, pr.d, c)


cdef void partial_raise_max(Partial *p, const Problem *pr, double m_new, double m_new_lo,
                            Py_ssize_t kmax) noexcept nogil:
    """Re-express p relative to a larger maximum m_new + m_new_lo, held by row
    kmax: the old maximum's own term joins r."""
    cdef double c
    if p.m != -INFINITY:
        c = exp_diff(p.m, p.m_lo, m_new, m_new_lo)
        p.S = c * (p.S + diff2(m_new, m_new_lo, p.m, p.m_lo) * (1.0 + p.r))
        p.r = c * (1.0 + p.r)
        partial_rescale(p, pr, c)
    p.m = m_new
    p.m_lo = m_new_lo
    p.kmax = kmax


cdef inline void block_accumulate(double *g, const real_t *row_a, const real_t **rows,
                                  const double *w, int n_rows, Py_ssize_t d) noexcept nogil:
    # The narrow kernels give the same bits as the general ones (and assume d > 0).
    if real_t is double:
        if 0 < d <= NARROW_ACC_D:
            fs_narrow_acc_f64(g, row_a, rows, w, n_rows, d)
        else:
            fs_block_acc_f64(g, row_a, rows, w, n_rows, d)
    else:
        if 0 < d <= NARROW_ACC_D:
            fs_narrow_acc_f32(g, row_a, rows, w, n_rows, d)
        else:
            fs_block_acc_f32(g, row_a, rows, w, n_rows, d)


cdef Status partial_add_rows(Partial *p, const Problem *pr, const StateView *v,
                             const real_t *phi_type, Py_ssize_t b, Py_ssize_t k0,
                             Py_ssize_t k1, Work *wk) noexcept nogil:
    """Add rows [k0, k1) of state b to p, reading each row of phi once.

    phi_type only selects the instantiation (float or double rows)."""
    cdef double z[BLOCK_ROWS]
    cdef double z_lo[BLOCK_ROWS]
    cdef double wexp[BLOCK_ROWS]
    cdef double weights[BLOCK_ROWS]
    cdef const real_t *rows[BLOCK_ROWS]
    cdef const real_t *brows[BLOCK_ROWS]
    cdef double zk, w, t, r_sum, S_sum
    cdef Py_ssize_t kb, ke, k
    cdef int n_rows, outputs = pr.outputs
    cdef bint narrow = 0 < pr.d <= NARROW_D  # (the narrow kernels assume d > 0)
    cdef const real_t *row_a = NULL
    cdef uint64_t state_key = <uint64_t>(b + pr.state_offset)
    if v.a >= 0:
        row_a = <const real_t *>(v.phi + (v.a) * pr.phi_sn)
    kb = k0
    while kb < k1:
        ke = min(kb + BLOCK_ROWS, k1)
        if narrow:
            # Rows in the vector lanes: the whole block's logits at once.
            for k in range(kb, ke):
                if v.mask != NULL and not v.mask[k * pr.mask_sn]:
                    brows[k - kb] = NULL
                else:
                    brows[k - kb] = <const real_t *>(v.phi + k * pr.phi_sn)
            if not block_logits(brows, <int>(ke - kb), pr, z, z_lo):
                return NONFINITE_LOGIT
        else:
            for k in range(kb, ke):
                if v.mask != NULL and not v.mask[k * pr.mask_sn]:
                    z[k - kb] = -INFINITY
                    z_lo[k - kb] = 0.0
                    continue
                zk = row_logit(<const real_t *>(v.phi + (k) * pr.phi_sn), pr, &z_lo[k - kb])
                if not (isfinite(zk) and isfinite(z_lo[k - kb])):
                    return NONFINITE_LOGIT
                z[k - kb] = zk
        if kb <= v.a < ke and outputs & NEED_ZA:
            p.za = z[v.a - kb]
            p.za_lo = z_lo[v.a - kb]
        if outputs & NEED_Z:
            for k in range(kb, ke):
                wk.z[2 * k] = z[k - kb]
                wk.z[2 * k + 1] = z_lo[k - kb]
        # The block's maximum after its logits, by a vector max and one scan
        # (fs_block_argmax: the first of the largest): a branch per row on a
        # random logit mispredicts, and one inside the logit loop discards
        # the next row's dot product already under way.
        k = fs_block_argmax(z, <int>(ke - kb))
        if k >= 0 and z[k] > p.m:
            partial_raise_max(p, pr, z[k], z_lo[k], kb + k)
        n_rows = 0
        # exp((z_k - m) + (z_lo_k - m_lo)) of the whole block, vectorised.
        fs_block_exp(z, z_lo, p.m, p.m_lo, <int>(ke - kb), wexp)
        # Sums in locals: through p, every store to weights[] might alias them.
        r_sum = p.r
        S_sum = p.S
        for k in range(kb, ke):
            if z[k - kb] == -INFINITY:
                continue
            w = wexp[k - kb]
            if k != p.kmax:
                r_sum += w
            if outputs & NEED_S:
                S_sum += w * diff2(p.m, p.m_lo, z[k - kb], z_lo[k - kb])
            if k != v.a and w != 0.0:
                rows[n_rows] = <const real_t *>(v.phi + (k) * pr.phi_sn)
                weights[n_rows] = w
                n_rows += 1
        p.r = r_sum
        p.S = S_sum
        if outputs & NEED_G:
            block_accumulate(p.g, row_a, rows, weights, n_rows, pr.d)
        if outputs & OUT_SAMPLE:
            # Gumbel-max: the row with the largest z_k + G_k is a draw from
            # softmax(z); ties go to the first row, as in a merge.
            for k in range(kb, ke):
                if z[k - kb] == -INFINITY:
                    continue
                t = z[k - kb] + fs_gumbel(pr.key, state_key, <uint64_t>k)
                if t > p.best:
                    p.best = t
                    p.kbest = k
                    p.za = z[k - kb]
                    p.za_lo = z_lo[k - kb]
        kb = ke
    return OK


cdef void partial_merge(Partial *dst, const Partial *src, const Problem *pr) noexcept nogil:
    """dst += src, src being the later rows.  Merging into an empty partial
    copies src (signed zeros included), so a state's first chunk gives the
    same bits whether it was computed in place or merged."""
    cdef double c
    cdef bint g = pr.outputs & NEED_G
    if src.m == -INFINITY:
        return
    if dst.m == -INFINITY:
        dst.m = src.m
        dst.m_lo = src.m_lo
        dst.kmax = src.kmax
        dst.r = src.r
        dst.S = src.S
        dst.za = src.za
        dst.za_lo = src.za_lo
        dst.best = src.best
        dst.kbest = src.kbest
        if g:
            memcpy(dst.g, src.g, pr.d * sizeof(double))
        return
    if src.m > dst.m:
        c = exp_diff(dst.m, dst.m_lo, src.m, src.m_lo)
        dst.S = c * (dst.S + diff2(src.m, src.m_lo, dst.m, dst.m_lo) * (1.0 + dst.r)) + src.S
        dst.r = c * (1.0 + dst.r) + src.r
        partial_rescale(dst, pr, c)
        if g:
            add_scaled(dst.g, src.g, pr.d, 1.0)
        dst.m = src.m
        dst.m_lo = src.m_lo
        dst.kmax = src.kmax
    else:
        c = exp_diff(src.m, src.m_lo, dst.m, dst.m_lo)
        dst.S += c * (src.S + diff2(dst.m, dst.m_lo, src.m, src.m_lo) * (1.0 + src.r))
        dst.r += c * (1.0 + src.r)
        if g:
            add_scaled(dst.g, src.g, pr.d, c)
    if pr.outputs & OUT_SAMPLE:
        if src.best > dst.best:
            dst.best = src.best
            dst.kbest = src.kbest
            dst.za = src.za
            dst.za_lo = src.za_lo
    elif isnan(dst.za) and not isnan(src.za):
        dst.za = src.za
        dst.za_lo = src.za_lo


# ---------------------------------------------------------------------------
# One state: its rows, its partial, its outputs.

cdef inline Py_ssize_t state_action(const Problem *pr, Py_ssize_t b) noexcept nogil:
    return (<const Py_ssize_t *>(pr.act + b * pr.act_s))[0]


cdef inline void state_view(const Problem *pr, Py_ssize_t b, StateView *v) noexcept nogil:
    if pr.offsets != NULL:
        v.row0 = pr.offsets[b]
        v.n = pr.offsets[b + 1] - v.row0
        v.phi = pr.phi + v.row0 * pr.phi_sn
        v.mask = NULL if pr.mask == NULL else pr.mask + v.row0 * pr.mask_sn
    else:
        v.row0 = b * pr.n_actions
        v.n = pr.n_actions
        v.phi = pr.phi + b * pr.phi_sb
        v.mask = NULL if pr.mask == NULL else pr.mask + b * pr.mask_sb
    v.a = state_action(pr, b) if pr.act != NULL else -1


cdef inline Py_ssize_t n_chunks_of(Py_ssize_t n) noexcept nogil:
    return (n + CHUNK_ROWS - 1) // CHUNK_ROWS


cdef Status state_chunk(Partial *p, const Problem *pr, const StateView *v, Py_ssize_t b,
                        Py_ssize_t c, Work *wk) noexcept nogil:
    """Partial of chunk c of state b."""
    cdef Py_ssize_t k0 = c * CHUNK_ROWS, k1 = min((c + 1) * CHUNK_ROWS, v.n)
    partial_clear(p, pr)
    if pr.phi_f64:
        return partial_add_rows(p, pr, v, <const double *>NULL, b, k0, k1, wk)
    return partial_add_rows(p, pr, v, <const float *>NULL, b, k0, k1, wk)


cdef Status state_partial(Partial *acc, const Problem *pr, const StateView *v, Py_ssize_t b,
                          Work *wk) noexcept nogil:
    """The partial of state b on the calling thread: its chunks in order."""
    cdef Partial tmp
    cdef Py_ssize_t c
    tmp.g = wk.g1
    cdef Status st = state_chunk(acc, pr, v, b, 0, wk)
    for c in range(1, n_chunks_of(v.n)):
        if st != OK:
            return st
        st = state_chunk(&tmp, pr, v, b, c, wk)
        partial_merge(acc, &tmp, pr)
    return st


cdef Status finish_state(const Problem *pr, Py_ssize_t b, const StateView *v, const Partial *p,
                         Work *wk, double *slot) noexcept nogil:
    """Every requested output of state b from its partial: one step each."""
    cdef int o = pr.outputs
    cdef double l, inv_l, lp = 0.0, h = 0.0, pi, wb, gi, hi, kl
    cdef Py_ssize_t i, k, d = pr.d
    cdef bint f32 = pr.out_f32
    cdef char *base
    cdef Status st
    if p.m == -INFINITY:
        return ALL_MASKED
    if o & OUT_SAMPLE_SCORE:
        # Before anything reads wk.g0: the score's pass accumulates there.
        st = sampled_score(pr, b, v, p.kbest, wk)
        if st != OK:
            return st
    l = 1.0 + p.r
    inv_l = 1.0 / l
    if o & (OUT_LOGP | OUT_SAMPLE | RED_VALUE):
        # log pi(a) = (z_a - m) - log(1 + r): exact 0 - log1p(r) for the argmax.
        lp = diff2(p.za, p.za_lo, p.m, p.m_lo) - fs_log1p(p.r)
    if o & OUT_SCORE:
        if f32:
            i = fs_store_f32(pr.score + b * pr.score_sb, pr.score_sd, p.g, inv_l, pr.tau, d)
        else:
            i = fs_store_f64(pr.score + b * pr.score_sb, pr.score_sd, p.g, inv_l, pr.tau, d)
        if not i:
            return NONFINITE_RESULT
    if o & (OUT_LOGP | OUT_SAMPLE):
        if not store_real(pr.logp + b * pr.logp_s, lp, pr.logp_f32):
            return NONFINITE_RESULT
    if o & OUT_SAMPLE:
        (<Py_ssize_t *>(pr.action + b * pr.action_s))[0] = p.kbest
    if o & NEED_S:
        # H = log(l) + sum_k pi_k (m - z_k): two non-negative terms.
        h = fs_log1p(p.r) + p.S * inv_l
    if o & OUT_ENTROPY:
        if not store_real(pr.ent + b * pr.ent_s, h, pr.logp_f32):
            return NONFINITE_RESULT
    if o & ENT_GRAD:
        # sum_k c_k (phi_c - phi_k) into wk.g1 (free once the pass is done).
        if pr.phi_f64:
            entropy_grad(<const double *>NULL, pr, v, p, wk, wk.g1)
        else:
            entropy_grad(<const float *>NULL, pr, v, p, wk, wk.g1)
        if o & OUT_ENT_GRAD and not store_grad2(pr, b, wk.g1, 1.0):
            return NONFINITE_RESULT
    if o & KL:
        if pr.phi_f64:
            st = state_kl(<const double *>NULL, pr, v, p, wk, &kl)
        else:
            st = state_kl(<const float *>NULL, pr, v, p, wk, &kl)
        if st != OK:
            return st
        if o & OUT_KL and not store_real(pr.ent + b * pr.ent_s, kl, pr.logp_f32):
            return NONFINITE_RESULT
        # grad KL = (1/tau) sum_k (pi_k - pi_ref_k) phi_k = -(1/tau) sum_k e_k (phi_c - phi_k).
        if o & OUT_KL_GRAD and not store_grad2(pr, b, wk.g1, -1.0):
            return NONFINITE_RESULT
    if o & OUT_PROBS:
        base = pr.probs + (b * pr.probs_sb if pr.offsets == NULL else v.row0 * pr.probs_sn)
        for k in range(v.n):
            if wk.z[2 * k] == -INFINITY:
                pi = 0.0
            else:
                pi = exp_diff(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) * inv_l
            store_real(base + k * pr.probs_sn, pi, f32)
    if o & REDUCE:
        wb = 1.0 if pr.weights == NULL else pr.weights[b]
        if o & RED_ENT:
            slot[0] += wb * lp + pr.beta * h  # the entropy is not weighted by w_b
        else:
            slot[0] += wb * lp
        if o & RED_ENT_GRAD:
            # w_b score_b + beta dH_b, each rounded as score() and entropy() round it.
            for i in range(d):
                gi = p.g[i] * inv_l
                hi = wk.g1[i]
                if pr.tau != 1.0:
                    gi = gi / pr.tau
                    hi = hi / pr.tau
                slot[1 + i] += wb * gi + pr.beta * hi
        elif o & RED_GRAD:
            # w_b times this state's score, rounded as score() rounds it.
            for i in range(d):
                gi = p.g[i] * inv_l
                if pr.tau != 1.0:
                    gi = gi / pr.tau
                slot[1 + i] += wb * gi
        if o & RED_HESS:
            if pr.phi_f64:
                state_hessian(<const double *>NULL, pr, v, p, wk, wb, slot + 1 + d)
            else:
                state_hessian(<const float *>NULL, pr, v, p, wk, wb, slot + 1 + d)
    return OK


cdef void state_hessian(const real_t *phi_type, const Problem *pr, const StateView *v,
                        const Partial *p, Work *wk, double wb, double *H) noexcept nogil:
    """H += -w_b Cov_pi(phi) / tau^2 (upper tiles of a dp x dp matrix).

    Two sweeps over the state's rows after the pass (the rows were just
    read, so a small state is still in cache), with the probabilities from
    the logits the pass kept: first the mean row as mu = c + sum_k pi_k
    (phi_k - c) around the most probable row c, then the centred
    sum_k pi_k (phi_k - mu)(phi_k - mu)^T.  No term cancels another however
    peaked the policy: the one-pass moment around a fixed row, E[y y^T] -
    E[y] E[y]^T, loses every digit when the policy peaks away from that row."""
    cdef double pis[BLOCK_ROWS]
    cdef const real_t *rows[BLOCK_ROWS]
    cdef const real_t *row_c = <const real_t *>(v.phi + p.kmax * pr.phi_sn)
    cdef double inv_l = 1.0 / (1.0 + p.r)
    cdef double coef = (-wb / pr.tau) / pr.tau
    cdef Py_ssize_t i, k, k0
    cdef int n_rows, sweep
    memset(wk.mu, 0, pr.d * sizeof(double))
    for sweep in range(2):
        k0 = 0
        while k0 < v.n:
            n_rows = 0
            k = k0
            while k < v.n and n_rows < BLOCK_ROWS:
                if wk.z[2 * k] != -INFINITY:
                    rows[n_rows] = <const real_t *>(v.phi + k * pr.phi_sn)
                    pis[n_rows] = exp_diff(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) * inv_l
                    if sweep == 1:
                        pis[n_rows] = coef * pis[n_rows]
                    n_rows += 1
                k += 1
            k0 = k
            if sweep == 0:
                block_accumulate(wk.mu, row_c, rows, pis, n_rows, pr.d)  # sum pi (c - phi)
            else:
                hess_accumulate(H, pr.dp, wk.Y, wk.mu, rows, pis, n_rows, pr.d)
        if sweep == 0:
            for i in range(pr.d):
                wk.mu[i] = <double>row_c[i] - wk.mu[i]


cdef inline bint store_grad2(const Problem *pr, Py_ssize_t b, const double *g,
                             double scale) noexcept nogil:
    """State b's entropy or KL gradient, g scale / tau, as score stores its own."""
    if pr.out_f32:
        return fs_store_f32(pr.grad2 + b * pr.grad2_sb, pr.grad2_sd, g, scale, pr.tau, pr.d)
    return fs_store_f64(pr.grad2 + b * pr.grad2_sb, pr.grad2_sd, g, scale, pr.tau, pr.d)


cdef Status sampled_score(const Problem *pr, Py_ssize_t b, const StateView *v, Py_ssize_t a,
                          Work *wk) noexcept nogil:
    """score() of the sampled action a of state b, by score's own pass over
    the rows the sampling pass just read: the same bits as score()."""
    cdef Problem q = pr[0]
    cdef StateView va = v[0]
    cdef Partial ps
    cdef Status st
    cdef bint ok
    q.outputs = OUT_SCORE
    va.a = a
    ps.g = wk.g0
    st = state_partial(&ps, &q, &va, b, wk)
    if st != OK:
        return st
    if pr.out_f32:
        ok = fs_store_f32(pr.score + b * pr.score_sb, pr.score_sd, ps.g, 1.0 / (1.0 + ps.r),
                          pr.tau, pr.d)
    else:
        ok = fs_store_f64(pr.score + b * pr.score_sb, pr.score_sd, ps.g, 1.0 / (1.0 + ps.r),
                          pr.tau, pr.d)
    return OK if ok else NONFINITE_RESULT


cdef void entropy_grad(const real_t *phi_type, const Problem *pr, const StateView *v,
                       const Partial *p, Work *wk, double *g) noexcept nogil:
    """g = sum_k c_k (phi_c - phi_k), c_k = pi_k (log pi_k + H), around the most
    probable row c, so that dH = g / tau.

    One sweep over the state's rows after the pass, with the logits it kept.
    log pi_k + H = (z_k - m) + S / l exactly (log l cancels, so it is never
    formed), and since the c_k sum to zero the sum around row c keeps its
    relative accuracy when the policy is nearly deterministic.  Masked rows
    (z = -inf) are skipped, never weighted by 0 * log 0."""
    cdef double cs[BLOCK_ROWS]
    cdef const real_t *rows[BLOCK_ROWS]
    cdef const real_t *row_c = <const real_t *>(v.phi + p.kmax * pr.phi_sn)
    cdef double inv_l = 1.0 / (1.0 + p.r)
    cdef double s_l = p.S * inv_l, w
    cdef Py_ssize_t k = 0
    cdef int n_rows
    memset(g, 0, pr.d * sizeof(double))
    while k < v.n:
        n_rows = 0
        while k < v.n and n_rows < BLOCK_ROWS:
            if wk.z[2 * k] != -INFINITY and k != p.kmax:
                w = exp_diff(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) * inv_l
                w = w * (diff2(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) + s_l)
                if w != 0.0:
                    rows[n_rows] = <const real_t *>(v.phi + k * pr.phi_sn)
                    cs[n_rows] = w
                    n_rows += 1
            k += 1
        block_accumulate(g, row_c, rows, cs, n_rows, pr.d)


cdef Status state_kl(const real_t *phi_type, const Problem *pr, const StateView *v,
                     const Partial *p, Work *wk, double *kl) noexcept nogil:
    """KL(pi_ref || pi) of state b into kl[0] and, with OUT_KL_GRAD,
    sum_k e_k (phi_c - phi_k), e_k = pi_k - pi_ref_k, into wk.g1.

    The pass gave pi_ref (its theta is theta_ref, its logits are in wk.z); a
    sweep over the rows computes d_k = Delta_k - Delta_c, Delta_k = phi_k .
    (theta - theta_ref) / tau as a compensated dot like the logits, c the
    row most probable under pi_ref (d_c = 0 exactly), so pi - pi_ref is never
    formed by subtraction.  With L = log sum_k pi_ref_k e^{d_k} and x_k =
    d_k - L, KL = sum_k pi_ref_k f(x_k), f(x) = e^x - 1 - x >= 0: no term
    cancels another, so nearly equal policies keep the relative accuracy.
    L = log1p(sum_k pi_ref_k expm1(d_k)) keeps it too, unless the logits of
    pi relative to row c's exceed KL_BIG (policies far apart), where L is a
    shifted log-sum-exp instead."""
    cdef Problem q = pr[0]
    cdef double ws[BLOCK_ROWS]
    cdef const real_t *rows[BLOCK_ROWS]
    cdef const real_t *row_c = <const real_t *>(v.phi + p.kmax * pr.phi_sn)
    cdef double inv_l = 1.0 / (1.0 + p.r), log_l = fs_log1p(p.r)
    cdef double dc, dc_lo, dk, dk_lo, zm, u, u_max = 0.0, t = 0.0, L, x, pk, e, acc = 0.0
    cdef double big = 0.0
    cdef Py_ssize_t k
    cdef int n_rows
    cdef bint grad = (pr.outputs & OUT_KL_GRAD) != 0
    q.theta = pr.theta2
    dc = row_logit(row_c, &q, &dc_lo)
    if not (isfinite(dc) and isfinite(dc_lo)):
        return KL_FAR
    for k in range(v.n):
        if wk.z[2 * k] == -INFINITY:
            continue
        dk = row_logit(<const real_t *>(v.phi + k * pr.phi_sn), &q, &dk_lo)
        if not (isfinite(dk) and isfinite(dk_lo)):
            return KL_FAR   # the pass's logits were finite: their difference overflows
        wk.dz[k] = diff2(dk, dk_lo, dc, dc_lo)
        # u_k = log(l pi_k) + constant: pi's logit relative to row c's.
        zm = diff2(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo)
        u = zm + wk.dz[k]
        if u > u_max:
            u_max = u
        big = max(big, fabs(zm) + fabs(wk.dz[k]))
    if u_max > KL_BIG and big > KL_EXACT:
        return KL_FAR
    if u_max <= KL_BIG:
        for k in range(v.n):
            if wk.z[2 * k] != -INFINITY:
                zm = diff2(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo)
                pk = exp_diff(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) * inv_l
                t += p_expm1(pk, zm - log_l, wk.dz[k])
        L = log1p(t)
    else:
        for k in range(v.n):
            if wk.z[2 * k] != -INFINITY:
                t += exp(diff2(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) + wk.dz[k] - u_max)
        L = u_max + log(t) - log_l
    if grad:
        memset(wk.g1, 0, pr.d * sizeof(double))
    k = 0
    while k < v.n:
        n_rows = 0
        while k < v.n and n_rows < BLOCK_ROWS:
            if wk.z[2 * k] != -INFINITY:
                zm = diff2(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) - log_l
                pk = exp_diff(wk.z[2 * k], wk.z[2 * k + 1], p.m, p.m_lo) * inv_l
                x = wk.dz[k] - L
                if x > KL_BIG and fabs(zm) + fabs(x) > KL_EXACT:
                    return KL_FAR
                e = p_expm1(pk, zm, x)
                acc += (pk * expm1_minus(x)) if x <= KL_BIG else (e - pk * x)
                if grad and k != p.kmax and e != 0.0:
                    rows[n_rows] = <const real_t *>(v.phi + k * pr.phi_sn)
                    ws[n_rows] = e
                    n_rows += 1
            k += 1
        if grad:
            block_accumulate(wk.g1, row_c, rows, ws, n_rows, pr.d)
    kl[0] = acc
    return OK


cdef inline void hess_accumulate(double *H, Py_ssize_t dp, double *Y, const double *mu,
                                 const real_t **rows, const double *w, int n_rows,
                                 Py_ssize_t d) noexcept nogil:
    if real_t is double:
        fs_hess_acc_f64(H, dp, Y, mu, rows, w, n_rows, d)
    else:
        fs_hess_acc_f32(H, dp, Y, mu, rows, w, n_rows, d)


cdef Status do_state(const Problem *pr, Py_ssize_t b, Work *wk, double *slot) noexcept nogil:
    """State b, start to finish, on the calling thread."""
    cdef StateView v
    cdef Partial acc
    state_view(pr, b, &v)
    acc.g = wk.g0
    cdef Status st = state_partial(&acc, pr, &v, b, wk)
    if st != OK:
        return st
    return finish_state(pr, b, &v, &acc, wk, slot)


cdef inline int fused_what(int outputs) noexcept nogil:
    """What the fused kernel computes for these outputs (FS_FUSED_*), or 0:
    it does one output alone, or loglik without the Hessian."""
    if outputs == OUT_SCORE:
        return FS_FUSED_SCORE
    if outputs == OUT_LOGP:
        return FS_FUSED_LOGP
    if outputs == OUT_ENTROPY:
        return FS_FUSED_ENTROPY
    if outputs == RED_VALUE:
        return FS_FUSED_LOGLIK
    if outputs == RED_VALUE | RED_GRAD:
        return FS_FUSED_LOGLIK_GRAD
    return 0


# False: every call takes the per-state path (_fused_enabled, for tests).
cdef bint fused_enabled = True


cdef inline fs_fused_fn fused_kernel(const Problem *pr, bint batch,
                                     Py_ssize_t max_rows) noexcept nogil:
    """The fused kernel the call's states go through (run_fused), or NULL:
    score, log_prob or entropy alone, or loglik without the Hessian, of a
    batch of tiny states (at most FS_FUSED_MAX_N rows each, padded or
    ragged, masked or not), with the AVX-512 set.  The kernel does the
    per-state path's arithmetic for the call's dtypes:
    float64 phi; float32 phi with float32 results (out_f32: plain-dot
    logits, float32 results; loglik's sums are float64 either way); float32
    phi with float64 results (Dot2 logits).  (One-state calls without
    offsets keep the per-state path.)"""
    if not (fused_enabled and fused_what(pr.outputs) != 0
            and batch and (pr.act != NULL or pr.outputs == OUT_ENTROPY)
            and 1 <= max_rows <= FS_FUSED_MAX_N and 1 <= pr.d <= FS_FUSED_MAX_D):
        return NULL
    if pr.phi_f64:
        return NULL if pr.out_f32 else fs_kern.fused_f64
    return fs_kern.fused_f32_dot if pr.out_f32 else fs_kern.fused_f32_dot2


cdef Status fused_states(const Problem *pr, Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t b_pf,
                         Work *wk, double *slot, Py_ssize_t *bad) noexcept nogil:
    """The results, or the sums into slot, of states [b0, b1) by the fused
    kernel, in runs of FS_FUSED_RUN states from b0, every lane doing
    do_state's arithmetic (the same bits); the kernel prefetches states
    ahead below b_pf.  A run with a non-finite logit (or result), or with a
    state whose every action is masked, goes again through do_state, state
    by state, so the first bad state (bad[0]) and its status are do_state's
    (the kernel added nothing of that run to slot)."""
    cdef Py_ssize_t r, e
    cdef Status st
    cdef int what = fused_what(pr.outputs)
    cdef char *out = NULL
    cdef Py_ssize_t out_sb = 0, out_sd = 0
    if what == FS_FUSED_SCORE:
        out, out_sb, out_sd = pr.score, pr.score_sb, pr.score_sd
    elif what == FS_FUSED_LOGP:
        out, out_sb = pr.logp, pr.logp_s
    elif what == FS_FUSED_ENTROPY:
        out, out_sb = pr.ent, pr.ent_s
    while b0 < b1:
        r = pr.fused_kern(pr.phi, pr.phi_sb, pr.phi_sn, &pr.theta, pr.act, pr.act_s,
                          pr.mask, pr.mask_sb, pr.mask_sn, pr.offsets, b0, b1, b_pf,
                          <int>(pr.n_actions if pr.offsets == NULL else 0), pr.d,
                          pr.tau, out, out_sb, out_sd, pr.weights,
                          slot if out == NULL else NULL, what)
        if r < 0:
            return OK
        e = min(r + FS_FUSED_RUN, b1)
        st = run_states(pr, r, e, wk, slot, bad)
        if st != OK:
            return st
        b0 = e
    return OK


cdef bint ragged_pays(const Problem *pr, Py_ssize_t b0, Py_ssize_t b1) noexcept nogil:
    """Whether the fused kernel pays for ragged states [b0, b1): the rows its
    runs of FS_FUSED_RUN states waste (8 N_max - sum n a run, N_max the
    run's longest state; a partial run's missing states count as rows of
    N_max) against the per-state path's overhead the states save (see
    FS_FUSED_WASTE)."""
    cdef Py_ssize_t s, n, n_max, waste = 0, r = b0
    while r < b1:
        n_max = 0
        for s in range(r, min(r + FS_FUSED_RUN, b1)):
            n = state_rows(pr, s)
            n_max = max(n_max, n)
            waste -= n
        waste += FS_FUSED_RUN * n_max
        r += FS_FUSED_RUN
    return waste * (pr.d + FS_FUSED_WASTE_D) * FS_FUSED_RUN <= (b1 - b0) * FS_FUSED_WASTE


cdef Status run_fused(const Problem *pr, Py_ssize_t b0, Py_ssize_t b1, Work *wk,
                      double *slot, Py_ssize_t *bad) noexcept nogil:
    """States [b0, b1) by the fused kernel (fused_states); ragged ones by
    blocks of FS_FUSED_BLOCK states, each by the kernel where its runs waste
    few rows (ragged_pays), else state by state.  Either path gives the
    same bits."""
    cdef Py_ssize_t e
    cdef Status st
    if pr.offsets == NULL:
        return fused_states(pr, b0, b1, b1, wk, slot, bad)
    while b0 < b1:
        e = min(b0 + FS_FUSED_BLOCK, b1)
        if ragged_pays(pr, b0, e):
            st = fused_states(pr, b0, e, b1, wk, slot, bad)
        else:
            st = run_states(pr, b0, e, wk, slot, bad)
        if st != OK:
            return st
        b0 = e
    return OK


cdef Status run_states(const Problem *pr, Py_ssize_t b0, Py_ssize_t b1, Work *wk, double *slot,
                       Py_ssize_t *bad) noexcept nogil:
    """States [b0, b1) one by one (do_state), stopping at the first that
    fails (bad[0])."""
    cdef Py_ssize_t b
    cdef Status st
    for b in range(b0, b1):
        st = do_state(pr, b, wk, slot)
        if st != OK:
            bad[0] = b
            return st
    return OK


cdef inline Status run_group(const Problem *pr, Py_ssize_t b0, Py_ssize_t b1, Work *wk,
                            double *slot, Py_ssize_t *bad) noexcept nogil:
    """A group's states [b0, b1) on the calling thread, in order: by the fused
    kernel when the call takes it, else state by state."""
    if pr.fused_kern != NULL:
        return run_fused(pr, b0, b1, wk, slot, bad)
    return run_states(pr, b0, b1, wk, slot, bad)


cdef inline double *group_slot(double *slots, Py_ssize_t g, Py_ssize_t stride) noexcept nogil:
    """Group g's reduction slot (NULL when the call reduces nothing)."""
    return slots + g * stride if slots != NULL else NULL


# ---------------------------------------------------------------------------
# Scratch, groups and the thread drivers.

cdef inline Py_ssize_t state_rows(const Problem *pr, Py_ssize_t b) noexcept nogil:
    if pr.offsets != NULL:
        return pr.offsets[b + 1] - pr.offsets[b]
    return pr.n_actions


cdef inline Py_ssize_t slot_size(const Problem *pr) noexcept nogil:
    """Doubles of one group's reduction: value, gradient, Hessian."""
    cdef Py_ssize_t n = 1 + pr.d
    if pr.outputs & RED_HESS:
        n += pr.dp * pr.dp
    return n


cdef inline Py_ssize_t slot_stride(const Problem *pr) noexcept nogil:
    """Doubles from one group's slot to the next: slot_size rounded up to
    whole 64-byte lines, so that threads on neighbouring groups do not share
    a cache line (loglik(grad) 100000 x 10 x 20, two threads, measured:
    see docs/performance.md)."""
    return (slot_size(pr) + 7) // 8 * 8


cdef double *work_alloc(Work *wk, const Problem *pr, Py_ssize_t z_rows, bint own) noexcept nogil:
    """Per-thread scratch in one block (NULL when out of memory).  With own
    False the logits buffer is not allocated (a wide state shares one)."""
    cdef Py_ssize_t d = pr.d, hess = pr.outputs & RED_HESS
    cdef Py_ssize_t zn = 2 * z_rows if (pr.outputs & NEED_Z and own) else 0
    cdef Py_ssize_t hn = (BLOCK_ROWS + 1) * pr.dp if hess else 0
    cdef Py_ssize_t dn = z_rows if (pr.outputs & KL and own) else 0
    cdef double *buf = <double *>malloc((2 * d + hn + zn + dn + 1) * sizeof(double))
    if buf == NULL:
        return NULL
    wk.g0 = buf
    wk.g1 = buf + d
    wk.mu = buf + 2 * d
    wk.Y = wk.mu + pr.dp if hess else NULL
    if own:
        wk.z = buf + 2 * d + hn
        wk.dz = wk.z + zn
    return buf


cdef inline double work_of(const Problem *pr, Py_ssize_t n_rows) noexcept nogil:
    """Elements of phi a call reads (plus one per row): what decides whether
    threads, and releasing the GIL, pay for themselves."""
    cdef double per_row = pr.d + 1
    if pr.outputs & RED_HESS:
        per_row += 0.25 * pr.d * pr.d
    if pr.outputs & SWEEP:
        per_row += pr.d
    return <double>n_rows * per_row


cdef Py_ssize_t make_groups(const Problem *pr, Py_ssize_t n_states, Py_ssize_t per_group,
                            Py_ssize_t n_wide, Py_ssize_t *start) noexcept nogil:
    """Cut the states into groups of per_group consecutive states, every wide
    state (n_wide of them) a group of its own; start[g] is group g's first
    state.  Depends on the data alone.  Returns the number of groups."""
    cdef Py_ssize_t b, n = 0, open_at = 0
    start[0] = 0
    if n_wide == 0:  # uniform groups: no state needs looking at
        n = (n_states + per_group - 1) // per_group
        for b in range(1, n + 1):
            start[b] = min(b * per_group, n_states)
        return n
    for b in range(n_states):
        if state_rows(pr, b) >= WIDE_ROWS:
            if b > open_at:
                n += 1
                start[n] = b
            n += 1
            start[n] = b + 1
            open_at = b + 1
        elif b + 1 - open_at == per_group:
            n += 1
            start[n] = b + 1
            open_at = b + 1
    if open_at < n_states:
        n += 1
        start[n] = n_states
    return n


cdef inline bint is_wide_group(const Problem *pr, const Py_ssize_t *start,
                               Py_ssize_t g) noexcept nogil:
    return start[g + 1] - start[g] == 1 and state_rows(pr, start[g]) >= WIDE_ROWS


cdef Work *works_alloc(const Problem *pr, int n_threads, Py_ssize_t z_rows, bint own,
                       double **bufs) noexcept nogil:
    """Scratch for each of n_threads threads (NULL when out of memory)."""
    cdef int t
    cdef Work *wks = <Work *>malloc(n_threads * sizeof(Work))
    if wks == NULL:
        return NULL
    for t in range(n_threads):
        bufs[t] = work_alloc(&wks[t], pr, z_rows, own)
        if bufs[t] == NULL:
            works_free(wks, t, bufs)
            return NULL
    return wks


cdef void works_free(Work *wks, int n, double **bufs) noexcept nogil:
    cdef int t
    for t in range(n):
        free(bufs[t])
    free(wks)


cdef Status run_wide(const Problem *pr, Py_ssize_t b, int n_threads, Partial *parts,
                     Status *status, Work *wk, Work *wks, double *slot,
                     double *master) noexcept nogil:
    """One wide state, its chunks spread over the threads, merged in order."""
    cdef StateView v
    cdef Partial acc
    cdef Py_ssize_t c, n_chunks
    cdef double t0
    state_view(pr, b, &v)
    n_chunks = n_chunks_of(v.n)
    for c in prange(n_chunks, schedule='dynamic', num_threads=n_threads, nogil=True):
        t0 = fs_now()
        status[c] = state_chunk(&parts[c], pr, &v, b, c, &wks[threadid()])
        fs_clock_master(master, t0, min(CHUNK_ROWS, v.n - c * CHUNK_ROWS))
    acc.g = wk.g0
    partial_clear(&acc, pr)
    for c in range(n_chunks):
        if status[c] != OK:
            return status[c]
        partial_merge(&acc, &parts[c], pr)
    return finish_state(pr, b, &v, &acc, wk, slot)


cdef Status run_serial(const Problem *pr, const Py_ssize_t *start, Py_ssize_t n_groups,
                       double *slots, Work *wk, Py_ssize_t *bad) noexcept nogil:
    cdef Py_ssize_t g, ss = slot_stride(pr)
    cdef Status st
    for g in range(n_groups):
        st = run_group(pr, start[g], start[g + 1], wk, group_slot(slots, g, ss), bad)
        if st != OK:
            return st
    return OK


cdef inline Py_ssize_t group_rows(const Problem *pr, const Py_ssize_t *start,
                                  Py_ssize_t g) noexcept nogil:
    if pr.offsets != NULL:
        return pr.offsets[start[g + 1]] - pr.offsets[start[g]]
    return (start[g + 1] - start[g]) * pr.n_actions


cdef Status run_threads(const Problem *pr, const Py_ssize_t *start, Py_ssize_t n_groups,
                        double *slots, Work *wk, Py_ssize_t n_rows, Py_ssize_t max_rows,
                        Py_ssize_t n_wide, int n_threads, Py_ssize_t *bad) noexcept nogil:
    """Groups of states over the threads (dynamic schedule: a thread that
    loses its core to another process does not hold the others back), then
    the wide states one at a time, their chunks over the threads.  Which
    thread does what never changes a state's result or a group's sum.

    The calling thread's own pace estimates what one thread would have
    taken; a call that took longer than 0.9 of that reports a failure, and
    the next calls run serially (fs_threads_judge)."""
    cdef double master[2]
    cdef double t_start = fs_now()
    cdef Status st = run_threads_timed(pr, start, n_groups, slots, wk, max_rows, n_wide,
                                       n_threads, bad, master)
    fs_threads_judge(t_start, master, n_rows)
    return st


cdef Status run_threads_timed(const Problem *pr, const Py_ssize_t *start, Py_ssize_t n_groups,
                              double *slots, Work *wk, Py_ssize_t max_rows, Py_ssize_t n_wide,
                              int n_threads, Py_ssize_t *bad, double *master) noexcept nogil:
    cdef Py_ssize_t g, b, ss = slot_stride(pr)
    cdef double t0
    cdef Py_ssize_t n_chunks = n_chunks_of(max_rows), part_doubles
    cdef double *bufs[MAX_THREADS_CAP]
    cdef Work *wks
    cdef Partial *parts
    cdef Status *status
    cdef double *slab
    cdef Status st
    cdef Py_ssize_t fb
    cdef int first = OK
    bad[0] = PY_SSIZE_T_MAX
    master[0] = master[1] = 0.0
    # Narrow states: each thread takes whole groups, with scratch of its own.
    wks = works_alloc(pr, n_threads, max_rows, True, bufs)
    if wks == NULL:
        bad[0] = 0
        return NO_MEMORY
    for g in prange(n_groups, schedule='dynamic', num_threads=n_threads, nogil=True):
        if not is_wide_group(pr, start, g):
            t0 = fs_now()
            fb = -1  # (assigned here: private to the thread)
            st = run_group(pr, start[g], start[g + 1], &wks[threadid()],
                           group_slot(slots, g, ss), &fb)
            if st != OK:
                fs_record_failure(fb, st, bad, &first)
            fs_clock_master(master, t0, group_rows(pr, start, g))
    works_free(wks, n_threads, bufs)
    if n_wide == 0:
        return <Status>first
    # Wide states: a partial per chunk (g and C of each in one slab); the
    # threads share the state's probs buffer, each row written by one chunk.
    part_doubles = pr.d
    parts = <Partial *>malloc(n_chunks * sizeof(Partial))
    status = <Status *>malloc(n_chunks * sizeof(Status))
    slab = <double *>malloc((n_chunks * part_doubles + 1) * sizeof(double))
    wks = works_alloc(pr, n_threads, 0, False, bufs)
    if parts == NULL or status == NULL or slab == NULL or wks == NULL:
        free(parts)
        free(status)
        free(slab)
        if wks != NULL:
            works_free(wks, n_threads, bufs)
        fs_record_failure(0, NO_MEMORY, bad, &first)
        return <Status>first
    for b in range(n_threads):
        wks[b].z = wk.z
    for b in range(n_chunks):
        parts[b].g = slab + b * part_doubles
    for g in range(n_groups):
        if is_wide_group(pr, start, g) and start[g] < bad[0]:
            st = run_wide(pr, start[g], n_threads, parts, status, wk, wks,
                          group_slot(slots, g, ss), master)
            if st != OK:
                fs_record_failure(start[g], st, bad, &first)
    works_free(wks, n_threads, bufs)
    free(parts)
    free(status)
    free(slab)
    return <Status>first


cdef Status run(const Problem *pr, Py_ssize_t n_states, Py_ssize_t n_rows, Py_ssize_t max_rows,
                int n_threads, double *result, Py_ssize_t *bad) noexcept nogil:
    """Every state of the call; with reductions, their sums into result
    (value, gradient, upper Hessian), group by group in a fixed order."""
    cdef Py_ssize_t ss = slot_size(pr), sst = slot_stride(pr), per_group, n_groups, n_wide = 0
    cdef Py_ssize_t b, g, i
    cdef Py_ssize_t target = MAX_GROUPS
    cdef bint threaded = threads_pay(work_of(pr, n_rows), n_threads)
    cdef Py_ssize_t *start
    cdef double *slots = NULL
    cdef double *slots_mem = NULL
    cdef Work wk
    cdef double *buf
    cdef Status st
    bad[0] = 0
    if pr.outputs & REDUCE:
        target = max(2, min(MAX_GROUPS, GROUP_SLOTS_DOUBLES // ss))
    # Whole runs of FS_FUSED_RUN states a group, on every CPU alike (the
    # groups set loglik's order of sums): the fused kernel's runs are full.
    per_group = ((n_states + target - 1) // target + FS_FUSED_RUN - 1) // FS_FUSED_RUN
    per_group = max(1, per_group) * FS_FUSED_RUN
    if max_rows >= WIDE_ROWS:
        for b in range(n_states):
            if state_rows(pr, b) >= WIDE_ROWS:
                n_wide += 1
    start = <Py_ssize_t *>malloc((n_states // per_group + 2 * n_wide + 3) * sizeof(Py_ssize_t))
    buf = work_alloc(&wk, pr, max_rows, True)
    if start == NULL or buf == NULL:
        free(start)
        free(buf)
        return NO_MEMORY
    n_groups = make_groups(pr, n_states, per_group, n_wide, start)
    if pr.outputs & REDUCE:
        slots_mem = <double *>malloc((n_groups * sst + 8) * sizeof(double))
        if slots_mem == NULL:
            free(start)
            free(buf)
            return NO_MEMORY
        slots = <double *>((<uintptr_t>slots_mem + 63) // 64 * 64)
        memset(slots, 0, n_groups * sst * sizeof(double))
    if threaded:
        st = run_threads(pr, start, n_groups, slots, &wk, n_rows, max_rows, n_wide, n_threads,
                         bad)
    else:
        st = run_serial(pr, start, n_groups, slots, &wk, bad)
    if st == OK and slots != NULL:
        memset(result, 0, ss * sizeof(double))
        for g in range(n_groups):
            for i in range(ss):
                result[i] += slots[g * sst + i]
    free(slots_mem)
    free(start)
    free(buf)
    return st


# ---------------------------------------------------------------------------
# Validation, written once for every entry point.

cdef struct Dims:
    Py_ssize_t n_states
    Py_ssize_t n_rows       # rows of phi over all states
    Py_ssize_t max_rows     # rows of the widest state
    bint batch              # results per state carry a leading (B,) axis
    bint ragged


cdef object prepare(Problem *pr, Dims *dm, object phi, object theta, object a,
                    bint takes_action, object mask, object offsets, Room *room):
    """Fill pr and dm from canonical inputs and check their shapes and
    actions.  Returns NotImplemented when an argument needs coercion first
    (fastscore._coerce), else the copies of offsets, of a batch's actions and
    of the mask the pass reads (the caller keeps them alive).

    Canonical: phi a float32/float64 array (native byte order, aligned)
    whose last axis is contiguous; theta a float32/float64 array; a an int
    (one state) or an intp array (batch); mask None or a bool array; offsets
    None or an intp array.
    """
    if not is_real_kernel_array(phi) or not is_real_kernel_array(theta):
        return NotImplemented
    cdef cnp.ndarray phi_arr = <cnp.ndarray>phi
    cdef cnp.ndarray theta_arr = <cnp.ndarray>theta
    cdef int ndim = cnp.PyArray_NDIM(phi_arr)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(phi_arr)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(phi_arr)
    dm.ragged = offsets is not None
    if dm.ragged:
        if ndim != 2:
            raise ValueError(
                f"with offsets=, phi must be 2-D (total rows, d), one row per state and "
                f"action, got a {ndim}-D array")
    elif ndim != 2 and ndim != 3:
        raise ValueError(
            f"phi must be 2-D (N, d) for one state or 3-D (B, N, d) for a batch, "
            f"got a {ndim}-D array")
    dm.batch = dm.ragged or ndim == 3
    pr.d = dims[ndim - 1]
    pr.dp = fs_padded(pr.d)
    pr.n_actions = dims[ndim - 2]
    pr.phi = <const char *>cnp.PyArray_DATA(phi_arr)
    pr.phi_sb = strides[0] if ndim == 3 else 0
    pr.phi_sn = strides[ndim - 2]
    pr.phi_f64 = cnp.PyArray_TYPE(phi_arr) == cnp.NPY_DOUBLE
    if (pr.d > 1 and strides[ndim - 1] != cnp.PyArray_ITEMSIZE(phi_arr)
            and cnp.PyArray_SIZE(phi_arr) > 0):
        return NotImplemented
    if cnp.PyArray_NDIM(theta_arr) != 1 or cnp.PyArray_DIMS(theta_arr)[0] != pr.d:
        if (cnp.PyArray_NDIM(theta_arr) == 1 and not dm.ragged
                and cnp.PyArray_DIMS(theta_arr)[0] == pr.n_actions):
            raise ValueError(
                f"theta has shape {np.shape(theta)}, which matches phi's action axis, not its "
                f"feature axis (phi has shape {np.shape(phi)}): phi's last axis must be the "
                f"features, (N, d) or (B, N, d); is phi transposed?")
        raise ValueError(
            f"theta must have shape ({pr.d},) to match phi's last axis (the features), "
            f"got {np.shape(theta)}")

    offs = a_copy = mask_copy = None
    if dm.ragged:
        offs = own_offsets(offsets, pr.n_actions, &dm.n_states, &dm.max_rows)
        if offs is NotImplemented:
            return NotImplemented
        pr.offsets = <const Py_ssize_t *>cnp.PyArray_DATA(<cnp.ndarray>offs)
        dm.n_rows = pr.n_actions
    else:
        pr.offsets = NULL
        dm.n_states = dims[0] if ndim == 3 else 1
        dm.max_rows = pr.n_actions
        dm.n_rows = dm.n_states * pr.n_actions
        if pr.n_actions == 0:
            raise ValueError("phi has no actions (N = 0); a state needs at least one")

    # The pass reads the call's own copies of the actions and the mask
    # (_common's own_*), checked by first_bad_choice before it.
    pr.act = NULL
    if takes_action:
        if not dm.batch:
            if one_action(a, pr.n_actions, &pr.act_one) is NotImplemented:
                return NotImplemented
            pr.act = <const char *>&pr.act_one
            pr.act_s = 0
        else:
            a_copy = own_actions(a, dm.n_states, room, &pr.act, &pr.act_s)
            if a_copy is NotImplemented:
                return NotImplemented
    pr.mask = NULL
    if mask is not None:
        mask_copy = own_mask(mask, dm.n_states, pr.n_actions, dm.batch,
                             dm.n_rows if dm.ragged else -1, room, &pr.mask, &pr.mask_sb,
                             &pr.mask_sn)
        if mask_copy is NotImplemented:
            return NotImplemented
    return (offs, a_copy, mask_copy)


cdef inline void choices_of(const Problem *pr, Choices *c) noexcept nogil:
    c.act = pr.act
    c.act_s = pr.act_s
    c.mask = pr.mask
    c.mask_sb = pr.mask_sb
    c.mask_sn = pr.mask_sn
    c.offsets = pr.offsets
    c.n_actions = pr.n_actions


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


cdef cnp.ndarray result_array(object out, int dtype, int ndim, cnp.npy_intp *dims, tuple inputs,
                              str name="out"):
    """A new result array, or out checked to be one."""
    if out is None:
        return cnp.PyArray_EMPTY(ndim, dims, dtype, 0)
    return check_out(out, dtype, ndim, dims, inputs, name)


cdef raise_status(Status st, Py_ssize_t b, bint batch, const Problem *pr):
    cdef str state = f"state {b}" if batch else "the state"
    raise_common_status(st, b, batch)
    if st == NONFINITE_LOGIT:
        raise ValueError(bad_row_message(pr, b, state))
    if st == KL_FAR:
        raise_kl_far(state, "theta_ref", "theta")
    raise ValueError(
        f"the result for {state} overflows: it is not finite in the output dtype "
        f"({'float32' if pr.out_f32 else 'float64'}); the temperature is too small, or phi "
        f"(its differences phi_a - phi_k) too large in magnitude, for that dtype")


cdef str bad_row_message(const Problem *pr, Py_ssize_t b, str state):
    """Say which row of state b made its logit non-finite, and why."""
    cdef StateView v
    cdef Py_ssize_t k, j
    cdef double z, z_lo, x
    cdef bint finite_row
    state_view(pr, b, &v)
    for k in range(v.n):
        if v.mask != NULL and not v.mask[k * pr.mask_sn]:
            continue
        finite_row = True
        for j in range(pr.d):
            if pr.phi_f64:
                x = (<const double *>(v.phi + k * pr.phi_sn))[j]
            else:
                x = (<const float *>(v.phi + k * pr.phi_sn))[j]
            finite_row = finite_row and isfinite(x)
        where = f"row {k} of {state}" + (f" (phi[{v.row0 + k}])" if pr.offsets != NULL else "")
        if not finite_row:
            return f"phi has NaN or inf in {where} (an unmasked row)"
        if pr.phi_f64:
            z = row_logit(<const double *>(v.phi + k * pr.phi_sn), pr, &z_lo)
        else:
            z = row_logit(<const float *>(v.phi + k * pr.phi_sn), pr, &z_lo)
        if not (isfinite(z) and isfinite(z_lo)):
            return f"the logit phi @ theta / temperature overflows at {where}"
    return f"non-finite logit in {state}"


cdef object run_call(int outputs, object phi, object theta, object a, object mask,
                     object offsets, object temperature, object n_threads, object out,
                     object weights=None, uint64_t key=0, Py_ssize_t state_offset=0,
                     object out2=None, double beta=0.0, object theta_new=None):
    """Validate, allocate, run the pass, finish: the body of every entry point.

    out2 is the out= of a second per-state result (the entropy's or KL's
    gradient); beta loglik's entropy weight; theta_new kl's theta (theta is
    then theta_ref)."""
    cdef Problem pr
    cdef Dims dm
    cdef Room room  # the small copies prepare makes
    memset(&pr, 0, sizeof(Problem))
    cdef bint takes_action = (outputs & (OUT_SCORE | OUT_LOGP | REDUCE)) != 0
    owned = prepare(&pr, &dm, phi, theta, a, takes_action, mask, offsets, &room)
    if owned is NotImplemented:
        # The kernel sees coerced copies: check out against what the caller passed.
        if out is not None and cnp.PyArray_Check(out):
            check_out_disjoint(<cnp.ndarray>out, (phi, theta, a, mask, offsets, weights))
        if out2 is not None and cnp.PyArray_Check(out2):
            check_out_disjoint(<cnp.ndarray>out2, (phi, theta, a, mask, offsets, weights),
                               "out[1]")
        phi, theta, a, mask, offsets = coerce(phi, theta, a, mask, offsets, takes_action)
        owned = prepare(&pr, &dm, phi, theta, a, takes_action, mask, offsets, &room)
        if owned is NotImplemented:
            raise RuntimeError("fastscore: internal error, coerced input is not canonical")
    pr.tau = as_temperature(temperature)
    cdef int n_threads_ = as_thread_count(n_threads)
    pr.outputs = outputs
    pr.key = key
    pr.state_offset = state_offset
    cdef int out_type = cnp.NPY_DOUBLE
    if not pr.phi_f64 and cnp.PyArray_TYPE(<cnp.ndarray>theta) == cnp.NPY_FLOAT:
        out_type = cnp.NPY_FLOAT
    cdef cnp.ndarray theta_diff = None
    if theta_new is not None:
        # kl: float32 results only when theta is float32 too; the pass adds
        # phi . (theta - theta_ref) in float64 (exact where they are close).
        if cnp.PyArray_TYPE(<cnp.ndarray>theta_new) != cnp.NPY_FLOAT:
            out_type = cnp.NPY_DOUBLE
        theta_diff = np.subtract(theta_new, theta, dtype=np.float64)
    pr.out_f32 = out_type == cnp.NPY_FLOAT
    pr.beta = beta

    # The outputs: one result array each, or a scalar for one state.
    cdef tuple inputs = (phi, theta, a, mask, offsets, weights, theta_new)
    cdef cnp.npy_intp odims[2]
    cdef double scalar = 0.0
    cdef Py_ssize_t action_scalar = 0
    cdef cnp.ndarray res = None, res2 = None, red = None, w_arr = None
    cdef int nd
    if outputs & OUT_SCORE:
        odims[0] = dm.n_states
        odims[1] = pr.d
        nd = 2 if dm.batch else 1
        res = result_array(out, out_type, nd, &odims[2 - nd], inputs)
        pr.score = <char *>cnp.PyArray_DATA(res)
        pr.score_sb = cnp.PyArray_STRIDES(res)[0] if dm.batch else 0
        pr.score_sd = cnp.PyArray_STRIDES(res)[nd - 1]
    elif outputs & (OUT_LOGP | OUT_ENTROPY | OUT_SAMPLE | OUT_KL):
        if dm.batch or out is not None:
            odims[0] = dm.n_states
            nd = 1 if dm.batch else 0
            res = result_array(out, out_type, nd, odims, inputs)
            pr.logp = pr.ent = <char *>cnp.PyArray_DATA(res)
            pr.logp_s = pr.ent_s = cnp.PyArray_STRIDES(res)[0] if dm.batch else 0
            pr.logp_f32 = pr.out_f32
        else:
            # One state's scalar: a Python float, so the double the pass computed.
            pr.logp = pr.ent = <char *>&scalar
            pr.logp_s = pr.ent_s = 0
        if outputs & OUT_SAMPLE:
            if dm.batch:
                res2 = cnp.PyArray_EMPTY(1, odims, cnp.NPY_INTP, 0)
                pr.action = <char *>cnp.PyArray_DATA(res2)
                pr.action_s = sizeof(Py_ssize_t)
            else:
                pr.action = <char *>&action_scalar
    elif outputs & OUT_PROBS:
        if dm.ragged:
            odims[0] = dm.n_rows
            nd = 1
        else:
            odims[0] = dm.n_states
            odims[1] = pr.n_actions
            nd = 2 if dm.batch else 1
        res = result_array(out, out_type, nd, &odims[2 - nd] if not dm.ragged else odims, inputs)
        pr.probs = <char *>cnp.PyArray_DATA(res)
        pr.probs_sb = cnp.PyArray_STRIDES(res)[0] if (dm.batch and not dm.ragged) else 0
        pr.probs_sn = cnp.PyArray_STRIDES(res)[nd - 1]
    cdef cnp.ndarray res3 = None
    if outputs & (OUT_ENT_GRAD | OUT_KL_GRAD | OUT_SAMPLE_SCORE):
        # The per-state gradient (shaped like score's result), or the sampled score.
        odims[0] = dm.n_states
        odims[1] = pr.d
        nd = 2 if dm.batch else 1
        if outputs & OUT_SAMPLE_SCORE:
            res3 = cnp.PyArray_EMPTY(nd, &odims[2 - nd], out_type, 0)
            pr.score = <char *>cnp.PyArray_DATA(res3)
            pr.score_sb = cnp.PyArray_STRIDES(res3)[0] if dm.batch else 0
            pr.score_sd = cnp.PyArray_STRIDES(res3)[nd - 1]
        else:
            res3 = result_array(out2, out_type, nd, &odims[2 - nd], inputs + (res,), "out[1]")
            pr.grad2 = <char *>cnp.PyArray_DATA(res3)
            pr.grad2_sb = cnp.PyArray_STRIDES(res3)[0] if dm.batch else 0
            pr.grad2_sd = cnp.PyArray_STRIDES(res3)[nd - 1]
    if outputs & REDUCE:
        odims[0] = slot_size(&pr)
        red = cnp.PyArray_ZEROS(1, odims, cnp.NPY_DOUBLE, 0)
        if weights is not None:
            w_arr = coerce_weights(weights, dm.n_states)
            pr.weights = <const double *>cnp.PyArray_DATA(w_arr)

    cdef Choices ch
    choices_of(&pr, &ch)
    cdef Py_ssize_t bad_choice = first_bad_choice(&ch, dm.n_states)
    if bad_choice >= 0:
        raise_bad_choice(&ch, bad_choice, dm.batch)

    cdef double theta_stack[3 * STACK_D]
    cdef double *theta_buf = theta_stack
    if pr.d > STACK_D:
        theta_buf = <double *>malloc(3 * pr.dp * sizeof(double))
        if theta_buf == NULL:
            raise MemoryError()
    cdef Py_ssize_t bad_theta = prepare_theta(<cnp.ndarray>theta, pr.d, theta_buf, &pr.theta)
    cdef Py_ssize_t bad_new = -1, bad_diff = -1
    cdef double *theta2_buf = NULL
    if theta_diff is not None:
        theta2_buf = <double *>malloc(3 * pr.dp * sizeof(double))
        if theta2_buf == NULL:
            if theta_buf != theta_stack:
                free(theta_buf)
            raise MemoryError()
        bad_new = first_nonfinite(<cnp.ndarray>theta_new)
        bad_diff = prepare_theta(theta_diff, pr.d, theta2_buf, &pr.theta2)
    cdef Py_ssize_t bad_state = 0
    cdef Status st = OK
    cdef double *red_ptr = NULL if red is None else <double *>cnp.PyArray_DATA(red)
    cdef bint release = releases_gil(work_of(&pr, dm.n_rows))
    pr.fused_kern = fused_kernel(&pr, dm.batch, dm.max_rows)
    if bad_theta < 0 and bad_new < 0 and bad_diff < 0 and dm.n_states > 0:
        if release:
            with nogil:
                st = run(&pr, dm.n_states, dm.n_rows, dm.max_rows, n_threads_, red_ptr,
                         &bad_state)
        else:
            st = run(&pr, dm.n_states, dm.n_rows, dm.max_rows, n_threads_, red_ptr, &bad_state)
    try:
        if bad_theta >= 0:
            name = "theta" if theta_new is None else "theta_ref"
            raise ValueError(f"{name} contains NaN or inf ({name}[{bad_theta}])")
        if bad_new >= 0:
            raise ValueError(f"theta contains NaN or inf (theta[{bad_new}])")
        if bad_diff >= 0:
            raise ValueError(
                f"theta - theta_ref overflows at [{bad_diff}] (not finite in float64)")
        if st != OK:
            raise_status(st, bad_state, dm.batch, &pr)
    finally:
        if theta_buf != theta_stack:
            free(theta_buf)
        free(theta2_buf)

    if outputs & REDUCE:
        return finish_loglik(red, pr.d, pr.dp, outputs)
    if outputs & OUT_SAMPLE:
        if dm.batch:
            return (res2, res) if res3 is None else (res2, res, res3)
        return (action_scalar, scalar) if res3 is None else (action_scalar, scalar, res3)
    if res3 is not None:
        return (scalar if res is None else res), res3
    if res is None:
        return scalar
    return res


cdef Py_ssize_t first_nonfinite(cnp.ndarray x):
    """Index of the first NaN or inf of a 1-D float array, or -1."""
    bad = np.flatnonzero(~np.isfinite(x))
    return bad[0] if bad.size else -1


cdef object finish_loglik(cnp.ndarray red, Py_ssize_t d, Py_ssize_t dp, int outputs):
    """(value[, gradient[, Hessian]]) from the summed slots; the Hessian's
    lower triangle mirrors the upper one."""
    if not np.isfinite(red).all():
        raise ValueError(
            "the log-likelihood or its derivatives overflow (not finite in float64): the "
            "temperature is too small, or phi, theta or the weights too large in magnitude")
    value = float(red[0])
    if not outputs & (RED_GRAD | RED_HESS):
        return value
    grad = red[1:1 + d]
    if not outputs & RED_HESS:
        return value, grad
    upper = red[1 + d:].reshape(dp, dp)[:d, :d]
    hess = np.triu(upper) + np.triu(upper, 1).T
    return value, grad, hess


# ---------------------------------------------------------------------------
# The def entry points.

_COMMON_PARAMETERS = """
    phi : array_like, shape (N, d), (B, N, d), or (total rows, d) with offsets
        Features of the N actions of one state, or of a batch of B states.
        Real numeric; float32 and float64 are used as they are, anything
        else is converted to float64.
    theta : array_like, shape (d,)
        Policy parameters, shared by the batch."""

_COMMON_OPTIONS = """
    mask : array_like of bool, shape (N,), (B, N) or (total rows,), optional
        Legal actions (integer arrays of 0 and 1 are accepted).  Masked
        actions get probability exactly 0 and their rows of ``phi`` are never
        read (they may hold anything, NaN included).
    temperature : float, default 1.0
        Softmax temperature ``tau > 0``: logits are ``phi @ theta / tau``.
    offsets : array_like of int, shape (B + 1,), optional
        Ragged action sets (long format): ``phi`` is 2-D and state ``b`` owns
        rows ``offsets[b]:offsets[b + 1]``; ``offsets[0] == 0``, nondecreasing,
        ``offsets[-1] == len(phi)``, every state at least one row.  Actions
        index within their state; a mask and the result of ``probs`` are then
        one entry per row.
    n_threads : int, optional
        OpenMP threads.  ``None`` uses what OpenMP allows now, so
        ``OMP_NUM_THREADS`` and ``threadpoolctl`` apply.  Small work always
        runs on the calling thread.  The result does not depend on it."""

_RAISES = """
    Raises
    ------
    IndexError
        An action outside its state's ``[0, N)``.
    TypeError
        Non-real (complex, string, object) arrays, non-integer actions or
        offsets, a non-boolean mask, or ``out`` of the wrong dtype.
    ValueError
        Wrong shapes; a state without actions; bad offsets; a masked taken
        action or a fully masked state; NaN or inf in ``theta`` or in a legal
        row of ``phi`` (or logits that overflow); ``temperature`` not finite
        and positive; ``n_threads < 1``."""


def _doc(text):
    return (text.replace("{params}", _COMMON_PARAMETERS).replace("{options}", _COMMON_OPTIONS)
            .replace("{raises}", _RAISES))


def score(phi, theta, a, *, mask=None, temperature=1.0, offsets=None, out=None, n_threads=None):
    return run_call(OUT_SCORE, phi, theta, a, mask, offsets, temperature, n_threads, out)


score.__doc__ = _doc(r"""Score function of a linear softmax policy: :math:`\nabla_\theta \log \pi(a)`.

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
    ----------{params}
    a : int or array_like of int, shape (B,)
        The taken action: an integer for one state, one per state for a
        batch.  It must be legal.{options}
    out : ndarray, shape (d,) or (B, d), optional
        Where to write the result.  Its dtype must be the result dtype:
        float32 when ``phi`` and ``theta`` are both float32, else float64.

    Returns
    -------
    ndarray, shape (d,) or (B, d)
        The score, factor ``1 / tau`` included; ``out`` if it was given.
{raises}

    Notes
    -----
    Entries of ``phi`` must stay below half the largest float64 (about
    9e307) in magnitude: the kernel forms ``phi_a - phi_k``, and a call whose
    differences overflow raises rather than return a wrong number.  If a call
    raises, the contents of ``out`` are unspecified.

    See Also
    --------
    fastscore.reference.score : the same function in plain NumPy.
    fastscore.loglik : the weighted sum of scores over a batch.

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> phi = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> fastscore.score(phi, np.zeros(2), 0)
    array([ 0.5, -0.5])
    """)


def log_prob(phi, theta, a, *, mask=None, temperature=1.0, offsets=None, out=None,
             n_threads=None):
    return run_call(OUT_LOGP, phi, theta, a, mask, offsets, temperature, n_threads, out)


log_prob.__doc__ = _doc(r"""Log-probability of the taken action, :math:`\log \pi(a)`.

    Computed as :math:`(z_a - m) - \log(1 + r)` with :math:`m` the largest
    logit and :math:`r = \sum_{k \ne k^*} e^{z_k - m}`, from the same one
    pass as :func:`score`: accurate where :math:`\pi(a)` is tiny (logits far
    apart, float64 logits are compensated) and where :math:`\pi(a) \to 1`
    (the result, near 0, keeps its relative accuracy).

    Parameters
    ----------{params}
    a : int or array_like of int, shape (B,)
        The taken action, one per state for a batch.  It must be legal.{options}
    out : ndarray, shape (B,), optional
        Where to write a batch's result (float32 when ``phi`` and ``theta``
        are both float32, else float64).

    Returns
    -------
    float, or ndarray of shape (B,)
{raises}

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> round(fastscore.log_prob(np.eye(2), np.zeros(2), 0), 6)
    -0.693147
    """)


def entropy(phi, theta, *, mask=None, temperature=1.0, offsets=None, grad=False, out=None,
            n_threads=None):
    out, out2 = split_out(out, grad)
    return run_call(OUT_ENTROPY | (OUT_ENT_GRAD if grad else 0), phi, theta, None, mask, offsets,
                    temperature, n_threads, out, None, 0, 0, out2)


entropy.__doc__ = _doc(r"""Entropy of the policy, :math:`H(\pi) = -\sum_k \pi_k \log \pi_k`.

    Computed in the same one pass as :func:`score` as
    :math:`\log(1 + r) + \sum_k \pi_k (m - z_k)`: two non-negative terms, so
    the entropy of a nearly deterministic policy (:math:`H \to 0`) keeps its
    relative accuracy.  Masked actions do not count.

    With ``grad=True`` also its gradient, the entropy bonus's term of a
    policy gradient,

    .. math::

        \nabla_\theta H = -\frac{1}{\tau} \sum_k \pi_k (\log \pi_k + H)\, \phi_k
        = \frac{1}{\tau} \sum_k \pi_k \big((z_k - m) + S / l\big) (\phi_c - \phi_k),

    with :math:`c` the most probable action, :math:`S / l = \sum_k \pi_k (m - z_k)`:
    a second sweep over each state's rows (still in cache) after the pass.
    The coefficients sum to zero, so the sum around row :math:`c` keeps its
    relative accuracy for a nearly deterministic policy, and masked actions
    add exactly nothing.

    Parameters
    ----------{params}{options}
    grad : bool, default False
        Also return the gradient of each state's entropy.
    out : ndarray, shape (B,), optional
        Where to write a batch's result; with ``grad=True`` a pair
        ``(out_H, out_grad)``, either None, ``out_grad`` of shape (d,) or
        (B, d) and the dtype :func:`score` returns.

    Returns
    -------
    float, or ndarray of shape (B,)
        The entropy; with ``grad=True`` the pair ``(H, grad)``, ``grad`` of
        shape (d,) or (B, d).
{raises}

    See Also
    --------
    fastscore.reference.entropy : the same function in plain NumPy.
    fastscore.loglik : ``entropy_weight=`` adds the entropy bonus to the sum.

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> round(fastscore.entropy(np.eye(4), np.zeros(4)), 6)  # log 4
    1.386294
    >>> H, g = fastscore.entropy(np.eye(2), np.array([1.0, 0.0]), grad=True)
    >>> np.round(g, 6)  # moving theta toward uniform raises H
    array([-0.196612,  0.196612])
    """)


def probs(phi, theta, *, mask=None, temperature=1.0, offsets=None, out=None, n_threads=None):
    return run_call(OUT_PROBS, phi, theta, None, mask, offsets, temperature, n_threads, out)


probs.__doc__ = _doc(r"""Action probabilities :math:`\pi = \mathrm{softmax}(\phi\theta / \tau)`.

    One pass over ``phi``; each probability has a small relative error
    (float64 logits are compensated), masked actions are exactly 0.

    Parameters
    ----------{params}{options}
    out : ndarray, shape (N,), (B, N) or (total rows,), optional
        Where to write the result.

    Returns
    -------
    ndarray, shape (N,), (B, N), or (total rows,) with offsets
{raises}

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> fastscore.probs(np.eye(2), np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """)


def _seed_key(seed):
    """The key sample() draws with for this seed (_common's seed_key): what
    fastscore.dask resolves a seed to once, for every chunk."""
    return seed_key(seed)


def sample(phi, theta, *, seed=None, mask=None, temperature=1.0, offsets=None, state_offset=0,
           score=False, n_threads=None):
    key = seed_key(seed)
    if isinstance(state_offset, (bool, np.bool_)) or not hasattr(state_offset, "__index__"):
        raise TypeError(f"state_offset must be an int, got {type(state_offset).__name__}")
    if not 0 <= state_offset.__index__() < 2 ** 62:
        raise ValueError(f"state_offset must be in [0, 2**62), got {state_offset}")
    return run_call(OUT_SAMPLE | (OUT_SAMPLE_SCORE if score else 0), phi, theta, None, mask,
                    offsets, temperature, n_threads, None, None, key, state_offset.__index__())


sample.__doc__ = _doc(r"""Draw an action from the policy, with its log-probability.

    Gumbel-max in one pass: the action is :math:`\arg\max_k (z_k + G_k)`
    with :math:`G_k` standard Gumbel variates from a counter-based generator
    (Philox4x64-10) keyed by the seed, the state's index and the action's
    index.  So the same seed gives the same actions for every thread count,
    and the returned log-probabilities equal :func:`log_prob` of the returned
    actions bit for bit.  Masked actions are never drawn.

    Parameters
    ----------{params}
    seed : int, None or numpy.random.Generator
        An int in ``[0, 2**64)`` is the key itself; ``None`` takes fresh
        entropy from the OS; a Generator gives one 64-bit draw per call.{options}
    state_offset : int, default 0
        The index of the first state in the sampler's stream: a batch split
        into pieces, each sampled with ``state_offset`` = its first state's
        index, draws what the whole batch draws (used by ``fastscore.dask``).
    score : bool, default False
        Also return the score of each drawn action, equal to
        :func:`score` of the returned actions bit for bit: the step of a
        policy-gradient rollout in one call.  (Each state's rows are swept
        once more, while in cache, by score's own arithmetic.)

    Returns
    -------
    (int, float), or (ndarray of intp (B,), ndarray (B,))
        The actions (indices within their state) and their log-probabilities;
        with ``score=True`` a third entry, the scores, shape (d,) or (B, d)
        in the dtype :func:`score` returns.
{raises}

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> a, lp = fastscore.sample(np.eye(3), np.array([0.0, 0.0, 50.0]), seed=1)
    >>> a
    2
    >>> a, lp, g = fastscore.sample(np.eye(2), np.zeros(2), seed=1, score=True)
    >>> bool((g == fastscore.score(np.eye(2), np.zeros(2), a)).all())
    True
    """)


def loglik(phi, theta, a, *, weights=None, grad=False, hess=False, mask=None, temperature=1.0,
           offsets=None, entropy_weight=0.0, n_threads=None):
    cdef int outputs = RED_VALUE
    cdef double beta = coerce_finite(entropy_weight, "entropy_weight")
    if grad:
        outputs |= RED_GRAD
    if hess:
        if beta != 0.0:
            raise ValueError(
                "loglik: hess=True with entropy_weight != 0 is not supported (the entropy "
                "bonus has no Hessian here); ask for grad=True, or hess with entropy_weight=0")
        outputs |= RED_HESS
    # entropy_weight = 0 leaves the entropy out: the sums are today's, bit for bit.
    if beta != 0.0:
        outputs |= RED_ENT | (RED_ENT_GRAD if grad else 0)
    result = run_call(outputs, phi, theta, a, mask, offsets, temperature, n_threads, None,
                      weights, 0, 0, None, beta)
    if hess and not grad:
        return result[0], result[2]
    return result


loglik.__doc__ = _doc(r"""Weighted log-likelihood of the taken actions, with its gradient and Hessian.

    .. math::

        \ell(\theta) = \sum_b w_b \log \pi_b(a_b), \qquad
        \nabla \ell = \sum_b w_b\, \mathrm{score}_b, \qquad
        \nabla^2 \ell = -\frac{1}{\tau^2} \sum_b w_b\, \mathrm{Cov}_{\pi_b}(\phi_b).

    With ``entropy_weight=beta`` the objective is the regularised policy
    gradient's :math:`\sum_b w_b \log \pi_b(a_b) + \beta \sum_b H(\pi_b)`
    (the entropy is not weighted by :math:`w_b`), value and gradient in the
    same pass (see :func:`entropy` for the entropy's gradient).

    One pass over ``phi`` with no (B, d), (B, N) or (B, d, d) temporary.
    With advantages as ``weights`` the gradient is the policy gradient; for
    a conditional logit (McFadden) model, ``-value`` and ``-gradient`` plug
    into ``scipy.optimize.minimize(..., jac=True)`` and ``-hessian`` is the
    observed information (its inverse, the covariance of the estimates).
    The states are summed in groups fixed by the data alone, so the result
    is bitwise the same for every thread count.

    Parameters
    ----------{params}
    a : int or array_like of int, shape (B,)
        The taken (chosen) action of each state.
    weights : array_like, shape (B,), optional
        Real weights of the states, any sign (advantages are negative too);
        NaN and inf are rejected.  Default: all 1.
    grad : bool, default False
        Also return the gradient (d,).
    hess : bool, default False
        Also return the Hessian (d, d).  Not with ``entropy_weight != 0``.{options}
    entropy_weight : float, default 0.0
        Weight ``beta`` of the entropy bonus (finite; any sign).  ``0`` gives
        the plain log-likelihood's bits exactly.

    Returns
    -------
    value : float
    gradient : ndarray, shape (d,)
        With ``grad=True``.
    hessian : ndarray, shape (d, d)
        With ``hess=True``.

    The results are float64 whatever the input dtype: ``value``,
    ``(value, gradient)``, ``(value, hessian)`` or
    ``(value, gradient, hessian)``.
{raises}
        Also for weights of the wrong shape or holding NaN or inf, a
        non-finite ``entropy_weight``, or ``hess=True`` with
        ``entropy_weight != 0``; ``TypeError`` for an ``entropy_weight``
        that is not a real number.

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> phi = np.eye(2)[None].repeat(3, axis=0)          # 3 states, 2 actions
    >>> v, g = fastscore.loglik(phi, np.zeros(2), [0, 0, 1], grad=True)
    >>> g
    array([ 0.5, -0.5])
    >>> v, g = fastscore.loglik(phi, np.zeros(2), [0, 0, 1], grad=True, entropy_weight=0.1)
    >>> round(v, 6)  # 3 log(1/2) + 0.1 * 3 log 2
    -1.871497
    """)


def kl(phi, theta_ref, theta, *, mask=None, temperature=1.0, offsets=None, grad=False, out=None,
       n_threads=None):
    # theta_ref checked here first, so that its errors name it (run_call
    # checks it as the pass's theta).
    theta_ref = coerce_theta(theta_ref, "theta_ref")
    theta_new = coerce_theta(theta, "theta")
    if np.shape(theta_ref) != theta_new.shape:
        raise ValueError(
            f"theta_ref and theta must have the same shape (d,), got {np.shape(theta_ref)} "
            f"and {theta_new.shape}")
    out, out2 = split_out(out, grad)
    return run_call(OUT_KL | (OUT_KL_GRAD if grad else 0), phi, theta_ref, None, mask, offsets,
                    temperature, n_threads, out, None, 0, 0, out2, 0.0, theta_new)


kl.__doc__ = _doc(r"""KL divergence :math:`\mathrm{KL}(\pi_{\mathrm{ref}} \,\|\, \pi)` of each state, with its gradient in theta.

    :math:`\pi_{\mathrm{ref}}` is the policy of ``theta_ref``, :math:`\pi`
    that of ``theta`` (the KL penalty of a trust-region or PPO-style update):

    .. math::

        \mathrm{KL} = \sum_k \pi_{\mathrm{ref},k} \log \frac{\pi_{\mathrm{ref},k}}{\pi_k},
        \qquad
        \nabla_\theta \mathrm{KL} = \frac{1}{\tau} \sum_k (\pi_k - \pi_{\mathrm{ref},k})\, \phi_k.

    One pass gives :math:`\pi_{\mathrm{ref}}`; a sweep over each state's rows
    (still in cache) computes :math:`\Delta_k = \phi_k \cdot (\theta -
    \theta_{\mathrm{ref}}) / \tau` directly (compensated, like the logits),
    never :math:`\pi - \pi_{\mathrm{ref}}` by subtraction, and sums
    :math:`\sum_k \pi_{\mathrm{ref},k} f(x_k)`, :math:`f(x) = e^x - 1 - x \ge 0`,
    :math:`x_k = \Delta_k - \log \sum_j \pi_{\mathrm{ref},j} e^{\Delta_j}`: no
    term cancels, so the KL of nearly equal policies keeps its relative
    accuracy.

    Parameters
    ----------{params}
    theta_ref : array_like, shape (d,)
        Parameters of the reference policy.
    theta : array_like, shape (d,)
        Parameters of the policy the gradient is taken in.{options}
    grad : bool, default False
        Also return the gradient in ``theta`` of each state's KL.
    out : ndarray, shape (B,), optional
        Where to write a batch's result; with ``grad=True`` a pair
        ``(out_kl, out_grad)``, either None.

    Returns
    -------
    float, or ndarray of shape (B,)
        The KL of each state; with ``grad=True`` the pair ``(kl, grad)``,
        ``grad`` of shape (d,) or (B, d).  float32 when ``phi``,
        ``theta_ref`` and ``theta`` are all float32, else float64.
{raises}
        Also for NaN or inf in ``theta_ref`` or ``theta``, when they differ
        in shape, or when a state's logits under the two differ by more
        than about 16384 (the difference form would lose its accuracy).

    See Also
    --------
    fastscore.reference.kl : the same function in plain NumPy.

    Examples
    --------
    >>> import numpy as np, fastscore
    >>> phi = np.eye(2)
    >>> round(fastscore.kl(phi, np.zeros(2), np.array([np.log(3.0), 0.0])), 6)
    0.143841
    >>> kl, g = fastscore.kl(phi, np.zeros(2), np.array([np.log(3.0), 0.0]), grad=True)
    >>> g  # (pi - pi_ref) @ phi: pi = (3/4, 1/4), pi_ref = (1/2, 1/2)
    array([ 0.25, -0.25])
    """)


def build_info():
    """What this build of the kernel has: a dict for fastscore.show_config()."""
    return {
        "openmp": bool(FS_OPENMP),
        "max_threads": fs_omp_max_threads(),
        "simd": fs_simd_level().decode(),
        "float64_logits": f"compensated dot product, TwoProduct by {fs_kern.level.decode()}",
        "cflags": FASTSCORE_CFLAGS.decode(),
    }


def _fused_available(dtype="float64"):
    """Whether this CPU's kernel set has the fused tiny-state kernels for phi
    of this dtype (for tests)."""
    if dtype == "float32":
        return fs_kern.fused_f32_dot2 != NULL and fs_kern.fused_f32_dot != NULL
    return fs_kern.fused_f64 != NULL


def _fused_enabled(bint on):
    """Let calls take the fused kernel (on, the default) or not; returns the
    previous setting.  Tests compare the two paths' bits and errors."""
    global fused_enabled
    prev = fused_enabled
    fused_enabled = on
    return prev


def _ragged_pays(const Py_ssize_t[::1] offsets, Py_ssize_t d):
    """ragged_pays over every state of offsets (a block), with d features:
    whether run_fused sends such a block to the fused kernel (for tests)."""
    cdef Problem pr
    memset(&pr, 0, sizeof(pr))
    pr.offsets = &offsets[0]
    pr.d = d
    return ragged_pays(&pr, 0, offsets.shape[0] - 1)


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


def _vexp(const double[::1] x):
    """exp(x) by the vectorised exp that weighs a block's rows (for tests)."""
    cdef Py_ssize_t n = x.shape[0], i, j, m
    cdef double buf[BLOCK_ROWS]
    cdef double zero[BLOCK_ROWS]
    cdef double w[BLOCK_ROWS]
    out = np.empty(n)
    cdef double[::1] o = out
    memset(zero, 0, sizeof(zero))
    i = 0
    while i < n:
        m = min(<Py_ssize_t>BLOCK_ROWS, n - i)
        memset(buf, 0, sizeof(buf))
        for j in range(m):
            buf[j] = x[i + j]
        fs_block_exp(buf, zero, 0.0, 0.0, <int>m, w)
        for j in range(m):
            o[i + j] = w[j]
        i += m
    return out


def _log1p(const double[::1] x):
    """log1p(x) (x >= +0) by fs_log1p, the one finish_state uses (for tests)."""
    out = np.empty(x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        o[i] = fs_log1p(x[i])
    return out
