/*
 * Row primitives of the fastscore kernel: the logit of a row (a dot product
 * with theta), a block of weighted row differences accumulated into g, and
 * the store of a result row.
 *
 * They are written with GCC/Clang vector extensions on 8 doubles.  On x86-64
 * with GCC the row kernels (dot products and block accumulation) are
 * instantiated three times, for AVX-512, AVX2 + FMA and a generic set, and
 * fs_init() picks one set when the module loads; the generic set and the
 * result store are compiled by target_clones for AVX-512F, AVX2 and baseline
 * SSE2 (single-feature clones, which GCC 11 and newer dispatch, unlike
 * arch=x86-64-vN).  The module is compiled with -ffp-contract=off, and an
 * FMA is written only where it gives what the separate operations would (an
 * exact product error, or a sum with an exact product), so every variant
 * returns the same bits (barring partial products that underflow, below).
 *
 * float64 logits (and float32 rows with a float64 result) use a compensated
 * dot product (Ogita, Rump and Oishi's Dot2: an error-free TwoProduct, TwoSum
 * accumulation), returned as an unevaluated double-double sum: the logit is
 * as accurate as if computed in twice the working precision, which keeps the
 * score accurate when logits are in the thousands.  TwoProduct is one FMA
 * where the CPU has FMA (explicit AVX-512/AVX2 versions picked at import)
 * and Dekker's splitting elsewhere; both give the exact product error, so
 * they agree bit for bit except where partial products underflow (around
 * 1e-300), where Dekker's error term is no longer exact.  float32 rows with a
 * float32 result are widened to double and summed plainly: the products are
 * exact in double, and the rounding errors of the sum are far below what
 * float32 can show.
 */
#ifndef FASTSCORE_SIMD_H
#define FASTSCORE_SIMD_H

#if defined(__FAST_MATH__) || defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__
#error "fastscore needs IEEE semantics: -ffast-math breaks the error-free sums and NaN checks"
#endif

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Vectors only live inside always-inlined helpers, so the ABI note does not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define FS_LANES 8

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(FASTSCORE_NO_CLONES)
#define FS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define FS_HAVE_CLONES 1
#else
#define FS_CLONES
#define FS_HAVE_CLONES 0
#endif

#define FS_INLINE static inline __attribute__((always_inline))

typedef double fs_vd __attribute__((vector_size(FS_LANES * sizeof(double))));
typedef float fs_vf __attribute__((vector_size(FS_LANES * sizeof(float))));

FS_INLINE fs_vd fs_load_d(const double *p) {
    fs_vd v;
    memcpy(&v, p, sizeof v);
    return v;
}

FS_INLINE fs_vd fs_load_f(const float *p) {
    fs_vf v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, fs_vd);
}

/* The last n < FS_LANES elements, zero-padded. */
FS_INLINE fs_vd fs_load_tail_d(const double *p, ptrdiff_t n) {
    double buf[FS_LANES] = {0};
    memcpy(buf, p, (size_t)n * sizeof(double));
    return fs_load_d(buf);
}

FS_INLINE fs_vd fs_load_tail_f(const float *p, ptrdiff_t n) {
    float buf[FS_LANES] = {0};
    memcpy(buf, p, (size_t)n * sizeof(float));
    return fs_load_f(buf);
}

/*
 * Software prefetch FS_PREFETCH_BYTES ahead of the row being read (into the
 * next rows): the hardware prefetcher alone leaves DRAM idle while a block of
 * rows is re-read from cache (the distances measured: docs/performance.md,
 * "Optimisations, predicted and measured").  A prefetch never faults, so
 * reading past the array's end is harmless.
 */
#define FS_PREFETCH_BYTES 8192

FS_INLINE void fs_prefetch(const void *p) {
    __builtin_prefetch((const char *)p + FS_PREFETCH_BYTES);
}

/*
 * theta, prepared once per call: its values and Dekker's split
 * theta = hi + lo (hi holds the upper 26 bits), each zero-padded to a
 * multiple of FS_LANES.  `buf` must hold 3 * fs_padded(d) doubles.
 */
static inline ptrdiff_t fs_padded(ptrdiff_t d) {
    return (d + FS_LANES - 1) / FS_LANES * FS_LANES;
}

typedef struct {
    const double *val;
    const double *hi;
    const double *lo;
    int huge; /* some |theta_i| > FS_SPLIT_MAX: no Dekker split */
} fs_theta;

static const double FS_SPLITTER = 134217729.0; /* 2**27 + 1 */

/* Beyond this magnitude FS_SPLITTER * x overflows and the split fails. */
#define FS_SPLIT_MAX 0x1p995

static inline void fs_split(double x, double *hi, double *lo) {
    double c = FS_SPLITTER * x;
    *hi = c - (c - x);
    *lo = x - *hi;
}

/* Error-free products and sums on lanes (Dekker's TwoProduct, Knuth's TwoSum). */
FS_INLINE void fs_two_prod(fs_vd x, fs_vd y, fs_vd yh, fs_vd yl, fs_vd *p, fs_vd *e) {
    fs_vd c = FS_SPLITTER * x;
    fs_vd xh = c - (c - x);
    fs_vd xl = x - xh;
    *p = x * y;
    *e = ((xh * yh - *p) + xh * yl + xl * yh) + xl * yl;
}

FS_INLINE void fs_two_sum_acc(fs_vd *hi, fs_vd *lo, fs_vd p, fs_vd e) {
    fs_vd s = *hi + p;
    fs_vd b = s - *hi;
    fs_vd q = (*hi - (s - b)) + (p - b);
    *hi = s;
    *lo += q + e;
}

/* Sum of lanes of (hi, lo) pairs: a TwoSum tree folding halves of the
 * vector (8 -> 4 -> 2 -> 1 lanes), returned as an unevaluated sum. */
typedef double fs_vd4 __attribute__((vector_size(4 * sizeof(double))));
typedef double fs_vd2 __attribute__((vector_size(2 * sizeof(double))));

#define FS_TWO_SUM_FOLD(H, L, HA, HB, LA, LB)                 \
    do {                                                      \
        __typeof__(HA) s_ = (HA) + (HB);                      \
        __typeof__(HA) b_ = s_ - (HA);                        \
        __typeof__(HA) q_ = ((HA) - (s_ - b_)) + ((HB) - b_); \
        (H) = s_;                                             \
        (L) = ((LA) + (LB)) + q_;                             \
    } while (0)

FS_INLINE double fs_reduce2(fs_vd hi, fs_vd lo, double *rest) {
    fs_vd4 h8[2], l8[2], h4, l4;
    fs_vd2 h4s[2], l4s[2], h2, l2;
    double h1, l1;
    memcpy(h8, &hi, sizeof h8); /* halves, as __builtin_shufflevector (GCC 12+) would */
    memcpy(l8, &lo, sizeof l8);
    FS_TWO_SUM_FOLD(h4, l4, h8[0], h8[1], l8[0], l8[1]);
    memcpy(h4s, &h4, sizeof h4s);
    memcpy(l4s, &l4, sizeof l4s);
    FS_TWO_SUM_FOLD(h2, l2, h4s[0], h4s[1], l4s[0], l4s[1]);
    FS_TWO_SUM_FOLD(h1, l1, h2[0], h2[1], l2[0], l2[1]);
    /* FastTwoSum: (sum, *rest) carries the value to about twice the working
     * precision; the caller may keep or drop *rest. */
    double sum = h1 + l1;
    *rest = l1 - (sum - h1);
    return sum;
}

FS_INLINE double fs_reduce(fs_vd v) {
    double h[FS_LANES];
    memcpy(h, &v, sizeof h);
    for (int w = FS_LANES / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) h[j] += h[j + w];
    return h[0];
}

/*
 * The row kernels.  Each is written once as a macro and instantiated for
 * every instruction set below (FS_DEFINE_KERNELS); fs_init() picks one set
 * when the module loads.  The sets differ only in their primitives:
 *
 *   LOAD_F     eight float32 values widened to double (one vcvtps2pd on
 *              AVX-512: GCC 12 splits the generic conversion into halves,
 *              which made the float32 kernels 1.6-2x slower);
 *   TWO_PROD   the product and its exact error: an FMA where the CPU has
 *              one, Dekker's splitting elsewhere;
 *   TWO_SUM    the TwoSum accumulation of Dot2;
 *   MADD       acc + x * y for the float32 dot product, as an FMA where the
 *              CPU has one: x * y of two float32 values is exact in double,
 *              so the FMA rounds exactly as the separate operations would.
 *
 * An FMA appears only where it cannot change a rounding, so all sets return
 * the same bits, except where partial products underflow (around 1e-300),
 * where Dekker's error term is no longer exact.  tests/test_dispatch.py
 * compares the set this CPU picks with the generic one.
 */

/*
 * Compensated dot product of a row with theta (Dot2), returned as an
 * unevaluated sum hi + rest.  Both TwoProducts give the exact error of the
 * product (Dekker's barring underflow), so the variants agree bit for bit.
 */
#define FS_DEFINE_DOT2(NAME, T, LOAD, LOAD_TAIL, ATTRS, TWO_PROD, TWO_SUM)          \
    ATTRS static double NAME(const T *x, const fs_theta *t, ptrdiff_t n, double *rest) { \
        fs_vd hi = {0}, lo = {0}, p, e;                                              \
        ptrdiff_t i = 0;                                                             \
        for (; i + FS_LANES <= n; i += FS_LANES) {                                   \
            fs_prefetch(x + i);                                                      \
            TWO_PROD(LOAD(x + i), t, i, &p, &e);                                     \
            TWO_SUM(&hi, &lo, p, e);                                                 \
        }                                                                            \
        if (i < n) {                                                                 \
            TWO_PROD(LOAD_TAIL(x + i, n - i), t, i, &p, &e);                         \
            TWO_SUM(&hi, &lo, p, e);                                                 \
        }                                                                            \
        return fs_reduce2(hi, lo, rest);                                             \
    }

/* Dot product of a float32 row with float32 theta (held in double), summed
 * in double with four accumulators: one would wait on the latency of its
 * additions. */
#define FS_DEFINE_DOT_F32(NAME, LOAD, ATTRS, MADD)                                 \
    ATTRS static double NAME(const float *x, const fs_theta *t, ptrdiff_t n) {    \
        fs_vd acc[4] = {{0}, {0}, {0}, {0}};                                       \
        ptrdiff_t i = 0;                                                          \
        for (; i + 4 * FS_LANES <= n; i += 4 * FS_LANES) {                         \
            fs_prefetch(x + i);                                                   \
            for (int v = 0; v < 4; v++)                                           \
                acc[v] = MADD(LOAD(x + i + v * FS_LANES),                          \
                              fs_load_d(t->val + i + v * FS_LANES), acc[v]);       \
        }                                                                         \
        for (; i + FS_LANES <= n; i += FS_LANES)                                  \
            acc[0] = MADD(LOAD(x + i), fs_load_d(t->val + i), acc[0]);             \
        if (i < n)                                                                \
            acc[1] = MADD(fs_load_tail_f(x + i, n - i), fs_load_d(t->val + i), acc[1]); \
        return fs_reduce((acc[0] + acc[1]) + (acc[2] + acc[3]));                   \
    }

/*
 * g += sum_r w[r] * (xa - rows[r]) over a block of rows, in double.  The
 * columns are taken in tiles held in registers across the rows, so g and xa
 * are loaded and stored once per block rather than once per row.  Each
 * element still adds the rows in order r = 0, 1, ..., as a row-by-row loop
 * would.
 */
#define FS_TILE 4 /* vectors per column tile */

#define FS_DEFINE_BLOCK_ACC(NAME, T, LOAD, ATTRS)                                     \
    ATTRS static void NAME(double *g, const T *xa, const T *const *rows,              \
                           const double *w, int nr, ptrdiff_t d) {                    \
        ptrdiff_t c = 0;                                                              \
        for (; c + FS_TILE * FS_LANES <= d; c += FS_TILE * FS_LANES) {                \
            fs_vd acc[FS_TILE], xav[FS_TILE];                                         \
            for (int v = 0; v < FS_TILE; v++) {                                       \
                acc[v] = fs_load_d(g + c + v * FS_LANES);                             \
                xav[v] = LOAD(xa + c + v * FS_LANES);                                 \
            }                                                                         \
            for (int r = 0; r < nr; r++)                                              \
                for (int v = 0; v < FS_TILE; v++)                                     \
                    acc[v] += w[r] * (xav[v] - LOAD(rows[r] + c + v * FS_LANES));     \
            memcpy(g + c, acc, sizeof acc);                                           \
        }                                                                             \
        for (; c + FS_LANES <= d; c += FS_LANES) {                                    \
            fs_vd acc = fs_load_d(g + c), xav = LOAD(xa + c);                         \
            for (int r = 0; r < nr; r++) acc += w[r] * (xav - LOAD(rows[r] + c));     \
            memcpy(g + c, &acc, sizeof acc);                                          \
        }                                                                             \
        for (; c < d; c++)                                                            \
            for (int r = 0; r < nr; r++) g[c] += w[r] * ((double)xa[c] - (double)rows[r][c]); \
    }

