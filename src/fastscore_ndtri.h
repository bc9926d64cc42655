/*
 * The inverse of the standard normal CDF over a block of probabilities, for
 * the mixed logit's normal draws: the algorithm of SciPy's ndtri (Cephes:
 * a rational function of (y - 1/2)^2 in the centre, of 1 / sqrt(-2 log y)
 * in the tails), its coefficients and its order of operations, so the same
 * bits as scipy.special.ndtri (tested on millions of points).  SciPy's ufunc
 * takes 14 ns a point here; this block form evaluates the centre's rational
 * function (73 % of uniform points) for a whole chunk in vector lanes and
 * the tails' points in stages (6.4 ns a uniform point).
 *
 * Only additions, multiplications, divisions and the C library's sqrt and
 * log, no FMA (-ffp-contract=off): every instruction set's clone gives the
 * same bits.
 */
#ifndef FASTSCORE_NDTRI_H
#define FASTSCORE_NDTRI_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "fastscore_simd.h"

/* exp(-2): below it (and above 1 - it) the tail's approximation */
#define FS_NDTRI_EXPM2 1.3533528323661269189E-1
#define FS_NDTRI_S2PI 2.50662827463100050242E0
#define FS_NDTRI_CHUNK 256

/* Cephes' polevl (c[0] the leading coefficient) and p1evl (a leading 1) */
static inline double fs_polevl(double x, const double *c, int n) {
    double a = c[0];
    for (int i = 1; i <= n; i++) a = a * x + c[i];
    return a;
}

static inline double fs_p1evl(double x, const double *c, int n) {
    double a = x + c[0];
    for (int i = 1; i < n; i++) a = a * x + c[i];
    return a;
}

static const double fs_ndtri_p0[5] = {
    -5.99633501014107895267E1, 9.80010754185999661536E1, -5.66762857469070293439E1,
    1.39312609387279679503E1, -1.23916583867381258016E0};
static const double fs_ndtri_q0[8] = {
    1.95448858338141759834E0, 4.67627912898881538453E0, 8.63602421390890590575E1,
    -2.25462687854119370527E2, 2.00260212380060660359E2, -8.20372256168333339912E1,
    1.59056225126211695515E1, -1.18331621121330003142E0};
/* sqrt(-2 log y) in [2, 8) */
static const double fs_ndtri_p1[9] = {
    4.05544892305962419923E0, 3.15251094599893866154E1, 5.71628192246421288162E1,
    4.40805073893200834700E1, 1.46849561928858024014E1, 2.18663306850790267539E0,
    -1.40256079171354495875E-1, -3.50424626827848203418E-2, -8.57456785154685413611E-4};
static const double fs_ndtri_q1[8] = {
    1.57799883256466749731E1, 4.53907635128879210584E1, 4.13172038254672030440E1,
    1.50425385692907503408E1, 2.50464946208309415979E0, -1.42182922854787788574E-1,
    -3.80806407691578277194E-2, -9.33259480895457427372E-4};
/* sqrt(-2 log y) in [8, 64) */
static const double fs_ndtri_p2[9] = {
    3.23774891776946035970E0, 6.91522889068984211695E0, 3.93881025292474443415E0,
    1.33303460815807542389E0, 2.01485389549179081538E-1, 1.23716634817820021358E-2,
    3.01581553508235416007E-4, 2.65806974686737550832E-6, 6.23974539184983293730E-9};
static const double fs_ndtri_q2[8] = {
    6.02427039364742014255E0, 3.67983563856160859403E0, 1.37702099489081330271E0,
    2.16236993594496635890E-1, 1.34204006088543189037E-2, 3.28014464682127739104E-4,
    2.89247864745380683936E-6, 6.79019408009981274425E-9};

static inline int fs_ndtri_central(double y) {
    return y > FS_NDTRI_EXPM2 && y <= 1.0 - FS_NDTRI_EXPM2;
}

/* x[i] = ndtri(x[i]) for i < n.  A chunk at a time: the centre's formula for
 * every lane (overwritten where it does not apply), then the tails' points
 * gathered and taken in stages (log, sqrt, log, the rational functions), each a loop
 * over independent points: one point's chain of dependent operations is
 * about 150 cycles long.  The logs are the C library's, one by one. */
static FS_CLONES void fs_ndtri_block(double *x, ptrdiff_t n) {
    double c[FS_NDTRI_CHUNK], t[FS_NDTRI_CHUNK], r[FS_NDTRI_CHUNK];
    ptrdiff_t at[FS_NDTRI_CHUNK];
    for (ptrdiff_t o = 0; o < n; o += FS_NDTRI_CHUNK) {
        const ptrdiff_t m = n - o < FS_NDTRI_CHUNK ? n - o : FS_NDTRI_CHUNK;
        double *xo = x + o;
        for (ptrdiff_t i = 0; i < m; i++) {
            const double w = xo[i] - 0.5, w2 = w * w;
            c[i] = (w + w * (w2 * fs_polevl(w2, fs_ndtri_p0, 4) /
                             fs_p1evl(w2, fs_ndtri_q0, 8))) * FS_NDTRI_S2PI;
        }
        /* the tails' points gathered without branches (which of them is a
         * tail is a coin toss a point), as the smaller tail probability */
        ptrdiff_t nt = 0;
        for (ptrdiff_t i = 0; i < m; i++) {
            at[nt] = i;
            nt += !fs_ndtri_central(xo[i]);
        }
        for (ptrdiff_t j = 0; j < nt; j++) {
            const double yj = xo[at[j]];
            t[j] = yj > 1.0 - FS_NDTRI_EXPM2 ? 1.0 - yj : yj;
        }
        for (ptrdiff_t j = 0; j < nt; j++) t[j] = log(t[j]);
        for (ptrdiff_t j = 0; j < nt; j++) t[j] = sqrt(-2.0 * t[j]); /* x */
        for (ptrdiff_t j = 0; j < nt; j++) r[j] = log(t[j]);
        for (ptrdiff_t j = 0; j < nt; j++) {
            const double xx = t[j], x0 = xx - r[j] / xx, z = 1.0 / xx;
            const double near = z * fs_polevl(z, fs_ndtri_p1, 8) / fs_p1evl(z, fs_ndtri_q1, 8);
            const double far = z * fs_polevl(z, fs_ndtri_p2, 8) / fs_p1evl(z, fs_ndtri_q2, 8);
            r[j] = x0 - (xx < 8.0 ? near : far);
        }
        for (ptrdiff_t j = 0; j < nt; j++) {
            const double yj = xo[at[j]];
            /* the lower tail's result negated, as Cephes does; 0, 1 and what
             * is not a probability as SciPy gives them */
            c[at[j]] = yj > 0.0 && yj < 1.0 ? (yj > 1.0 - FS_NDTRI_EXPM2 ? r[j] : -r[j])
                       : yj == 0.0 ? -INFINITY : yj == 1.0 ? INFINITY : NAN;
        }
        memcpy(xo, c, (size_t)m * sizeof(double));
    }
}

#endif
