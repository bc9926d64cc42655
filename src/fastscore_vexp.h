/*
 * Vector helpers of fastscore.matrix: the softmax weights and log1p of a
 * block of states, its small matrix-vector products and copies.
 *
 * fsm_exp_block(x, n) replaces x[i] (<= 0, -inf allowed) by exp(x[i]) with
 * fs_vexp4, the vectorised exp of the phi form's kernels (fastscore_simd.h:
 * Cody-Waite reduction, degree-13 Taylor polynomial by Estrin's scheme, at
 * most 0.71 ulp for normal results; x < -746 gives 0).  The softmax weights
 * exp(z_k - m) are all of this form, and a batch needs B N of them: with the
 * C library's scalar exp they would cost more than the two matrix products
 * around them.
 *
 * Only additions and multiplications, no FMA (the module is compiled with
 * -ffp-contract=off), so every instruction set's clone returns the same bits.
 */
#ifndef FASTSCORE_VEXP_H
#define FASTSCORE_VEXP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fastscore_simd.h"

/* Four lanes: one AVX2 register.  (Eight-lane vectors of the phi kernels
 * make GCC spill accumulators through the stack in the AVX2 clone.) */
#define FSM_LANES 4
typedef double fsm_vd __attribute__((vector_size(FSM_LANES * sizeof(double))));
typedef long long fsm_vl __attribute__((vector_size(FSM_LANES * sizeof(long long))));

FS_INLINE fsm_vd fsm_select(fsm_vl mask, fsm_vd a, fsm_vd b) {
    /* mask ? a : b, lane by lane (mask lanes are 0 or -1) */
    return (fsm_vd)(((fsm_vl)a & mask) | ((fsm_vl)b & ~mask));
}

static FS_CLONES void fsm_exp_block(double *x, ptrdiff_t n) {
    ptrdiff_t i = 0;
    /* Two independent vectors an iteration: each exp is a chain of dependent
     * operations, so a second chain fills the adders' idle cycles. */
    for (; i + 2 * FSM_LANES <= n; i += 2 * FSM_LANES) {
        fsm_vd v, u;
        memcpy(&v, x + i, sizeof v);
        memcpy(&u, x + i + FSM_LANES, sizeof u);
        v = fs_vexp4(v);
        u = fs_vexp4(u);
        memcpy(x + i, &v, sizeof v);
        memcpy(x + i + FSM_LANES, &u, sizeof u);
    }
    for (; i + FSM_LANES <= n; i += FSM_LANES) {
        fsm_vd v;
        memcpy(&v, x + i, sizeof v);
        v = fs_vexp4(v);
        memcpy(x + i, &v, sizeof v);
    }
    if (i < n) {
        double buf[FSM_LANES] = {0};
        fsm_vd v;
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(double));
        memcpy(&v, buf, sizeof v);
        v = fs_vexp4(v);
        memcpy(buf, &v, sizeof v);
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(double));
    }
}

/* x[i] = log1p(x[i]) for x[i] >= +0, by fs_vlog1p4 (fastscore_simd.h). */
static FS_CLONES void fsm_log1p_block(double *x, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + FSM_LANES <= n; i += FSM_LANES) {
        fsm_vd v;
        memcpy(&v, x + i, sizeof v);
        v = fs_vlog1p4(v);
        memcpy(x + i, &v, sizeof v);
    }
    if (i < n) {
        double buf[FSM_LANES] = {0};
        fsm_vd v;
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(double));
        memcpy(&v, buf, sizeof v);
        v = fs_vlog1p4(v);
        memcpy(buf, &v, sizeof v);
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(double));
    }
}

/* The split of fastscore.matrix's split logits: hi[i] = x[i] rounded to a
 * multiple of the ulp of sigma ((x + sigma) - sigma, not folded without
 * fast-math), lo[i] = x[i] - hi[i], exactly.  Additions only: every clone
 * gives the same bits. */
static FS_CLONES void fsm_split_row(const double *x, ptrdiff_t n, double sigma, double *hi,
                                    double *lo) {
    for (ptrdiff_t i = 0; i < n; i++) {
        double h = (x[i] + sigma) - sigma;
        hi[i] = h;
        lo[i] = x[i] - h;
    }
}

/* sum_i x[i]**2 in any fixed order (eight lanes): an upper-bound ingredient,
 * not a result, so its order only has to be the same on every call. */
static FS_CLONES double fsm_sumsq(const double *x, ptrdiff_t n) {
    fsm_vd acc0 = {0}, acc1 = {0}, v0, v1;
    ptrdiff_t i = 0;
    for (; i + 2 * FSM_LANES <= n; i += 2 * FSM_LANES) {
        memcpy(&v0, x + i, sizeof v0);
        memcpy(&v1, x + i + FSM_LANES, sizeof v1);
        acc0 += v0 * v0;
        acc1 += v1 * v1;
    }
    acc0 += acc1;
    double s = 0.0;
    for (; i < n; i++) s += x[i] * x[i];
    for (int j = 0; j < FSM_LANES; j++) s += acc0[j];
    return s;
}