#define FS_DEFINE_KERNELS(SUFFIX, ATTRS, LOAD_F, TWO_PROD, TWO_SUM, MADD)                     \
    FS_DEFINE_DOT2(fs_dot2_f64_##SUFFIX, double, fs_load_d, fs_load_tail_d, ATTRS, TWO_PROD,   \
                   TWO_SUM)                                                                  \
    FS_DEFINE_DOT2(fs_dot2_f32_##SUFFIX, float, LOAD_F, fs_load_tail_f, ATTRS, TWO_PROD,       \
                   TWO_SUM)                                                                  \
    FS_DEFINE_DOT_F32(fs_dot_f32_##SUFFIX, LOAD_F, ATTRS, MADD)                                \
    FS_DEFINE_BLOCK_ACC(fs_block_acc_f64_##SUFFIX, double, fs_load_d, ATTRS)                  \
    FS_DEFINE_BLOCK_ACC(fs_block_acc_f32_##SUFFIX, float, LOAD_F, ATTRS)

typedef long long fs_vl __attribute__((vector_size(FS_LANES * sizeof(long long))));

/* Dekker's TwoProduct, or, for the rare lanes beyond FS_SPLIT_MAX where the
 * split overflows, the C library's fma (exact on every CPU, slow without
 * hardware FMA). */
FS_INLINE void fs_two_prod_dekker(fs_vd x, const fs_theta *t, ptrdiff_t i, fs_vd *p, fs_vd *e) {
    fs_vd y = fs_load_d(t->val + i);
    fs_vl huge = (x > FS_SPLIT_MAX) | (x < -FS_SPLIT_MAX);
    long long any_huge = t->huge;
    for (int j = 0; j < FS_LANES; j++) any_huge |= huge[j];
    if (any_huge) {
        double xs[FS_LANES], ys[FS_LANES], ps[FS_LANES], es[FS_LANES];
        *p = x * y;
        memcpy(xs, &x, sizeof xs);
        memcpy(ys, &y, sizeof ys);
        memcpy(ps, p, sizeof ps);
        for (int j = 0; j < FS_LANES; j++) es[j] = fma(xs[j], ys[j], -ps[j]);
        memcpy(e, es, sizeof es);
        return;
    }
    fs_two_prod(x, y, fs_load_d(t->hi + i), fs_load_d(t->lo + i), p, e);
}

FS_INLINE fs_vd fs_madd(fs_vd x, fs_vd y, fs_vd acc) {
    return acc + x * y;
}

FS_DEFINE_KERNELS(generic, FS_CLONES, fs_load_f, fs_two_prod_dekker, fs_two_sum_acc, fs_madd)

/*
 * Narrow rows (d <= FS_NARROW_D): a block of rows with the ROWS in the
 * vector lanes.  Per-row dot products of short rows spend most of their time
 * on the lane sum, the zero-padded tail and the call; here a block of up to
 * FS_TILE_ROWS rows is transposed (the generic set through a tile in memory,
 * tile[j * FS_TILE_ROWS + r] = row r's element j in double; the AVX2 and
 * AVX-512 sets by 4 x 4 transposes in registers), then each lane runs one
 * row's Dot2 over j = 0, 1, ..., d - 1 in order: no lane sum at all.  A lane's
 * arithmetic is the per-row Dot2 of the wide kernels with the lane sum
 * removed (TwoProduct, TwoSum into (hi, lo), then FastTwoSum(hi, lo)), so the
 * kernel sets again differ only in TwoProduct (exact everywhere, Dekker's
 * barring underflow) and in how the rows are transposed (data movement only):
 * every set returns the same bits.  The order of the compensated sum differs
 * from the wide kernels' (lane sums in a tree), so narrow and wide logits of
 * the same row may differ in the last bits of z_lo; both carry the logit to
 * about twice the working precision.
 *
 * Rows are given as pointers; a NULL pointer (a masked row) and the lanes
 * past the block's end read a row of zeros, so masked rows are never read.
 */
#define FS_NARROW_D 64
#define FS_TILE_ROWS 32

typedef long long fs_vl4 __attribute__((vector_size(4 * sizeof(long long))));

static const double fs_zero_row_d[FS_NARROW_D + 4] = {0};
static const float fs_zero_row_f[FS_NARROW_D + 4] = {0};

FS_INLINE fs_vd4 fs_load4(const double *p) {
    fs_vd4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

FS_INLINE void fs_store4(double *p, fs_vd4 v) { memcpy(p, &v, sizeof v); }

FS_INLINE fs_vd4 fs_sel4(fs_vl4 m, fs_vd4 a, fs_vd4 b) {
    return (fs_vd4)(((fs_vl4)a & m) | ((fs_vl4)b & ~m));
}

/* The scalar form of the lane select (m is 0 or 1, or 0 or -1). */
FS_INLINE double fs_sel1(long long m, double a, double b) { return m ? a : b; }

/* The bits of x as type T (same size): a scalar or a vector. */
#define FS_BITCAST(T, x)                     \
    __extension__({                          \
        T t_;                                \
        __typeof__(x) x_ = (x);              \
        memcpy(&t_, &x_, sizeof t_);         \
        t_;                                  \
    })

/* The transpose of the generic set: element by element. */
#define FS_DEFINE_TILE_LOAD_GENERIC(NAME, T, ZERO)                                     \
    FS_CLONES static void NAME(double *tile, const T *const *rows, int nr, ptrdiff_t d) { \
        int nl = (nr + 3) & ~3;                                                        \
        for (int r = 0; r < nl; r++) {                                                 \
            const T *x = (r < nr && rows[r] != NULL) ? rows[r] : ZERO;                  \
            for (ptrdiff_t j = 0; j < d; j++) tile[j * FS_TILE_ROWS + r] = (double)x[j]; \
        }                                                                              \
    }

FS_DEFINE_TILE_LOAD_GENERIC(fs_tile_load_f64_generic, double, fs_zero_row_d)
FS_DEFINE_TILE_LOAD_GENERIC(fs_tile_load_f32_generic, float, fs_zero_row_f)

/* Dekker's TwoProduct of 4 lanes with theta[j] (the libm fma where the
 * split could overflow, as in fs_two_prod_dekker). */
FS_INLINE void fs_two_prod4_dekker(fs_vd4 x, const fs_theta *t, ptrdiff_t j, fs_vd4 *p,
                                   fs_vd4 *e) {
    double y = t->val[j], yh = t->hi[j], yl = t->lo[j];
    fs_vl4 huge = (x > FS_SPLIT_MAX) | (x < -FS_SPLIT_MAX);
    long long any_huge = t->huge | huge[0] | huge[1] | huge[2] | huge[3];
    *p = x * y;
    if (any_huge) {
        for (int i = 0; i < 4; i++) (*e)[i] = fma(x[i], y, -(*p)[i]);
        return;
    }
    fs_vd4 c = FS_SPLITTER * x;
    fs_vd4 xh = c - (c - x);
    fs_vd4 xl = x - xh;
    *e = ((xh * yh - *p) + xh * yl + xl * yh) + xl * yl;
}

FS_INLINE void fs_two_sum4(fs_vd4 *hi, fs_vd4 *lo, fs_vd4 p, fs_vd4 e) {
    fs_vd4 s = *hi + p;
    fs_vd4 b = s - *hi;
    fs_vd4 q = (*hi - (s - b)) + (p - b);
    *hi = s;
    *lo += q + e;
}

FS_INLINE fs_vd4 fs_madd4_plain(fs_vd4 x, double y, fs_vd4 acc) { return acc + x * y; }

/*
 * Logits of the nr rows of a tile: z[r] + z_lo[r] (Dot2), or for float32
 * rows with a float32 result z[r] alone (a plain sum in double: the products
 * of two floats are exact).  Rows go four lanes at a time, two groups of
 * four interleaved (two independent TwoSum chains).  z and z_lo have room
 * for nr rounded up to 4.
 */
#define FS_DOT2_STEP(TWO_PROD4, H, L, X, J) \
    do {                                  \
        fs_vd4 p_, e_;                    \
        TWO_PROD4((X), t, (J), &p_, &e_); \
        fs_two_sum4(&(H), &(L), p_, e_);  \
    } while (0)

#define FS_DOT2_FINISH(H, L, R)                      \
    do {                                             \
        fs_vd4 s_ = (H) + (L);                       \
        fs_store4(z + (R), s_);                      \
        fs_store4(z_lo + (R), (L) - (s_ - (H)));     \
    } while (0)

#define FS_DEFINE_TILE_DOT2(NAME, ATTRS, TWO_PROD4)                                      \
    ATTRS static void NAME(const double *tile, int nr, const fs_theta *t, ptrdiff_t d,   \
                           double *z, double *z_lo) {                                    \
        int r = 0;                                                                       \
        for (; r + 4 < nr; r += 8) {                                                     \
            fs_vd4 h0 = {0}, l0 = {0}, h1 = {0}, l1 = {0};                               \
            for (ptrdiff_t j = 0; j < d; j++) {                                          \
                FS_DOT2_STEP(TWO_PROD4, h0, l0, fs_load4(tile + j * FS_TILE_ROWS + r), j);          \
                FS_DOT2_STEP(TWO_PROD4, h1, l1, fs_load4(tile + j * FS_TILE_ROWS + r + 4), j);      \
            }                                                                            \
            FS_DOT2_FINISH(h0, l0, r);                                                   \
            FS_DOT2_FINISH(h1, l1, r + 4);                                               \
        }                                                                                \
        if (r < nr) {                                                                    \
            fs_vd4 h0 = {0}, l0 = {0};                                                   \
            for (ptrdiff_t j = 0; j < d; j++)                                            \
                FS_DOT2_STEP(TWO_PROD4, h0, l0, fs_load4(tile + j * FS_TILE_ROWS + r), j);          \
            FS_DOT2_FINISH(h0, l0, r);                                                   \
        }                                                                                \
    }

#define FS_DEFINE_TILE_DOT(NAME, ATTRS, MADD4)                                            \
    ATTRS static void NAME(const double *tile, int nr, const fs_theta *t, ptrdiff_t d,    \
                           double *z) {                                                   \
        int r = 0;                                                                        \
        for (; r + 4 < nr; r += 8) {                                                      \
            fs_vd4 a0 = {0}, a1 = {0};                                                    \
            for (ptrdiff_t j = 0; j < d; j++) {                                           \
                a0 = MADD4(fs_load4(tile + j * FS_TILE_ROWS + r), t->val[j], a0);         \
                a1 = MADD4(fs_load4(tile + j * FS_TILE_ROWS + r + 4), t->val[j], a1);     \
            }                                                                             \
            fs_store4(z + r, a0);                                                         \
            fs_store4(z + r + 4, a1);                                                     \
        }                                                                                 \
        if (r < nr) {                                                                     \
            fs_vd4 a0 = {0};                                                              \
            for (ptrdiff_t j = 0; j < d; j++)                                             \
                a0 = MADD4(fs_load4(tile + j * FS_TILE_ROWS + r), t->val[j], a0);         \
            fs_store4(z + r, a0);                                                         \
        }                                                                                 \
    }

FS_DEFINE_TILE_DOT2(fs_tile_dot2_generic, FS_CLONES, fs_two_prod4_dekker)

/* The generic set's logits from the rows: through the tile. */
#define FS_DEFINE_ROWS_DOT2_GENERIC(NAME, T, TILE_LOAD)                                 \
    static void NAME(const T *const *rows, int nr, const fs_theta *t, ptrdiff_t d,      \
                     double *z, double *z_lo) {                                         \
        double tile[FS_TILE_ROWS * FS_NARROW_D];                                        \
        TILE_LOAD(tile, rows, nr, d);                                                   \
        fs_tile_dot2_generic(tile, nr, t, d, z, z_lo);                                  \
    }
FS_DEFINE_ROWS_DOT2_GENERIC(fs_rows_dot2_f64_generic, double, fs_tile_load_f64_generic)
FS_DEFINE_ROWS_DOT2_GENERIC(fs_rows_dot2_f32_generic, float, fs_tile_load_f32_generic)
FS_DEFINE_TILE_DOT(fs_tile_dot_generic, FS_CLONES, fs_madd4_plain)

static void fs_rows_dot_f32_generic(const float *const *rows, int nr, const fs_theta *t,
                                    ptrdiff_t d, double *z, double *z_lo) {
    double tile[FS_TILE_ROWS * FS_NARROW_D];
    (void)z_lo;
    fs_tile_load_f32_generic(tile, rows, nr, d);
    fs_tile_dot_generic(tile, nr, t, d, z);
}

/*
 * w[i] = exp((z[i] - m) + (z_lo[i] - m_lo)) for i < n (rounded up to 4; the
 * arrays have room), the weights of a block of rows.
 *
 * The exp is our own, so that it is the same function on every CPU and
 * kernel set: only +, -, *, comparisons and integer bit operations, no FMA
 * (the module is built with -ffp-contract=off).  x = n ln2 + r with
 * n = round(x / ln2) (by the 1.5 * 2^52 shifter) and r = x - n ln2 by
 * Cody and Waite (ln2 in two parts, the first with 32 significant bits so
 * n * ln2_hi is exact), |r| <= 0.347; exp(r) = 1 + r + r^2 q(r) with q the
 * Taylor series to degree 13 (truncation below 1e-17, evaluated by Estrin's
 * scheme), the sum 1 + r kept
 * as an exact pair and the rounding error of r added back; then the result
 * is scaled by 2^n through the exponent bits, in two steps when it is
 * subnormal (one rounding) or would overflow the exponent field.
 * Error: below 1 ulp against the exactly rounded exp (tests/test_vexp.py,
 * against numpy.longdouble over 10^6 uniform arguments in each of [-745, 0],
 * [-2, 2], [0, 709]: at most 0.71 ulp for normal results, exactly rounded
 * for 98.3 % of them; 0.80 ulp for subnormal results, where the 53-bit y is
 * rounded once more).  The error comes from the final rounding (0.5) and
 * the rounding of r^2 q(r) (up to ~0.2).  exp(-inf) = 0, exp(x < -746) = 0, exp(x > 710) = inf, NaN
 * stays NaN.
 *
 * One body for any vector width (VD: doubles, VL: long longs of as many
 * lanes, SEL: its lane select), lane-wise operations only, so every width
 * gives the same bits lane by lane (fs_vexp8: the fused kernel's).
 */
#define FS_DEFINE_VEXP(ATTRS, NAME, VD, VL, SEL)                                              \
    ATTRS FS_INLINE VD NAME(VD x) {                                                            \
        const double inv_ln2 = 0x1.71547652b82fep0;                                            \
        const double shifter = 0x1.8p52;                                                       \
        const double ln2_hi = 0x1.62e42feep-1; /* 6.93147180369123816490e-01, 32 bits */       \
        const double ln2_lo = 0x1.a39ef35793c76p-33;                                           \
        const VD zero = {0};                                                                   \
        VD lo_lim = zero - 746.0, hi_lim = zero + 710.0;                                       \
        VD xc = SEL(x < lo_lim, lo_lim, x);                                                    \
        xc = SEL(xc > hi_lim, hi_lim, xc);                                                     \
        VD t = xc * inv_ln2 + shifter;                                                         \
        VD nd = t - shifter;                                                                   \
        VD hi = xc - nd * ln2_hi; /* exact */                                                  \
        VD lo = nd * ln2_lo;                                                                   \
        VD r = hi - lo;                                                                        \
        VD r_err = (hi - r) - lo;                                                              \
        /* q(r) = sum_{k=2}^{13} r^(k-2) / k! by Estrin's scheme: a chain of                   \
         * about 7 dependent operations instead of Horner's 22 (a block of a few               \
         * rows is one vector, and its exp was latency bound). */                              \
        VD r2 = r * r;                                                                         \
        VD r4 = r2 * r2;                                                                       \
        VD r8 = r4 * r4;                                                                       \
        VD a0 = r * (1.0 / 6.0) + 0.5;                                                         \
        VD a1 = r * (1.0 / 120.0) + (1.0 / 24.0);                                              \
        VD a2 = r * (1.0 / 5040.0) + (1.0 / 720.0);                                            \
        VD a3 = r * (1.0 / 362880.0) + (1.0 / 40320.0);                                        \
        VD a4 = r * (1.0 / 39916800.0) + (1.0 / 3628800.0);                                    \
        VD a5 = r * (1.0 / 6227020800.0) + (1.0 / 479001600.0);                                \
        VD b0 = a1 * r2 + a0;                                                                  \
        VD b1 = a3 * r2 + a2;                                                                  \
        VD b2 = a5 * r2 + a4;                                                                  \
        VD q = (b2 * r8 + b1 * r4) + b0;                                                       \
        VD s = 1.0 + r;                                                                        \
        VD s_err = (1.0 - s) + r; /* exact: |r| < 1 */                                         \
        VD y = s + (s_err + (r_err + r2 * q));                                                 \
        /* 2^n: n sits in the low bits of t. */                                                \
        VL n = (VL)t - (VL)(zero + shifter);                                                   \
        VL small = n < -1020, big = n > 1000;                                                  \
        VL k = n + (small & 64) - (big & 64);                                                  \
        VD scale = (VD)((k + 1023) << 52);                                                     \
        VD post = SEL(small, zero + 0x1p-64, SEL(big, zero + 0x1p64, zero + 1.0));             \
        return (y * scale) * post;                                                             \
    }
FS_DEFINE_VEXP(, fs_vexp4, fs_vd4, fs_vl4, fs_sel4)

/*
 * log1p(x) on lanes, for x >= +0 (the log(1 + r) of log pi(a) and of the
 * entropy, r a sum of softmax weights), instead of the C library's: the same
 * bits on every CPU, kernel set and library, and a vector of states at once.
 * fdlibm's method: 1 + x = y + err, err = x - (y - 1) exactly, y = 2^k m
 * with m in [sqrt(1/2), sqrt(2)); f = m - 1 (exact), or f = x itself when k
 * = 0 (then 1 + x needs no rounding at all); log(1 + f) = f - (hfsq - s
 * (hfsq + R)) with hfsq = f^2 / 2, s = f / (2 + f) and R(s^2) fdlibm's
 * minimax polynomial (Lp1 .. Lp7, error below 2^-58.45, by Estrin's scheme);
 * plus k ln2 in two parts (k ln2_hi is exact) and err / y.  Every term after
 * f is small against it, so the error stays near the final rounding's: 0.81
 * ulp at most against the exactly rounded log1p, and exactly rounded for
 * 91-100 % of the arguments (numpy.longdouble over 4 10^5 arguments in each
 * of seven ranges from subnormal to 10^300; tests/test_vexp.py asserts 0.82;
 * the C library's is about 0.6).  +inf and NaN are returned as they are.
 * One body for a scalar or any vector width (lane-wise operations only, no
 * FMA: the module is compiled with -ffp-contract=off), so every width gives
 * the same bits: fs_log1p (scalar), fs_vlog1p4, fs_vlog1p8 (the fused
 * kernel's).
 */
#define FS_DEFINE_VLOG1P(ATTRS, NAME, VD, VL, SEL)                                             \
    ATTRS FS_INLINE VD NAME(VD x) {                                                            \
        const double ln2_hi = 6.93147180369123816490e-01; /* 0x3fe62e42fee00000 */             \
        const double ln2_lo = 1.90821492927058770002e-10;                                      \
        const VD zero = {0};                                                                   \
        const VD one = zero + 1.0;                                                             \
        const VD magic = zero + 6755399441055744.0; /* 1.5 * 2^52: k as a double */            \
        VD y = x + one;                                                                        \
        VL bits = FS_BITCAST(VL, y);                                                           \
        VL k = ((bits >> 52) & 0x7ff) - 1023;                                                  \
        VL mb = (bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL;                          \
        VD m = FS_BITCAST(VD, mb);                                                             \
        VL big = m > 1.4142135623730951;                                                       \
        m = SEL(big, m * 0.5, m);                                                              \
        k = k + (big & 1);                                                                     \
        VL k0 = k == 0;                                                                        \
        VD f = SEL(k0, x, m - one);                                                            \
        VD c = SEL(k0, zero, (x - (y - one)) / y);                                             \
        VL kb = FS_BITCAST(VL, magic) + k;                                                     \
        VD kd = FS_BITCAST(VD, kb) - magic;                                                    \
        VD hfsq = (0.5 * f) * f;                                                               \
        VD s = f / (f + 2.0);                                                                  \
        VD z = s * s;                                                                          \
        /* R = z (Lp1 + z Lp2 + ... + z^6 Lp7) by Estrin's scheme (shorter chain) */           \
        VD z2 = z * z;                                                                         \
        VD t1 = z * 3.999999999940941908e-01 + 6.666666666666735130e-01;                       \
        VD t2 = z * 2.222219843214978396e-01 + 2.857142874366239149e-01;                       \
        VD t3 = z * 1.531383769920937332e-01 + 1.818357216161805012e-01;                       \
        t3 = z2 * 1.479819860511658591e-01 + t3;                                               \
        VD R = z * ((z2 * t2 + t1) + (z2 * z2) * t3);                                          \
        VD res = kd * ln2_hi - ((hfsq - (s * (hfsq + R) + (kd * ln2_lo + c))) - f);            \
        return SEL(x <= 1.7976931348623157e308, res, x);                                       \
    }
FS_DEFINE_VLOG1P(, fs_vlog1p4, fs_vd4, fs_vl4, fs_sel4)
FS_DEFINE_VLOG1P(, fs_log1p, double, long long, fs_sel1)

/* The first index of the largest of z[0:n] (no NaN), or -1 if all are -inf:
 * one vector max and one scan, instead of a branch per row that mispredicts
 * on random logits. */
static FS_CLONES int fs_block_argmax(const double *z, int n) {
    fs_vd4 mv = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        fs_vd4 x = fs_load4(z + i);
        mv = fs_sel4(x > mv, x, mv);
    }
    double m = mv[0];
    for (int j = 1; j < 4; j++) m = mv[j] > m ? mv[j] : m;
    for (; i < n; i++) m = z[i] > m ? z[i] : m;
    if (m == -INFINITY) return -1;
    for (i = 0; z[i] != m; i++) {}
    return i;
}

/* 1 if z[0:n] and z_lo[0:n] are all finite: x - x is 0 for finite x and
 * NaN otherwise, so one sum tells (n rounded up to 4; the arrays have room,
 * lanes past n are not looked at). */
static FS_CLONES int fs_block_finite(const double *z, const double *z_lo, int n) {
    fs_vd4 acc = {0};
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        fs_vd4 x = fs_load4(z + i), y = fs_load4(z_lo + i);
        acc += (x - x) + (y - y);
    }
    double bad = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; i < n; i++) bad += (z[i] - z[i]) + (z_lo[i] - z_lo[i]);
    return bad == 0.0;
}

static FS_CLONES void fs_block_exp(const double *z, const double *z_lo, double m, double m_lo,
                                   int n, double *w) {
    for (int i = 0; i < n; i += 4) {
        fs_vd4 x = (fs_load4(z + i) - m) + (fs_load4(z_lo + i) - m_lo);
        fs_store4(w + i, fs_vexp4(x));
    }
}

/* The fused kernels' signature (see fs_fused_f64_avx512) and what one
 * computes (its last argument). */
#define FS_FUSED_SCORE 1       /* the score, into out (B, d) */
#define FS_FUSED_LOGP 2        /* log pi(a), into out (B,) with stride out_sb */
#define FS_FUSED_ENTROPY 3     /* the entropy, the same (act is not read) */
#define FS_FUSED_LOGLIK 4      /* loglik's value, into slot */
#define FS_FUSED_LOGLIK_GRAD 5 /* loglik's value and gradient, into slot */
/* Runs of FS_FUSED_RUN states, each of at most FS_FUSED_MAX_N rows (the
 * per-state path's block, BLOCK_ROWS: the same arithmetic) and
 * FS_FUSED_MAX_D features.  Ragged states take the kernel by blocks of
 * FS_FUSED_BLOCK states whose runs waste few rows: W = 8 N_max - sum_s n_s a
 * run, the block's sum of W (d + FS_FUSED_WASTE_D) at most FS_FUSED_WASTE a
 * run (_core's ragged_pays; the costs measured are in docs/performance.md,
 * round 8).  Defined for every build: _core groups states in whole runs on
 * every CPU, so the groups, and loglik's order of sums, are the same. */
#define FS_FUSED_RUN 8
#define FS_FUSED_MAX_N 32
#define FS_FUSED_MAX_D 32
#define FS_FUSED_WASTE 1700
#define FS_FUSED_WASTE_D 20
#define FS_FUSED_BLOCK 64
typedef ptrdiff_t (*fs_fused_fn)(const char *, ptrdiff_t, ptrdiff_t, const fs_theta *,
                                 const char *, ptrdiff_t, const char *, ptrdiff_t, ptrdiff_t,
                                 const ptrdiff_t *, ptrdiff_t, ptrdiff_t, ptrdiff_t, int, ptrdiff_t,
                                 double, char *, ptrdiff_t, ptrdiff_t, const double *, double *,
                                 int);

/* The kernel set chosen once by fs_init() when the module loads. */
static struct {
    double (*dot2_f64)(const double *, const fs_theta *, ptrdiff_t, double *);
    double (*dot2_f32)(const float *, const fs_theta *, ptrdiff_t, double *);
    double (*dot_f32)(const float *, const fs_theta *, ptrdiff_t);
    void (*acc_f64)(double *, const double *, const double *const *, const double *, int,
                    ptrdiff_t);
    void (*acc_f32)(double *, const float *, const float *const *, const double *, int,
                    ptrdiff_t);
    void (*rows_dot2_f64)(const double *const *, int, const fs_theta *, ptrdiff_t, double *,
                          double *);
    void (*rows_dot2_f32)(const float *const *, int, const fs_theta *, ptrdiff_t, double *,
                          double *);
    void (*rows_dot_f32)(const float *const *, int, const fs_theta *, ptrdiff_t, double *,
                         double *);
    void (*nacc_f64)(double *, const double *, const double *const *, const double *, int,
                     ptrdiff_t);
    void (*nacc_f32)(double *, const float *, const float *const *, const double *, int,
                     ptrdiff_t);
    /* The fused kernel for runs of tiny states (AVX-512VL only; NULL: none):
     * float64 phi; float32 phi with float64 results (Dot2 logits); float32 phi
     * with float32 results (plain-dot logits). */
    fs_fused_fn fused_f64, fused_f32_dot2, fused_f32_dot;
    const char *level;
} fs_kern = {fs_dot2_f64_generic, fs_dot2_f32_generic, fs_dot_f32_generic,
             fs_block_acc_f64_generic, fs_block_acc_f32_generic,
fs_rows_dot2_f64_generic, fs_rows_dot2_f32_generic,
             fs_rows_dot_f32_generic,
             fs_block_acc_f64_generic, fs_block_acc_f32_generic,
             NULL, NULL, NULL,
             "Dekker split (no FMA)"};

#define FS_USE_KERNELS(SUFFIX, NSUFFIX, NACC_F64, NACC_F32, LEVEL) \
    do {                                               \
        fs_kern.dot2_f64 = fs_dot2_f64_##SUFFIX;       \
        fs_kern.dot2_f32 = fs_dot2_f32_##SUFFIX;       \
        fs_kern.dot_f32 = fs_dot_f32_##SUFFIX;         \
        fs_kern.acc_f64 = fs_block_acc_f64_##SUFFIX;   \
        fs_kern.acc_f32 = fs_block_acc_f32_##SUFFIX;   \
        fs_kern.rows_dot2_f64 = fs_rows_dot2_f64_##NSUFFIX; \
        fs_kern.rows_dot2_f32 = fs_rows_dot2_f32_##NSUFFIX; \
        fs_kern.rows_dot_f32 = fs_rows_dot_f32_##NSUFFIX; \
        fs_kern.nacc_f64 = NACC_F64;                   \
        fs_kern.nacc_f32 = NACC_F32;                   \
        fs_kern.fused_f64 = NULL;                      \
        fs_kern.fused_f32_dot2 = NULL;                 \
        fs_kern.fused_f32_dot = NULL;                  \
        fs_kern.level = LEVEL;                         \
    } while (0)

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(FASTSCORE_NO_CLONES)
#include <immintrin.h>

#define FS_AVX512 __attribute__((target("avx512f,avx512dq")))
#define FS_AVX2 __attribute__((target("avx2,fma")))

FS_AVX512 FS_INLINE fs_vd fs_load_f_avx512(const float *p) {
    return (fs_vd)_mm512_cvtps_pd(_mm256_loadu_ps(p));
}

FS_AVX512 FS_INLINE fs_vd fs_madd_avx512(fs_vd x, fs_vd y, fs_vd acc) {
    return (fs_vd)_mm512_fmadd_pd((__m512d)x, (__m512d)y, (__m512d)acc);
}

FS_AVX2 FS_INLINE fs_vd fs_madd_avx2(fs_vd x, fs_vd y, fs_vd acc) {
    __m256d xv[2], yv[2], av[2];
    memcpy(xv, &x, sizeof xv);
    memcpy(yv, &y, sizeof yv);
    memcpy(av, &acc, sizeof av);
    av[0] = _mm256_fmadd_pd(xv[0], yv[0], av[0]);
    av[1] = _mm256_fmadd_pd(xv[1], yv[1], av[1]);
    memcpy(&acc, av, sizeof av);
    return acc;
}

FS_AVX512 FS_INLINE void fs_two_prod_avx512(fs_vd x, const fs_theta *t, ptrdiff_t i, fs_vd *p,
                                            fs_vd *e) {
    fs_vd y = fs_load_d(t->val + i);
    *p = x * y;
    *e = (fs_vd)_mm512_fmsub_pd((__m512d)x, (__m512d)y, (__m512d)*p);
}

FS_AVX2 FS_INLINE void fs_two_prod_avx2(fs_vd x, const fs_theta *t, ptrdiff_t i, fs_vd *p,
                                        fs_vd *e) {
    __m256d xv[2], yv[2], pv[2], ev[2];
    fs_vd y = fs_load_d(t->val + i);
    *p = x * y;
    memcpy(xv, &x, sizeof xv);
    memcpy(yv, &y, sizeof yv);
    memcpy(pv, p, sizeof pv);
    ev[0] = _mm256_fmsub_pd(xv[0], yv[0], pv[0]);
    ev[1] = _mm256_fmsub_pd(xv[1], yv[1], pv[1]);
    memcpy(e, ev, sizeof ev);
}

/*
 * fs_two_sum_acc with four of its eight additions done as fma(x, +-1, y),
 * which rounds exactly like x +- y, so the bits are the same.  It moves work
 * from the two FP add pipes to the two FMA pipes, which TwoProduct leaves
 * half idle.  `one` is hidden from the optimiser, which would otherwise fold
 * the FMAs back into additions.
 */
FS_AVX512 FS_INLINE void fs_two_sum_acc_avx512(fs_vd *hi, fs_vd *lo, fs_vd p, fs_vd e) {
    __m512d one = _mm512_set1_pd(1.0);
    __asm__("" : "+v"(one));
    __m512d h = (__m512d)*hi, pv = (__m512d)p;
    __m512d sv = _mm512_add_pd(h, pv);
    __m512d b = _mm512_sub_pd(sv, h);
    __m512d q1 = _mm512_fnmadd_pd(_mm512_sub_pd(sv, b), one, h); /* hi - (s - b) */
    __m512d q2 = _mm512_fnmadd_pd(b, one, pv);                    /* p - b */
    __m512d q = _mm512_fmadd_pd(q1, one, q2);
    __m512d qe = _mm512_fmadd_pd(q, one, (__m512d)e);
    *hi = (fs_vd)sv;
    *lo = (fs_vd)_mm512_add_pd((__m512d)*lo, qe);
}

FS_DEFINE_KERNELS(avx512, FS_AVX512, fs_load_f_avx512, fs_two_prod_avx512, fs_two_sum_acc_avx512,
                  fs_madd_avx512)
FS_DEFINE_KERNELS(avx2, FS_AVX2, fs_load_f, fs_two_prod_avx2, fs_two_sum_acc, fs_madd_avx2)

/*
 * Narrow kernels with AVX2 + FMA (also the AVX-512 set's: 4-lane groups fit
 * the short rows better than 8-lane ones, and every AVX-512 CPU has AVX2 and
 * FMA).  The transpose loads four rows at a time, four elements each
 * (masked loads for the last d % 4, which never touch memory past a row),
 * and transposes 4 x 4 in registers; the arithmetic is the generic set's
 * with TwoProduct by FMA.
 */
#define FS_DEFINE_NARROW_X86(SUFFIX, ATTRS)                                                    \
    ATTRS FS_INLINE __m256i fs_tail_mask_##SUFFIX(ptrdiff_t n) {                               \
        return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)n),                            \
                                  _mm256_set_epi64x(3, 2, 1, 0));                               \
    }                                                                                          \
    ATTRS FS_INLINE __m256d fs_q_f64_##SUFFIX(const double *p) { return _mm256_loadu_pd(p); }  \
    ATTRS FS_INLINE __m256d fs_qt_f64_##SUFFIX(const double *p, __m256i m) {                   \
        return _mm256_maskload_pd(p, m);                                                       \
    }                                                                                          \
    ATTRS FS_INLINE __m256d fs_q_f32_##SUFFIX(const float *p) {                                \
        return _mm256_cvtps_pd(_mm_loadu_ps(p));                                               \
    }                                                                                          \
    ATTRS FS_INLINE __m256d fs_qt_f32_##SUFFIX(const float *p, __m256i m) {                    \
        /* the low 32 bits of each 64-bit mask lane, packed to four 32-bit lanes */            \
        __m128i m32 = _mm256_castsi256_si128(                                                  \
            _mm256_permutevar8x32_epi32(m, _mm256_set_epi32(7, 7, 7, 7, 6, 4, 2, 0)));         \
        return _mm256_cvtps_pd(_mm_maskload_ps(p, m32));                                       \
    }                                                                                          \
    ATTRS FS_INLINE void fs_two_prod4_##SUFFIX(fs_vd4 x, const fs_theta *t, ptrdiff_t j,       \
                                               fs_vd4 *p, fs_vd4 *e) {                         \
        __m256d y = _mm256_set1_pd(t->val[j]);                                                 \
        __m256d pv = _mm256_mul_pd((__m256d)x, y);                                             \
        *p = (fs_vd4)pv;                                                                       \
        *e = (fs_vd4)_mm256_fmsub_pd((__m256d)x, y, pv);                                       \
    }                                                                                          \
    ATTRS FS_INLINE fs_vd4 fs_madd4_##SUFFIX(fs_vd4 x, double y, fs_vd4 acc) {                 \
        return (fs_vd4)_mm256_fmadd_pd((__m256d)x, _mm256_set1_pd(y), (__m256d)acc);           \
    }                                                                                          \
    FS_DEFINE_ROWS_DOT2_X86(fs_rows_dot2_f64_##SUFFIX, double, fs_zero_row_d, ATTRS,           \
                            fs_q_f64_##SUFFIX, fs_qt_f64_##SUFFIX, fs_tail_mask_##SUFFIX,      \
                            fs_two_prod4_##SUFFIX)                                             \
    FS_DEFINE_ROWS_DOT2_X86(fs_rows_dot2_f32_##SUFFIX, float, fs_zero_row_f, ATTRS,            \
                            fs_q_f32_##SUFFIX, fs_qt_f32_##SUFFIX, fs_tail_mask_##SUFFIX,      \
                            fs_two_prod4_##SUFFIX)                                             \
    FS_DEFINE_ROWS_DOT_X86(fs_rows_dot_f32_##SUFFIX, float, fs_zero_row_f, ATTRS,              \
                           fs_q_f32_##SUFFIX, fs_qt_f32_##SUFFIX, fs_tail_mask_##SUFFIX,       \
                           FS_DOT_STEP, FS_DOT_FINISH, fs_madd4_##SUFFIX)                      \
    FS_DEFINE_NARROW_ACC(fs_narrow_acc_f64_##SUFFIX, double, ATTRS, fs_q_f64_##SUFFIX,         \
                         fs_qt_f64_##SUFFIX, fs_tail_mask_##SUFFIX)                            \
    FS_DEFINE_NARROW_ACC(fs_narrow_acc_f32_##SUFFIX, float, ATTRS, fs_q_f32_##SUFFIX,          \
                         fs_qt_f32_##SUFFIX, fs_tail_mask_##SUFFIX)

/* Four rows' quads at column j, transposed: C0..C3 hold columns j..j+3. */
#define FS_QUAD_T(X, J, TAIL, LOADQ, LOADQ_TAIL, tm, C0, C1, C2, C3)                           \
    do {                                                                                       \
        __m256d a0, a1, a2, a3;                                                                \
        if (TAIL) {                                                                            \
            a0 = LOADQ_TAIL(X[0] + (J), tm); a1 = LOADQ_TAIL(X[1] + (J), tm);                  \
            a2 = LOADQ_TAIL(X[2] + (J), tm); a3 = LOADQ_TAIL(X[3] + (J), tm);                  \
        } else {                                                                               \
            a0 = LOADQ(X[0] + (J)); a1 = LOADQ(X[1] + (J));                                    \
            a2 = LOADQ(X[2] + (J)); a3 = LOADQ(X[3] + (J));                                    \
        }                                                                                      \
        __m256d t0 = _mm256_unpacklo_pd(a0, a1), t1 = _mm256_unpackhi_pd(a0, a1);              \
        __m256d t2 = _mm256_unpacklo_pd(a2, a3), t3 = _mm256_unpackhi_pd(a2, a3);              \
        C0 = (fs_vd4)_mm256_permute2f128_pd(t0, t2, 0x20);                                     \
        C1 = (fs_vd4)_mm256_permute2f128_pd(t1, t3, 0x20);                                     \
        C2 = (fs_vd4)_mm256_permute2f128_pd(t0, t2, 0x31);                                     \
        C3 = (fs_vd4)_mm256_permute2f128_pd(t1, t3, 0x31);                                     \
    } while (0)

/*
 * The tile's logits straight from the rows (fs_tile_load then fs_tile_dot2,
 * without the tile's stores and loads): each 4 x 4 transpose feeds the Dot2
 * steps of its four columns at once.  Each lane still takes j = 0, 1, ...,
 * d - 1 in order, so the bits are fs_tile_dot2's.
 */
#define FS_DEFINE_ROWS_DOT_X86(NAME, T, ZERO, ATTRS, LOADQ, LOADQ_TAIL, TAIL_MASK, STEP, FINISH, \
                               OP)                                                      \
    ATTRS static void NAME(const T *const *rows, int nr, const fs_theta *t, ptrdiff_t d,       \
                           double *z, double *z_lo) {                                          \
        ptrdiff_t jt = (d - 1) / 4 * 4;                                                        \
        int nt = (int)(d - jt);                                                                \
        __m256i tm = TAIL_MASK(nt);                                                            \
        int r = 0;                                                                             \
        for (; r + 4 < nr; r += 8) {                                                           \
            const T *x[4], *y[4];                                                              \
            for (int i = 0; i < 4; i++) {                                                      \
                x[i] = rows[r + i] != NULL ? rows[r + i] : ZERO;                               \
                y[i] = (r + 4 + i < nr && rows[r + 4 + i] != NULL) ? rows[r + 4 + i] : ZERO;   \
            }                                                                                  \
            fs_vd4 h0 = {0}, l0 = {0}, h1 = {0}, l1 = {0}, c0, c1, c2, c3, e0, e1, e2, e3;     \
            for (ptrdiff_t j = 0; j < jt; j += 4) {                                            \
                FS_QUAD_T(x, j, 0, LOADQ, LOADQ_TAIL, tm, c0, c1, c2, c3);                     \
                FS_QUAD_T(y, j, 0, LOADQ, LOADQ_TAIL, tm, e0, e1, e2, e3);                     \
                STEP(OP, h0, l0, c0, j);                                        \
                STEP(OP, h1, l1, e0, j);                                        \
                STEP(OP, h0, l0, c1, j + 1);                                    \
                STEP(OP, h1, l1, e1, j + 1);                                    \
                STEP(OP, h0, l0, c2, j + 2);                                    \
                STEP(OP, h1, l1, e2, j + 2);                                    \
                STEP(OP, h0, l0, c3, j + 3);                                    \
                STEP(OP, h1, l1, e3, j + 3);                                    \
            }                                                                                  \
            FS_QUAD_T(x, jt, 1, LOADQ, LOADQ_TAIL, tm, c0, c1, c2, c3);                        \
            FS_QUAD_T(y, jt, 1, LOADQ, LOADQ_TAIL, tm, e0, e1, e2, e3);                        \
            STEP(OP, h0, l0, c0, jt);                                           \
            STEP(OP, h1, l1, e0, jt);                                           \
            if (nt > 1) {                                                                      \
                STEP(OP, h0, l0, c1, jt + 1);                                   \
                STEP(OP, h1, l1, e1, jt + 1);                                   \
            }                                                                                  \
            if (nt > 2) {                                                                      \
                STEP(OP, h0, l0, c2, jt + 2);                                   \
                STEP(OP, h1, l1, e2, jt + 2);                                   \
            }                                                                                  \
            if (nt > 3) {                                                                      \
                STEP(OP, h0, l0, c3, jt + 3);                                   \
                STEP(OP, h1, l1, e3, jt + 3);                                   \
            }                                                                                  \
            FINISH(h0, l0, r);                                                         \
            FINISH(h1, l1, r + 4);                                                     \
        }                                                                                      \
        if (r < nr) {                                                                          \
            const T *x[4];                                                                     \
            for (int i = 0; i < 4; i++)                                                        \
                x[i] = (r + i < nr && rows[r + i] != NULL) ? rows[r + i] : ZERO;               \
            fs_vd4 h0 = {0}, l0 = {0}, c0, c1, c2, c3;                                         \
            for (ptrdiff_t j = 0; j < jt; j += 4) {                                            \
                FS_QUAD_T(x, j, 0, LOADQ, LOADQ_TAIL, tm, c0, c1, c2, c3);                     \
                STEP(OP, h0, l0, c0, j);                                        \
                STEP(OP, h0, l0, c1, j + 1);                                    \
                STEP(OP, h0, l0, c2, j + 2);                                    \
                STEP(OP, h0, l0, c3, j + 3);                                    \
            }                                                                                  \
            FS_QUAD_T(x, jt, 1, LOADQ, LOADQ_TAIL, tm, c0, c1, c2, c3);                        \
            STEP(OP, h0, l0, c0, jt);                                           \
            if (nt > 1) STEP(OP, h0, l0, c1, jt + 1);                           \
            if (nt > 2) STEP(OP, h0, l0, c2, jt + 2);                           \
            if (nt > 3) STEP(OP, h0, l0, c3, jt + 3);                           \
            FINISH(h0, l0, r);                                                         \
        }                                                                                      \
    }

#define FS_DEFINE_ROWS_DOT2_X86(NAME, T, ZERO, ATTRS, LOADQ, LOADQ_TAIL, TAIL_MASK, TWO_PROD4) \
    FS_DEFINE_ROWS_DOT_X86(NAME, T, ZERO, ATTRS, LOADQ, LOADQ_TAIL, TAIL_MASK, FS_DOT2_STEP,      \
                           FS_DOT2_FINISH, TWO_PROD4)

/* The plain float32 dot (fs_tile_dot) in the same frame: L unused. */
#define FS_DOT_STEP(MADD4, H, L, X, J) ((void)(L), (H) = MADD4((X), t->val[(J)], (H)))
#define FS_DOT_FINISH(H, L, R) ((void)(L), fs_store4(z + (R), (H)))

/*
 * g += sum_r w[r] (xa - rows[r]) for rows of d <= 32 (only): the whole of
 * g in (at most 8) registers of 4 lanes, the last d % 4 columns by masked
 * loads and stores.  Each element adds the rows in order, as
 * fs_block_acc does (the generic set's narrow accumulation): the same bits.
 */
#define FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, NV)                                                                     \
    do {                                                                                       \
        __m256d acc[NV], xav[NV];                                                              \
        for (int v = 0; v < NV - 1; v++) {                                                     \
            acc[v] = _mm256_loadu_pd(g + 4 * v);                                               \
            xav[v] = LOADQ(xa + 4 * v);                                                        \
        }                                                                                      \
        acc[NV - 1] = _mm256_maskload_pd(g + 4 * (NV - 1), tm);                                \
        xav[NV - 1] = LOADQ_TAIL(xa + 4 * (NV - 1), tm);                                       \
        for (int r = 0; r < nr; r++) {                                                         \
            __m256d wr = _mm256_set1_pd(w[r]);                                                 \
            const T *x = rows[r];                                                              \
            for (int v = 0; v < NV - 1; v++)                                                   \
                acc[v] = _mm256_add_pd(acc[v],                                                 \
                                       _mm256_mul_pd(wr, _mm256_sub_pd(xav[v], LOADQ(x + 4 * v)))); \
            acc[NV - 1] = _mm256_add_pd(                                                       \
                acc[NV - 1],                                                                   \
                _mm256_mul_pd(wr, _mm256_sub_pd(xav[NV - 1], LOADQ_TAIL(x + 4 * (NV - 1), tm)))); \
        }                                                                                      \
        for (int v = 0; v < NV - 1; v++) _mm256_storeu_pd(g + 4 * v, acc[v]);                  \
        _mm256_maskstore_pd(g + 4 * (NV - 1), tm, acc[NV - 1]);                                \
    } while (0)

#define FS_DEFINE_NARROW_ACC(NAME, T, ATTRS, LOADQ, LOADQ_TAIL, TAIL_MASK)                     \
    ATTRS static void NAME(double *g, const T *xa, const T *const *rows, const double *w,      \
                           int nr, ptrdiff_t d) {                                              \
        __m256i tm = TAIL_MASK(d - (d - 1) / 4 * 4);                                           \
        switch ((d + 3) / 4) {                                                                 \
        case 1: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 1); break;                                                        \
        case 2: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 2); break;                                                        \
        case 3: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 3); break;                                                        \
        case 4: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 4); break;                                                        \
        case 5: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 5); break;                                                        \
        case 6: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 6); break;                                                        \
        case 7: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 7); break;                                                        \
        default: FS_NACC_BODY(T, LOADQ, LOADQ_TAIL, 8); break;                                                       \
        }                                                                                      \
    }

