/*
 * Prototype (measurement only): the score of many tiny states by one fused
 * kernel over runs of states, against a scalar one-state-at-a-time reference.
 * Build: gcc -O3 -march=native -ffp-contract=off -fno-math-errno -shared -fPIC
 * (-DSCRATCH_STACK: scratch on the stack, whose speed depends on where the
 * stack lands mod 4 KiB; default: a static buffer at offset 2048, one thread)
 *
 * Bits: every lane runs exactly the operations of fastscore's narrow path
 * (Dot2 in j order, TwoProduct by FMA, fs_vexp4 without FMA, g accumulated
 * in row order skipping k == a and w == 0, score = g * (1 / (1 + r))).
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__FAST_MATH__)
#error "IEEE semantics needed"
#endif

#define FI static inline __attribute__((always_inline))

typedef double vd4 __attribute__((vector_size(32)));
typedef long long vl4 __attribute__((vector_size(32)));

FI vd4 sel4(vl4 m, vd4 a, vd4 b) { return (vd4)(((vl4)a & m) | ((vl4)b & ~m)); }

typedef double vd8 __attribute__((vector_size(64)));
typedef long long vl8 __attribute__((vector_size(64)));
FI vd8 sel8(vl8 m, vd8 a, vd8 b) { return (vd8)(((vl8)a & m) | ((vl8)b & ~m)); }

/* Copy of fs_vexp4 (fastscore_simd.h), unchanged but for the lane count
 * (VEXP(vexp8, ...) is the same per-lane arithmetic on 8 lanes). */
#define C4(x) {x, x, x, x}
#define C8(x) {x, x, x, x, x, x, x, x}
#define VEXP(NAME, VT, LT, SEL, CC)                                                   \
FI VT NAME(VT x) {                                                                    \
    const double inv_ln2 = 0x1.71547652b82fep0;                                       \
    const double shifter = 0x1.8p52;                                                  \
    const double ln2_hi = 0x1.62e42feep-1;                                            \
    const double ln2_lo = 0x1.a39ef35793c76p-33;                                      \
    VT lo_lim = CC(-746.0), hi_lim = CC(710.0);                                       \
    VT xc = SEL(x < lo_lim, lo_lim, x);                                               \
    xc = SEL(xc > hi_lim, hi_lim, xc);                                                \
    VT t = xc * inv_ln2 + shifter;                                                    \
    VT nd = t - shifter;                                                              \
    VT hi = xc - nd * ln2_hi;                                                         \
    VT lo = nd * ln2_lo;                                                              \
    VT r = hi - lo;                                                                   \
    VT r_err = (hi - r) - lo;                                                         \
    VT r2 = r * r;                                                                    \
    VT r4 = r2 * r2;                                                                  \
    VT r8 = r4 * r4;                                                                  \
    VT a0 = r * (1.0 / 6.0) + 0.5;                                                    \
    VT a1 = r * (1.0 / 120.0) + (1.0 / 24.0);                                         \
    VT a2 = r * (1.0 / 5040.0) + (1.0 / 720.0);                                       \
    VT a3 = r * (1.0 / 362880.0) + (1.0 / 40320.0);                                   \
    VT a4 = r * (1.0 / 39916800.0) + (1.0 / 3628800.0);                               \
    VT a5 = r * (1.0 / 6227020800.0) + (1.0 / 479001600.0);                           \
    VT b0 = a1 * r2 + a0;                                                             \
    VT b1 = a3 * r2 + a2;                                                             \
    VT b2 = a5 * r2 + a4;                                                             \
    VT q = (b2 * r8 + b1 * r4) + b0;                                                  \
    VT s = 1.0 + r;                                                                   \
    VT s_err = (1.0 - s) + r;                                                         \
    VT y = s + (s_err + (r_err + r2 * q));                                            \
    LT n = (LT)t - (LT)(VT)CC(shifter);                                               \
    LT small = n < -1020, big = n > 1000;                                             \
    LT k = n + (small & 64) - (big & 64);                                             \
    VT scale = (VT)((k + 1023) << 52);                                                \
    VT one = CC(1.0);                                                                 \
    VT post = SEL(small, (VT)CC(0x1p-64), SEL(big, (VT)CC(0x1p64), one));             \
    return (y * scale) * post;                                                        \
}
VEXP(vexp4, vd4, vl4, sel4, C4)
VEXP(vexp8, vd8, vl8, sel8, C8)

