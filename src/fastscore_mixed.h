/*
 * The simulated log-likelihood of the mixed (random-coefficients) logit, one
 * panel (person) at a time, with the draws as the vector dimension.
 *
 * For panel p and draw r the coefficients are beta_pr (fixed columns: m_j;
 * normal, triangular, uniform: m_j + s_j xi_prj, or m + L xi with a Cholesky
 * factor; lognormal: exp(m_j + s_j xi_prj)).  Each situation's utilities
 * enter only as differences from the chosen row, d_i = (x_i - x_c) . beta,
 * so log pi_c = -log(1 + sum_{i != c} exp(d_i)): the chosen row needs no exp
 * and its score sum_{i != c} pi_i (x_c - x_i) is formed without cancellation
 * (docs/mixed_logit.md).  When some d_i > FSX_SHIFT_AT in a lane, that lane
 * is shifted by M = max_i d_i: log pi_c = -M - log(exp(-M) + sum_i exp(d_i -
 * M)).  The choice is made per lane, so every lane's bits depend on its own
 * draw only.
 *
 * log P_pr = sum over the panel's situations of log pi_c is kept as a sum L of
 * the shifts and a product of the normalisers, renormalised to [1, 2) after
 * every situation by moving its exponent bits into an integer count E (exact):
 * one log per draw and panel instead of one per situation, and no underflow
 * however many situations a panel has.  Then the log-mean-exp over the draws,
 * the posterior weights h_pr and the gradient.  For the gradient the sweep
 * keeps pi_i at every draw for each non-chosen row of the panel (a panel's
 * rows x draws); once h is known, each row adds (x_c - x_i) times its sums
 * over the draws of h pi_i (the fixed columns and the locations) and of
 * h pi_i xi (the spreads; times beta for a lognormal column), so a fixed
 * column costs one multiply-add a row, not one a row and draw.
 *
 * Only +, -, *, / and comparisons on 8-lane vectors (the module is compiled
 * with -ffp-contract=off), exp and log1p by fastscore_simd.h's bodies (the
 * same function on every CPU), reductions over draws in a fixed order of
 * vectors and lanes: each instruction set's copy of the panel function
 * (fastscore_mixed_panel.h, compiled for AVX-512F, AVX2 and the baseline)
 * returns the same bits.
 */
#ifndef FASTSCORE_MIXED_H
#define FASTSCORE_MIXED_H

#include <stddef.h>
#include <string.h>

#include "fastscore_simd.h"

#define FSX_LANES FS_LANES
/* A lane is shifted by its largest difference only when that exceeds this:
 * n exp(600) stays far from overflow for any realistic n. */
#define FSX_SHIFT_AT 600.0

/* The Hessian's situation term goes by pairs of rows only for situations of
 * at most this many non-chosen rows (its scratch grows as their square). */
#define FSX_PAIR_ROWS 8

#define FSX_ROUND_UP(n) (((n) + FSX_LANES - 1) / FSX_LANES * FSX_LANES)

#define FSX_FIXED 0
#define FSX_NORMAL 1
#define FSX_LOGNORMAL 2
#define FSX_TRIANGULAR 3
#define FSX_UNIFORM 4

/* Eight lanes (the AVX-512 copy); the four-lane helpers are
 * fastscore_simd.h's fs_vexp4, fs_vlog1p4, fs_sel4, fs_load4, fs_store4. */
FS_INLINE fs_vd fsx_sel8(fs_vl m, fs_vd a, fs_vd b) {
    return (fs_vd)(((fs_vl)a & m) | ((fs_vl)b & ~m));
}
FS_DEFINE_VEXP(, fsx_vexp8, fs_vd, fs_vl, fsx_sel8)
FS_DEFINE_VLOG1P(, fsx_vlog1p8, fs_vd, fs_vl, fsx_sel8)

FS_INLINE fs_vd fsx_load8(const double *p) {
    fs_vd v;
    memcpy(&v, p, sizeof v);
    return v;
}

FS_INLINE void fsx_store8(double *p, fs_vd v) { memcpy(p, &v, sizeof v); }

/* The sum of the FSX_LANES doubles at a (a group of lanes, in one or two
 * vectors) in one fixed order, for every instruction set. */