#define FS_AVX512_NARROW __attribute__((target("avx512f,avx512dq,avx2,fma")))
FS_DEFINE_NARROW_X86(avx512, FS_AVX512_NARROW)
FS_DEFINE_NARROW_X86(avx2, FS_AVX2)

/*
 * The score, log pi(a), the entropy, or the loglik value and gradient, of
 * runs of tiny states by one fused kernel (float64 or float32 phi, see
 * FS_DEFINE_FUSED; 1 <= d <= 32 features): states [b0, b1) in runs of 8
 * (the last one partial), each run end to end, prefetching the states ahead
 * of them below b_pf >= b1 (the caller's group end: a ragged group comes in
 * blocks).  Padded (offsets NULL): N = n_padded rows a state (1 <= N <=
 * 32), mask NULL or the (B, N) legal rows with strides mask_sb, mask_sn
 * (mask_sb = 0: one (N,) mask of every state).  Ragged: state b is rows
 * offsets[b] .. offsets[b + 1] - 1 of phi (stride phi_sn; at most 32), mask
 * NULL or one flag a row (stride mask_sn); a run takes its longest state's
 * row count N, and a shorter state's rows past its own are absent, as
 * masked ones.  `what` says what it computes: the
 * scores, log pi(a) or the entropies into out; or, for loglik, slot[0] +=
 * w_b log pi_b(a_b) and (FS_FUSED_LOGLIK_GRAD) slot[1 ..] += w_b score_b,
 * state by state in order (finish_state's REDUCE step; w_b = weights[b], or
 * 1 without weights; slot is NULL for the others).
 *
 * The logits put the STATES in the vector lanes: quad (k, q) holds row k of
 * states 4q .. 4q+3 of the run (loaded by the 4 x 4 transposes of the narrow
 * kernels), so each lane runs fs_rows_dot2's Dot2 (or, float32 phi with
 * float32 results, fs_rows_dot_f32's plain dot) in feature order.  Every
 * per-state step after it (the temperature, finiteness, the first index of
 * the largest logit, the weights by fs_vexp8, r, 1 / (1 + r), log1p(r) by
 * fs_vlog1p8, the entropy's S = sum_k w_k ((m - z_k) + (m_lo - z_lo_k))) is
 * plain vertical SIMD over the run's 8 states.  Only g (features in the
 * lanes, the rows in order, skipping the taken action and zero weights by a
 * masked add, as fs_narrow_acc), the store (fs_store_f64's or fs_store_f32's
 * g * scale / tau), log pi(a) ((z_a - m) + (z_a_lo - m_lo) - log1p(r)) and
 * the entropy (log1p(r) + S / (1 + r)) go state by state.  Every lane does
 * exactly the operations of the one-state path (partial_add_rows ->
 * finish_state with the AVX-512 set), so the bits are the same.  Lanes past
 * the run's end read a row of zeros: their logits are 0 and their exp input
 * 0 (an exp of -inf lanes would be subnormal-slow).  A masked row reads the
 * zero row too, as the per-state path's NULL row does; its logit is then
 * -inf (out of the maximum), its exp input 0 and its weight 0 (out of r, S
 * and g).
 *
 * Returns -1 when every state is done, else the first state of the run in
 * which a logit (or, but for loglik, a result: for float32 results, as a
 * float) was not finite, or every action of a state was masked or, ragged,
 * it has no rows (that run's results may be partly written, none after it;
 * nothing of it is added to slot): the caller does that run again state by
 * state to name the state and its error.  The action of every state must be
 * valid (0 <= a < its row count) and legal.  Needs AVX-512F/DQ/VL.
 * Scratch: about 8.3 KiB of the kernel's stack (its frame: 24 KiB, 4
 * KiB-aligned).
 */
