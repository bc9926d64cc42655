# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, binding=True
"""Compiled core of fastscore.matrix: the state-input form z = (s @ W + b) / tau.

Layers (docs/design.md, "Layers" and "The one-pass algorithm"):

* ``score``, ``log_prob``, ``entropy``, ``probs``, ``sample`` and ``loglik``
  are the public entry points (re-exported by ``fastscore.matrix``).  Each
  first tries ``canonical``: C-level checks of arguments already in canonical
  form (float32/float64 NumPy arrays, an ``int`` action), which also allocate
  the results; anything else is converted once by ``coerce_args`` (Python,
  with the helpers of ``fastscore._coerce``) and checked again.
* ``run_states`` / ``run_loglik`` drive the threads; they hold no Python
  objects.
* ``state_*``, ``soft_*`` and ``block_*`` are ``noexcept nogil`` helpers for
  one state or one block of states.

One state: the logits are compensated dot products (Dot2 from
fastscore_simd.h, as for the phi form) of s with the columns of W, kept as an
unevaluated double-double sum, so logits in the thousands lose nothing; then
the softmax summary ``Soft`` (the maximum m, r = sum of the other actions'
exp(z_k - m)) and one finishing step per output.  ``1 - pi_a`` is always
formed as the sum of the other probabilities.

A batch likelihood gradient (``loglik(grad=True)``) of many states is
matrix-matrix work: blocks of BLAS_ROWS states take Z = S_blk @ W (dgemm),
the fused softmax and residual on the block while it is in cache, then
G += S_blk^T R_blk (dgemm).  A row whose plain (BLAS) logits could be off by
more than LOGIT_TOL (a-priori bound gamma_k ||s|| max_j ||W_j||) gets
compensated logits instead.  Blocks are grouped into chunks whose size
depends only on B; each chunk's partial sums are accumulated serially in
block order and the chunks merged in order, so the bits do not depend on the
thread count.  Each dgemm is small enough that OpenBLAS runs it on the
calling thread.
"""

from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_Check
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, exp, fabs, fma, frexp, isfinite, ldexp, log, log1p, sqrt
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm

cimport numpy as cnp

from _common cimport (
    ALL_MASKED, FS_SPLIT_MAX, KL_BIG, KL_EXACT, KL_FAR, NO_MEMORY, NONFINITE_LOGIT,
    NONFINITE_RESULT, NONFINITE_S, NONFINITE_W, OK, Choices, Status, as_temperature,
    as_thread_count, check_out, check_out_disjoint, expm1_minus, first_bad_choice,
    fs_clock_master, fs_dot2_f64, fs_init, fs_log1p, fs_now, fs_padded, fs_record_failure,
    fs_split, fs_theta, fs_threads_judge, Room, is_real_kernel_array, one_action, own_actions,
    own_mask, p_expm1, raise_bad_choice, init_kernels, raise_common_status, raise_kl_far,
    releases_gil, seed_key, store_real, threads_pay,
)

import numpy as np

from fastscore._coerce import _as_actions, _as_kernel_array, _as_mask, coerce_finite

cnp.import_array()
init_kernels()


cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void *data, cnp.dtype descr, object base)


cdef extern from "fastscore_vexp.h" nogil:
    void fsm_exp_block(double *x, Py_ssize_t n)
    void fsm_gemv(const double *s, const double *w, Py_ssize_t ldw, Py_ssize_t k, Py_ssize_t n,
                  double *z, double *colsq)
    double fsm_sumsq(const double *x, Py_ssize_t n)
    void fsm_split_row(const double *x, Py_ssize_t n, double sigma, double *hi, double *lo)
    void fsm_add_to(double *y, const double *x, Py_ssize_t n)
    void fsm_ger(double *g, Py_ssize_t ldg, const double *s, Py_ssize_t k, const double *r,
                 Py_ssize_t n)
    void fsm_outer(double *o, Py_ssize_t ldo, const double *s, Py_ssize_t k, const double *r,
                   Py_ssize_t n)
    double fsm_colsq_max(const double *w, Py_ssize_t ldw, Py_ssize_t k, Py_ssize_t n, double *tmp)
    void fsm_log1p_block(double *x, Py_ssize_t n)
    bint fsm_all_finite(const double *x, Py_ssize_t n)
    void fsm_axpby(double *y, const double *x, double a, double b, Py_ssize_t n)
    void fsm_copy_w(const char *src, Py_ssize_t s0, Py_ssize_t s1, int f32, Py_ssize_t k,
                    Py_ssize_t n, double *w)


cdef extern from "fastscore_rng.h" nogil:
    double fs_gumbel(uint64_t key, uint64_t state, uint64_t action)


cdef extern from "<float.h>":
    const double FLT_MAX


cdef enum:
    # Rows of one BLAS block; and the largest rows * k * N of one dgemm, under
    # OpenBLAS's threshold for threading it (65536 * 4), so every dgemm runs
    # on the calling thread and gives the same bits whatever the thread count.
    BLAS_ROWS = 1024
    BLAS_MAX_WORK = 1 << 18
    # Batches of at least this many states go by blocks (block_soft): from
    # 2 states of 64 x 10 on, faster than one state at a time.
    BLOCK_MIN_STATES = 2
    # States of one chunk of loglik (at least; see chunk_rows).
    CHUNK_MIN = 1024
    MAX_CHUNKS = 64
    # W (both layouts) up to this many doubles is prepared on the stack.
    STACK_W = 2048
    # A block takes the split logits (block_split_logits) when more than
    # 1 / SPLIT_SHARE of its rows would need compensated ones.
    SPLIT_SHARE = 8
    # Exponents beyond this (entries near 2^900) leave a row to Dot2: the
    # split's rounding constants and exact products would overflow.
    SPLIT_MAX_EXP = 900

# Largest a-priori absolute error of a plain (BLAS) logit before the row is
# recomputed with compensated dot products.  It perturbs each probability by
# at most a relative 2 LOGIT_TOL, far below the 1e-12 accuracy target.
cdef double LOGIT_TOL = 1e-13
cdef double UNIT_ROUNDOFF = 1.1102230246251565e-16

cdef enum Kind:
    K_SCORE = 0
    K_LOG_PROB = 1
    K_ENTROPY = 2
    K_PROBS = 3
    K_SAMPLE = 4
    K_LOGLIK = 5
    K_KL = 6


cdef struct MProb:
    # Everything shared by the states of one call; strides are in bytes.
    int kind
    const char *s
    Py_ssize_t s_sb, s_sk
    bint s_f32
    Py_ssize_t k, n, kp, np_   # np_: n padded to a multiple of FS_LANES
    const double *w        # (k, ldw) row-major W as double: W itself when it is float64 with
    Py_ssize_t ldw         # unit column stride, else a copy (ldw = N)
    bint norm_in_pass      # one state reading W in place: wnorm found by its logits pass
    const double *bias     # (n,) or NULL
    double bmax            # max |b|
    double wnorm           # max_j ||W[:, j]||_2 (inf: every state gets compensated logits)
    double tau
    const char *act
    Py_ssize_t act_s
    const char *mask       # NULL: every action legal
    Py_ssize_t mask_sb, mask_sn
    const char *wts        # loglik weights or NULL
    double beta            # loglik's entropy weight (0: no entropy term)
    Py_ssize_t wts_s
    bint wts_f32
    char *out              # score: grad_W; log_prob, entropy, probs; sample: actions
    Py_ssize_t out_sb, out_s1, out_s2
    char *outb             # score: grad_b (or NULL); sample: log pi
    Py_ssize_t outb_sb, outb_s
    bint out_f32
    uint64_t key
    char *sc_w             # sample(score=True): the score of the drawn action, grad_W
    Py_ssize_t sc_sb, sc_s1, sc_s2
    char *sc_b             # and grad_b (or NULL)
    Py_ssize_t sc_bsb, sc_bs
    bint trace             # sample(trace=): sc_w (sc_b) <- decay sc_w + weight score
    double decay, weight
    # kl: the pass's W and b are W_ref and b_ref; W - W_ref is dwt (transposed,
    # (n, k)) + dw_lo ((k, n), NULL where every difference is exact), exactly;
    # b - b_ref is db + db_lo (NULL without b)
    const double *dwt
    const double *dw_lo
    const double *db
    const double *db_lo


cdef struct Soft:
    double m, m_lo         # the maximum logit, as m + m_lo
    Py_ssize_t amax        # its (first) index
    double r               # sum over the other legal actions of exp(z_k - m)
    double l               # 1 + r


# ---------------------------------------------------------------------------
# One state.

cdef inline double s_at(const MProb *p, Py_ssize_t i, Py_ssize_t c) noexcept nogil:
    cdef const char *q = p.s + i * p.s_sb + c * p.s_sk
    if p.s_f32:
        return (<const float *>q)[0]
    return (<const double *>q)[0]