FS_INLINE double fsx_tree8(const void *a) {
    double b[FSX_LANES];
    memcpy(b, a, sizeof b);
    return ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

typedef struct {
    const double *X;               /* (rows, k), C order */
    const ptrdiff_t *offsets;      /* (S + 1,) */
    const ptrdiff_t *chosen;       /* (S,) */
    const ptrdiff_t *panel_offsets; /* (P + 1,) */
    const double *draws;           /* (P, R, q) at element strides draws_sp, _sr, _sj */
    const int *kinds;              /* (k,) */
    const ptrdiff_t *rcol;         /* (q,) the random columns, in column order */
    const double *params;          /* (n_params,) */
    ptrdiff_t k, q, R, Rp;         /* Rp: R rounded up to FSX_LANES */
    ptrdiff_t draws_sp, draws_sr, draws_sj;
    ptrdiff_t n_params, max_rows;  /* max_rows: the largest situation */
    ptrdiff_t max_panel_rows;      /* the most non-chosen rows of one panel (0 without
                                    * the gradient) */
    int want_hess;                 /* the Hessian's scratch (needs want_grad) */
    int chol, want_grad;
    double log_R;                  /* log(R) by fs_log1p */
} fsx_problem;

/* Doubles of per-thread scratch for fsx_panel (each part a whole number of
 * vectors, so every part starts 64-byte aligned after an aligned base). */
static inline ptrdiff_t fsx_scratch_doubles(const fsx_problem *pb) {
    ptrdiff_t n = (2 * pb->q + 4 + pb->max_rows + pb->max_panel_rows) * pb->Rp +
                  2 * FSX_ROUND_UP(pb->max_rows * pb->k) + FSX_ROUND_UP(pb->max_rows) +
                  FSX_ROUND_UP(pb->max_panel_rows * pb->k);
    if (pb->want_hess)
        n += (1 + 2 * pb->q + 3 * pb->n_params + pb->k + 1) * pb->Rp +
             (1 + FSX_PAIR_ROWS * (FSX_PAIR_ROWS + 1) / 2) * (1 + 3 * pb->q) * (1 + 3 * pb->q);
    return n;
}

/* One panel: its log simulated likelihood into *ll, its gradient (n_params)
 * into score when pb->want_grad, its posterior mean coefficients (k) into
 * post when post is not NULL, its Hessian (n_params x n_params) into hess
 * when hess is not NULL (then pb->want_grad and pb->want_hess). */
typedef void (*fsx_panel_fn)(const fsx_problem *, ptrdiff_t, double *, double *, double *,
                             double *, double *);

#define FSX_W 4
#define FSX_VD fs_vd4
#define FSX_VL fs_vl4
#define FSX_SEL fs_sel4
#define FSX_EXP fs_vexp4
#define FSX_LOG1P fs_vlog1p4
#define FSX_LOAD fs_load4
#define FSX_STORE fs_store4

#define FSX_PANEL fsx_panel_generic
#define FSX_DOT fsx_dot_generic
#define FSX_DOT4 fsx_dot4_generic
#define FSX_GRAM fsx_gram_generic
#define FSX_ATTRS
#include "fastscore_mixed_panel.h"
#undef FSX_PANEL
#undef FSX_DOT
#undef FSX_DOT4
#undef FSX_GRAM
#undef FSX_ATTRS

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(FASTSCORE_NO_CLONES)
#define FSX_HAVE_ISA 1
#define FSX_PANEL fsx_panel_avx2
#define FSX_DOT fsx_dot_avx2
#define FSX_DOT4 fsx_dot4_avx2
#define FSX_GRAM fsx_gram_avx2
#define FSX_ATTRS __attribute__((target("avx2")))
#include "fastscore_mixed_panel.h"
#undef FSX_PANEL
#undef FSX_DOT
#undef FSX_DOT4
#undef FSX_GRAM
#undef FSX_ATTRS

#undef FSX_W
#undef FSX_VD
#undef FSX_VL
#undef FSX_SEL
#undef FSX_EXP
#undef FSX_LOG1P
#undef FSX_LOAD
#undef FSX_STORE
#define FSX_W 8
#define FSX_VD fs_vd
#define FSX_VL fs_vl
#define FSX_SEL fsx_sel8
#define FSX_EXP fsx_vexp8
#define FSX_LOG1P fsx_vlog1p8
#define FSX_LOAD fsx_load8
#define FSX_STORE fsx_store8
#define FSX_PANEL fsx_panel_avx512
#define FSX_DOT fsx_dot_avx512
#define FSX_DOT4 fsx_dot4_avx512
#define FSX_GRAM fsx_gram_avx512
#define FSX_ATTRS __attribute__((target("avx512f")))
#include "fastscore_mixed_panel.h"
#undef FSX_PANEL
#undef FSX_DOT
#undef FSX_DOT4
#undef FSX_GRAM
#undef FSX_ATTRS
#else
#define FSX_HAVE_ISA 0
#endif

/* The instruction sets this CPU and build can run, best first: 0 AVX-512F,
 * 1 AVX2, 2 baseline. */
static int fsx_isa_available(int isa) {
    if (isa == 2) return 1;
#if FSX_HAVE_ISA
    __builtin_cpu_init();
    if (isa == 1) return __builtin_cpu_supports("avx2");
    if (isa == 0) return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

static fsx_panel_fn fsx_isa_panel(int isa) {
#if FSX_HAVE_ISA
    if (isa == 0) return fsx_panel_avx512;
    if (isa == 1) return fsx_panel_avx2;
#endif
    (void)isa;
    return fsx_panel_generic;
}

#endif /* FASTSCORE_MIXED_H */