#define FS_FUSED_AHEAD 2  /* runs; the prefetch distance (measured, see the kernel) */
#define FS_FUSED_PF_LOC 2 /* __builtin_prefetch locality 2: prefetcht1, into L2 */
#ifndef FS_FUSED_SCRATCH_OFF
#define FS_FUSED_SCRATCH_OFF 3072 /* bytes, mod 4 KiB; measured, see the kernel */
#endif

#define FS_AVX512_FUSED __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

/*
 * The kernel is one body (FS_DEFINE_FUSED) instantiated per combination of
 *   PT, phi's element type: f64, or f32 (widened to double as it is loaded,
 *      as the narrow kernels' fs_q_f32 does: exact);
 *   LK, the logits: dot2 (fs_rows_dot2's compensated Dot2, z + z_lo), or dot
 *      (fs_rows_dot_f32's plain dot, h = fma(x_j, theta_j, h) in feature
 *      order, z_lo = 0: float32 phi with float32 results, see block_logits);
 *   OT, the score's element type: f64, or f32 (fs_store_f32: g * scale / tau
 *      in double, then rounded to float; the check is on the float values,
 *      so a finite double beyond FLT_MAX makes the run go again state by
 *      state, as a non-finite one does).
 * These are compile-time constants: each instance has no branch on them.
 * Rows are held as byte pointers and read only through the loads below.
 */