cdef inline bint legal(const MProb *p, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    return p.mask == NULL or p.mask[i * p.mask_sb + j * p.mask_sn] != 0


cdef inline Py_ssize_t action_of(const MProb *p, Py_ssize_t i) noexcept nogil:
    return (<const Py_ssize_t *>(p.act + i * p.act_s))[0]


cdef inline double weight_of(const MProb *p, Py_ssize_t i) noexcept nogil:
    if p.wts == NULL:
        return 1.0
    if p.wts_f32:
        return (<const float *>(p.wts + i * p.wts_s))[0]
    return (<const double *>(p.wts + i * p.wts_s))[0]


cdef Status state_load(const MProb *p, Py_ssize_t i, double *tb) noexcept nogil:
    """s_i as double in tb[:k]."""
    cdef Py_ssize_t c
    cdef const char *row = p.s + i * p.s_sb
    if not p.s_f32 and p.s_sk == sizeof(double):
        memcpy(tb, row, p.k * sizeof(double))
    elif p.s_f32 and p.s_sk == sizeof(float):
        for c in range(p.k):   # a loop the compiler vectorises
            tb[c] = (<const float *>row)[c]
    else:
        for c in range(p.k):
            tb[c] = s_at(p, i, c)
    if not fsm_all_finite(tb, p.k):
        return NONFINITE_S
    return OK


cdef void state_split(const MProb *p, double *tb, fs_theta *th) noexcept nogil:
    """tb (3 kp doubles, s_i in tb[:k], zero padding kept) as a Dot2 operand."""
    cdef Py_ssize_t c, kp = p.kp
    th.huge = 0
    for c in range(p.k):
        fs_split(tb[c], &tb[kp + c], &tb[2 * kp + c])
        if fabs(tb[c]) > FS_SPLIT_MAX:
            th.huge = 1
    th.val = tb
    th.hi = tb + kp
    th.lo = tb + 2 * kp


cdef inline double two_sum(double a, double b, double *err) noexcept nogil:
    """a + b rounded, its rounding error into err (TwoSum: a + b = sum + err
    exactly, whichever of a and b is the larger)."""
    cdef double t = a + b
    cdef double bb = t - a
    err[0] = (a - (t - bb)) + (b - bb)
    return t


cdef inline void finish_sum(const double *bias, double tau, Py_ssize_t j, double hi, double lo,
                            double *zh, double *zl) noexcept nogil:
    """(hi + lo + bias_j) / tau as an unevaluated sum (bias may be NULL)."""
    cdef double z, e
    if bias != NULL:
        hi = two_sum(hi, bias[j], &e)
        lo += e
    if tau != 1.0:
        z = hi / tau
        lo = (fma(-z, tau, hi) + lo) / tau  # fma: hi - z tau, exactly
        hi = z
    zh[0] = hi
    zl[0] = lo


cdef inline void finish_logit(const MProb *p, Py_ssize_t j, double hi, double lo,
                              double *zh, double *zl) noexcept nogil:
    """(hi + lo + b_j) / tau as an unevaluated sum."""
    finish_sum(p.bias, p.tau, j, hi, lo, zh, zl)


cdef Status state_logits(const MProb *p, Py_ssize_t i, const fs_theta *th, const double *wt,
                         double *zh, double *zl) noexcept nogil:
    """Compensated logits of state i (masked ones -inf); wt: W.T (wt_of)."""
    cdef Py_ssize_t j
    cdef double hi, lo
    for j in range(p.n):
        if not legal(p, i, j):
            zh[j] = -INFINITY
            zl[j] = 0.0
            continue
        hi = fs_dot2_f64(wt + j * p.k, th, p.k, &lo)
        finish_logit(p, j, hi, lo, &zh[j], &zl[j])
        if not (isfinite(zh[j]) and isfinite(zl[j])):
            return NONFINITE_LOGIT
    return OK


# One thread's scratch (doubles), from the start: tb (3 kp: s_i and its Dot2
# split, zero padding kept), zh, zl, wv, res (np_ each), a flag and W.T
# (k n, built on first use by wt_of), the flag of W's split (built on first
# use by block_split_logits, in the block buffers), a kind's own
# (state_extra); the blocks add their own buffers after it.

cdef inline Py_ssize_t state_extra(const MProb *p) noexcept nogil:
    """Where a kind's own scratch starts (state_scratch): kl's low parts of
    its logit differences (np_), sample(trace=)'s score (k n + n)."""
    return 3 * p.kp + 4 * p.np_ + 2 + p.k * p.n


cdef inline Py_ssize_t state_scratch(const MProb *p) noexcept nogil:
    if p.kind == K_KL:
        return state_extra(p) + p.np_
    if p.trace:
        return state_extra(p) + p.k * p.n + p.n
    return state_extra(p)


cdef inline void scratch_init(const MProb *p, double *scratch) noexcept nogil:
    """Zero what must start zero: the Dot2 operand's padding and the flags
    of W.T and of W's split."""
    memset(scratch, 0, 3 * p.kp * sizeof(double))
    scratch[3 * p.kp + 4 * p.np_] = 0.0
    scratch[3 * p.kp + 4 * p.np_ + 1 + p.k * p.n] = 0.0


cdef inline const double *wt_of(const MProb *p, double *scratch) noexcept nogil:
    """W.T (n, k), the columns of W as Dot2 rows: built in this thread's
    scratch the first time one of its states needs compensated logits."""
    cdef double *flag = scratch + 3 * p.kp + 4 * p.np_
    if flag[0] == 0.0:
        transpose_w(p, flag + 1)
        flag[0] = 1.0
    return flag + 1


cdef Status state_logits_auto(const MProb *p, Py_ssize_t i, double *tb, double *zh,
                             double *zl) noexcept nogil:
    """Logits of state i (s_i loaded in tb): plain dot products, or compensated
    ones when the a-priori error bound of the plain ones exceeds LOGIT_TOL."""
    cdef Py_ssize_t j
    cdef double zmax = 0.0, ns, bound
    cdef double gam = p.k * UNIT_ROUNDOFF / (1.0 - p.k * UNIT_ROUNDOFF)
    cdef fs_theta th
    cdef double m2
    cdef Py_ssize_t c
    cdef double *colsq = zl + p.np_   # the wv area, free while the logits are computed
    if p.norm_in_pass:
        # One state reading W in place: its column norms (and its NaN check)
        # come from the same pass.
        fsm_gemv(tb, p.w, p.ldw, p.k, p.n, zh, colsq)
        m2 = 0.0
        for j in range(p.n):
            if not isfinite(colsq[j]):
                for c in range(p.k):
                    if not isfinite(p.w[c * p.ldw + j]):
                        return NONFINITE_W
                m2 = INFINITY  # entries beyond 1e154: compensated logits below
            m2 = max(m2, colsq[j])
        (<MProb *>p).wnorm = sqrt(m2)
    else:
        fsm_gemv(tb, p.w, p.ldw, p.k, p.n, zh, NULL)
    if p.bias != NULL:
        for j in range(p.n):
            zh[j] = zh[j] + p.bias[j]
    if p.tau != 1.0:
        for j in range(p.n):
            zh[j] = zh[j] / p.tau
    for j in range(p.n):
        zmax = max(zmax, fabs(zh[j]))
        zl[j] = 0.0
    ns = fsm_sumsq(tb, p.k)
    # gamma_k sum_c |s_c W_cj| <= gamma_k ||s|| ||W_j|| for the dot product in
    # any order, 2 u |z| for the bias addition and the division.
    bound = gam * (sqrt(ns) * p.wnorm) / p.tau + 2.0 * UNIT_ROUNDOFF * (zmax + p.bmax / p.tau)
    if bound <= LOGIT_TOL and isfinite(zmax) and isfinite(ns):
        if p.mask != NULL:
            for j in range(p.n):
                if not legal(p, i, j):
                    zh[j] = -INFINITY
        return OK
    state_split(p, tb, &th)
    return state_logits(p, i, &th, wt_of(p, tb), zh, zl)


cdef Status soft_of(const MProb *p, const double *zh, const double *zl, double *wv,
                    Soft *sf) noexcept nogil:
    """wv_k = exp(z_k - m) (0 if masked, exactly 1 at the max) and the summary."""
    cdef Py_ssize_t j
    cdef double r = 0.0
    sf.amax = -1
    sf.m = -INFINITY
    sf.m_lo = 0.0
    for j in range(p.n):
        if zh[j] > sf.m:
            sf.m = zh[j]
            sf.m_lo = zl[j]
            sf.amax = j
    if sf.amax < 0:
        return ALL_MASKED  # (checked before the pass, on the call's own mask)
    for j in range(p.n):
        wv[j] = (zh[j] - sf.m) + (zl[j] - sf.m_lo)   # -inf for masked actions
    fsm_exp_block(wv, p.n)
    wv[sf.amax] = 1.0
    for j in range(p.n):
        if j != sf.amax:
            r += wv[j]
    sf.r = r
    sf.l = 1.0 + r
    return OK


cdef inline double soft_log_pi(const Soft *sf, const double *zh, const double *zl,
                               Py_ssize_t a) noexcept nogil:
    """log pi(a) = (z_a - m) - log1p(r): two non-positive terms."""
    if a == sf.amax:
        return -fs_log1p(sf.r)
    return ((zh[a] - sf.m) + (zl[a] - sf.m_lo)) - fs_log1p(sf.r)


cdef inline bint soft_residual(const MProb *p, const Soft *sf, const double *wv, Py_ssize_t a,
                               double scale, double *res) noexcept nogil:
    """res = scale (e_a - pi) / tau, with 1 - pi_a as the sum of the others,
    and True.  When that is not finite (1 / tau overflows: a subnormal tau),
    res = scale (e_a - pi) instead, finite, and False: the caller divides each
    result entry by tau, so an exact 0 (one legal action, a masked action,
    s_c = 0) stays 0 rather than 0 * inf = NaN.  res[a] is the entry of
    largest magnitude (others >= each wv_j), so it alone tells."""
    cdef Py_ssize_t j
    cdef double others = 0.0
    cdef double f0 = scale / sf.l
    cdef double f = f0
    if p.tau != 1.0:
        f = f / p.tau
    for j in range(p.n):
        if j != a:
            others += wv[j]
            res[j] = -wv[j] * f
    res[a] = others * f
    if isfinite(res[a]):
        return True
    others = 0.0
    for j in range(p.n):
        if j != a:
            others += wv[j]
            res[j] = -wv[j] * f0
    res[a] = others * f0
    return False


cdef inline void store(char *o, double v, bint f32) noexcept nogil:
    if f32:
        (<float *>o)[0] = <float>v
    else:
        (<double *>o)[0] = v


cdef void score_unscaled(const MProb *p, Py_ssize_t i, const double *tb,
                         const double *res) noexcept nogil:
    """Store the score of state i from res = e_a - pi without its 1 / tau (see
    soft_residual): (s_c res_j) / tau, and res_j / tau for b."""
    cdef Py_ssize_t c, j
    cdef char *o = p.out + i * p.out_sb
    for c in range(p.k):
        for j in range(p.n):
            store(o + c * p.out_s1 + j * p.out_s2, (tb[c] * res[j]) / p.tau, p.out_f32)
    if p.outb != NULL:
        o = p.outb + i * p.outb_sb
        for j in range(p.n):
            store(o + j * p.outb_s, res[j] / p.tau, p.out_f32)


cdef inline Py_ssize_t gumbel_argmax(const MProb *p, Py_ssize_t i, const double *z,
                                    Py_ssize_t amax) noexcept nogil:
    """The Gumbel-max draw of state i: argmax_j z_j + G(key, i, j) over the
    legal actions (z_j > -inf; z the logits, or the logits minus their max)."""
    cdef Py_ssize_t j, best_j = amax
    cdef double v, best = -INFINITY
    for j in range(p.n):
        if z[j] != -INFINITY:
            v = z[j] + fs_gumbel(p.key, <uint64_t>i, <uint64_t>j)
            if v > best:
                best = v
                best_j = j
    return best_j


cdef Status score_store(const MProb *p, Py_ssize_t i, const double *tb, const Soft *sf,
                        const double *wv, Py_ssize_t a, double *res) noexcept nogil:
    """Store the score of action a in state i into p.out (and p.outb) from
    its softmax (sf, wv); res: n doubles of scratch."""
    cdef Py_ssize_t c, j, n = p.n
    cdef double sc, smax, rmax, lim
    cdef char *o
    cdef bint scaled
    scaled = soft_residual(p, sf, wv, a, 1.0, res)
    smax = 0.0
    rmax = 0.0
    for c in range(p.k):
        smax = max(smax, fabs(tb[c]))
    for j in range(n):
        if not (fabs(res[j]) <= rmax) and rmax == rmax:   # a NaN sticks
            rmax = fabs(res[j])
    # The largest result entries, |s_c res_j| (and |res_j| when b is
    # given): rounding is monotone, so these are exactly the largest
    # entries as computed (before the float32 conversion).
    lim = FLT_MAX if p.out_f32 else 1.7976931348623157e308
    if scaled:
        if not (smax * rmax <= lim and (p.outb == NULL or rmax <= lim)):
            return NONFINITE_RESULT
    else:
        if not ((smax * rmax) / p.tau <= lim and (p.outb == NULL or rmax / p.tau <= lim)):
            return NONFINITE_RESULT
        score_unscaled(p, i, tb, res)
        return OK
    o = p.out + i * p.out_sb
    if not p.out_f32 and p.out_s2 == sizeof(double) and p.out_s1 % sizeof(double) == 0:
        fsm_outer(<double *>o, p.out_s1 // sizeof(double), tb, p.k, res, n)
    elif p.out_f32:
        for c in range(p.k):
            sc = tb[c]
            for j in range(n):
                (<float *>(o + c * p.out_s1 + j * p.out_s2))[0] = <float>(sc * res[j])
    else:
        for c in range(p.k):
            sc = tb[c]
            for j in range(n):
                (<double *>(o + c * p.out_s1 + j * p.out_s2))[0] = sc * res[j]
    if p.outb != NULL:
        o = p.outb + i * p.outb_sb
        for j in range(n):
            store(o + j * p.outb_s, res[j], p.out_f32)
    return OK


cdef inline double load_real(const char *src, bint f32) noexcept nogil:
    if f32:
        return (<const float *>src)[0]
    return (<const double *>src)[0]


cdef Status score_or_trace(const MProb *p, Py_ssize_t i, const double *tb, const Soft *sf,
                           const double *wv, Py_ssize_t a, double *res,
                           double *buf) noexcept nogil:
    """The score of action a in state i into p.out (p.outb), or with p.trace
    added into them: out_i <- decay out_i + weight score_i, the score formed
    by score_store in double into buf (k n + n doubles), every new entry
    checked finite before any is written (so a failing state is left as it
    was)."""
    cdef MProb q
    cdef Py_ssize_t c, j, m, k = p.k, n = p.n
    cdef Status st
    cdef char *o
    cdef char *ob = NULL
    cdef bint rows
    if not p.trace:
        return score_store(p, i, tb, sf, wv, a, res)
    q = p[0]
    q.out, q.out_sb, q.out_s1, q.out_s2 = <char *>buf, 0, n * sizeof(double), sizeof(double)
    q.outb = NULL if p.outb == NULL else <char *>(buf + k * n)
    q.outb_sb, q.outb_s = 0, sizeof(double)
    q.out_f32 = False
    st = score_store(&q, i, tb, sf, wv, a, res)
    if st != OK:
        return st
    o = p.out + i * p.out_sb
    m = k * n
    rows = not p.out_f32 and p.out_s2 == sizeof(double) and p.out_s1 % sizeof(double) == 0
    # The new entries into buf (float64 rows by the vectorised axpby) ...
    for c in range(k):
        if rows:
            fsm_axpby(buf + c * n, <const double *>(o + c * p.out_s1), p.decay, p.weight, n)
        else:
            for j in range(n):
                buf[c * n + j] = p.decay * load_real(o + c * p.out_s1 + j * p.out_s2,
                                                     p.out_f32) + p.weight * buf[c * n + j]
    if p.outb != NULL:
        ob = p.outb + i * p.outb_sb
        for j in range(n):
            buf[m + j] = p.decay * load_real(ob + j * p.outb_s, p.out_f32) + p.weight * buf[m + j]
        m += n
    # ... rounded to the trace's dtype, checked, and only then written.
    if p.out_f32:
        for j in range(m):
            buf[j] = <float>buf[j]
    if not fsm_all_finite(buf, m):
        return NONFINITE_RESULT
    if rows and p.out_s1 == n * <Py_ssize_t>sizeof(double):
        memcpy(o, buf, k * n * sizeof(double))
    else:
        for c in range(k):
            if rows:
                memcpy(o + c * p.out_s1, buf + c * n, n * sizeof(double))
                continue
            for j in range(n):
                store(o + c * p.out_s1 + j * p.out_s2, buf[c * n + j], p.out_f32)
    if ob != NULL:
        for j in range(n):
            store(ob + j * p.outb_s, buf[k * n + j], p.out_f32)
    return OK


cdef inline const MProb *score_view(const MProb *p, MProb *q) noexcept nogil:
    """p with sample's score arrays as the outputs, for score_store: the score
    of the drawn action is then formed by the score kind's own code."""
    q[0] = p[0]
    q.kind = K_SCORE
    q.out, q.out_sb, q.out_s1, q.out_s2 = p.sc_w, p.sc_sb, p.sc_s1, p.sc_s2
    q.outb, q.outb_sb, q.outb_s = p.sc_b, p.sc_bsb, p.sc_bs
    return q


cdef inline double soft_entropy_sum(const MProb *p, const Soft *sf, const double *zh,
                                   const double *zl, const double *wv) noexcept nogil:
    """h = sum_k w_k (m - z_k) over the actions with a weight: H = log1p(r) + h / l."""
    cdef Py_ssize_t j
    cdef double h = 0.0
    for j in range(p.n):
        if wv[j] != 0.0:
            h += wv[j] * ((sf.m - zh[j]) + (sf.m_lo - zl[j]))
    return h


cdef inline double soft_entropy_coef(const Soft *sf, const double *zh, const double *zl,
                                     const double *wv, double h, Py_ssize_t j) noexcept nogil:
    """dH/dz_j = -pi_j (log pi_j + H), log pi_j + H = (z_j - m) + h / l, so
    log1p(r) cancels without being subtracted; exactly 0 where w_j = 0."""
    if wv[j] == 0.0:
        return 0.0
    return -(wv[j] / sf.l) * (((zh[j] - sf.m) + (zl[j] - sf.m_lo)) + h / sf.l)


cdef Status entropy_grad_store(const MProb *p, Py_ssize_t i, const double *tb, const Soft *sf,
                               const double *zh, const double *zl, const double *wv, double h,
                               double *coef) noexcept nogil:
    """Store dH/dW (and dH/db) of state i into p.out (p.outb): outer(s, c) / tau
    with c_j = dH/dz_j (soft_entropy_coef; h from soft_entropy_sum)."""
    cdef Py_ssize_t j
    for j in range(p.n):
        coef[j] = soft_entropy_coef(sf, zh, zl, wv, h, j)
    return coef_grad_store(p, i, tb, coef)


cdef Status coef_grad_store(const MProb *p, Py_ssize_t i, const double *tb,
                            const double *coef) noexcept nogil:
    """Store the gradient in W (and b) of a function of state i's logits into
    p.out (p.outb): outer(s, c) / tau (and c / tau), c_j its derivative in z_j."""
    cdef Py_ssize_t c, j
    cdef char *o = p.out + i * p.out_sb
    cdef double smax = 0.0, cmax = 0.0
    if p.tau == 1.0 and not p.out_f32 and p.out_s2 == sizeof(double) \
            and p.out_s1 % sizeof(double) == 0:
        # (s_c c_j) / 1 is s_c c_j: the vectorised outer product, the same
        # bits, once its largest entry (rounding is monotone) is known finite.
        for c in range(p.k):
            smax = max(smax, fabs(tb[c]))
        for j in range(p.n):
            if not isfinite(coef[j]):
                return NONFINITE_RESULT
            cmax = max(cmax, fabs(coef[j]))
        if not isfinite(smax * cmax):
            return NONFINITE_RESULT
        fsm_outer(<double *>o, p.out_s1 // sizeof(double), tb, p.k, coef, p.n)
    else:
        for c in range(p.k):
            for j in range(p.n):
                if not store_real(o + c * p.out_s1 + j * p.out_s2, (tb[c] * coef[j]) / p.tau,
                                  p.out_f32):
                    return NONFINITE_RESULT
    if p.outb != NULL:
        o = p.outb + i * p.outb_sb
        for j in range(p.n):
            if not store_real(o + j * p.outb_s, coef[j] / p.tau, p.out_f32):
                return NONFINITE_RESULT
    return OK


cdef Status state_kl(const MProb *p, Py_ssize_t i, double *tb, const double *zh,
                     const double *zl, const double *wv, const Soft *sf, double *dz,
                     double *dl, double *kl) noexcept nogil:
    """KL(pi_ref || pi) of state i into kl[0], and dKL/dz = pi - pi_ref into dz
    (dl: n doubles of scratch).

    The pass gave pi_ref (zh, zl, wv, sf: its W is W_ref).  Delta_j = (s .
    (W_j - W_ref_j) + b_j - b_ref_j) / tau as hi + lo: the difference's high
    part by a compensated dot like the logits, its low part (at most u of it)
    by a plain one.  d_j = Delta_j - Delta_c, c the action most probable under
    pi_ref (d_c = 0 exactly), so pi - pi_ref is never formed by subtraction.  With L = log
    sum_j pi_ref_j e^{d_j} and x_j = d_j - L, KL = sum_j pi_ref_j f(x_j), f(x)
    = e^x - 1 - x >= 0: no term cancels another, so nearly equal policies keep
    the relative accuracy.  L = log1p(sum_j pi_ref_j expm1(d_j)), unless pi's
    logits relative to c's exceed KL_BIG (policies far apart): then a shifted
    log-sum-exp.  The phi form's state_kl is the same algorithm."""
    cdef Py_ssize_t j, c = sf.amax
    cdef double dc, dc_lo, hi, lo, zm, u, u_max = 0.0, big = 0.0, t = 0.0, L, x, pk, e
    cdef double acc = 0.0, others = 0.0
    cdef double log_l = fs_log1p(sf.r)
    cdef fs_theta th
    state_split(p, tb, &th)
    if p.dw_lo != NULL:
        fsm_gemv(tb, p.dw_lo, p.n, p.k, p.n, dl, NULL)
    for j in range(p.n):
        if zh[j] == -INFINITY:
            continue
        hi = fs_dot2_f64(p.dwt + j * p.k, &th, p.k, &lo)
        if p.dw_lo != NULL:
            lo += dl[j]
        if p.db != NULL:
            lo += p.db_lo[j]
        finish_sum(p.db, p.tau, j, hi, lo, &dz[j], &dl[j])
        if not (isfinite(dz[j]) and isfinite(dl[j])):
            return KL_FAR   # the pass's logits were finite: their difference overflows
    dc, dc_lo = dz[c], dl[c]
    for j in range(p.n):
        if zh[j] == -INFINITY:
            dz[j] = 0.0
            continue
        dz[j] = (dz[j] - dc) + (dl[j] - dc_lo)
        # u_j = log(l pi_j) + constant: pi's logit relative to action c's.
        zm = (zh[j] - sf.m) + (zl[j] - sf.m_lo)
        u = zm + dz[j]
        if u > u_max:
            u_max = u
        big = max(big, fabs(zm) + fabs(dz[j]))
    if u_max > KL_BIG and big > KL_EXACT:
        return KL_FAR
    if u_max <= KL_BIG:
        for j in range(p.n):
            if zh[j] != -INFINITY:
                zm = (zh[j] - sf.m) + (zl[j] - sf.m_lo)
                t += p_expm1(wv[j] / sf.l, zm - log_l, dz[j])
        L = log1p(t)
    else:
        for j in range(p.n):
            if zh[j] != -INFINITY:
                t += exp((zh[j] - sf.m) + (zl[j] - sf.m_lo) + dz[j] - u_max)
        L = u_max + log(t) - log_l
    for j in range(p.n):
        if zh[j] == -INFINITY:
            continue   # dz[j] = 0: a masked action contributes nothing
        zm = (zh[j] - sf.m) + (zl[j] - sf.m_lo) - log_l
        pk = wv[j] / sf.l
        x = dz[j] - L
        if x > KL_BIG and fabs(zm) + fabs(x) > KL_EXACT:
            return KL_FAR
        e = p_expm1(pk, zm, x)
        acc += (pk * expm1_minus(x)) if x <= KL_BIG else (e - pk * x)
        dz[j] = e
        if j != c:
            others += e
    # pi_c - pi_ref_c as minus the others' sum, so the gradient's entries sum to 0.
    dz[c] = -others
    kl[0] = acc
    return OK


cdef Status state_outputs(const MProb *p, Py_ssize_t i, double *scratch) noexcept nogil:
    """All the per-state outputs of state i (every kind but loglik)."""
    cdef Py_ssize_t kp = p.kp, n = p.n, c, j, a = 0, best_j
    cdef double *tb = scratch
    cdef double *zh = scratch + 3 * kp
    cdef double *zl = zh + p.np_
    cdef double *wv = zl + p.np_
    cdef double *res = zh           # score: the residual overwrites zh (read before)
    cdef Soft sf
    cdef double h, kl
    cdef char *o
    cdef Status st
    cdef MProb q
    if p.act != NULL:
        a = action_of(p, i)
    st = state_load(p, i, tb)
    if st != OK:
        return st
    st = state_logits_auto(p, i, tb, zh, zl)
    if st != OK:
        return st
    st = soft_of(p, zh, zl, wv, &sf)
    if st != OK:
        return st
    if p.kind == K_LOG_PROB:
        # log pi(a) is finite in double, but may not be in float32 (or z_a - m
        # may overflow double): an error, as for the phi form.
        if not store_real(p.out + i * p.out_sb, soft_log_pi(&sf, zh, zl, a), p.out_f32):
            return NONFINITE_RESULT
    elif p.kind == K_ENTROPY:
        h = soft_entropy_sum(p, &sf, zh, zl, wv)
        if not store_real(p.out + i * p.out_sb, fs_log1p(sf.r) + h / sf.l, p.out_f32):
            return NONFINITE_RESULT
        if p.sc_w != NULL:
            return entropy_grad_store(score_view(p, &q), i, tb, &sf, zh, zl, wv, h,
                                      wv + p.np_)
    elif p.kind == K_KL:
        st = state_kl(p, i, tb, zh, zl, wv, &sf, wv + p.np_,
                      scratch + state_extra(p), &kl)
        if st != OK:
            return st
        if not store_real(p.out + i * p.out_sb, kl, p.out_f32):
            return NONFINITE_RESULT
        if p.sc_w != NULL:
            return coef_grad_store(score_view(p, &q), i, tb, wv + p.np_)
    elif p.kind == K_PROBS:
        o = p.out + i * p.out_sb
        for j in range(n):
            store(o + j * p.out_s1, wv[j] / sf.l, p.out_f32)
    elif p.kind == K_SAMPLE:
        best_j = gumbel_argmax(p, i, zh, sf.amax)
        (<Py_ssize_t *>(p.out + i * p.out_sb))[0] = best_j
        if not store_real(p.outb + i * p.outb_sb, soft_log_pi(&sf, zh, zl, best_j),
                            p.out_f32):
            return NONFINITE_RESULT
        if p.sc_w != NULL:
            return score_or_trace(score_view(p, &q), i, tb, &sf, wv, best_j, res,
                                  scratch + state_extra(p))
    else:  # K_SCORE
        return score_or_trace(p, i, tb, &sf, wv, a, res, scratch + state_extra(p))
    return OK


cdef inline bint use_blocks(const MProb *p, Py_ssize_t n_states) noexcept nogil:
    """Whether run_states takes blocks of states (block_soft) rather than
    one state at a time: every per-state output but the score (whose k N
    result per state is the cost), for k N up to 4096 (blocks of 64 rows or
    more; with fewer, the dgemm does not pay for itself: measured on
    16 and 256 states of k = 300, N = 50)."""
    return ((p.kind == K_LOG_PROB or p.kind == K_ENTROPY or p.kind == K_PROBS
             or p.kind == K_SAMPLE) and use_blas(p, n_states) and blas_rows(p) >= 64)


cdef inline Status states_unit(const MProb *p, Py_ssize_t u, bint blocked, Py_ssize_t n_states,
                               double *buf, Py_ssize_t *where) noexcept nogil:
    """Unit u of run_states: state u, or (blocked) the u-th block of
    blas_rows states; where: the failing state."""
    cdef Py_ssize_t br
    cdef BlockBufs bb
    if not blocked:
        where[0] = u
        return state_outputs(p, u, buf)
    br = blas_rows(p)
    block_bufs(p, buf + state_scratch(p), &bb)
    return states_block(p, u * br, <int>min(br, n_states - u * br), buf, &bb, where)


cdef Status run_states(const MProb *p, Py_ssize_t n_states, int n_threads,
                       Py_ssize_t *bad) noexcept nogil:
    """Per-state outputs for every state, one state or one block of states
    (fixed by B alone) at a time: each unit independent, so any thread may do
    any unit and the bits never depend on the thread count."""
    cdef bint blocked = use_blocks(p, n_states)
    cdef Py_ssize_t br = blas_rows(p) if blocked else 1
    cdef Py_ssize_t n_units = (n_states + br - 1) // br
    cdef Py_ssize_t u, where, size = state_scratch(p) + (block_scratch(p) if blocked else 0)
    cdef double *buf
    cdef Status st = OK
    cdef int first = OK
    cdef double work = <double>n_states * p.k * p.n
    cdef double master[2]
    cdef double t_start, t0
    bad[0] = n_states
    if n_units > 1 and threads_pay(work, n_threads):
        master[0] = master[1] = 0.0
        t_start = fs_now()
        with parallel(num_threads=n_threads):
            buf = <double *>malloc(size * sizeof(double))
            if buf != NULL:
                scratch_init(p, buf)
            for u in prange(n_units, schedule='guided'):
                t0 = fs_now()
                where = u * br
                if buf == NULL:
                    st = NO_MEMORY
                else:
                    st = states_unit(p, u, blocked, n_states, buf, &where)
                if st != OK:
                    fs_record_failure(where, st, bad, &first)
                fs_clock_master(master, t0, min(br, n_states - u * br))
            free(buf)
        fs_threads_judge(t_start, master, n_states)
        return <Status>first
    cdef double stack[STACK_W]
    buf = stack
    if size > STACK_W:
        buf = <double *>malloc(size * sizeof(double))
        if buf == NULL:
            bad[0] = 0
            return NO_MEMORY
    scratch_init(p, buf)
    for u in range(n_units):
        st = states_unit(p, u, blocked, n_states, buf, &where)
        if st != OK:
            bad[0] = where
            break
    if buf != stack:
        free(buf)
    return st


# ---------------------------------------------------------------------------
# loglik: weighted sums over the batch, by chunks of states.

cdef inline Py_ssize_t partial_size(const MProb *p) noexcept nogil:
    # value, grad_b (n), grad_W (k n)
    return 1 + p.n + p.k * p.n


cdef inline void accumulate_state(const MProb *p, const double *sv, const double *res,
                                  bint scaled, double lp, double wi, double *part) noexcept nogil:
    """part += (wi log pi, res, outer(s_i, res)); sv: s_i or NULL.  Without
    scaled, res lacks its 1 / tau (see soft_residual): each term is divided
    by tau after its product."""
    cdef Py_ssize_t c, j, n = p.n
    cdef double *g = part + 1 + n
    part[0] += wi * lp
    if not scaled:
        for j in range(n):
            part[1 + j] += res[j] / p.tau
        if sv != NULL:
            for c in range(p.k):
                for j in range(n):
                    g[c * n + j] += (sv[c] * res[j]) / p.tau
        return
    for j in range(n):
        part[1 + j] += res[j]
    if sv != NULL:
        fsm_ger(part + 1 + n, n, sv, p.k, res, n)


cdef Status loglik_state(const MProb *p, Py_ssize_t i, double *scratch, double *part,
                         bint grad_w) noexcept nogil:
    """Add state i to part with compensated logits (the per-state path)."""
    cdef Py_ssize_t kp = p.kp, n = p.n
    cdef double *tb = scratch
    cdef double *zh = scratch + 3 * kp
    cdef double *zl = zh + p.np_
    cdef double *wv = zl + p.np_
    cdef double *res = wv + p.np_
    cdef Soft sf
    cdef Status st
    cdef double wi = weight_of(p, i), lp
    cdef bint scaled
    cdef Py_ssize_t a = action_of(p, i)
    st = state_load(p, i, tb)
    if st != OK:
        return st
    st = state_logits_auto(p, i, tb, zh, zl)
    if st != OK:
        return st
    st = soft_of(p, zh, zl, wv, &sf)
    if st != OK:
        return st
    lp = soft_log_pi(&sf, zh, zl, a)
    scaled = soft_residual(p, &sf, wv, a, wi, res)
    if p.beta != 0.0:
        part[0] += p.beta * entropy_residual(p, &sf, zh, zl, wv, scaled, res)
    accumulate_state(p, tb if grad_w else NULL, res, scaled, lp, wi, part)
    return OK


cdef double entropy_residual(const MProb *p, const Soft *sf, const double *zh, const double *zl,
                             const double *wv, bint scaled, double *res) noexcept nogil:
    """res += beta dH/dz (/ tau when scaled, as soft_residual left res), dH/dz
    by soft_entropy_coef.  Returns H."""
    cdef Py_ssize_t j
    cdef double h = soft_entropy_sum(p, sf, zh, zl, wv), c = p.beta
    if scaled and p.tau != 1.0:
        c = c / p.tau
    for j in range(p.n):
        if wv[j] != 0.0:
            res[j] += c * soft_entropy_coef(sf, zh, zl, wv, h, j)
    return fs_log1p(sf.r) + h / sf.l


cdef void loglik_row_unscaled(const MProb *p, Py_ssize_t a, double f0, double oth,
                              double lp, double wi, const double *sv, double *zrow,
                              const double *ent_coef, double *part) noexcept nogil:
    """Add one row of a BLAS block whose residual overflows with its 1 / tau:
    res = f0 (e_a - pi) unscaled (zrow: the weights exp(z_j - m), oth: the sum
    of all but a's), plus beta times ent_coef (block_entropy's, if not NULL),
    each term divided by tau after its product, as accumulate_state does;
    zrow is left 0 for the block's dgemm."""
    cdef Py_ssize_t j
    for j in range(p.n):
        zrow[j] = -zrow[j] * f0
    zrow[a] = oth * f0
    if ent_coef != NULL:
        for j in range(p.n):
            zrow[j] += p.beta * ent_coef[j]
    accumulate_state(p, sv, zrow, False, lp, wi, part)
    for j in range(p.n):
        zrow[j] = 0.0


cdef struct BlockBufs:
    # One thread's buffers for a block of states (block_soft), after its
    # state scratch: the rows of S as double when S cannot be read in place
    # (rows, k), the weights (rows, N), z - m kept for the entropy (rows, N),
    # and per row: z_a - m, the argmax, r (then log1p(r)), the sum of the
    # weights but a's (loglik), 1 / (1 + r) (loglik), 1 + r (states_block).
    double *sblk
    double *zb
    double *dz
    double *da
    Py_ssize_t *amax
    double *lr
    double *oth
    double *fr
    double *l
    # The split logits (block_split_logits): the block's [S_hi | S_lo]
    # (rows, 2k), the low parts of its logits (rows, N), and W's split: its
    # largest column exponent, W_hi (k, N), then [W_lo; W] (2k, N).
    double *ss
    double *zlo
    double *wsp


cdef inline Py_ssize_t block_scratch(const MProb *p) noexcept nogil:
    """Doubles of BlockBufs (see block_bufs)."""
    cdef Py_ssize_t br = blas_rows(p)
    return br * p.k + 2 * br * p.n + 6 * BLAS_ROWS + 2 * br * p.k + br * p.n + 1 + 3 * p.k * p.n


cdef inline void block_bufs(const MProb *p, double *buf, BlockBufs *bb) noexcept nogil:
    cdef Py_ssize_t br = blas_rows(p)
    bb.sblk = buf
    bb.zb = buf + br * p.k
    bb.dz = bb.zb + br * p.n
    bb.da = bb.dz + br * p.n
    bb.amax = <Py_ssize_t *>(bb.da + BLAS_ROWS)
    bb.lr = bb.da + 2 * BLAS_ROWS
    bb.oth = bb.da + 3 * BLAS_ROWS
    bb.fr = bb.da + 4 * BLAS_ROWS
    bb.l = bb.da + 5 * BLAS_ROWS
    bb.ss = bb.da + 6 * BLAS_ROWS
    bb.zlo = bb.ss + 2 * br * p.k
    bb.wsp = bb.zlo + br * p.n


# ---------------------------------------------------------------------------
# Split logits: a block's double-double logits from two BLAS products.
#
# Each row s_i of the block is split as s_hi + s_lo, s_hi a multiple of
# 2^(E_i - t) where |s_i| < 2^E_i, and each column W_j as W_hi + W_lo alike
# (exponent F_j): then every product of s_hi and W_hi is an integer times
# 2^(E_i + F_j - 2t) below 2^(2t), and k of them sum exactly in a double when
# 2t + log2 k <= 53, whatever the order or FMA of the dgemm.  So
# z = S_hi W_hi (exact) + [S_hi S_lo] [W_lo; W] (about 2^-t of z, its
# rounding error below gamma_2k k 2^(E_i + F_max - t)): the logits to far
# better than LOGIT_TOL at any scale, for three products' work.

cdef inline int split_bits(Py_ssize_t k) noexcept nogil:
    """t: k products of two t-bit integers sum exactly (2t + ceil(log2 k) <= 53)."""
    cdef int lg = 0
    while (<Py_ssize_t>1 << lg) < k:
        lg += 1
    return (53 - lg) // 2


cdef inline double split_sigma(double amax, int t, int *e) noexcept nogil:
    """The constant that rounds to multiples of 2^(e - t), amax < 2^e: (x + sigma)
    - sigma (its ulp is 2^(e - t); no fast-math, so it is not folded)."""
    frexp(amax, e)
    return ldexp(1.5, e[0] + 52 - t) if e[0] <= SPLIT_MAX_EXP else 0.0


cdef void w_split(const MProb *p, double *wsp) noexcept nogil:
    """W's split into wsp (see BlockBufs.wsp)."""
    cdef Py_ssize_t c, j, n = p.n, k = p.k
    cdef double *whi = wsp + 1
    cdef double *w2 = whi + k * n
    cdef double mx, sigma, w, hi
    cdef int e, t = split_bits(k), fmax = -2000
    for j in range(n):
        mx = 0.0
        for c in range(k):
            mx = max(mx, fabs(p.w[c * p.ldw + j]))
        sigma = split_sigma(mx, t, &e)
        if mx > 0.0:
            fmax = max(fmax, e)
        for c in range(k):
            w = p.w[c * p.ldw + j]
            hi = (w + sigma) - sigma
            whi[c * n + j] = hi
            w2[c * n + j] = w - hi
            w2[(k + c) * n + j] = w
    wsp[0] = fmax


cdef bint block_split_logits(const MProb *p, const double *S, int ld, int rows,
                             double *scratch, const BlockBufs *bb) noexcept nogil:
    """Split logits of a block: high parts in bb.zb, low parts in bb.zlo, and
    per row in bb.oth its error bound (before the bias and 1 / tau; inf: the
    row is left to Dot2).  bb.fr holds the rows' squared norms: a row's
    exponent comes from its norm (up to log2(k) / 2 bits above its largest
    entry's, which costs that many bits of the correction's margin, not
    exactness).  False if W is too large to split."""
    cdef int n = <int>p.n, k = <int>p.k, k2 = 2 * k, r, e, t = split_bits(p.k)
    cdef double one = 1.0, zero = 0.0, sigma
    cdef double *flag = scratch + 3 * p.kp + 4 * p.np_ + 1 + p.k * p.n
    cdef double *ss = bb.ss
    cdef double gam2 = k2 * UNIT_ROUNDOFF / (1.0 - k2 * UNIT_ROUNDOFF)
    if flag[0] == 0.0:
        w_split(p, bb.wsp)
        flag[0] = 1.0
    cdef int fmax = <int>bb.wsp[0]
    if fmax > SPLIT_MAX_EXP:
        return False
    for r in range(rows):
        # (the factor: |s| < 2^e strictly, whatever the rounding of the norm)
        sigma = split_sigma(sqrt(bb.fr[r]) * (1.0 + 1e-15), t, &e)
        fsm_split_row(S + r * ld, k, sigma, ss + r * k2, ss + r * k2 + k)
        # (products up to 2^(e + fmax) k must not overflow)
        bb.oth[r] = (gam2 * k * ldexp(1.0, e + fmax - t) if e <= SPLIT_MAX_EXP
                     and e + fmax <= 1000 else INFINITY)
    dgemm("N", "N", &n, &rows, &k, &one, bb.wsp + 1, &n, ss, &k2, &zero, bb.zb, &n)
    dgemm("N", "N", &n, &rows, &k2, &one, bb.wsp + 1 + p.k * p.n, &n, ss, &k2, &zero, bb.zlo, &n)
    return True


cdef inline bint split_row(const MProb *p, Py_ssize_t i, const double *hi, const double *lo,
                           double *zh, double *zl) noexcept nogil:
    """One row of split logits as compensated logits (state_logits' contract:
    masked ones -inf); False if one is not finite."""
    cdef Py_ssize_t j
    cdef double t, e
    for j in range(p.n):
        if not legal(p, i, j):
            zh[j] = -INFINITY
            zl[j] = 0.0
            continue
        t = two_sum(hi[j], lo[j], &e)    # either may be the larger
        finish_logit(p, j, t, e, &zh[j], &zl[j])
        if not (isfinite(zh[j]) and isfinite(zl[j])):
            return False
    return True


cdef Status block_soft(const MProb *p, Py_ssize_t i0, int rows, double *scratch,
                       const BlockBufs *bb, bint keep_dz, const double **S_out, int *ld_out,
                       Py_ssize_t *bad) noexcept nogil:
    """The softmax weights of states [i0, i0 + rows) in bb.zb: Z = S_blk @ W
    by dgemm, then per row the logits (refined where needed), their maximum
    (bb.amax), z_a - m (bb.da, kinds with actions) and z - m (bb.dz, with
    keep_dz), then exp(z - m) of the whole block on vectors.  S_out, ld_out:
    the block's states as double, for a second product."""
    cdef int n = <int>p.n, k = <int>p.k, ld, r
    cdef double one = 1.0, zero = 0.0
    cdef const double *S
    cdef Py_ssize_t c, j, i, a = 0, kp = p.kp
    cdef double *tb = scratch
    cdef double *zh = scratch + 3 * kp
    cdef double *zl = zh + p.np_
    cdef double *zrow
    cdef double ns, zmax, bound, m, m_lo
    cdef const float *srow
    cdef bint refined
    cdef double gam = k * UNIT_ROUNDOFF / (1.0 - k * UNIT_ROUNDOFF)
    # The a-priori logit error bound is c_s ||s|| + c_z max|z| + c_b.
    cdef double c_s = gam * p.wnorm / p.tau
    cdef double c_z = 2.0 * UNIT_ROUNDOFF
    cdef double c_b = 2.0 * UNIT_ROUNDOFF * p.bmax / p.tau
    cdef fs_theta th
    cdef Status st
    cdef Py_ssize_t am
    cdef double *sblk = bb.sblk
    cdef double *zb = bb.zb
    if (not p.s_f32 and p.s_sk == sizeof(double) and p.s_sb % sizeof(double) == 0
            and p.s_sb >= k * <Py_ssize_t>sizeof(double)):
        S = <const double *>(p.s + i0 * p.s_sb)
        ld = <int>(p.s_sb // sizeof(double))
    else:
        if p.s_f32 and p.s_sk == sizeof(float):
            for r in range(rows):
                srow = <const float *>(p.s + (i0 + r) * p.s_sb)
                for c in range(k):
                    sblk[r * k + c] = srow[c]
        else:
            for r in range(rows):
                for c in range(k):
                    sblk[r * k + c] = s_at(p, i0 + r, c)
        S = sblk
        ld = k
    S_out[0] = S
    ld_out[0] = ld
    # Pass 0: the rows' norms (in bb.fr), and how many rows' plain logits
    # would miss LOGIT_TOL (by the bound's state part): past a share of them,
    # the block takes the split logits instead of per-row Dot2.
    cdef int n_over = 0
    cdef bint finite = True, split = False
    for r in range(rows):
        ns = fsm_sumsq(S + r * ld, k)  # NaN or inf in s (or overflow): refined below
        bb.fr[r] = ns
        finite = finite and isfinite(ns)
        n_over += not (c_s * sqrt(ns) + c_b <= 0.9 * LOGIT_TOL)
    if finite and n_over * SPLIT_SHARE > rows:
        split = block_split_logits(p, S, ld, rows, scratch, bb)
    cdef int ldw = <int>p.ldw
    if not split:
        dgemm("N", "N", &n, &rows, &k, &one, <double *>p.w, &ldw, <double *>S, &ld, &zero, zb,
              &n)
    # Pass 1, per row: the logits (refined where needed), their maximum, and
    # d_j = z_j - m written over the row of Z.
    for r in range(rows):
        i = i0 + r
        if p.act != NULL:
            a = action_of(p, i)
        ns = bb.fr[r]
        zrow = zb + r * p.n
        if split:
            refined = True
            st = OK
            if bb.oth[r] / p.tau <= 0.5 * LOGIT_TOL:
                if not split_row(p, i, zrow, bb.zlo + r * p.n, zh, zl):
                    st = NONFINITE_LOGIT
            else:
                st = state_load(p, i, tb)
                if st == OK:
                    state_split(p, tb, &th)
                    st = state_logits(p, i, &th, wt_of(p, tb), zh, zl)
        else:
            # Plain logits in place: (Z + b) / tau, -inf where masked.
            if p.bias != NULL:
                for j in range(p.n):
                    zrow[j] = zrow[j] + p.bias[j]
            if p.tau != 1.0:
                for j in range(p.n):
                    zrow[j] = zrow[j] / p.tau
            zmax = 0.0
            for j in range(p.n):
                zmax = max(zmax, fabs(zrow[j]))
            if p.mask != NULL:
                for j in range(p.n):
                    if not legal(p, i, j):
                        zrow[j] = -INFINITY
            # A-priori error of the plain logits: the dot product (any order, FMA
            # or not) gamma_k sum_c |s_c W_cj| <= gamma_k ||s|| ||W_j||, the bias
            # addition and the division (2 u |z|).
            bound = c_s * sqrt(ns) + c_z * zmax + c_b
            refined = not (bound <= LOGIT_TOL and isfinite(zmax) and isfinite(ns))
            if refined:
                st = state_load(p, i, tb)
                if st == OK:
                    state_split(p, tb, &th)
                    st = state_logits(p, i, &th, wt_of(p, tb), zh, zl)
        if refined:
            if st != OK:
                bad[0] = i
                return st
            m = -INFINITY
            m_lo = 0.0
            am = -1
            for j in range(p.n):
                if zh[j] > m:
                    m = zh[j]
                    m_lo = zl[j]
                    am = j
            for j in range(p.n):
                zrow[j] = (zh[j] - m) + (zl[j] - m_lo)
        else:
            m = -INFINITY
            for j in range(p.n):
                m = zrow[j] if zrow[j] > m else m     # branch-free (maxsd)
            am = -1
            for j in range(p.n - 1, -1, -1):
                am = j if zrow[j] == m else am        # the first maximum (cmov)
            for j in range(p.n):
                zrow[j] = zrow[j] - m
        if am < 0:
            bad[0] = i
            return ALL_MASKED
        if not isfinite(m):
            bad[0] = i
            return NONFINITE_LOGIT
        bb.amax[r] = am
        if p.act != NULL:
            bb.da[r] = zrow[a]
    if keep_dz:
        memcpy(bb.dz, zb, rows * p.n * sizeof(double))
    # Pass 2: the weights exp(z_j - m) of the whole block, on vectors.
    fsm_exp_block(zb, rows * p.n)
    return OK


cdef double block_entropy(const MProb *p, const double *w, const double *dz, double fr,
                          double log_l, double *coef) noexcept nogil:
    """One row of a block: coef_j = dH/dz_j = -pi_j ((z_j - m) + h / l) from the
    weights w_j = exp(z_j - m), dz_j = z_j - m and fr = 1 / l, with h = sum_k
    w_k (m - z_k) (entropy_residual's formula); returns H = log(l) + h / l.
    Masked and underflowed actions (w_j = 0) get exactly 0."""
    cdef Py_ssize_t j
    cdef double h = 0.0
    for j in range(p.n):
        if w[j] != 0.0:
            h -= w[j] * dz[j]
    for j in range(p.n):
        coef[j] = -((w[j] * fr) * (dz[j] + h * fr)) if w[j] != 0.0 else 0.0
    return log_l + h * fr


cdef Status loglik_block(const MProb *p, Py_ssize_t i0, int rows, double *scratch,
                         const BlockBufs *bb, double *part, bint grad_w,
                         Py_ssize_t *bad) noexcept nogil:
    """Add states [i0, i0 + rows) to part: the block's weights (block_soft),
    the residual over them, then (grad_w) G += S_blk^T R_blk by dgemm."""
    cdef int n = <int>p.n, k = <int>p.k, ld, r
    cdef double one = 1.0
    cdef const double *S
    cdef Py_ssize_t j, i, a, am
    cdef double *zb = bb.zb
    cdef double *zrow
    cdef double wi, lp, f, wa, base
    cdef Status st = block_soft(p, i0, rows, scratch, bb, p.beta != 0.0, &S, &ld, bad)
    cdef double bt, ent = 0.0
    cdef double *coef = scratch + 3 * p.kp + 3 * p.np_   # the state scratch's res (np_ >= N)
    if st != OK:
        return st
    # Pass 3a, per row: r = 1 - pi_max and 1 - pi_a (unnormalised), from
    # base = the weights of every action but a and the maximum (a branch-free
    # sum), without cancellation.
    for r in range(rows):
        a = action_of(p, i0 + r)
        zrow = zb + r * p.n
        am = bb.amax[r]
        wa = zrow[a]
        zrow[am] = 0.0
        zrow[a] = 0.0
        base = 0.0
        for j in range(p.n):
            base += zrow[j]
        if a != am:
            bb.lr[r] = base + wa
            bb.oth[r] = base + 1.0
        else:
            bb.lr[r] = base
            bb.oth[r] = base
        zrow[a] = wa
        zrow[am] = 1.0
        bb.fr[r] = 1.0 / (1.0 + bb.lr[r])
    fsm_log1p_block(bb.lr, rows)          # lr = log(1 + r), on vectors
    # Pass 3b, per row: log pi(a) and the residual w_i (e_a - pi) / tau (over Z).
    for r in range(rows):
        i = i0 + r
        a = action_of(p, i)
        zrow = zb + r * p.n
        am = bb.amax[r]
        wi = weight_of(p, i)
        lp = (0.0 if a == am else bb.da[r]) - bb.lr[r]
        f = wi * bb.fr[r]
        if p.tau != 1.0:
            f = f / p.tau
        if p.beta != 0.0:
            # The entropy's sum h and its coefficients, from the weights before
            # the residual overwrites them (bb.dz: z - m).
            ent = block_entropy(p, zrow, bb.dz + r * p.n, bb.fr[r], bb.lr[r], coef)
        if not isfinite(bb.oth[r] * f):
            # 1 / tau overflows (see soft_residual; oth[r] f is the entry of
            # largest magnitude): the row's terms are added here, each
            # divided by tau after its product, and its row of R zeroed.
            loglik_row_unscaled(p, a, wi * bb.fr[r], bb.oth[r], lp, wi, S + r * ld, zrow,
                                coef if p.beta != 0.0 else NULL, part)
            if p.beta != 0.0:
                part[0] += p.beta * ent
            continue
        for j in range(p.n):
            zrow[j] = -zrow[j] * f
        zrow[a] = bb.oth[r] * f
        part[0] += wi * lp
        if p.beta != 0.0:
            bt = p.beta if p.tau == 1.0 else p.beta / p.tau
            for j in range(p.n):
                zrow[j] += bt * coef[j]
            part[0] += p.beta * ent
        for j in range(p.n):
            part[1 + j] += zrow[j]
    if grad_w and p.k > 0:
        dgemm("N", "T", &n, &k, &rows, &one, zb, &n, <double *>S, &ld, &one,
              part + 1 + p.n, &n)
    return OK


cdef Status states_block(const MProb *p, Py_ssize_t i0, int rows, double *scratch,
                         const BlockBufs *bb, Py_ssize_t *bad) noexcept nogil:
    """log pi(a), the entropy, pi or a sample of states [i0, i0 + rows) from
    the block's weights (block_soft); r = the sum of every weight but the
    maximum's, so 1 - pi_max keeps its digits.  A sample is the Gumbel-max
    over z - m, and its log pi is formed as log_prob's, bit for bit."""
    cdef int ld, r
    cdef const double *S
    cdef Py_ssize_t j, i, a, am
    cdef double *zrow
    cdef double *drow
    cdef double rs, h, v
    cdef char *o
    cdef MProb qs
    cdef const MProb *q
    cdef double hdummy
    cdef Status st = block_soft(p, i0, rows, scratch, bb,
                                p.kind == K_ENTROPY or p.kind == K_SAMPLE, &S, &ld, bad)
    if st != OK:
        return st
    for r in range(rows):
        zrow = bb.zb + r * p.n
        am = bb.amax[r]
        zrow[am] = 0.0
        rs = 0.0
        for j in range(p.n):
            rs += zrow[j]
        zrow[am] = 1.0
        bb.lr[r] = rs
        bb.l[r] = 1.0 + rs
    if p.kind == K_PROBS:
        for r in range(rows):
            zrow = bb.zb + r * p.n
            o = p.out + (i0 + r) * p.out_sb
            for j in range(p.n):
                store(o + j * p.out_s1, zrow[j] / bb.l[r], p.out_f32)
        return OK
    fsm_log1p_block(bb.lr, rows)          # lr = log(1 + r), on vectors
    for r in range(rows):
        i = i0 + r
        if p.kind == K_LOG_PROB:
            a = action_of(p, i)
            v = (0.0 if a == bb.amax[r] else bb.da[r]) - bb.lr[r]
            if not store_real(p.out + i * p.out_sb, v, p.out_f32):
                bad[0] = i
                return NONFINITE_RESULT
        elif p.kind == K_SAMPLE:
            drow = bb.dz + r * p.n
            a = gumbel_argmax(p, i, drow, bb.amax[r])
            (<Py_ssize_t *>(p.out + i * p.out_sb))[0] = a
            v = (0.0 if a == bb.amax[r] else drow[a]) - bb.lr[r]
            if not store_real(p.outb + i * p.outb_sb, v, p.out_f32):
                bad[0] = i
                return NONFINITE_RESULT
            if p.sc_w != NULL:
                # score() takes states one at a time: its logits, bit for bit.
                q = score_view(p, &qs)
                qs.act = <const char *>&a
                qs.act_s = 0
                st = state_outputs(q, i, scratch)
                if st != OK:
                    bad[0] = i
                    return st
        else:  # K_ENTROPY: log(1 + r) + sum_j w_j (m - z_j) / (1 + r)
            zrow = bb.zb + r * p.n
            drow = bb.dz + r * p.n
            h = 0.0
            for j in range(p.n):
                if zrow[j] != 0.0:
                    h -= zrow[j] * drow[j]
            if not store_real(p.out + i * p.out_sb, bb.lr[r] + h / bb.l[r], p.out_f32):
                bad[0] = i
                return NONFINITE_RESULT
            if p.sc_w != NULL:
                # The gradient from the state's own logits, as a one-state call
                # forms it; H stays the block's, bitwise entropy()'s.
                qs = p[0]
                qs.out = <char *>&hdummy
                qs.out_sb = 0
                st = state_outputs(&qs, i, scratch)
                if st != OK:
                    bad[0] = i
                    return st
    return OK


cdef inline bint use_blas(const MProb *p, Py_ssize_t n_states) noexcept nogil:
    return p.k > 0 and p.n > 0 and n_states >= BLOCK_MIN_STATES and blas_rows(p) >= 16


cdef inline int blas_rows(const MProb *p) noexcept nogil:
    """Rows of one BLAS block: as many as keep the dgemm single-threaded in
    OpenBLAS (rows k N <= BLAS_MAX_WORK), at most BLAS_ROWS, a multiple of 16."""
    cdef Py_ssize_t kn = max(p.k * p.n, 1)
    return <int>(min(<Py_ssize_t>BLAS_ROWS, BLAS_MAX_WORK // kn) // 16 * 16)


cdef inline Py_ssize_t chunk_rows(Py_ssize_t n_states) noexcept nogil:
    """States per chunk: a function of B only (never of the thread count)."""
    cdef Py_ssize_t c = (n_states + MAX_CHUNKS - 1) // MAX_CHUNKS
    c = (c + BLAS_ROWS - 1) // BLAS_ROWS * BLAS_ROWS
    return max(c, <Py_ssize_t>CHUNK_MIN)


cdef Status loglik_chunk(const MProb *p, Py_ssize_t i0, Py_ssize_t i1, bint blas, bint grad_w,
                         double *scratch, double *part, Py_ssize_t *bad) noexcept nogil:
    """Sums over states [i0, i1) into part: by blocks (blas) or state by state."""
    cdef Py_ssize_t i, br = blas_rows(p)
    cdef Status st
    cdef BlockBufs bb
    memset(part, 0, partial_size(p) * sizeof(double))
    if blas:
        block_bufs(p, scratch + state_scratch(p), &bb)
        i = i0
        while i < i1:
            st = loglik_block(p, i, <int>min(br, i1 - i), scratch, &bb, part, grad_w, bad)
            if st != OK:
                return st
            i += br
        return OK
    for i in range(i0, i1):
        st = loglik_state(p, i, scratch, part, grad_w)
        if st != OK:
            bad[0] = i
            return st
    return OK


cdef inline Status loglik_chunk_of(const MProb *p, Py_ssize_t c, Py_ssize_t ch,
                                   Py_ssize_t n_states, bint blas, bint grad_w, double *buf,
                                   double *parts, Py_ssize_t *bads) noexcept nogil:
    """Chunk c of run_loglik into parts[c]; buf is one thread's scratch
    (NULL if it could not be allocated)."""
    if buf == NULL:
        bads[c] = c * ch
        return NO_MEMORY
    return loglik_chunk(p, c * ch, min((c + 1) * ch, n_states), blas, grad_w, buf,
                        parts + c * partial_size(p), &bads[c])


cdef Status run_loglik(const MProb *p, Py_ssize_t n_states, int n_threads, bint grad_w,
                       double *total, Py_ssize_t *bad) noexcept nogil:
    """total (partial_size doubles) = the sums over every state, chunk by chunk.

    Chunks depend on B only and are merged in order, so the bits do not
    depend on the thread count.  Serial calls (small work, one thread) take
    no OpenMP region and, when small enough, no heap memory."""
    cdef Py_ssize_t ch = chunk_rows(n_states), c
    cdef Py_ssize_t n_chunks = (n_states + ch - 1) // ch
    cdef Py_ssize_t psize = partial_size(p)
    cdef bint blas = use_blas(p, n_states)
    cdef Py_ssize_t ssize = state_scratch(p) + (block_scratch(p) if blas else 0)
    cdef double work = <double>n_states * p.k * p.n
    cdef bint threaded = n_chunks > 1 and threads_pay(work, n_threads)
    cdef double stack_parts[STACK_W]
    cdef double stack_buf[STACK_W]
    cdef Status stack_status[1]
    cdef Py_ssize_t stack_bads[1]
    cdef double *parts = stack_parts
    cdef Status *status = stack_status
    cdef Py_ssize_t *bads = stack_bads
    cdef double *buf = stack_buf
    cdef double master[2]
    cdef double t_start = fs_now(), t0
    cdef Status st = OK
    bad[0] = 0
    master[0] = master[1] = 0.0
    if n_chunks * psize > STACK_W or n_chunks > 1:
        parts = <double *>malloc(n_chunks * psize * sizeof(double) + 8)
        status = <Status *>malloc(n_chunks * sizeof(Status) + 8)
        bads = <Py_ssize_t *>malloc(n_chunks * sizeof(Py_ssize_t) + 8)
        if parts == NULL or status == NULL or bads == NULL:
            free(parts)
            free(status)
            free(bads)
            return NO_MEMORY
    if threaded:
        with parallel(num_threads=n_threads):
            buf = <double *>malloc(ssize * sizeof(double))
            if buf != NULL:
                scratch_init(p, buf)
            for c in prange(n_chunks, schedule='guided'):
                t0 = fs_now()
                status[c] = loglik_chunk_of(p, c, ch, n_states, blas, grad_w, buf, parts, bads)
                fs_clock_master(master, t0, min((c + 1) * ch, n_states) - c * ch)
            free(buf)
        fs_threads_judge(t_start, master, n_states)
    else:
        if ssize > STACK_W:
            buf = <double *>malloc(ssize * sizeof(double))
        if buf != NULL:
            scratch_init(p, buf)
        for c in range(n_chunks):
            status[c] = loglik_chunk_of(p, c, ch, n_states, blas, grad_w, buf, parts, bads)
            if status[c] != OK:
                n_chunks = c + 1
                break
        if buf != stack_buf:
            free(buf)
    memset(total, 0, psize * sizeof(double))
    for c in range(n_chunks):
        if status[c] != OK:
            st = status[c]
            bad[0] = bads[c]
            break
        fsm_add_to(total, parts + c * psize, psize)
    if parts != stack_parts:
        free(parts)
        free(status)
        free(bads)
    return st


cdef Py_ssize_t wnorm_of(MProb *p, double *tmp) noexcept nogil:
    """p.wnorm of a W read in place (tmp: n doubles); the flat index of its
    first non-finite entry, or -1."""
    cdef Py_ssize_t c, j
    cdef double m = fsm_colsq_max(p.w, p.ldw, p.k, p.n, tmp)
    if not isfinite(m):
        for c in range(p.k):
            for j in range(p.n):
                if not isfinite(p.w[c * p.ldw + j]):
                    return c * p.n + j
    p.wnorm = sqrt(m)  # inf for entries beyond 1e154: every state then refined
    return -1


cdef void transpose_w(const MProb *p, double *wt) noexcept nogil:
    """wt (n, k) = W.T, the columns of W as Dot2 rows."""
    cdef Py_ssize_t c, j
    for c in range(p.k):
        for j in range(p.n):
            wt[j * p.k + c] = p.w[c * p.ldw + j]


def first_nonfinite(x):
    """Flat index of the first NaN or inf of x."""
    return int(np.flatnonzero(~np.isfinite(x))[0])


cdef raise_status(Status st, Py_ssize_t i, bint batch, const MProb *p):
    cdef str state = f"state {i}" if batch else "the state"
    cdef str why
    raise_common_status(st, i, batch)
    if st == KL_FAR:
        raise_kl_far(state, "W_ref", "W")
    if st == NONFINITE_S:
        raise ValueError(f"s contains NaN or inf (in {state})")
    if st == NONFINITE_LOGIT:
        raise ValueError(
            f"non-finite logit in {state}: (s @ W + b) / temperature overflows")
    if p.kind == K_SCORE:
        # outer(s, e_a - pi) / tau, with |e_a - pi| <= 1
        why = "the temperature is too small, or s too large in magnitude"
    else:
        # log pi(a) = z_a - m - log(1 + r), z = (s @ W + b) / tau
        why = ("the temperature is too small, or s, W or b too large in magnitude "
               "(the logits too far apart)")
    raise ValueError(
        f"the result for {state} overflows: it is not finite in the output dtype "
        f"({'float32' if p.out_f32 else 'float64'}); {why}, for that dtype")


cdef inline double at2(cnp.ndarray x, Py_ssize_t c, Py_ssize_t j) noexcept:
    """x[c, j] of a float32 or float64 2-D array, as double."""
    cdef const char *q = <const char *>cnp.PyArray_DATA(x) + c * cnp.PyArray_STRIDES(x)[0]
    if cnp.PyArray_NDIM(x) == 2:
        q += j * cnp.PyArray_STRIDES(x)[1]
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT:
        return (<const float *>q)[0]
    return (<const double *>q)[0]


cdef cnp.ndarray kl_difference(MProb *p, cnp.ndarray w_ref, cnp.ndarray w_new,
                               cnp.ndarray b_ref, cnp.ndarray b_new):
    """kl's W - W_ref (its high part transposed) and b - b_ref, each as hi + lo exactly, in
    one new array that p's dwt, dwt_lo, db, db_lo point into; ValueError for
    NaN or inf in W or b (those of W_ref and b_ref are the pass's own checks)."""
    cdef Py_ssize_t c, j, k = p.k, n = p.n
    cdef cnp.npy_intp size = 2 * k * n + 2 * n
    cdef cnp.ndarray buf = cnp.PyArray_EMPTY(1, &size, cnp.NPY_DOUBLE, 0)
    cdef double *d = <double *>cnp.PyArray_DATA(buf)
    cdef double x
    cdef bint exact = True
    for j in range(n):
        for c in range(k):
            x = at2(w_new, c, j)
            if not isfinite(x):
                raise ValueError(f"W contains NaN or inf (W[{c}, {j}])")
            d[j * k + c] = two_sum(x, -at2(w_ref, c, j), &d[k * n + c * n + j])
            exact = exact and d[k * n + c * n + j] == 0.0
    p.dwt = d
    p.dw_lo = NULL if exact else d + k * n
    if b_new is not None:
        for j in range(n):
            x = at2(b_new, j, 0)
            if not isfinite(x):
                raise ValueError(f"b contains NaN or inf (b[{j}])")
            d[2 * k * n + j] = two_sum(x, -at2(b_ref, j, 0), &d[2 * k * n + n + j])
        p.db = d + 2 * k * n
        p.db_lo = d + 2 * k * n + n
    return buf


cdef object canonical(int kind, object s, object W, object a, object b, object mask,
                      object weights, object temperature, object out, object n_threads,
                      uint64_t key, bint grad, double beta=0.0, object W2=None, object b2=None,
                      str w_name="W", str b_name="b", object trace=None, double decay=1.0,
                      double weight=1.0):
    """The call on canonical inputs; NotImplemented when one needs coercion.
    kl: W and b are W_ref and b_ref (named by w_name, b_name), W2 and b2 the
    policy the gradient is taken in.  sample(trace=) (grad set): the arrays
    the score is added into, trace <- decay trace + weight score."""
    cdef MProb p
    memset(&p, 0, sizeof(MProb))
    p.kind = kind
    p.trace = trace is not None
    p.decay = decay
    p.weight = weight
    p.beta = beta
    p.key = key
    if not is_real_kernel_array(s):
        return NotImplemented
    cdef cnp.ndarray s_arr = <cnp.ndarray>s
    cdef int ndim = cnp.PyArray_NDIM(s_arr)
    if ndim != 1 and ndim != 2:
        raise ValueError(
            f"s must be 1-D (k,) for one state or 2-D (B, k) for a batch, got a {ndim}-D array")
    cdef bint batch = ndim == 2
    cdef Py_ssize_t n_states = cnp.PyArray_DIMS(s_arr)[0] if batch else 1
    p.k = cnp.PyArray_DIMS(s_arr)[ndim - 1]
    p.kp = fs_padded(p.k)
    p.s = <const char *>cnp.PyArray_DATA(s_arr)
    p.s_sb = cnp.PyArray_STRIDES(s_arr)[0] if batch else 0
    p.s_sk = cnp.PyArray_STRIDES(s_arr)[ndim - 1]
    p.s_f32 = cnp.PyArray_TYPE(s_arr) == cnp.NPY_FLOAT

    if not is_real_kernel_array(W):
        return NotImplemented
    cdef cnp.ndarray w_arr = <cnp.ndarray>W
    if cnp.PyArray_NDIM(w_arr) != 2 or cnp.PyArray_DIMS(w_arr)[0] != p.k:
        raise ValueError(
            f"{w_name} must have shape ({p.k}, N) to match s's last axis (k = {p.k}), got "
            f"{np.shape(W)}")
    p.n = cnp.PyArray_DIMS(w_arr)[1]
    cdef bint all_f32 = p.s_f32 and cnp.PyArray_TYPE(w_arr) == cnp.NPY_FLOAT
    cdef cnp.ndarray w2_arr = None, b2_arr = None
    if W2 is not None:
        if not is_real_kernel_array(W2):
            return NotImplemented
        w2_arr = <cnp.ndarray>W2
        if cnp.PyArray_NDIM(w2_arr) != 2 or cnp.PyArray_DIMS(w2_arr)[0] != p.k or \
                cnp.PyArray_DIMS(w2_arr)[1] != p.n:
            raise ValueError(
                f"W must have the shape of {w_name}, ({p.k}, {p.n}), got {np.shape(W2)}")
        all_f32 = all_f32 and cnp.PyArray_TYPE(w2_arr) == cnp.NPY_FLOAT

    cdef cnp.ndarray b_arr = None
    if b is not None:
        if not is_real_kernel_array(b):
            return NotImplemented
        b_arr = <cnp.ndarray>b
        if cnp.PyArray_NDIM(b_arr) != 1 or cnp.PyArray_DIMS(b_arr)[0] != p.n:
            raise ValueError(
                f"{b_name} must have shape ({p.n},) to match {w_name}'s last axis (N = {p.n}), "
                f"got {np.shape(b)}")
        all_f32 = all_f32 and cnp.PyArray_TYPE(b_arr) == cnp.NPY_FLOAT
    if b2 is not None:
        if not is_real_kernel_array(b2):
            return NotImplemented
        b2_arr = <cnp.ndarray>b2
        if cnp.PyArray_NDIM(b2_arr) != 1 or cnp.PyArray_DIMS(b2_arr)[0] != p.n:
            raise ValueError(f"b must have the shape of {b_name}, ({p.n},), got {np.shape(b2)}")
        all_f32 = all_f32 and cnp.PyArray_TYPE(b2_arr) == cnp.NPY_FLOAT

    # The pass reads the call's own copies of the actions and the mask
    # (_common's own_*), checked by first_bad_choice before it.
    cdef bint has_action = kind == K_SCORE or kind == K_LOG_PROB or kind == K_LOGLIK
    cdef Py_ssize_t a_single
    cdef Room room  # the small copies
    a_copy = mask_copy = None
    if has_action:
        if not batch:
            if one_action(a, p.n, &a_single) is NotImplemented:
                return NotImplemented
            p.act = <const char *>&a_single
            p.act_s = 0
        else:
            a_copy = own_actions(a, n_states, &room, &p.act, &p.act_s)
            if a_copy is NotImplemented:
                return NotImplemented
    if mask is not None:
        mask_copy = own_mask(mask, n_states, p.n, batch, -1, &room, &p.mask, &p.mask_sb,
                             &p.mask_sn)
        if mask_copy is NotImplemented:
            return NotImplemented

    cdef cnp.ndarray wts_arr = None
    if weights is not None:
        if not is_real_kernel_array(weights):
            return NotImplemented
        wts_arr = <cnp.ndarray>weights
        if cnp.PyArray_NDIM(wts_arr) != ndim - 1 or (batch and cnp.PyArray_DIMS(wts_arr)[0] != n_states):
            expected = f"({n_states},), one weight per state" if batch else "(), a scalar for one state"
            raise ValueError(f"weights must have shape {expected}, got {np.shape(weights)}")
        p.wts = <const char *>cnp.PyArray_DATA(wts_arr)
        p.wts_s = cnp.PyArray_STRIDES(wts_arr)[0] if batch else 0
        p.wts_f32 = cnp.PyArray_TYPE(wts_arr) == cnp.NPY_FLOAT
        all_f32 = all_f32 and p.wts_f32

    p.tau = as_temperature(temperature)
    cdef int n_threads_ = as_thread_count(n_threads)
    cdef int out_type = cnp.NPY_FLOAT if all_f32 else cnp.NPY_DOUBLE
    p.out_f32 = all_f32
    inputs = None if out is None and trace is None else \
        (s_arr, w_arr, a, b_arr, mask, wts_arr, w2_arr, b2_arr)

    # Results.
    cdef cnp.npy_intp dims[3]
    cdef cnp.ndarray res = None, res_b = None, res_s = None, res_sb = None
    cdef int rdim
    cdef double scalar_buf[1]
    cdef Py_ssize_t action_buf = 0
    if kind == K_SCORE:
        dims[0] = n_states
        dims[1] = p.k
        dims[2] = p.n
        rdim = 3 if batch else 2
        out_w = out
        out_b = None
        if b is not None and out is not None:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("out must be a tuple (out_W, out_b) when b is given")
            out_w, out_b = out
        if out_w is None:
            res = cnp.PyArray_EMPTY(rdim, &dims[3 - rdim], out_type, 0)
        else:
            res = check_out(out_w, out_type, rdim, &dims[3 - rdim], inputs,
                            "out" if b is None else "out[0]")
        p.out = <char *>cnp.PyArray_DATA(res)
        p.out_sb = cnp.PyArray_STRIDES(res)[0] if batch else 0
        p.out_s1 = cnp.PyArray_STRIDES(res)[rdim - 2]
        p.out_s2 = cnp.PyArray_STRIDES(res)[rdim - 1]
        if b is not None:
            dims[1] = p.n
            if out_b is None:
                res_b = cnp.PyArray_EMPTY(ndim, &dims[2 - ndim], out_type, 0)
            else:
                res_b = check_out(out_b, out_type, ndim, &dims[2 - ndim], inputs + (res,),
                                  "out[1]")
            p.outb = <char *>cnp.PyArray_DATA(res_b)
            p.outb_sb = cnp.PyArray_STRIDES(res_b)[0] if batch else 0
            p.outb_s = cnp.PyArray_STRIDES(res_b)[ndim - 1]
    elif kind == K_LOG_PROB or kind == K_ENTROPY or kind == K_KL:
        dims[0] = n_states
        rdim = 1 if batch else 0
        if out is not None:
            res = check_out(out, out_type, rdim, dims, inputs)
        elif batch:
            res = cnp.PyArray_EMPTY(rdim, dims, out_type, 0)
        if res is None:  # one state: a scalar made at the end
            p.out = <char *>&scalar_buf[0]
        else:
            p.out = <char *>cnp.PyArray_DATA(res)
            p.out_sb = cnp.PyArray_STRIDES(res)[0] if batch else 0
    elif kind == K_PROBS:
        dims[0] = n_states
        dims[1] = p.n
        if out is None:
            res = cnp.PyArray_EMPTY(ndim, &dims[2 - ndim], out_type, 0)
        else:
            res = check_out(out, out_type, ndim, &dims[2 - ndim], inputs)
        p.out = <char *>cnp.PyArray_DATA(res)
        p.out_sb = cnp.PyArray_STRIDES(res)[0] if batch else 0
        p.out_s1 = cnp.PyArray_STRIDES(res)[ndim - 1]
    elif kind == K_SAMPLE:
        dims[0] = n_states
        rdim = 1 if batch else 0
        if batch:
            res = cnp.PyArray_EMPTY(rdim, dims, cnp.NPY_INTP, 0)
            res_b = cnp.PyArray_EMPTY(rdim, dims, out_type, 0)
            p.out = <char *>cnp.PyArray_DATA(res)
            p.out_sb = cnp.PyArray_STRIDES(res)[0]
            p.outb = <char *>cnp.PyArray_DATA(res_b)
            p.outb_sb = cnp.PyArray_STRIDES(res_b)[0]
        else:
            p.out = <char *>&action_buf
            p.outb = <char *>&scalar_buf[0]
    if grad and (kind == K_SAMPLE or kind == K_ENTROPY or kind == K_KL):
        # sample's score / entropy's or KL's gradient: grad_W (and grad_b), score's layout
        dims[1] = p.k
        dims[2] = p.n
        rdim = 3 if batch else 2
        trace_b = None
        if p.trace:
            trace_w = trace
            if b is not None:
                if not (isinstance(trace, tuple) and len(trace) == 2):
                    raise TypeError("trace must be a tuple (trace_W, trace_b) when b is given")
                trace_w, trace_b = trace
            res_s = check_out(trace_w, out_type, rdim, &dims[3 - rdim], inputs,
                              "trace" if b is None else "trace[0]")
        else:
            res_s = cnp.PyArray_EMPTY(rdim, &dims[3 - rdim], out_type, 0)
        p.sc_w = <char *>cnp.PyArray_DATA(res_s)
        p.sc_sb = cnp.PyArray_STRIDES(res_s)[0] if batch else 0
        p.sc_s1 = cnp.PyArray_STRIDES(res_s)[rdim - 2]
        p.sc_s2 = cnp.PyArray_STRIDES(res_s)[rdim - 1]
        if b is not None:
            dims[1] = p.n
            if p.trace:
                res_sb = check_out(trace_b, out_type, ndim, &dims[2 - ndim], inputs + (res_s,),
                                   "trace[1]")
            else:
                res_sb = cnp.PyArray_EMPTY(ndim, &dims[2 - ndim], out_type, 0)
            p.sc_b = <char *>cnp.PyArray_DATA(res_sb)
            p.sc_bsb = cnp.PyArray_STRIDES(res_sb)[0] if batch else 0
            p.sc_bs = cnp.PyArray_STRIDES(res_sb)[ndim - 1]

    # Values: N = 0, actions, masks, weights.
    cdef Py_ssize_t q, j
    if p.n == 0:
        raise ValueError(f"{w_name} has no actions (N = 0); a state needs at least one")
    cdef Choices ch
    ch.act = p.act
    ch.act_s = p.act_s
    ch.mask = p.mask
    ch.mask_sb = p.mask_sb
    ch.mask_sn = p.mask_sn
    ch.offsets = NULL
    ch.n_actions = p.n
    q = first_bad_choice(&ch, n_states)
    if q >= 0:
        raise_bad_choice(&ch, q, batch)
    cdef double wv
    if p.wts != NULL:
        for q in range(n_states):
            wv = weight_of(&p, q)
            if not isfinite(wv):
                where = f"weights[{q}]" if batch else "weights"
                raise ValueError(f"weights contains NaN or inf ({where})")
    cdef cnp.ndarray kl_diff = None  # kept alive for the pass
    if kind == K_KL:
        kl_diff = kl_difference(&p, w_arr, w2_arr, b_arr, b2_arr)

    # W and b as double.
    cdef double wstack[STACK_W]
    cdef double bstack[64]
    cdef double *wbuf = wstack
    cdef double *bbuf = bstack
    cdef Py_ssize_t bad_w
    p.np_ = fs_padded(p.n)
    # A float64 W with unit column stride (and rows no closer than N, as
    # dgemm needs) is read in place; any other W is copied (k, N) as double.
    # One state finds the column norms in its logits pass, a batch first.
    cdef Py_ssize_t ws0 = cnp.PyArray_STRIDES(w_arr)[0]
    cdef bint w_direct = (cnp.PyArray_TYPE(w_arr) == cnp.NPY_DOUBLE
                          and cnp.PyArray_STRIDES(w_arr)[1] == sizeof(double)
                          and ((ws0 >= p.n * <Py_ssize_t>sizeof(double)
                                and ws0 % sizeof(double) == 0) or p.k <= 1))
    cdef Py_ssize_t wsize = (0 if w_direct else p.k * p.n) + p.n
    bad_w = -1
    if wsize > STACK_W:
        wbuf = <double *>malloc(wsize * sizeof(double))
        if wbuf == NULL:
            raise MemoryError()
    if w_direct:
        p.w = <const double *>cnp.PyArray_DATA(w_arr)
        p.ldw = ws0 // sizeof(double) if p.k > 1 else max(p.n, 1)
    else:
        fsm_copy_w(<const char *>cnp.PyArray_DATA(w_arr), ws0, cnp.PyArray_STRIDES(w_arr)[1],
                   cnp.PyArray_TYPE(w_arr) == cnp.NPY_FLOAT, p.k, p.n, wbuf)
        p.w = wbuf
        p.ldw = max(p.n, 1)
    p.norm_in_pass = n_states <= 1
    if not p.norm_in_pass:
        bad_w = wnorm_of(&p, wbuf + wsize - p.n)
    if bad_w >= 0:
        if wbuf != wstack:
            free(wbuf)
        raise ValueError(f"{w_name} contains NaN or inf ({w_name}[{bad_w // p.n}, {bad_w % p.n}])")
    cdef const char *bsrc
    cdef Py_ssize_t bstride
    if b_arr is not None:
        if p.n > 64:
            bbuf = <double *>malloc(p.n * sizeof(double))
            if bbuf == NULL:
                if wbuf != wstack:
                    free(wbuf)
                raise MemoryError()
        bsrc = <const char *>cnp.PyArray_DATA(b_arr)
        bstride = cnp.PyArray_STRIDES(b_arr)[0]
        p.bmax = 0.0
        for j in range(p.n):
            if cnp.PyArray_TYPE(b_arr) == cnp.NPY_FLOAT:
                bbuf[j] = (<const float *>(bsrc + j * bstride))[0]
            else:
                bbuf[j] = (<const double *>(bsrc + j * bstride))[0]
            if not isfinite(bbuf[j]):
                if wbuf != wstack:
                    free(wbuf)
                if bbuf != bstack:
                    free(bbuf)
                raise ValueError(f"{b_name} contains NaN or inf ({b_name}[{j}])")
            p.bmax = max(p.bmax, fabs(bbuf[j]))
        p.bias = bbuf

    # Run.
    cdef Status st = OK
    cdef Py_ssize_t bad = 0
    cdef bint release = releases_gil(<double>n_states * p.k * p.n)
    cdef double tstack[1 + 1024]
    cdef double *total = NULL
    cdef Py_ssize_t psize = partial_size(&p)
    if kind == K_LOGLIK:
        total = tstack
        if psize > 1 + 1024:
            total = <double *>malloc(psize * sizeof(double))
        if total == NULL:
            st = NO_MEMORY
        elif release:
            with nogil:
                st = run_loglik(&p, n_states, n_threads_, grad, total, &bad)
        else:
            st = run_loglik(&p, n_states, n_threads_, grad, total, &bad)
    elif n_states > 0:
        if release:
            with nogil:
                st = run_states(&p, n_states, n_threads_, &bad)
        else:
            st = run_states(&p, n_states, n_threads_, &bad)
    if wbuf != wstack:
        free(wbuf)
    if bbuf != bstack:
        free(bbuf)
    if st != OK:
        if total != tstack:
            free(total)
        if st == NONFINITE_W:
            bad_w = first_nonfinite(np.asarray(W))
            raise ValueError(
                f"{w_name} contains NaN or inf ({w_name}[{bad_w // p.n}, {bad_w % p.n}])")
        raise_status(st, bad, batch, &p)

    if kind == K_LOGLIK:
        try:
            return loglik_result(&p, total, grad, b is not None, out_type)
        finally:
            if total != tstack:
                free(total)
    if kind == K_SCORE:
        if b is not None:
            return (res, res_b)
        return res
    if kind == K_SAMPLE:
        if batch:
            drawn = (res, res_b)
        else:
            drawn = (action_buf, make_scalar(scalar_buf, out_type))
        if not grad or p.trace:
            return drawn
        return drawn + (res_s if b is None else (res_s, res_sb),)
    value = make_scalar(scalar_buf, out_type) if res is None else res
    if (kind == K_ENTROPY or kind == K_KL) and grad:
        return (value, res_s if b is None else (res_s, res_sb))
    return value


cdef cnp.dtype DT_F32 = np.dtype(np.float32)
cdef cnp.dtype DT_F64 = np.dtype(np.float64)


cdef inline object make_scalar(double *buf, int out_type):
    """The NumPy scalar of the result dtype holding buf[0] (float32 results
    were stored as float at buf)."""
    return PyArray_Scalar(buf, DT_F32 if out_type == cnp.NPY_FLOAT else DT_F64, None)


cdef object loglik_result(const MProb *p, const double *total, bint grad, bint has_b,
                          int out_type):
    """The result objects from the sums total (value, grad_b, grad_W)."""
    cdef Py_ssize_t q, q0 = 0 if has_b else p.n, m = p.n + p.k * p.n
    cdef bint f32 = out_type == cnp.NPY_FLOAT
    cdef double lim = FLT_MAX if f32 else 1.7976931348623157e308
    cdef double v = total[0]
    cdef float v32
    cdef str dt = "float32" if f32 else "float64"
    if not fabs(v) <= lim:
        raise ValueError(
            f"the log-likelihood overflows: it is not finite in the output dtype ({dt}); the "
            f"temperature is too small, or the weights, s, W or b too large in magnitude, "
            f"for that dtype")
    if f32:
        v32 = <float>v
        value = make_scalar(<double *>&v32, out_type)
    else:
        value = make_scalar(&v, out_type)
    if not grad:
        return value
    # Only what is returned (grad_b with b) must be finite in the output dtype.
    cdef bint finite = fsm_all_finite(total + 1 + q0, m - q0)
    if finite and f32:
        for q in range(q0, m):
            finite = finite and fabs(total[1 + q]) <= lim
    if not finite:
        raise ValueError(
            f"the gradient overflows: it is not finite in the output dtype ({dt}); the "
            f"temperature is too small, or s or the weights too large in magnitude, "
            f"for that dtype")
    cdef cnp.npy_intp dims[2]
    dims[0] = p.k
    dims[1] = p.n
    cdef cnp.ndarray gw = cnp.PyArray_EMPTY(2, dims, out_type, 0)
    store_doubles(<char *>cnp.PyArray_DATA(gw), total + 1 + p.n, p.k * p.n, f32)
    if not has_b:
        return (value, gw)
    cdef cnp.ndarray gb = cnp.PyArray_EMPTY(1, &dims[1], out_type, 0)
    store_doubles(<char *>cnp.PyArray_DATA(gb), total + 1, p.n, f32)
    return (value, (gw, gb))


cdef inline void store_doubles(char *o, const double *x, Py_ssize_t m, bint f32) noexcept nogil:
    """A new contiguous array's data from x[:m] (as float when f32)."""
    cdef Py_ssize_t q
    if f32:
        for q in range(m):
            (<float *>o)[q] = <float>x[q]
    else:
        memcpy(o, x, m * sizeof(double))


def coerce_args(s, W, a, b, mask, weights, bint has_action, str w_name="W", str b_name="b"):
    """(s, W, a, b, mask, weights) in the canonical form the kernel reads."""
    s = _as_kernel_array(s, "s")
    W = _as_kernel_array(W, w_name)
    if has_action:
        a = _as_actions(a, batch=s.ndim == 2)
    b = None if b is None else _as_kernel_array(b, b_name)
    mask = None if mask is None else _as_mask(mask)
    weights = None if weights is None else _as_kernel_array(weights, "weights")
    return s, W, a, b, mask, weights


cdef object call(int kind, object s, object W, object a, object b, object mask, object weights,
                 object temperature, object out, object n_threads, uint64_t key, bint grad,
                 double beta=0.0, object W2=None, object b2=None, str w_name="W",
                 str b_name="b", object trace=None, double decay=1.0, double weight=1.0):
    result = canonical(kind, s, W, a, b, mask, weights, temperature, out, n_threads, key, grad,
                       beta, W2, b2, w_name, b_name, trace, decay, weight)
    if result is not NotImplemented:
        return result
    outs = (out if isinstance(out, tuple) else (out,)) \
        + (trace if isinstance(trace, tuple) else (trace,))
    for o in outs:
        if cnp.PyArray_Check(o):
            # The kernel sees coerced copies: check out against what the caller passed.
            check_out_disjoint(<cnp.ndarray>o, (s, W, a, b, mask, weights, W2, b2))
    has_action = kind == K_SCORE or kind == K_LOG_PROB or kind == K_LOGLIK
    s, W, a, b, mask, weights = coerce_args(s, W, a, b, mask, weights, has_action, w_name,
                                            b_name)
    if W2 is not None:
        W2 = _as_kernel_array(W2, "W")
    if b2 is not None:
        b2 = _as_kernel_array(b2, "b")
    result = canonical(kind, s, W, a, b, mask, weights, temperature, out, n_threads, key, grad,
                       beta, W2, b2, w_name, b_name, trace, decay, weight)
    if result is NotImplemented:
        raise RuntimeError("fastscore: internal error, coerced input is not canonical")
    return result


def score(s, W, a, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None):
    r"""Score of the state-input softmax policy: the gradient of log pi(a | s).

    With logits :math:`z = (s W + b) / \tau` over the legal actions and
    :math:`\pi = \mathrm{softmax}(z)`,

    .. math::

        \nabla_W \log \pi(a \mid s) = s \otimes (e_a - \pi) / \tau, \qquad
        \nabla_b \log \pi(a \mid s) = (e_a - \pi) / \tau,

    with :math:`1 - \pi_a` formed as the sum of the other probabilities, so
    the result keeps full relative accuracy when the policy is nearly
    deterministic; the logits are compensated dot products, so logits in the
    thousands lose nothing.

    Parameters
    ----------
    s : array_like, shape (k,) or (B, k)
        One state, or a batch of B states.  float32 and float64 are used as
        they are; other real dtypes are converted to float64.
    W : array_like, shape (k, N)
        Weights, shared by the batch.
    a : int or array_like of int, shape (B,)
        The taken action(s).
    b : array_like, shape (N,), optional
        Bias.  When given, the result is the pair ``(grad_W, grad_b)``.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions (masked ones get probability exactly 0; the taken
        action must be legal).
    temperature : float, default 1.0
        ``tau > 0``; the result carries the factor ``1 / tau``.
    out : ndarray, or a tuple ``(out_W, out_b)`` when ``b`` is given, optional
        Where to write the result, of the result dtype (float32 when every
        float input is float32, else float64).
    n_threads : int, optional
        OpenMP threads (``None``: what OpenMP allows now).  Small work runs
        on the calling thread.  The result does not depend on it.

    Returns
    -------
    grad_W : ndarray, shape (k, N) or (B, k, N)
        Without ``b``.
    (grad_W, grad_b) : tuple of ndarrays, shapes as above and (N,) or (B, N)
        With ``b``.

    Raises
    ------
    IndexError
        An action outside ``[0, N)``.
    TypeError
        Non-real arrays, a non-integer action, ``out`` of the wrong dtype.
    ValueError
        Shapes that do not match; N = 0; the taken action masked; a state with
        every action masked; NaN or inf in ``s``, ``W`` or ``b``; logits that
        overflow; a result not finite in the result dtype (``temperature``
        too small for it, or ``s`` too large); ``temperature`` not finite and
        positive; ``n_threads < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastscore.matrix as fm
    >>> grad_W = fm.score(np.array([1.0, 2.0]), np.zeros((2, 3)), 0)
    >>> grad_W.round(3)
    array([[ 0.667, -0.333, -0.333],
           [ 1.333, -0.667, -0.667]])
    """
    return call(K_SCORE, s, W, a, b, mask, None, temperature, out, n_threads, 0, False)


def log_prob(s, W, a, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None):
    r"""log pi(a | s) for z = (s W + b) / tau: a scalar for one state, (B,) for a batch.

    Computed as :math:`(z_a - m) - \log(1 + r)` with m the largest logit and
    r the sum of the other actions' :math:`e^{z_k - m}`: it keeps its relative
    accuracy as :math:`\pi(a) \to 1`.

    Parameters
    ----------
    s : array_like, shape (k,) or (B, k)
        One state, or a batch of B states.
    W : array_like, shape (k, N)
        Weights, shared by the batch.
    a : int or array_like of int, shape (B,)
        The taken action(s).
    b : array_like, shape (N,), optional
        Bias.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions (masked ones get probability exactly 0).
    temperature : float, default 1.0
        ``tau > 0``.
    out : ndarray, optional
        Where to write the result, of the result dtype.
    n_threads : int, optional
        OpenMP threads (``None``: what OpenMP allows now); the result does
        not depend on it.

    Returns
    -------
    NumPy scalar or ndarray, shape (B,)
        Of the result dtype (float32 when every float input is float32, else
        float64); ``out`` itself when given (shape () or (B,)).

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`score`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastscore.matrix as fm
    >>> float(fm.log_prob(np.zeros(3), np.zeros((3, 4)), 2))  # uniform over 4 actions
    -1.3862943611198906
    """
    return call(K_LOG_PROB, s, W, a, b, mask, None, temperature, out, n_threads, 0, False)


def entropy(s, W, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None,
            grad=False):
    r"""Entropy of pi(. | s): a scalar for one state, (B,) for a batch.

    With ``grad=True``, ``(H, grad)``: the gradient of each state's entropy
    in W (and b), laid out as :func:`score` lays out its result.

    :math:`H = \log(1 + r) + \sum_k \pi_k (m - z_k)`, two non-negative terms.

    Parameters
    ----------
    s : array_like, shape (k,) or (B, k)
        One state, or a batch of B states.
    W : array_like, shape (k, N)
        Weights, shared by the batch.
    b : array_like, shape (N,), optional
        Bias.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions (masked ones get probability exactly 0).
    temperature : float, default 1.0
        ``tau > 0``.
    out : ndarray, optional
        Where to write the result, of the result dtype.
    n_threads : int, optional
        OpenMP threads (``None``: what OpenMP allows now); the result does
        not depend on it.
    grad : bool, default False
        Also return ``dH/dW = outer(s, c) / tau`` (and ``dH/db = c / tau``)
        with ``c_j = -pi_j (log pi_j + H)``; masked actions contribute 0.

    Returns
    -------
    H : NumPy scalar or ndarray, shape (B,)
        Of the result dtype; ``out`` itself when given; the same bits with
        or without ``grad``.
    grad : ndarray or tuple of ndarray (only with ``grad=True``)
        ``(k, N)`` or ``(B, k, N)``, or with ``b`` the pair
        ``(grad_W, grad_b)``.

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`score`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastscore.matrix as fm
    >>> float(fm.entropy(np.zeros(3), np.zeros((3, 4))))  # log 4
    1.3862943611198906
    >>> H, g = fm.entropy(np.ones(3), np.zeros((3, 4)), grad=True)  # a maximum: g = 0
    >>> g.shape, float(np.abs(g).max())
    ((3, 4), 0.0)
    """
    return call(K_ENTROPY, s, W, None, b, mask, None, temperature, out, n_threads, 0,
                bool(grad))


def kl(s, W_ref, W, *, b_ref=None, b=None, mask=None, temperature=1.0, out=None,
       n_threads=None, grad=False):
    r"""KL divergence :math:`\mathrm{KL}(\pi_{\mathrm{ref}} \,\|\, \pi)` of each state, with its gradient in W.

    :math:`\pi_{\mathrm{ref}}` is the policy of ``W_ref`` (and ``b_ref``),
    :math:`\pi` that of ``W`` (and ``b``): the KL penalty of a PPO-style or
    trust-region update.  With ``grad=True`` also its gradient in ``W`` (and
    ``b``), ``outer(s, pi - pi_ref) / tau`` (and ``(pi - pi_ref) / tau``).

    The logit differences :math:`\Delta_j = s \cdot (W_j - W_{\mathrm{ref},j})
    / \tau` (plus the bias difference) are computed directly (compensated dot
    products; ``W - W_ref`` held exactly as a sum of two arrays), never
    :math:`\pi - \pi_{\mathrm{ref}}` by subtraction, and the KL is summed as
    :math:`\sum_j \pi_{\mathrm{ref},j} f(x_j)`, :math:`f(x) = e^x - 1 - x
    \ge 0`, :math:`x_j = \Delta_j - \log \sum_k \pi_{\mathrm{ref},k}
    e^{\Delta_k}` (an additive constant dropped): no term cancels, so the KL of
    nearly equal policies keeps its relative accuracy.  The same algorithm as
    :func:`fastscore.kl`.

    Parameters
    ----------
    s : array_like, shape (k,) or (B, k)
        One state, or a batch of B states.
    W_ref : array_like, shape (k, N)
        Weights of the reference policy.
    W : array_like, shape (k, N)
        Weights of the policy the gradient is taken in.
    b_ref, b : array_like, shape (N,), optional
        Their biases: both, or neither.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions (the same for both policies; masked ones contribute 0).
    temperature : float, default 1.0
        ``tau > 0``, shared by both policies.
    out : ndarray, optional
        Where to write the KL values (B,), of the result dtype.
    n_threads : int, optional
        OpenMP threads (``None``: what OpenMP allows now); the result does
        not depend on it.
    grad : bool, default False
        Also return the gradient of each state's KL in ``W`` (and ``b``).

    Returns
    -------
    kl : NumPy scalar or ndarray, shape (B,)
        Of the result dtype (float32 when every array is float32, else
        float64); ``out`` itself when given; the same bits with or without
        ``grad``.
    grad : ndarray or tuple of ndarray (only with ``grad=True``)
        ``(k, N)`` or ``(B, k, N)``, or with ``b`` the pair
        ``(grad_W, grad_b)``.

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`score`; also when ``W`` differs from ``W_ref`` in shape,
        when only one of ``b_ref`` and ``b`` is given, or when a state's
        logits under the two policies differ by more than about 16384 (the
        difference form would lose its accuracy).

    See Also
    --------
    fastscore.kl : the phi form.

    Examples
    --------
    >>> import numpy as np
    >>> import fastscore.matrix as fm
    >>> s, W_ref = np.ones(1), np.zeros((1, 2))
    >>> W = np.array([[np.log(3.0), 0.0]])    # pi = (3/4, 1/4), pi_ref = (1/2, 1/2)
    >>> round(float(fm.kl(s, W_ref, W)), 6)
    0.143841
    >>> value, g = fm.kl(s, W_ref, W, grad=True)
    >>> g  # outer(s, pi - pi_ref)
    array([[ 0.25, -0.25]])
    """
    if W is None:
        raise TypeError("W must be an array of shape (k, N), got None")
    if (b_ref is None) != (b is None):
        raise ValueError(
            "give both b_ref and b, or neither: the two policies' biases (a policy without "
            "one has b = 0)")
    return call(K_KL, s, W_ref, None, b_ref, mask, None, temperature, out, n_threads, 0,
                bool(grad), 0.0, W, b, "W_ref", "b_ref")


def probs(s, W, *, b=None, mask=None, temperature=1.0, out=None, n_threads=None):
    r"""pi(. | s): shape (N,) for one state, (B, N) for a batch; masked actions get 0.

    Parameters
    ----------
    s : array_like, shape (k,) or (B, k)
        One state, or a batch of B states.
    W : array_like, shape (k, N)
        Weights, shared by the batch.
    b : array_like, shape (N,), optional
        Bias.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions (masked ones get probability exactly 0).
    temperature : float, default 1.0
        ``tau > 0``.
    out : ndarray, optional
        Where to write the result, of the result dtype.
    n_threads : int, optional
        OpenMP threads (``None``: what OpenMP allows now); the result does
        not depend on it.

    Returns
    -------
    ndarray, shape (N,) or (B, N)
        Of the result dtype; ``out`` itself when given.

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`score`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastscore.matrix as fm
    >>> fm.probs(np.ones(2), np.array([[1.0, 0.0], [0.0, 0.0]]), mask=[True, False])
    array([1., 0.])
    """
    return call(K_PROBS, s, W, None, b, mask, None, temperature, out, n_threads, 0, False)


cdef inline double scalar_option(object x, str name) except? -1.0:
    """A finite float option, without a Python call for a float (NumPy's
    float64 included: a subclass)."""
    cdef double v
    if PyFloat_Check(x):
        v = PyFloat_AS_DOUBLE(x)
        if isfinite(v):
            return v
    return coerce_finite(x, name)


def sample(s, W, *, b=None, seed=None, mask=None, temperature=1.0, n_threads=None,
           score=False, trace=None, decay=1.0, weight=1.0):
    r"""Draw actions from pi(. | s) by Gumbel-max: ``(actions, log_probs)``.

    With ``score=True``, also the score of each drawn action in one call:
    ``(actions, log_probs, grad)``, the policy-gradient step's three inputs.
    With ``trace=``, the score is added into an array of the user's instead,
    in place: ``trace <- decay * trace + weight * score`` (an eligibility
    trace with ``decay = gamma * lambda``; REINFORCE's ``G += adv * g`` with
    ``weight=adv``), with no score array made.

    Parameters
    ----------
    s : array_like, shape (k,) or (B, k)
        One state, or a batch of B states.
    W : array_like, shape (k, N)
        Weights, shared by the batch.
    b : array_like, shape (N,), optional
        Bias.
    seed : int in [0, 2**64), numpy.random.Generator or None
        The draws are a function of (seed, state index, action index)
        through a counter-based generator (Philox4x64-10), so the same seed
        gives the same actions whatever ``n_threads``.  A Generator gives
        one 64-bit key per call (and advances); None takes fresh OS entropy.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions (masked ones get probability exactly 0).
    temperature : float, default 1.0
        ``tau > 0``.
    n_threads : int, optional
        OpenMP threads (``None``: what OpenMP allows now); the result does
        not depend on it.
    score : bool, default False
        Also return the score ``grad_W log pi(action | s)`` of the drawn
        actions.
    trace : ndarray, or a pair of them with ``b``, optional
        Updated in place with the score of the drawn actions (not with
        ``score=True``): of the score's shape, ``(k, N)`` or ``(B, k, N)``
        (with ``b``, ``(trace_W, trace_b)``), of the result dtype, writeable
        and sharing no memory with an input.  Each new entry is ``decay *
        t + weight * g``, ``g`` the score as :func:`score` forms it in
        double, rounded once to the trace's dtype: with ``decay=1`` in
        float64 bitwise ``trace += weight * score(...)``.  A state whose new
        entries are not all finite raises and is left as it was (in a batch,
        the other states may have been updated).
    decay, weight : float, default 1.0
        The two factors of ``trace``'s update (finite; only with ``trace``).

    Returns
    -------
    actions : int-like NumPy scalar, or ndarray of intp, shape (B,)
        The same with or without ``score``.
    log_probs : NumPy scalar or ndarray, shape (B,)
        Bitwise what :func:`log_prob` returns for the drawn actions.
    grad : ndarray or tuple of ndarray (only with ``score=True``)
        Bitwise ``score(s, W, actions, b=b, mask=mask,
        temperature=temperature)``: ``(k, N)`` or ``(B, k, N)``, or with
        ``b`` the pair ``(grad_W, grad_b)``.

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`score`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastscore.matrix as fm
    >>> S, W = np.ones((5, 3)), np.zeros((3, 4))
    >>> actions, log_probs = fm.sample(S, W, seed=7)
    >>> bool(np.all(actions == fm.sample(S, W, seed=7)[0])), log_probs.shape
    (True, (5,))
    >>> a, lp, g = fm.sample(np.ones(3), W, seed=7, score=True)
    >>> g.shape, bool(np.array_equal(g, fm.score(np.ones(3), W, a)))
    ((3, 4), True)
    >>> z = np.zeros((3, 4))                 # an eligibility trace
    >>> a, lp = fm.sample(np.ones(3), W, seed=7, trace=z, decay=0.9)
    >>> bool(np.array_equal(z, g))
    True
    """
    cdef uint64_t key = seed_key(seed)
    cdef double dec = 1.0, wt = 1.0
    if trace is None:
        if decay != 1.0 or weight != 1.0:
            raise ValueError("decay and weight apply to trace= only")
        return call(K_SAMPLE, s, W, None, b, mask, None, temperature, None, n_threads, key,
                    bool(score))
    if score:
        raise ValueError("give score=True (a new score array) or trace= (added into yours), "
                         "not both")
    dec = scalar_option(decay, "decay")
    wt = scalar_option(weight, "weight")
    return call(K_SAMPLE, s, W, None, b, mask, None, temperature, None, n_threads, key, True,
                0.0, None, None, "W", "b", trace, dec, wt)


def loglik(s, W, a, *, b=None, weights=None, grad=False, mask=None, temperature=1.0,
           entropy_weight=0.0, n_threads=None):
    r"""Weighted log-likelihood :math:`\sum_i w_i \log \pi(a_i \mid s_i)`, and its gradient.

    With ``entropy_weight=beta`` the objective is the entropy-regularised
    one of A2C and PPO, :math:`\sum_i w_i \log \pi(a_i \mid s_i) + \beta
    \sum_i H(\pi_i)` (the entropies are not weighted by ``w``), its value and
    gradient in the same pass: the entropy's gradient in the logits,
    :math:`-\pi_j (\log \pi_j + H)`, is formed as :math:`-\pi_j ((z_j - m) +
    \sum_k \pi_k (m - z_k))` (no :math:`\log(1 + r)` cancels) and joins the
    residual before the second matrix product; masked actions add exactly 0.

    No (B, N) array larger than one block and no (B, k, N) array is formed;
    for large batches the two matrix products go to BLAS (dgemm) block by
    block.  The sums are taken over fixed chunks of states in a fixed order,
    so the bits do not depend on ``n_threads``.

    Parameters
    ----------
    s : array_like, shape (k,) or (B, k)
        One state, or a batch of B states.
    W : array_like, shape (k, N)
        Weights, shared by the batch.
    a : int or array_like of int, shape (B,)
        The taken action(s).
    b : array_like, shape (N,), optional
        Bias.
    weights : array_like, shape (B,), optional
        Finite weights of any sign (a scalar for one state), default 1:
        returns, REINFORCE advantages, or sample weights.
    grad : bool
        Also return the gradient.
    mask : array_like of bool, shape (N,) or (B, N), optional
        Legal actions (masked ones get probability exactly 0).
    temperature : float, default 1.0
        ``tau > 0``.
    entropy_weight : float, default 0.0
        ``beta``, the weight of the entropy bonus; 0 gives the plain
        log-likelihood, bit for bit.
    n_threads : int, optional
        OpenMP threads (``None``: what OpenMP allows now); the result does
        not depend on it.

    Returns
    -------
    value : NumPy scalar of the result dtype
        Without ``grad``.
    (value, grad_W) : with ``grad=True`` and no ``b``
        ``grad_W = sum_i w_i outer(s_i, e_{a_i} - pi_i) / tau``, shape (k, N).
    (value, (grad_W, grad_b)) : with ``grad=True`` and ``b`` given
        The gradient has the structure of the parameters (as :func:`score`).

    Raises
    ------
    IndexError, TypeError, ValueError
        As for :func:`score`.
    ValueError
        Also for weights of the wrong shape or holding NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> import fastscore.matrix as fm
    >>> S, W = np.eye(3), np.zeros((3, 2))
    >>> value, grad_W = fm.loglik(S, W, np.array([0, 1, 0]), grad=True)
    >>> round(float(value), 6), grad_W.shape
    (-2.079442, (3, 2))
    """
    return call(K_LOGLIK, s, W, a, b, mask, weights, temperature, None, n_threads, 0,
                bool(grad), coerce_finite(entropy_weight, "entropy_weight"))


def _log1p_block(double[::1] x):
    """log1p of x (>= 0) in place by the vector log1p of the batch (for tests)."""
    fsm_log1p_block(&x[0], x.shape[0])


def _exp_block(double[::1] x):
    """exp of x (<= 0) in place by the vector exp of the batch softmax (for tests)."""
    fsm_exp_block(&x[0], x.shape[0])