/* z[j] = sum_c s[c] w[c ldw + j] for j < n: the plain logits of one state,
 * and, when colsq is not NULL, colsq[j] = sum_c w[c ldw + j]**2.  Each sum
 * runs over c in order in two interleaved partial sums (even and odd c) added
 * at the end, the same on every call and in every lane or scalar, so a
 * column's bits do not depend on where it falls.  Columns go in panels of up
 * to FSM_PANEL groups of FSM_LANES (plus up to FSM_LANES - 1 scalar columns),
 * all accumulated in one sweep over c: 2 FSM_PANEL independent chains keep
 * the adders busy where one group at a time waited on each addition.  Reads
 * only w[c ldw + j] for c < k, j < n. */
#define FSM_PANEL 4

FS_INLINE void fsm_gemv_panel(const double *s, const double *w, ptrdiff_t ldw, ptrdiff_t k,
                              const int G, const int T, double *z, double *colsq) {
    fsm_vd a0[FSM_PANEL], a1[FSM_PANEL], q0[FSM_PANEL], q1[FSM_PANEL], v0, v1;
    double t0[FSM_LANES], t1[FSM_LANES], u0[FSM_LANES], u1[FSM_LANES];
    const int J = G * FSM_LANES;
    for (int g = 0; g < G; g++) a0[g] = a1[g] = q0[g] = q1[g] = (fsm_vd){0};
    for (int e = 0; e < T; e++) t0[e] = t1[e] = u0[e] = u1[e] = 0.0;
    ptrdiff_t c = 0;
    for (; c + 2 <= k; c += 2) {
        const double *r0 = w + c * ldw, *r1 = r0 + ldw;
        const double s0 = s[c], s1 = s[c + 1];
        for (int g = 0; g < G; g++) {
            memcpy(&v0, r0 + g * FSM_LANES, sizeof v0);
            memcpy(&v1, r1 + g * FSM_LANES, sizeof v1);
            a0[g] += s0 * v0;
            a1[g] += s1 * v1;
            if (colsq) {
                q0[g] += v0 * v0;
                q1[g] += v1 * v1;
            }
        }
        for (int e = 0; e < T; e++) {
            const double x0 = r0[J + e], x1 = r1[J + e];
            t0[e] += s0 * x0;
            t1[e] += s1 * x1;
            if (colsq) {
                u0[e] += x0 * x0;
                u1[e] += x1 * x1;
            }
        }
    }
    if (c < k) {
        const double *r0 = w + c * ldw;
        const double s0 = s[c];
        for (int g = 0; g < G; g++) {
            memcpy(&v0, r0 + g * FSM_LANES, sizeof v0);
            a0[g] += s0 * v0;
            if (colsq) q0[g] += v0 * v0;
        }
        for (int e = 0; e < T; e++) {
            t0[e] += s0 * r0[J + e];
            if (colsq) u0[e] += r0[J + e] * r0[J + e];
        }
    }
    for (int g = 0; g < G; g++) {
        v0 = a0[g] + a1[g];
        memcpy(z + g * FSM_LANES, &v0, sizeof v0);
        if (colsq) {
            v1 = q0[g] + q1[g];
            memcpy(colsq + g * FSM_LANES, &v1, sizeof v1);
        }
    }
    for (int e = 0; e < T; e++) {
        z[J + e] = t0[e] + t1[e];
        if (colsq) colsq[J + e] = u0[e] + u1[e];
    }
}

/* One panel with G and T as constants, so its accumulators live in registers. */
#define FSM_PANEL_CASE(G, T) \
    case (G) * FSM_LANES + (T): fsm_gemv_panel(s, w, ldw, k, G, T, z, colsq); break;

static FS_CLONES void fsm_gemv(const double *s, const double *w, ptrdiff_t ldw, ptrdiff_t k,
                              ptrdiff_t n, double *z, double *colsq) {
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FSM_PANEL * FSM_LANES) {
        ptrdiff_t r = n - j0;
        int cols = r < FSM_PANEL * FSM_LANES ? (int)r : FSM_PANEL * FSM_LANES;
        switch (cols) {
            FSM_PANEL_CASE(0, 1) FSM_PANEL_CASE(0, 2) FSM_PANEL_CASE(0, 3)
            FSM_PANEL_CASE(1, 0) FSM_PANEL_CASE(1, 1) FSM_PANEL_CASE(1, 2) FSM_PANEL_CASE(1, 3)
            FSM_PANEL_CASE(2, 0) FSM_PANEL_CASE(2, 1) FSM_PANEL_CASE(2, 2) FSM_PANEL_CASE(2, 3)
            FSM_PANEL_CASE(3, 0) FSM_PANEL_CASE(3, 1) FSM_PANEL_CASE(3, 2) FSM_PANEL_CASE(3, 3)
            default: fsm_gemv_panel(s, w, ldw, k, FSM_PANEL, 0, z, colsq); break;
        }
        w += FSM_PANEL * FSM_LANES;
        z += FSM_PANEL * FSM_LANES;
        if (colsq) colsq += FSM_PANEL * FSM_LANES;
    }
}
#undef FSM_PANEL_CASE