#define FS_FUSED_T_f64 double
#define FS_FUSED_T_f32 float
#define FS_FUSED_PLAIN_dot2 0
#define FS_FUSED_PLAIN_dot 1
#define FS_FUSED_OUT32_f64 0
#define FS_FUSED_OUT32_f32 1

typedef double fs_vd8 __attribute__((vector_size(8 * sizeof(double))));
typedef long long fs_vl8 __attribute__((vector_size(8 * sizeof(long long))));

FS_AVX512_FUSED FS_INLINE fs_vd8 fs_sel8(fs_vl8 m, fs_vd8 a, fs_vd8 b) {
    return (fs_vd8)(((fs_vl8)a & m) | ((fs_vl8)b & ~m));
}
FS_DEFINE_VEXP(FS_AVX512_FUSED, fs_vexp8, fs_vd8, fs_vl8, fs_sel8)
FS_DEFINE_VLOG1P(FS_AVX512_FUSED, fs_vlog1p8, fs_vd8, fs_vl8, fs_sel8)

/* Four elements at column j of a row (ld4), the first ones of them by mask
 * tm (ld4t: masked loads never touch memory past the row), and eight for g
 * (ld8, ld8t), as doubles. */
FS_AVX512_FUSED FS_INLINE __m256d fs_fused_ld4_f64(const char *x, ptrdiff_t j) {
    return _mm256_loadu_pd((const double *)x + j);
}
FS_AVX512_FUSED FS_INLINE __m256d fs_fused_ld4t_f64(const char *x, ptrdiff_t j, __mmask8 tm) {
    return _mm256_maskz_loadu_pd(tm, (const double *)x + j);
}
FS_AVX512_FUSED FS_INLINE __m512d fs_fused_ld8_f64(const char *x, ptrdiff_t j) {
    return _mm512_loadu_pd((const double *)x + j);
}
FS_AVX512_FUSED FS_INLINE __m512d fs_fused_ld8t_f64(const char *x, ptrdiff_t j, __mmask8 tm) {
    return _mm512_maskz_loadu_pd(tm, (const double *)x + j);
}
FS_AVX512_FUSED FS_INLINE __m256d fs_fused_ld4_f32(const char *x, ptrdiff_t j) {
    return _mm256_cvtps_pd(_mm_loadu_ps((const float *)x + j));
}
FS_AVX512_FUSED FS_INLINE __m256d fs_fused_ld4t_f32(const char *x, ptrdiff_t j, __mmask8 tm) {
    return _mm256_cvtps_pd(_mm_maskz_loadu_ps(tm, (const float *)x + j));
}
FS_AVX512_FUSED FS_INLINE __m512d fs_fused_ld8_f32(const char *x, ptrdiff_t j) {
    return _mm512_cvtps_pd(_mm256_loadu_ps((const float *)x + j));
}
FS_AVX512_FUSED FS_INLINE __m512d fs_fused_ld8t_f32(const char *x, ptrdiff_t j, __mmask8 tm) {
    return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(tm, (const float *)x + j));
}

