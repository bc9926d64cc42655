/*
 * Counter-based random numbers for fastscore's samplers (Gumbel-max).
 *
 * API (stable; shared by fastscore.sample and fastscore.matrix.sample):
 *
 *   double fs_uniform(uint64_t key, uint64_t state, uint64_t action)
 *       A uniform double in the open interval (0, 1): 53 random bits.
 *   double fs_gumbel(uint64_t key, uint64_t state, uint64_t action)
 *       -log(-log(fs_uniform(key, state, action))): a standard Gumbel variate.
 *
 * Each value is a pure function of the three words, so any thread may draw
 * any (state, action) and a sample does not depend on the thread count or
 * the order of evaluation.  `key` identifies the call (the Python layer maps
 * `seed` to it, _common.pxd's seed_key: an int seed in [0, 2**64) is the
 * key itself; a numpy.random.Generator gives one 64-bit draw per call, its
 * next_uint64; None takes 64 bits of fresh OS entropy); `state` is the index of the state in the batch
 * (0 for one state) and `action` the index of the action.
 *
 * Statistical basis.  The generator is Philox4x64-10 (Salmon, Moraes, Dror
 * and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11), the
 * function behind Random123's philox4x64_10, NumPy's numpy.random.Philox and
 * cuRAND's Philox family.  With the counter (action, state, 0, 0) and the key
 * (key, 0):
 *   - for a fixed key it is a bijection of the 256-bit counter, so distinct
 *     (state, action) pairs never share an output block;
 *   - its authors report that it passes the whole TestU01 BigCrush battery
 *     (and Crush, SmallCrush) on counters in sequence, i.e. on exactly the
 *     structured, low-entropy counters used here, for keys in sequence too;
 *     10 rounds leave a safety margin over the 6-7 that already pass.
 * The tests check the bits against numpy.random.Philox (same counter and
 * key) and the Gumbel-max samples against the policy by chi-square.
 *
 * Uniform from bits: m = the top 53 bits of the first output word, u = m
 * 2**-53, exact in double; m = 0 (probability 2**-53) is replaced by m = 1/2,
 * so u is never 0, and u <= 1 - 2**-53 is never 1.  The Gumbel variate is
 * therefore finite, in about [-3.6, 37.4].
 */
#ifndef FASTSCORE_RNG_H
#define FASTSCORE_RNG_H

#include <math.h>
#include <stdint.h>

#define FS_PHILOX_M0 UINT64_C(0xD2E7470EE14C6C93)
#define FS_PHILOX_M1 UINT64_C(0xCA5A826395121157)
#define FS_PHILOX_W0 UINT64_C(0x9E3779B97F4A7C15)  /* golden ratio */
#define FS_PHILOX_W1 UINT64_C(0xBB67AE8584CAA73B)  /* sqrt(3) - 1 */

/* hi:lo = a * b, the full 128-bit product. */
static inline uint64_t fs_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) {
#if defined(__SIZEOF_INT128__)
    unsigned __int128 p = (unsigned __int128)a * b;
    *hi = (uint64_t)(p >> 64);
    return (uint64_t)p;
#else
    uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32;
    uint64_t b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
    uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return (mid << 32) | (ll & 0xFFFFFFFFu);
#endif
}

/* Philox4x64-10 of counter c under key (k0, k1), in place. */
static inline void fs_philox4x64_10(uint64_t c[4], uint64_t k0, uint64_t k1) {
    int r;
    for (r = 0; r < 10; r++) {
        uint64_t hi0, hi1;
        uint64_t lo0 = fs_mulhilo64(FS_PHILOX_M0, c[0], &hi0);
        uint64_t lo1 = fs_mulhilo64(FS_PHILOX_M1, c[2], &hi1);
        uint64_t n0 = hi1 ^ c[1] ^ k0;
        uint64_t n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
        k0 += FS_PHILOX_W0;
        k1 += FS_PHILOX_W1;
    }
}

/* The first 64-bit word of Philox4x64-10 at counter (action, state, 0, 0),
 * key (key, 0). */
static inline uint64_t fs_random_bits(uint64_t key, uint64_t state, uint64_t action) {
    uint64_t c[4] = {action, state, 0, 0};
    fs_philox4x64_10(c, key, 0);
    return c[0];
}

static inline double fs_uniform(uint64_t key, uint64_t state, uint64_t action) {
    uint64_t m = fs_random_bits(key, state, action) >> 11;
    const double two_m53 = 1.1102230246251565e-16; /* 2**-53 */
    return m ? (double)m * two_m53 : 0.5 * two_m53;
}

static inline double fs_gumbel(uint64_t key, uint64_t state, uint64_t action) {
    return -log(-log(fs_uniform(key, state, action)));
}

#endif /* FASTSCORE_RNG_H */