/* y[i] += x[i] for i < n. */
static FS_CLONES void fsm_add_to(double *y, const double *x, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] += x[i];
}

/* g[c ldg + j] += s[c] r[j] for c < k, j < n: one state's outer product
 * added to a sum.  A multiplication then an addition per element, so every
 * clone gives the same bits. */
static FS_CLONES void fsm_ger(double *g, ptrdiff_t ldg, const double *s, ptrdiff_t k,
                              const double *r, ptrdiff_t n) {
    for (ptrdiff_t c = 0; c < k; c++) {
        double *gr = g + c * ldg;
        const double sc = s[c];
        for (ptrdiff_t j = 0; j < n; j++) gr[j] += sc * r[j];
    }
}

/* o[c ldo + j] = s[c] r[j] for c < k, j < n: one state's outer product. */
static FS_CLONES void fsm_outer(double *o, ptrdiff_t ldo, const double *s, ptrdiff_t k,
                                const double *r, ptrdiff_t n) {
    for (ptrdiff_t c = 0; c < k; c++) {
        double *orow = o + c * ldo;
        const double sc = s[c];
        for (ptrdiff_t j = 0; j < n; j++) orow[j] = sc * r[j];
    }
}

/* y = a x + b y (sample(trace=)'s update, a product each then one sum, as
 * NumPy's trace += weight * score forms it when a = 1). */
static FS_CLONES void fsm_axpby(double *restrict y, const double *restrict x, double a,
                                double b, ptrdiff_t n) {
    for (ptrdiff_t j = 0; j < n; j++) y[j] = a * x[j] + b * y[j];
}

/* The largest column sum of squares of w (k, n; row stride ldw), with
 * tmp (n doubles) as the running sums: inf or NaN when w holds inf or NaN
 * (or entries beyond 1e154), as the checks of W expect. */
static FS_CLONES double fsm_colsq_max(const double *w, ptrdiff_t ldw, ptrdiff_t k, ptrdiff_t n,
                                      double *tmp) {
    double m = 0.0;
    for (ptrdiff_t j = 0; j < n; j++) tmp[j] = 0.0;
    for (ptrdiff_t c = 0; c < k; c++) {
        const double *row = w + c * ldw;
        for (ptrdiff_t j = 0; j < n; j++) tmp[j] += row[j] * row[j];
    }
    for (ptrdiff_t j = 0; j < n; j++) {
        if (tmp[j] != tmp[j]) return tmp[j]; /* NaN */
        if (tmp[j] > m) m = tmp[j];
    }
    return m;
}

/* Copy W (k, n; byte strides s0, s1; float64 or float32) into w (k, n),
 * row-major, as double. */
static FS_CLONES void fsm_copy_w(const char *src, ptrdiff_t s0, ptrdiff_t s1, int f32,
                                 ptrdiff_t k, ptrdiff_t n, double *w) {
    const ptrdiff_t size = f32 ? (ptrdiff_t)sizeof(float) : (ptrdiff_t)sizeof(double);
    if (s1 == size && (s0 == n * size || k <= 1)) {   /* C-contiguous: one flat loop */
        if (f32)
            for (ptrdiff_t q = 0; q < k * n; q++) w[q] = ((const float *)src)[q];
        else
            memcpy(w, src, (size_t)(k * n) * sizeof(double));
        return;
    }
    for (ptrdiff_t c = 0; c < k; c++) {
        const char *row = src + c * s0;
        double *wr = w + c * n;
        if (f32)
            for (ptrdiff_t j = 0; j < n; j++) wr[j] = *(const float *)(row + j * s1);
        else
            for (ptrdiff_t j = 0; j < n; j++) wr[j] = *(const double *)(row + j * s1);
    }
}

/* No NaN or inf among x[:n] (x * 0 is NaN exactly for those). */
static FS_CLONES int fsm_all_finite(const double *x, ptrdiff_t n) {
    fsm_vd acc = {0}, v;
    ptrdiff_t i = 0;
    double s = 0.0;
    for (; i + FSM_LANES <= n; i += FSM_LANES) {
        memcpy(&v, x + i, sizeof v);
        acc += v * 0.0;
    }
    for (; i < n; i++) s += x[i] * 0.0;
    for (int j = 0; j < FSM_LANES; j++) s += acc[j];
    return s == 0.0;
}

#endif /* FASTSCORE_VEXP_H */