/* Rows x[0 .. 3] at column j, transposed: c_u holds column j + u of the four. */
#define FS_DEFINE_FUSED_QUAD(PT)                                                               \
    FS_AVX512_FUSED FS_INLINE void fs_fused_quad_t_##PT(const char *const *x, ptrdiff_t j,     \
                                                        int tail, __mmask8 tm, __m256d *c0,    \
                                                        __m256d *c1, __m256d *c2,              \
                                                        __m256d *c3) {                         \
        __m256d a0, a1, a2, a3;                                                                \
        if (tail) {                                                                            \
            a0 = fs_fused_ld4t_##PT(x[0], j, tm); a1 = fs_fused_ld4t_##PT(x[1], j, tm);        \
            a2 = fs_fused_ld4t_##PT(x[2], j, tm); a3 = fs_fused_ld4t_##PT(x[3], j, tm);        \
        } else {                                                                               \
            a0 = fs_fused_ld4_##PT(x[0], j); a1 = fs_fused_ld4_##PT(x[1], j);                  \
            a2 = fs_fused_ld4_##PT(x[2], j); a3 = fs_fused_ld4_##PT(x[3], j);                  \
        }                                                                                      \
        __m256d t0 = _mm256_unpacklo_pd(a0, a1), t1 = _mm256_unpackhi_pd(a0, a1);              \
        __m256d t2 = _mm256_unpacklo_pd(a2, a3), t3 = _mm256_unpackhi_pd(a2, a3);              \
        *c0 = _mm256_permute2f128_pd(t0, t2, 0x20);                                            \
        *c1 = _mm256_permute2f128_pd(t1, t3, 0x20);                                            \
        *c2 = _mm256_permute2f128_pd(t0, t2, 0x31);                                            \
        *c3 = _mm256_permute2f128_pd(t1, t3, 0x31);                                            \
    }
FS_DEFINE_FUSED_QUAD(f64)
FS_DEFINE_FUSED_QUAD(f32)

/* One Dot2 step of 4 lanes: TwoProduct by FMA (fs_two_prod4), TwoSum into
 * (h, l) (fs_two_sum4) with three of its additions as fma(x, +-1, y), which
 * round exactly as x +- y (fs_two_sum_acc_avx512 does the same). */
FS_AVX512_FUSED FS_INLINE void fs_fused_step_dot2(__m256d *h, __m256d *l, __m256d x, __m256d y,
                                                  __m256d one) {
    __m256d p = _mm256_mul_pd(x, y);
    __m256d e = _mm256_fmsub_pd(x, y, p);
    __m256d s = _mm256_add_pd(*h, p);
    __m256d b = _mm256_sub_pd(s, *h);
    __m256d q1 = _mm256_fnmadd_pd(_mm256_sub_pd(s, b), one, *h); /* h - (s - b) */
    __m256d q2 = _mm256_fnmadd_pd(b, one, p);                    /* p - b */
    __m256d q = _mm256_fmadd_pd(q1, one, q2);                    /* q1 + q2 */
    *l = _mm256_add_pd(*l, _mm256_add_pd(q, e));
    *h = s;
}

/* The logit z + z_lo of 4 lanes from the Dot2 sums (FS_DOT2_FINISH). */
FS_AVX512_FUSED FS_INLINE void fs_fused_finish_dot2(double *z, double *zl, __m256d h, __m256d l) {
    __m256d s = _mm256_add_pd(h, l);
    _mm256_store_pd(z, s);
    _mm256_store_pd(zl, _mm256_sub_pd(l, _mm256_sub_pd(s, h)));
}

/* One plain-dot step (FS_DOT_STEP: h = fma(x, theta_j, h)); l is not used. */
FS_AVX512_FUSED FS_INLINE void fs_fused_step_dot(__m256d *h, __m256d *l, __m256d x, __m256d y,
                                                 __m256d one) {
    (void)l;
    (void)one;
    *h = _mm256_fmadd_pd(x, y, *h);
}

/* The plain dot's logit z = h (FS_DOT_FINISH); z_lo is 0 and not stored. */
FS_AVX512_FUSED FS_INLINE void fs_fused_finish_dot(double *z, double *zl, __m256d h, __m256d l) {
    (void)zl;
    (void)l;
    _mm256_store_pd(z, h);
}

/* Logits of NQ quads of rows (phi type PT, logit kind LK): quad c is rows
 * x[4c .. 4c+3], each lane taking the features in order, NQ interleaved
 * chains.  Dot2 takes two quads a call: with four, GCC spilled the float64
 * sums and row pointers to the stack, and the logits alone of 2048 x 10 x 20
 * states took 68-91 ns a state against 66-82 with two, 4096 x 16 x 8 66
 * against 59, 8192 x 4 x 8 16.0-16.9 against 14.8-15.2.  The plain dot (one
 * FMA a step, a chain bound by its latency) takes four while they last:
 * 2048 x 10 x 20 25.8 against 27.8 with two (Zen 4, C harness, best of 5). */
#define FS_DEFINE_FUSED_LOGITS(PT, LK, NQ)                                                     \
    FS_AVX512_FUSED FS_INLINE void fs_fused_logits_##PT##_##LK##_##NQ(                         \
        const char *const *x, const double *theta, ptrdiff_t d, double *z, double *zl) {       \
        ptrdiff_t jt = (d - 1) / 4 * 4;                                                        \
        int nt = (int)(d - jt);                                                                \
        __mmask8 tm = (__mmask8)((1u << nt) - 1);                                              \
        __m256d one = _mm256_set1_pd(1.0);                                                     \
        __asm__("" : "+v"(one));                                                               \
        __m256d h[NQ], l[NQ], c[NQ][4];                                                        \
        for (int g = 0; g < NQ; g++) h[g] = l[g] = _mm256_setzero_pd();                        \
        for (ptrdiff_t j = 0; j < jt; j += 4) {                                                \
            for (int g = 0; g < NQ; g++)                                                       \
                fs_fused_quad_t_##PT(x + 4 * g, j, 0, tm, &c[g][0], &c[g][1], &c[g][2],        \
                                     &c[g][3]);                                                \
            for (int u = 0; u < 4; u++) {                                                      \
                __m256d y = _mm256_set1_pd(theta[j + u]);                                      \
                for (int g = 0; g < NQ; g++) fs_fused_step_##LK(&h[g], &l[g], c[g][u], y, one); \
            }                                                                                  \
        }                                                                                      \
        for (int g = 0; g < NQ; g++)                                                           \
            fs_fused_quad_t_##PT(x + 4 * g, jt, 1, tm, &c[g][0], &c[g][1], &c[g][2], &c[g][3]); \
        for (int u = 0; u < nt; u++) {                                                         \
            __m256d y = _mm256_set1_pd(theta[jt + u]);                                         \
            for (int g = 0; g < NQ; g++) fs_fused_step_##LK(&h[g], &l[g], c[g][u], y, one);    \
        }                                                                                      \
        for (int g = 0; g < NQ; g++) fs_fused_finish_##LK(z + 4 * g, zl + 4 * g, h[g], l[g]);  \
    }
FS_DEFINE_FUSED_LOGITS(f64, dot2, 2)
FS_DEFINE_FUSED_LOGITS(f32, dot2, 2)
FS_DEFINE_FUSED_LOGITS(f32, dot, 4)
FS_DEFINE_FUSED_LOGITS(f32, dot, 2)

/* A run's quads c, c + 1, ... by four a call while they last (plain dot only). */
#define FS_FUSED_BY4_dot2(PT, c, nq, rows, theta, d, z, zl) ((void)0)
#define FS_FUSED_BY4_dot(PT, c, nq, rows, theta, d, z, zl)                                    \
    for (; (c) + 4 <= (nq); (c) += 4)                                                          \
    fs_fused_logits_##PT##_dot_4((rows) + 4 * (c), (theta), (d), (z) + 4 * (c), (zl) + 4 * (c))

/* One state's log pi(a) or entropy stored as OT (store_real); returns v - v
 * of the stored value (0, or NaN when it is not finite). */
FS_INLINE double fs_fused_store1_f64(char *dst, double v) {
    memcpy(dst, &v, sizeof(double));
    return v - v;
}
FS_INLINE double fs_fused_store1_f32(char *dst, double v) {
    float f = (float)v;
    memcpy(dst, &f, sizeof(float));
    return (double)(f - f);
}

/* g of one state in NV zmm registers (the last one masked by gm; rows of
 * phi type PT), then o = (g * inv_l) / tau, added to slot (times w_b) or
 * stored as OT; chk collects v - v of every stored value (for float32, of
 * the floats). */
