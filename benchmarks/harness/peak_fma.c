/* Peak multiply-add rate of one core: 16 independent chains of vectors
 * (8 lanes with AVX-512, 4 with AVX2), either fused (acc = acc * x + y in one
 * FMA) or separate (a multiplication then an addition, as the kernels
 * compiled with -ffp-contract=off run).  Prints madds per second for each:
 * the best of REPS short runs (default 25), since the machine is shared.
 *
 *     peak_fma [REPS [ITERS]]
 *
 * Build (benchmarks/harness/measure.py, peak_fma_rates, does it):
 *     cc -O2 -march=native -ffp-contract=off peak_fma.c -o peak_fma
 * -ffp-contract=off keeps the separate loop separate: GCC writes
 * _mm512_mul_pd and _mm512_add_pd as vector operators, which it would fuse. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 8
typedef __m512d vec;
#define SET1 _mm512_set1_pd
#define FMADD _mm512_fmadd_pd
#define MUL _mm512_mul_pd
#define ADD _mm512_add_pd
#define ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define LANES 4
typedef __m256d vec;
#define SET1 _mm256_set1_pd
#define FMADD _mm256_fmadd_pd
#define MUL _mm256_mul_pd
#define ADD _mm256_add_pd
#define ISA "avx2"
#else
#error "peak_fma needs AVX-512F or AVX2 with FMA"
#endif

#define CHAINS 16
/* The chains unrolled, so that the accumulators live in registers: a loop
 * over them (GCC's -O2 keeps it) reads and writes acc[] in memory at every
 * step and measures the store-to-load forwarding instead of the FMA units. */
#define UNROLLED _Pragma("GCC unroll 16")

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double first_lane(vec v) {
    double lanes[LANES];
    __builtin_memcpy(lanes, &v, sizeof lanes);
    return lanes[0];
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 25;
    const long iters = argc > 2 ? atol(argv[2]) : 4000000;
    vec acc[CHAINS], x = SET1(0.999999), y = SET1(1e-7);
    double best_fma = 0, best_sep = 0, sink = 0;
    for (int rep = 0; rep < reps; rep++) {
        for (int c = 0; c < CHAINS; c++) acc[c] = SET1(c);
        double t0 = now();
        for (long i = 0; i < iters; i++)
            UNROLLED for (int c = 0; c < CHAINS; c++) acc[c] = FMADD(acc[c], x, y);
        double t = now() - t0;
        for (int c = 0; c < CHAINS; c++) sink += first_lane(acc[c]);
        double rate = (double)iters * CHAINS * LANES / t;
        if (rate > best_fma) best_fma = rate;
        for (int c = 0; c < CHAINS; c++) acc[c] = SET1(c);
        t0 = now();
        for (long i = 0; i < iters; i++)
            UNROLLED for (int c = 0; c < CHAINS; c++) acc[c] = ADD(MUL(acc[c], x), y);
        t = now() - t0;
        for (int c = 0; c < CHAINS; c++) sink += first_lane(acc[c]);
        rate = (double)iters * CHAINS * LANES / t;
        if (rate > best_sep) best_sep = rate;
    }
    printf("fma %.4g\nmul_add %.4g\nlanes %d\nisa %s\nsink %g\n", best_fma, best_sep, LANES, ISA,
           sink);
    return 0;
}