static double vexp1(double x) {
    vd4 v = {x, 0.0, 0.0, 0.0};
    return vexp4(v)[0];
}

/* ------------------------------------------------------------------------ */
/* Reference: one state at a time, plain scalar C.  Returns 0 if OK, 1 if a
 * logit is not finite, 2 if a result is not finite (index in *bad). */
int ref_score_f64(const double *phi, const double *theta, const int64_t *act, int64_t B,
                  int N, int d, double *out, int64_t *bad) {
    double z[64], zl[64], w[64], g[64];
    for (int64_t b = 0; b < B; b++) {
        const double *st = phi + (size_t)b * N * d;
        for (int k = 0; k < N; k++) {
            const double *x = st + (size_t)k * d;
            double h = 0.0, l = 0.0;
            for (int j = 0; j < d; j++) {
                double p = x[j] * theta[j];
                double e = __builtin_fma(x[j], theta[j], -p);
                double s = h + p;
                double bb = s - h;
                double q = (h - (s - bb)) + (p - bb);
                h = s;
                l += q + e;
            }
            z[k] = h + l;
            zl[k] = l - (z[k] - h);
            if (!(isfinite(z[k]) && isfinite(zl[k]))) { *bad = b; return 1; }
        }
        int km = 0;
        for (int k = 1; k < N; k++)
            if (z[k] > z[km]) km = k;
        double m = z[km], mlo = zl[km];
        double r = 0.0;
        for (int k = 0; k < N; k++) {
            w[k] = vexp1((z[k] - m) + (zl[k] - mlo));
            if (k != km) r += w[k];
        }
        int64_t a = act[b];
        const double *xa = st + (size_t)a * d;
        for (int i = 0; i < d; i++) g[i] = 0.0;
        for (int k = 0; k < N; k++) {
            if (k == a || w[k] == 0.0) continue;
            const double *xk = st + (size_t)k * d;
            for (int i = 0; i < d; i++) g[i] += w[k] * (xa[i] - xk[i]);
        }
        double inv_l = 1.0 / (1.0 + r);
        double *o = out + (size_t)b * d;
        for (int i = 0; i < d; i++) {
            o[i] = g[i] * inv_l;
            if (!isfinite(o[i])) { *bad = b; return 2; }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The fused kernel. */

#define RUN_ROWS 32 /* rows of one run: floor(32 / N) whole states */
#define MAX_D 32
#define MAX_N 8

static const double zero_row[MAX_D + 8] __attribute__((aligned(64)));

#ifndef ONE_TRICK
#define ONE_TRICK 1
#endif

/* TwoProduct by FMA, TwoSum into (h, l): fs_two_prod4_avx512 + fs_two_sum4.
 * With ONE_TRICK, three of the additions are fma(x, +-1, y) (the same
 * rounding as x +- y): work moves from the two FADD pipes to the two FMA
 * pipes (the library's fs_two_sum_acc_avx512 does this in its wide kernel). */
FI void dot2_step(__m256d *h, __m256d *l, __m256d x, __m256d y, __m256d one) {
    __m256d p = _mm256_mul_pd(x, y);
    __m256d e = _mm256_fmsub_pd(x, y, p);
    __m256d s = _mm256_add_pd(*h, p);
    __m256d b = _mm256_sub_pd(s, *h);
#if ONE_TRICK
    __m256d q1 = _mm256_fnmadd_pd(_mm256_sub_pd(s, b), one, *h); /* h - (s - b) */
    __m256d q2 = _mm256_fnmadd_pd(b, one, p);                    /* p - b */
    __m256d q = _mm256_fmadd_pd(q1, one, q2);                    /* q1 + q2 */
    *l = _mm256_add_pd(*l, _mm256_add_pd(q, e));
#else
    (void)one;
    __m256d q = _mm256_add_pd(_mm256_sub_pd(*h, _mm256_sub_pd(s, b)), _mm256_sub_pd(p, b));
    *l = _mm256_add_pd(*l, _mm256_add_pd(q, e));
#endif
    *h = s;
}

FI void quadT(const double *const *x, ptrdiff_t j, int tail, __mmask8 tm, __m256d *c0,
               __m256d *c1, __m256d *c2, __m256d *c3) {
    __m256d a0, a1, a2, a3;
    if (tail) {
        a0 = _mm256_maskz_loadu_pd(tm, x[0] + j); a1 = _mm256_maskz_loadu_pd(tm, x[1] + j);
        a2 = _mm256_maskz_loadu_pd(tm, x[2] + j); a3 = _mm256_maskz_loadu_pd(tm, x[3] + j);
    } else {
        a0 = _mm256_loadu_pd(x[0] + j); a1 = _mm256_loadu_pd(x[1] + j);
        a2 = _mm256_loadu_pd(x[2] + j); a3 = _mm256_loadu_pd(x[3] + j);
    }
    __m256d t0 = _mm256_unpacklo_pd(a0, a1), t1 = _mm256_unpackhi_pd(a0, a1);
    __m256d t2 = _mm256_unpacklo_pd(a2, a3), t3 = _mm256_unpackhi_pd(a2, a3);
    *c0 = _mm256_permute2f128_pd(t0, t2, 0x20);
    *c1 = _mm256_permute2f128_pd(t1, t3, 0x20);
    *c2 = _mm256_permute2f128_pd(t0, t2, 0x31);
    *c3 = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* Logits of NQ quads of rows (NQ <= 4 independent Dot2 chains, 4 lanes each):
 * quad c is rows x[4c .. 4c+3]; z[4c + i], zl[4c + i] get row 4c + i's logit. */
#define DEFINE_LOGITS(NQ)                                                                   \
FI void logits_##NQ(const double *const *x, const double *theta, int d, double *z,          \
                    double *zl) {                                                           \
    ptrdiff_t jt = (d - 1) / 4 * 4;                                                         \
    int nt = (int)(d - jt);                                                                 \
    __mmask8 tm = (__mmask8)((1u << nt) - 1);                                               \
    __m256d one = _mm256_set1_pd(1.0);                                                      \
    __asm__("" : "+v"(one));                                                                \
    __m256d h[NQ], l[NQ], c[NQ][4];                                                         \
    for (int g = 0; g < NQ; g++) h[g] = l[g] = _mm256_setzero_pd();                         \
    for (ptrdiff_t j = 0; j < jt; j += 4) {                                                 \
        for (int g = 0; g < NQ; g++)                                                        \
            quadT(x + 4 * g, j, 0, tm, &c[g][0], &c[g][1], &c[g][2], &c[g][3]);             \
        for (int u = 0; u < 4; u++) {                                                       \
            __m256d y = _mm256_set1_pd(theta[j + u]);                                       \
            for (int g = 0; g < NQ; g++) dot2_step(&h[g], &l[g], c[g][u], y, one);          \
        }                                                                                   \
    }                                                                                       \
    for (int g = 0; g < NQ; g++)                                                            \
        quadT(x + 4 * g, jt, 1, tm, &c[g][0], &c[g][1], &c[g][2], &c[g][3]);                \
    for (int u = 0; u < nt; u++) {                                                          \
        __m256d y = _mm256_set1_pd(theta[jt + u]);                                          \
        for (int g = 0; g < NQ; g++) dot2_step(&h[g], &l[g], c[g][u], y, one);              \
    }                                                                                       \
    for (int g = 0; g < NQ; g++) {                                                          \
        __m256d s = _mm256_add_pd(h[g], l[g]);                                              \
        _mm256_store_pd(z + 4 * g, s);                                                      \
        _mm256_store_pd(zl + 4 * g, _mm256_sub_pd(l[g], _mm256_sub_pd(s, h[g])));           \
    }                                                                                       \
}
DEFINE_LOGITS(2)
DEFINE_LOGITS(4)

/* g = sum_k [k != a, w_k != 0] w_k (xa - x_k) in NV zmm registers, then
 * out = g * inv_l; returns the finiteness check vector (v - v summed). */
#define G_BODY(NV)                                                                        \
    do {                                                                                  \
        __m512d acc[NV], xav[NV];                                                         \
        for (int v = 0; v < NV - 1; v++) {                                                \
            acc[v] = _mm512_setzero_pd();                                                 \
            xav[v] = _mm512_loadu_pd(xa + 8 * v);                                         \
        }                                                                                 \
        acc[NV - 1] = _mm512_setzero_pd();                                                \
        xav[NV - 1] = _mm512_maskz_loadu_pd(gm, xa + 8 * (NV - 1));                       \
        for (int k = 0; k < N; k++) {                                                     \
            const double *xk = st + (size_t)k * d;                                        \
            __m512d wk = _mm512_set1_pd(w[k]);                                            \
            __mmask8 use = (k != a && w[k] != 0.0) ? 0xFF : 0;                            \
            for (int v = 0; v < NV - 1; v++)                                              \
                acc[v] = _mm512_mask_add_pd(acc[v], use, acc[v],                          \
                    _mm512_mul_pd(wk, _mm512_sub_pd(xav[v], _mm512_loadu_pd(xk + 8 * v)))); \
            acc[NV - 1] = _mm512_mask_add_pd(acc[NV - 1], use, acc[NV - 1],               \
                _mm512_mul_pd(wk, _mm512_sub_pd(xav[NV - 1],                              \
                                                _mm512_maskz_loadu_pd(gm, xk + 8 * (NV - 1))))); \
        }                                                                                 \
        __m512d il = _mm512_set1_pd(inv_l);                                               \
        for (int v = 0; v < NV - 1; v++) {                                                \
            __m512d o = _mm512_mul_pd(acc[v], il);                                        \
            _mm512_storeu_pd(ob + 8 * v, o);                                              \
            chk = _mm512_add_pd(chk, _mm512_sub_pd(o, o));                                \
        }                                                                                 \
        __m512d o = _mm512_mul_pd(acc[NV - 1], il);                                       \
        _mm512_mask_storeu_pd(ob + 8 * (NV - 1), gm, o);                                  \
        chk = _mm512_add_pd(chk, _mm512_sub_pd(o, o));                                    \
    } while (0)

/*
 * The fused kernel.  A run is 8 states (two sets of 4).  The logits put the
 * STATES in the lanes: quad (k, q) holds row k of states 4q .. 4q+3, so
 * after the Dot2 chains every per-state step (max, exp, r, 1 / (1 + r)) is
 * plain vertical SIMD over 4 states, with no shuffles and no lanes wasted
 * whatever N is.  Only g (features in lanes) goes state by state, reading
 * each state's weights back as scalars.
 *
 * Returns 0 OK, 1 non-finite logit, 2 non-finite result; *bad = the first
 * state of the run where it happened (an integration would re-scan the run
 * to name the state).  Requires 1 <= N <= 8, 1 <= d <= 32, 0 <= a < N.
 */
#define RUN 8

struct scratch {
    double z[2 * MAX_N * 4] __attribute__((aligned(64)));
    double zl[2 * MAX_N * 4] __attribute__((aligned(64)));
    double W[2 * MAX_N * 4] __attribute__((aligned(64)));
    double INV[RUN] __attribute__((aligned(64)));
    const double *rows[2 * MAX_N * 4];
};
size_t scratch_off = 2048;

int fused_score_f64(const double *phi, const double *theta, const int64_t *act, int64_t B,
                    int N, int d, double *out, int64_t *bad) {
    if (N < 1 || N > MAX_N || d < 1 || d > MAX_D) return -1;
    const int nv8 = (d + 7) / 8;
    const __mmask8 gm = (__mmask8)((1u << (d - (nv8 - 1) * 8)) - 1);
    const int nq = 2 * N; /* quads per run */
    const size_t state_elems = (size_t)N * d;
#ifndef SCRATCH_STACK
    /* scratch at a chosen offset mod 4 KiB (experiment on 4K aliasing) */
    static char scratch_buf[16384] __attribute__((aligned(4096)));
    struct scratch *sc = (struct scratch *)(scratch_buf + scratch_off);
#else
    struct scratch scr, *sc = &scr;
#endif
    double *z = sc->z, *zl = sc->zl, *W = sc->W, *INV = sc->INV;
    const double **rows = sc->rows;
    for (int64_t b0 = 0; b0 < B; b0 += RUN) {
        int ns = (int)(B - b0 < RUN ? B - b0 : RUN);
        const double *base = phi + (size_t)b0 * state_elems;
        /* quad c = 2k + q, lane i: row k of state 4q + i */
        for (int k = 0; k < N; k++)
            for (int q = 0; q < 2; q++)
                for (int i = 0; i < 4; i++) {
                    int s = 4 * q + i;
                    rows[(2 * k + q) * 4 + i] =
                        s < ns ? base + (size_t)s * state_elems + (size_t)k * d : zero_row;
                }
        int c = 0;
        for (; c + 4 <= nq; c += 4) logits_4(rows + 4 * c, theta, d, z + 4 * c, zl + 4 * c);
        if (c < nq) logits_2(rows + 4 * c, theta, d, z + 4 * c, zl + 4 * c);
        /* per state set q: finiteness, max, weights, r, 1 / (1 + r) */
        __m256d nf = _mm256_setzero_pd();
        for (int q = 0; q < 2; q++) {
            __m256d zk[MAX_N], zlk[MAX_N];
            for (int k = 0; k < N; k++) {
                zk[k] = _mm256_load_pd(z + (2 * k + q) * 4);
                zlk[k] = _mm256_load_pd(zl + (2 * k + q) * 4);
                nf = _mm256_add_pd(nf, _mm256_add_pd(_mm256_sub_pd(zk[k], zk[k]),
                                                     _mm256_sub_pd(zlk[k], zlk[k])));
            }
            /* first index of the largest: strict > keeps the first */
            __m256d m = zk[0], mlo = zlk[0];
            __m256i km = _mm256_setzero_si256();
            for (int k = 1; k < N; k++) {
                __mmask8 gt = _mm256_cmp_pd_mask(zk[k], m, _CMP_GT_OQ);
                m = _mm256_mask_mov_pd(m, gt, zk[k]);
                mlo = _mm256_mask_mov_pd(mlo, gt, zlk[k]);
                km = _mm256_mask_mov_epi64(km, gt, _mm256_set1_epi64x(k));
            }
            __m256d r = _mm256_setzero_pd();
            for (int k = 0; k < N; k++) {
                vd4 x = (vd4)_mm256_add_pd(_mm256_sub_pd(zk[k], m), _mm256_sub_pd(zlk[k], mlo));
                __m256d w = (__m256d)vexp4(x);
                _mm256_store_pd(W + (2 * k + q) * 4, w);
                /* r += w_k but for the max's row (adding +0 to r >= +0 is exact) */
                __mmask8 notmax = _mm256_cmp_epi64_mask(km, _mm256_set1_epi64x(k), _MM_CMPINT_NE);
                r = _mm256_add_pd(r, _mm256_maskz_mov_pd(notmax, w));
            }
            _mm256_store_pd(INV + 4 * q, _mm256_div_pd(_mm256_set1_pd(1.0),
                                                       _mm256_add_pd(_mm256_set1_pd(1.0), r)));
        }
        if ((nf[0] + nf[1]) + (nf[2] + nf[3]) != 0.0) { *bad = b0; return 1; }
        /* g and the score, state by state */
        __m512d chk = _mm512_setzero_pd();
        for (int s = 0; s < ns; s++) {
            double w[MAX_N];
            for (int k = 0; k < N; k++) w[k] = W[(2 * k + (s >> 2)) * 4 + (s & 3)];
            double inv_l = INV[s];
            const double *st = base + (size_t)s * state_elems;
            int64_t a = act[b0 + s];
            const double *xa = st + (size_t)a * d;
            double *ob = out + (size_t)(b0 + s) * d;
            switch (nv8) {
            case 1: G_BODY(1); break;
            case 2: G_BODY(2); break;
            case 3: G_BODY(3); break;
            default: G_BODY(4); break;
            }
        }
        if (_mm512_reduce_add_pd(chk) != 0.0) { *bad = b0; return 2; }
    }
    return 0;
}