#define FS_FUSED_G_BODY(PT, OT, NV)                                                             \
    do {                                                                                        \
        __m512d acc[NV], xav[NV], o[NV];                                                        \
        for (int v = 0; v < NV - 1; v++) {                                                      \
            acc[v] = _mm512_setzero_pd();                                                       \
            xav[v] = fs_fused_ld8_##PT(xa, 8 * v);                                              \
        }                                                                                       \
        acc[NV - 1] = _mm512_setzero_pd();                                                      \
        xav[NV - 1] = fs_fused_ld8t_##PT(xa, 8 * (NV - 1), gm);                                 \
        for (int k = 0; k < N; k++) {                                                           \
            const char *xk = rows[8 * k + s];                                                   \
            __m512d wk = _mm512_set1_pd(w[k]);                                                  \
            __mmask8 use = (k != a && w[k] != 0.0) ? 0xFF : 0;                                  \
            for (int v = 0; v < NV - 1; v++)                                                    \
                acc[v] = _mm512_mask_add_pd(                                                    \
                    acc[v], use, acc[v],                                                        \
                    _mm512_mul_pd(wk, _mm512_sub_pd(xav[v], fs_fused_ld8_##PT(xk, 8 * v))));    \
            acc[NV - 1] = _mm512_mask_add_pd(                                                   \
                acc[NV - 1], use, acc[NV - 1],                                                  \
                _mm512_mul_pd(wk, _mm512_sub_pd(xav[NV - 1],                                    \
                                                fs_fused_ld8t_##PT(xk, 8 * (NV - 1), gm))));    \
        }                                                                                       \
        __m512d il = _mm512_set1_pd(inv_l);                                                     \
        for (int v = 0; v < NV; v++) {                                                          \
            o[v] = _mm512_mul_pd(acc[v], il);                                                   \
            if (scaled) o[v] = _mm512_div_pd(o[v], tauv);                                       \
            if (!FS_FUSED_OUT32_##OT)                                                           \
                chk = _mm512_add_pd(chk,                                                        \
                                    _mm512_maskz_sub_pd(v == NV - 1 ? gm : 0xFF, o[v], o[v]));  \
        }                                                                                       \
        if (slot) {                                                                             \
            __m512d wv = _mm512_set1_pd(wb);                                                    \
            for (int v = 0; v < NV; v++) {                                                      \
                __mmask8 lm = v == NV - 1 ? gm : 0xFF;                                          \
                double *sp = slot + 1 + 8 * v;                                                  \
                _mm512_mask_storeu_pd(sp, lm, _mm512_add_pd(_mm512_maskz_loadu_pd(lm, sp),      \
                                                            _mm512_mul_pd(wv, o[v])));          \
            }                                                                                   \
        } else if (FS_FUSED_OUT32_##OT) {                                                       \
            __m256 f[NV];                                                                       \
            for (int v = 0; v < NV; v++) {                                                      \
                f[v] = _mm512_cvtpd_ps(o[v]);                                                   \
                chk = _mm512_add_pd(chk, _mm512_cvtps_pd(_mm256_maskz_sub_ps(                   \
                                             v == NV - 1 ? gm : 0xFF, f[v], f[v])));            \
            }                                                                                   \
            if (contiguous) {                                                                   \
                for (int v = 0; v < NV - 1; v++) _mm256_storeu_ps((float *)ob + 8 * v, f[v]);  \
                _mm256_mask_storeu_ps((float *)ob + 8 * (NV - 1), gm, f[NV - 1]);              \
            } else {                                                                            \
                float tmp[8 * NV] __attribute__((aligned(32)));                                 \
                for (int v = 0; v < NV; v++) _mm256_store_ps(tmp + 8 * v, f[v]);                \
                for (ptrdiff_t i = 0; i < d; i++)                                               \
                    memcpy(ob + i * out_sd, &tmp[i], sizeof(float));                            \
            }                                                                                   \
        } else if (contiguous) {                                                                \
            for (int v = 0; v < NV - 1; v++) _mm512_storeu_pd((double *)ob + 8 * v, o[v]);      \
            _mm512_mask_storeu_pd((double *)ob + 8 * (NV - 1), gm, o[NV - 1]);                 \
        } else {                                                                                \
            double tmp[8 * NV] __attribute__((aligned(64)));                                    \
            for (int v = 0; v < NV; v++) _mm512_store_pd(tmp + 8 * v, o[v]);                    \
            for (ptrdiff_t i = 0; i < d; i++) memcpy(ob + i * out_sd, &tmp[i], sizeof(double)); \
        }                                                                                       \
    } while (0)

struct fs_fused_scratch {
    double z[2 * FS_FUSED_MAX_N * 4] __attribute__((aligned(64)));
    double zl[2 * FS_FUSED_MAX_N * 4] __attribute__((aligned(64)));
    double W[2 * FS_FUSED_MAX_N * 4] __attribute__((aligned(64)));
    double INV[FS_FUSED_RUN] __attribute__((aligned(64)));
    double M[FS_FUSED_RUN] __attribute__((aligned(64))); /* per state: the max logit m + m_lo, */
    double MLO[FS_FUSED_RUN] __attribute__((aligned(64)));
    double LR[FS_FUSED_RUN] __attribute__((aligned(64))); /* log1p(r), */
    double S[FS_FUSED_RUN] __attribute__((aligned(64))); /* the entropy's sum */
    const char *rows[2 * FS_FUSED_MAX_N * 4];
};

/* Lanes past a run's end read this row (as float64 or float32: zeros). */
static const double fs_fused_zero_row[FS_FUSED_MAX_D + 8] __attribute__((aligned(64)));

#define FS_DEFINE_FUSED(NAME, PT, LK, OT)                                                        \
    FS_AVX512_FUSED static ptrdiff_t NAME(                                                       \
        const char *phi, ptrdiff_t phi_sb, ptrdiff_t phi_sn, const fs_theta *t, const char *act, \
        ptrdiff_t act_s, const char *mask, ptrdiff_t mask_sb, ptrdiff_t mask_sn,                 \
        const ptrdiff_t *offsets, ptrdiff_t b0, ptrdiff_t b1, ptrdiff_t b_pf, int n_padded,      \
        ptrdiff_t d, double tau, char *out, ptrdiff_t out_sb, ptrdiff_t out_sd,                  \
        const double *weights, double *slot, int what) {                                         \
        const int plain = FS_FUSED_PLAIN_##LK; /* z_lo = 0 */                                    \
        const int nv8 = (int)((d + 7) / 8);                                                      \
        const __mmask8 gm = (__mmask8)((1u << (d - (nv8 - 1) * 8)) - 1);                         \
        const int scaled = tau != 1.0;                                                           \
        const int contiguous = out_sd == (ptrdiff_t)sizeof(FS_FUSED_T_##OT);                     \
        const __m512d tauv = _mm512_set1_pd(tau);                                                \
        const double *theta = t->val;                                                            \
        /* The scratch at a fixed address modulo 4 KiB (FS_FUSED_SCRATCH_OFF):                   \
         * where the stack put it, 4K aliasing with the phi and output streams                   \
         * slowed tiny states by a fifth (the offsets measured: docs/performance.md,             \
         * round 8). */                                                                          \
        char sc_buf[4096 + sizeof(struct fs_fused_scratch)] __attribute__((aligned(4096)));      \
        struct fs_fused_scratch *scp = (struct fs_fused_scratch *)(sc_buf + FS_FUSED_SCRATCH_OFF); \
        double *z = scp->z, *zl = scp->zl, *W = scp->W, *INV = scp->INV;                         \
        double *M = scp->M, *MLO = scp->MLO, *LR = scp->LR, *SE = scp->S;                        \
        const int need_g = what == FS_FUSED_SCORE || what == FS_FUSED_LOGLIK_GRAD;               \
        const int need_lp = slot != NULL || what == FS_FUSED_LOGP;                               \
        const int entropy = what == FS_FUSED_ENTROPY;                                            \
        const char **rows = scp->rows;                                                           \
        for (ptrdiff_t r0 = b0; r0 < b1; r0 += FS_FUSED_RUN) {                                   \
            int ns = (int)(b1 - r0 < FS_FUSED_RUN ? b1 - r0 : FS_FUSED_RUN);                     \
            /* rows[8k + s]: row k of state s (quad c = 2k + q is states 4q .. 4q+3);            \
             * z, zl and W hold the logits and weights in the same order.  A masked              \
             * row reads the zero row, as the per-state path's NULL row does (its                \
             * logit 0, then -inf), and is cleared from um[k], the legal lanes of                \
             * row k (lanes past the run's end read the zero row as legal ones) */               \
            __mmask8 um[FS_FUSED_MAX_N];                                                         \
            int N = n_padded; /* rows per state; ragged: the run's longest state */              \
            ptrdiff_t row0[FS_FUSED_RUN];                                                        \
            int nrow[FS_FUSED_RUN];                                                              \
            if (offsets) {                                                                       \
                N = 1;                                                                           \
                for (int s = 0; s < ns; s++) {                                                   \
                    row0[s] = offsets[r0 + s];                                                   \
                    nrow[s] = (int)(offsets[r0 + s + 1] - row0[s]);                              \
                    N = nrow[s] > N ? nrow[s] : N;                                               \
                }                                                                                \
            }                                                                                    \
            const int nq = 2 * N; /* quads per run */                                            \
            for (int k = 0; k < N; k++) {                                                        \
                um[k] = 0xFF;                                                                    \
                if (!offsets)                                                                    \
                    for (int s = 0; s < FS_FUSED_RUN; s++)                                       \
                        rows[8 * k + s] = s < ns ? phi + (r0 + s) * phi_sb + k * phi_sn          \
                                                 : (const char *)fs_fused_zero_row;              \
                else /* a ragged state's rows past its own: absent, as masked ones */            \
                    for (int s = 0; s < FS_FUSED_RUN; s++) {                                     \
                        rows[8 * k + s] = (const char *)fs_fused_zero_row;                       \
                        if (s < ns && k < nrow[s])                                               \
                            rows[8 * k + s] = phi + (row0[s] + k) * phi_sn;                      \
                        else if (s < ns)                                                         \
                            um[k] &= (__mmask8) ~(1u << s);                                      \
                    }                                                                            \
                if (mask)                                                                        \
                    for (int s = 0; s < ns; s++) {                                               \
                        if (offsets && k >= nrow[s]) continue;                                   \
                        if (!mask[offsets ? (row0[s] + k) * mask_sn                              \
                                          : (r0 + s) * mask_sb + k * mask_sn]) {                 \
                            um[k] &= (__mmask8) ~(1u << s);                                      \
                            rows[8 * k + s] = (const char *)fs_fused_zero_row;                   \
                        }                                                                        \
                    }                                                                            \
            }                                                                                    \
            int c = 0;                                                                           \
            FS_FUSED_BY4_##LK(PT, c, nq, rows, theta, d, z, zl);                                 \
            for (; c < nq; c += 2)                                                               \
                fs_fused_logits_##PT##_##LK##_2(rows + 4 * c, theta, d, z + 4 * c, zl + 4 * c);  \
            /* The run's 8 states at once (row k is z[8k .. 8k + 7]): temperature,               \
             * finiteness, max, weights, r, 1 / (1 + r), the entropy's S */                      \
            __m512d nf = _mm512_setzero_pd();                                                    \
            __mmask8 allm;                                                                       \
            {                                                                                    \
                __m512d zk[FS_FUSED_MAX_N], zlk[FS_FUSED_MAX_N];                                 \
                for (int k = 0; k < N; k++) {                                                    \
                    zk[k] = _mm512_load_pd(z + 8 * k);                                           \
                    zlk[k] = plain ? _mm512_setzero_pd() : _mm512_load_pd(zl + 8 * k);           \
                    if (scaled) {                                                                \
                        /* block_logits: z = s / tau, and for Dot2                               \
                         * z_lo = (fma(-z, tau, s) + z_lo) / tau */                              \
                        __m512d sv = zk[k];                                                      \
                        zk[k] = _mm512_div_pd(sv, tauv);                                         \
                        if (!plain)                                                              \
                            zlk[k] = _mm512_div_pd(                                              \
                                _mm512_add_pd(_mm512_fnmadd_pd(zk[k], tauv, sv), zlk[k]), tauv); \
                        if (need_lp) { /* z_a for log pi(a) */                                   \
                            _mm512_store_pd(z + 8 * k, zk[k]);                                   \
                            if (!plain) _mm512_store_pd(zl + 8 * k, zlk[k]);                     \
                        }                                                                        \
                    }                                                                            \
                    nf = _mm512_add_pd(nf, _mm512_add_pd(_mm512_sub_pd(zk[k], zk[k]),            \
                                                         _mm512_sub_pd(zlk[k], zlk[k])));        \
                    /* block_logits: a masked row's logit is -inf, z_lo 0 */                     \
                    zk[k] = _mm512_mask_mov_pd(_mm512_set1_pd(-INFINITY), um[k], zk[k]);         \
                    zlk[k] = _mm512_maskz_mov_pd(um[k], zlk[k]);                                 \
                }                                                                                \
                /* the first index of the largest: a strict > keeps the first */                 \
                __m512d m = zk[0], mlo = zlk[0];                                                 \
                __m512i km = _mm512_setzero_si512();                                             \
                for (int k = 1; k < N; k++) {                                                    \
                    __mmask8 gt = _mm512_cmp_pd_mask(zk[k], m, _CMP_GT_OQ);                      \
                    m = _mm512_mask_mov_pd(m, gt, zk[k]);                                        \
                    mlo = _mm512_mask_mov_pd(mlo, gt, zlk[k]);                                   \
                    km = _mm512_mask_mov_epi64(km, gt, _mm512_set1_epi64(k));                    \
                }                                                                                \
                /* every action of a state masked: do_state's error */                           \
                allm = _mm512_cmp_pd_mask(m, _mm512_set1_pd(-INFINITY), _CMP_EQ_OQ);             \
                __m512d r = _mm512_setzero_pd(), se = _mm512_setzero_pd();                       \
                for (int k = 0; k < N; k++) {                                                    \
                    /* masked lanes: exp input 0 (-inf is slow), then weight 0 */                \
                    __m512d x = _mm512_maskz_add_pd(um[k], _mm512_sub_pd(zk[k], m),              \
                                                    _mm512_sub_pd(zlk[k], mlo));                 \
                    __m512d w = _mm512_maskz_mov_pd(um[k], (__m512d)fs_vexp8((fs_vd8)x));        \
                    _mm512_store_pd(W + 8 * k, w);                                               \
                    if (entropy) /* S += w_k diff2(m, m_lo, z_k, z_lo_k), as partial_add_rows */ \
                        se = _mm512_add_pd(se, _mm512_maskz_mul_pd(um[k], w, _mm512_add_pd(      \
                                                   _mm512_sub_pd(m, zk[k]),                      \
                                                   _mm512_sub_pd(mlo, zlk[k]))));                \
                    /* r += w_k but for the max's row (adding +0 to r >= +0 is exact) */         \
                    __mmask8 notmax =                                                            \
                        _mm512_cmp_epi64_mask(km, _mm512_set1_epi64(k), _MM_CMPINT_NE);          \
                    r = _mm512_add_pd(r, _mm512_maskz_mov_pd(notmax, w));                        \
                }                                                                                \
                const __m512d one8 = _mm512_set1_pd(1.0);                                        \
                _mm512_store_pd(INV, _mm512_div_pd(one8, _mm512_add_pd(one8, r)));               \
                _mm512_store_pd(M, m);                                                           \
                _mm512_store_pd(MLO, mlo);                                                       \
                if (need_lp || entropy)                                                          \
                    _mm512_store_pd(LR, (__m512d)fs_vlog1p8((fs_vd8)r));                         \
                _mm512_store_pd(SE, se);                                                         \
            }                                                                                    \
            if (_mm512_reduce_add_pd(nf) != 0.0 || allm) return r0;                              \
            /* g, the score, log pi(a) and the entropy, state by state */                        \
            __m512d chk = _mm512_setzero_pd();                                                   \
            double chs = 0.0; /* v - v of the stored log pi(a) or entropies */                   \
            for (int s = 0; s < ns; s++) {                                                       \
                /* Prefetch the same state FS_FUSED_AHEAD runs on, row by row, into              \
                 * L2: the hardware prefetcher does not follow a run's interleaved               \
                 * short row streams (distances and levels measured:                             \
                 * docs/performance.md, round 6). */                                             \
                ptrdiff_t sp = r0 + s + FS_FUSED_AHEAD * FS_FUSED_RUN;                           \
                if (sp < b_pf) {                                                                 \
                    const char *pb = offsets ? phi + offsets[sp] * phi_sn : phi + sp * phi_sb;   \
                    int np = offsets ? (int)(offsets[sp + 1] - offsets[sp]) : N;                 \
                    for (int k = 0; k < np; k++) {                                               \
                        const char *p0 = pb + k * phi_sn;                                        \
                        const ptrdiff_t rb = d * (ptrdiff_t)sizeof(FS_FUSED_T_##PT);             \
                        for (ptrdiff_t o = 0; o < rb; o += 64)                                   \
                            __builtin_prefetch(p0 + o, 0, FS_FUSED_PF_LOC);                      \
                        __builtin_prefetch(p0 + rb - 1, 0, FS_FUSED_PF_LOC);                     \
                    }                                                                            \
                }                                                                                \
                if (entropy) { /* finish_state: H = log1p(r) + S * (1 / (1 + r)) */              \
                    chs += fs_fused_store1_##OT(out + (r0 + s) * out_sb,                         \
                                                LR[s] + SE[s] * INV[s]);                         \
                    continue;                                                                    \
                }                                                                                \
                ptrdiff_t a = *(const ptrdiff_t *)(act + (r0 + s) * act_s);                      \
                int ia = 8 * (int)a + s;                                                         \
                double wb = 1.0;                                                                 \
                if (need_lp) { /* finish_state: log pi(a) = (z_a - m) - log1p(r) */              \
                    double zla = plain ? 0.0 : zl[ia];                                           \
                    double lp = ((z[ia] - M[s]) + (zla - MLO[s])) - LR[s];                       \
                    if (!slot) {                                                                 \
                        chs += fs_fused_store1_##OT(out + (r0 + s) * out_sb, lp);                \
                        continue;                                                                \
                    }                                                                            \
                    wb = weights ? weights[r0 + s] : 1.0;                                        \
                    slot[0] += wb * lp;                                                          \
                }                                                                                \
                if (!need_g) continue;                                                           \
                double w[FS_FUSED_MAX_N];                                                        \
                for (int k = 0; k < N; k++) w[k] = W[8 * k + s];                                 \
                double inv_l = INV[s];                                                           \
                const char *xa = rows[ia];                                                       \
                char *ob = out + (r0 + s) * out_sb;                                              \
                switch (nv8) {                                                                   \
                case 1: FS_FUSED_G_BODY(PT, OT, 1); break;                                       \
                case 2: FS_FUSED_G_BODY(PT, OT, 2); break;                                       \
                case 3: FS_FUSED_G_BODY(PT, OT, 3); break;                                       \
                default: FS_FUSED_G_BODY(PT, OT, 4); break;                                      \
                }                                                                                \
            }                                                                                    \
            if (!slot && (_mm512_reduce_add_pd(chk) != 0.0 || chs != 0.0)) return r0;            \
        }                                                                                        \
        return -1;                                                                               \
    }

/* float64 phi and results; float32 phi with float64 results (Dot2 logits);
 * float32 phi with float32 results (plain-dot logits; loglik's value and
 * gradient are float64 sums either way). */
FS_DEFINE_FUSED(fs_fused_f64_avx512, f64, dot2, f64)
FS_DEFINE_FUSED(fs_fused_f32_dot2_avx512, f32, dot2, f64)
FS_DEFINE_FUSED(fs_fused_f32_dot_avx512, f32, dot, f32)

static void fs_pick_kernels(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
        FS_USE_KERNELS(avx512, avx512, fs_narrow_acc_f64_avx512, fs_narrow_acc_f32_avx512,
                       "AVX-512 + FMA");
        if (__builtin_cpu_supports("avx512vl")) {
            fs_kern.fused_f64 = fs_fused_f64_avx512;
            fs_kern.fused_f32_dot2 = fs_fused_f32_dot2_avx512;
            fs_kern.fused_f32_dot = fs_fused_f32_dot_avx512;
        }
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        FS_USE_KERNELS(avx2, avx2, fs_narrow_acc_f64_avx2, fs_narrow_acc_f32_avx2, "AVX2 + FMA");
}
#else
static void fs_pick_kernels(void) {}
#endif

/* force_split: use the generic kernels (Dekker's split, no FMA) even where
 * the CPU has FMA, as a CPU without it would (for tests). */
static inline void fs_init(int force_split) {
    if (force_split)
        FS_USE_KERNELS(generic, generic, fs_block_acc_f64_generic, fs_block_acc_f32_generic,
                       "Dekker split (forced by FASTSCORE_NO_FMA)");
    else
        fs_pick_kernels();
}

static inline double fs_dot2_f64(const double *x, const fs_theta *t, ptrdiff_t n, double *rest) {
    return fs_kern.dot2_f64(x, t, n, rest);
}

static inline double fs_dot2_f32(const float *x, const fs_theta *t, ptrdiff_t n, double *rest) {
    return fs_kern.dot2_f32(x, t, n, rest);
}

static inline double fs_dot_f32(const float *x, const fs_theta *t, ptrdiff_t n) {
    return fs_kern.dot_f32(x, t, n);
}

static inline void fs_block_acc_f64(double *g, const double *xa, const double *const *rows,
                                    const double *w, int nr, ptrdiff_t d) {
    fs_kern.acc_f64(g, xa, rows, w, nr, d);
}

static inline void fs_block_acc_f32(double *g, const float *xa, const float *const *rows,
                                    const double *w, int nr, ptrdiff_t d) {
    fs_kern.acc_f32(g, xa, rows, w, nr, d);
}

/* Narrow rows (d <= FS_NARROW_D): the logits of a block of rows, and the
 * accumulation into g (same bits as fs_block_acc_*). */
static inline void fs_rows_dot2_f64(const double *const *rows, int nr, const fs_theta *t,
                                    ptrdiff_t d, double *z, double *z_lo) {
    fs_kern.rows_dot2_f64(rows, nr, t, d, z, z_lo);
}

static inline void fs_rows_dot2_f32(const float *const *rows, int nr, const fs_theta *t,
                                    ptrdiff_t d, double *z, double *z_lo) {
    fs_kern.rows_dot2_f32(rows, nr, t, d, z, z_lo);
}

static inline void fs_rows_dot_f32(const float *const *rows, int nr, const fs_theta *t,
                                   ptrdiff_t d, double *z) {
    fs_kern.rows_dot_f32(rows, nr, t, d, z, NULL);
}

static inline void fs_narrow_acc_f64(double *g, const double *xa, const double *const *rows,
                                     const double *w, int nr, ptrdiff_t d) {
    fs_kern.nacc_f64(g, xa, rows, w, nr, d);
}

static inline void fs_narrow_acc_f32(double *g, const float *xa, const float *const *rows,
                                     const double *w, int nr, ptrdiff_t d) {
    fs_kern.nacc_f32(g, xa, rows, w, nr, d);
}

/*
 * out[i] = g[i] * scale / tau, written to a float64 or float32 result row with
 * element stride `stride` (bytes).  Returns 0 if any written value is not
 * finite.  Contiguous rows take the vector loop: v - v is 0 for finite v and
 * NaN otherwise, so one sum tells whether everything was finite.
 */
#define FS_DEFINE_STORE(NAME, T, TV, CONVERT)                                        \
    static FS_CLONES int NAME(char *out, ptrdiff_t stride, const double *g,         \
                              double scale, double tau, ptrdiff_t n) {              \
        ptrdiff_t i = 0;                                                           \
        double bad = 0.0;                                                          \
        if (stride == (ptrdiff_t)sizeof(T)) {                                      \
            T *o = (T *)out;                                                       \
            TV check = {0};                                                        \
            for (; i + 4 <= n; i += 4) {                                           \
                fs_vd4 x = fs_load4(g + i) * scale;                                \
                if (tau != 1.0) x /= tau;                                          \
                TV v = CONVERT(x);                                                 \
                memcpy(o + i, &v, sizeof v);                                       \
                check += v - v;                                                    \
            }                                                                      \
            for (int j = 0; j < 4; j++) bad += check[j];                           \
        }                                                                          \
        for (; i < n; i++) {                                                       \
            T v = (T)(g[i] * scale / tau);                                         \
            memcpy(out + i * stride, &v, sizeof v);                                \
            bad += v - v;                                                          \
        }                                                                          \
        return bad == 0.0;                                                         \
    }

#define FS_AS_F64(v) (v)
#define FS_AS_F32(v) __builtin_convertvector((v), fs_vf4)

typedef float fs_vf4 __attribute__((vector_size(4 * sizeof(float))));
FS_DEFINE_STORE(fs_store_f64, double, fs_vd4, FS_AS_F64)
FS_DEFINE_STORE(fs_store_f32, float, fs_vf4, FS_AS_F32)

/*
 * The weighted second moment of a block of centred rows, for the Hessian:
 *
 *     H[i][j] += sum_r w[r] y_r[i] y_r[j],   y_r = rows[r] - mu   (in double)
 *
 * H is dp x dp (dp = fs_padded(d)), row-major; only its upper tiles (column
 * tiles that reach the diagonal or beyond) are updated, the caller reads the
 * upper triangle.  Y is scratch for nr x dp doubles: the centred rows are
 * formed once per block, zero-padded, then the tiles (4 rows x 8 columns of
 * H held in registers) sweep the rows.  Each element adds the rows in order
 * as (w y_i) y_j with separate multiplications and additions, so every
 * instruction set gives the same bits.
 */
#define FS_DEFINE_HESS_ACC(NAME, T)                                                    \
    static FS_CLONES void NAME(double *C, ptrdiff_t dp, double *Y, const double *mu,   \
                               const T *const *rows, const double *w, int nr,          \
                               ptrdiff_t d) {                                          \
        for (int r = 0; r < nr; r++) {                                                 \
            double *y = Y + r * dp;                                                    \
            ptrdiff_t c = 0;                                                           \
            for (; c < d; c++) y[c] = (double)rows[r][c] - mu[c];                      \
            for (; c < dp; c++) y[c] = 0.0;                                            \
        }                                                                              \
        for (ptrdiff_t i0 = 0; i0 < d; i0 += 4) {                                      \
            for (ptrdiff_t j0 = i0 / FS_LANES * FS_LANES; j0 < dp; j0 += FS_LANES) {    \
                fs_vd acc[4];                                                          \
                for (int ii = 0; ii < 4; ii++) acc[ii] = fs_load_d(C + (i0 + ii) * dp + j0); \
                for (int r = 0; r < nr; r++) {                                         \
                    const double *y = Y + r * dp;                                      \
                    fs_vd yj = fs_load_d(y + j0);                                      \
                    for (int ii = 0; ii < 4; ii++) acc[ii] += (w[r] * y[i0 + ii]) * yj; \
                }                                                                      \
                for (int ii = 0; ii < 4; ii++)                                         \
                    memcpy(C + (i0 + ii) * dp + j0, &acc[ii], sizeof acc[ii]);         \
            }                                                                          \
        }                                                                              \
    }

FS_DEFINE_HESS_ACC(fs_hess_acc_f64, double)
FS_DEFINE_HESS_ACC(fs_hess_acc_f32, float)

/* Sum of n doubles: the read-only pass that measures memory bandwidth. */
static FS_CLONES double fs_sum_f64(const double *x, ptrdiff_t n) {
    fs_vd acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
    ptrdiff_t i = 0;
    for (; i + 4 * FS_LANES <= n; i += 4 * FS_LANES) {
        acc0 += fs_load_d(x + i);
        acc1 += fs_load_d(x + i + FS_LANES);
        acc2 += fs_load_d(x + i + 2 * FS_LANES);
        acc3 += fs_load_d(x + i + 3 * FS_LANES);
    }
    double s = fs_reduce((acc0 + acc1) + (acc2 + acc3));
    for (; i < n; i++) s += x[i];
    return s;
}

/* Which clone the loader picks on this CPU, for show_config(). */
static inline const char *fs_simd_level(void) {
#if FS_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "AVX-512F";
    if (__builtin_cpu_supports("avx2")) return "AVX2";
    return "baseline x86-64 (SSE2)";
#else
    return "portable C vectors (no runtime dispatch)";
#endif
}

#endif /* FASTSCORE_SIMD_H */
