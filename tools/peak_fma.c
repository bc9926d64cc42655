/* Peak multiply-add rate of one core: 16 independent chains of 8-lane
 * vectors, either fused (acc = acc * x + y in one FMA) or separate (a
 * multiplication then an addition, as the kernels compiled with
 * -ffp-contract=off run).  Prints madds per second for each: the best of
 * 25 short runs, since the machine is shared.
 * Build: gcc -O2 -mavx512f -mfma tools/peak_fma.c -o peak_fma */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define CHAINS 16

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(void) {
    const long iters = 4000000;
    __m512d acc[CHAINS], x = _mm512_set1_pd(0.999999), y = _mm512_set1_pd(1e-7);
    double best_fma = 0, best_sep = 0, sink = 0;
    for (int rep = 0; rep < 25; rep++) {
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_pd(c);
        double t0 = now();
        for (long i = 0; i < iters; i++)
            for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_pd(acc[c], x, y);
        double t = now() - t0;
        for (int c = 0; c < CHAINS; c++) sink += acc[c][0];
        double rate = (double)iters * CHAINS * 8 / t;
        if (rate > best_fma) best_fma = rate;
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_pd(c);
        t0 = now();
        for (long i = 0; i < iters; i++)
            for (int c = 0; c < CHAINS; c++)
                acc[c] = _mm512_add_pd(_mm512_mul_pd(acc[c], x), y);
        t = now() - t0;
        for (int c = 0; c < CHAINS; c++) sink += acc[c][0];
        rate = (double)iters * CHAINS * 8 / t;
        if (rate > best_sep) best_sep = rate;
    }
    printf("fma %.4g\nmul_add %.4g\nsink %g\n", best_fma, best_sep, sink);
    return 0;
}
