/*
 * The panel function of fastscore_mixed.h (see there), included once per
 * instruction set with FSX_PANEL (its name), FSX_ATTRS (its target) and the
 * vector it computes on defined: FSX_W lanes of type FSX_VD (doubles) and
 * FSX_VL (their masks), with FSX_SEL, FSX_EXP, FSX_LOG1P, FSX_LOAD and
 * FSX_STORE for that width (8 lanes for AVX-512; 4 for AVX2 and the
 * baseline, whose wider vectors GCC would split into scalar comparisons).
 * Every operation is lane-wise, and every sum over the draws runs on groups
 * of FSX_LANES (8) lanes held in FSX_LANES / FSX_W vectors and summed by one
 * tree, so every width gives the same bits.  No include guard on purpose.
 */

/* sum_r a_r b_r (c_r) over the Rp lanes, in the fixed grouping of every sum
 * over the draws (c NULL: no third factor) */
FSX_ATTRS static double FSX_DOT(const double *a, const double *b, const double *c, ptrdiff_t Rp) {
    enum { W = FSX_W, NACC = FSX_LANES / FSX_W };
    const FSX_VD zero = {0};
    FSX_VD acc[NACC];
    for (int i = 0; i < NACC; i++) acc[i] = zero;
    if (c)
        for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
            for (int i = 0; i < NACC; i++) {
                const ptrdiff_t oa = o + i * W;
                acc[i] += (FSX_LOAD(a + oa) * FSX_LOAD(b + oa)) * FSX_LOAD(c + oa);
            }
    else
        for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
            for (int i = 0; i < NACC; i++) {
                const ptrdiff_t oa = o + i * W;
                acc[i] += FSX_LOAD(a + oa) * FSX_LOAD(b + oa);
            }
    return fsx_tree8(acc);
}

/* out[t] += sum_r a_r b[t]_r for t < 4, each in the grouping of FSX_DOT (the
 * same bits as four calls), in one pass: four independent sums, where one
 * sum is a chain of dependent additions */
FSX_ATTRS static void FSX_DOT4(const double *a, const double *const b[4], double out[4],
                               ptrdiff_t Rp) {
    enum { W = FSX_W, NACC = FSX_LANES / FSX_W };
    const FSX_VD zero = {0};
    FSX_VD acc[4][NACC];
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < NACC; i++) acc[t][i] = zero;
    for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
        for (int i = 0; i < NACC; i++) {
            const ptrdiff_t oa = o + i * W;
            const FSX_VD va = FSX_LOAD(a + oa);
            for (int t = 0; t < 4; t++) acc[t][i] += va * FSX_LOAD(b[t] + oa);
        }
    for (int t = 0; t < 4; t++) out[t] += fsx_tree8(acc[t]);
}

/* hess[a n + b] += sum_r ha[a]_r x[b]_r for a <= b < n (ha, x: (n, Rp)) */
FSX_ATTRS static void FSX_GRAM(const double *ha, const double *x, ptrdiff_t n, ptrdiff_t Rp,
                               double *hess) {
    for (ptrdiff_t a = 0; a < n; a++) {
        ptrdiff_t b = a;
        for (; b + 4 <= n; b += 4) {
            const double *cols[4] = {x + b * Rp, x + (b + 1) * Rp, x + (b + 2) * Rp,
                                     x + (b + 3) * Rp};
            FSX_DOT4(ha + a * Rp, cols, hess + a * n + b, Rp);
        }
        for (; b < n; b++) hess[a * n + b] += FSX_DOT(ha + a * Rp, x + b * Rp, NULL, Rp);
    }
}

FSX_ATTRS static void FSX_PANEL(const fsx_problem *pb, ptrdiff_t p, double *scr, double *ll,
                                double *score, double *post, double *hess) {
    const ptrdiff_t k = pb->k, q = pb->q, R = pb->R, Rp = pb->Rp;
    enum { W = FSX_W, NACC = FSX_LANES / FSX_W };
    const double *par = pb->params;
    const double *spread = par + k;
    const ptrdiff_t *rcol = pb->rcol;
    const int *kinds = pb->kinds;
    double *xi = scr;               /* (q, Rp): the draws, draws contiguous */
    double *beta = xi + q * Rp;     /* (q, Rp): the random coefficients */
    double *Ls = beta + q * Rp;     /* (Rp): sum of the shifts, then log P_pr */
    double *prod = Ls + Rp;         /* (Rp): product of the normalisers, then h_pr */
    double *Ex = prod + Rp;         /* (Rp): the exponents moved out of prod */
    double *inv = Ex + Rp;          /* (Rp): 1 / the normaliser of one situation */
    double *dv_situation = inv + Rp; /* (max_rows, Rp): d_i of one situation, then exp(d_i - M) */
    const ptrdiff_t nr = FSX_ROUND_UP(pb->max_rows * k);
    double *dx_situation = dv_situation + pb->max_rows * Rp; /* (max_rows, k): x_i - x_c */
    double *dxr = dx_situation + nr; /* (max_rows, q): the same, random columns only */
    double *cfix = dxr + nr;        /* (max_rows): the fixed columns' part of d_i */
    /* With the gradient: every non-chosen row of the panel keeps pi_i at each
     * draw (Pi) and x_i - x_c (DX), for the sums after the posterior weights
     * are known. */
    double *Pi = cfix + FSX_ROUND_UP(pb->max_rows);
    double *DX = Pi + pb->max_panel_rows * Rp;
    /* With the Hessian: per-parameter arrays over the draws (see below) */
    const ptrdiff_t n = pb->n_params;
    double *Hw = DX + FSX_ROUND_UP(pb->max_panel_rows * k); /* (1 + 2 q, Rp): 1, beta xi */
    double *Ha = Hw + (1 + 2 * q) * Rp;                     /* (n, Rp): A of one situation */
    double *Hha = Ha + n * Rp;                               /* (n, Rp): h A, then h g */
    double *Hg = Hha + n * Rp;                               /* (n, Rp): g = sum of the A */
    double *Hc = Hg + n * Rp;                                /* (k, Rp): c of one situation */
    double *Hhp = Hc + k * Rp;                               /* (Rp): h pi of one row */
    double *S = Hhp + Rp; /* ((1 + 3 q)^2): sum_r h pi_i w w' over pairs of weights */
    double *T = S + (1 + 3 * q) * (1 + 3 * q); /* the same for pairs of rows of a situation */
    ptrdiff_t n_kept = 0;           /* rows of Pi and DX filled */
    const FSX_VD zero = {0};
    const FSX_VD one = zero + 1.0;

    /* The draws, one column's draws contiguous; lanes past R read 0 (finite;
     * their weight is set to 0 below). */
    const double *dr = pb->draws + p * pb->draws_sp;
    for (ptrdiff_t j = 0; j < q; j++) {
        double *xj = xi + j * Rp;
        const double *src = dr + j * pb->draws_sj;
        if (pb->draws_sr == 1)
            memcpy(xj, src, (size_t)R * sizeof(double));
        else
            for (ptrdiff_t r = 0; r < R; r++) xj[r] = src[r * pb->draws_sr];
        for (ptrdiff_t r = R; r < Rp; r++) xj[r] = 0.0;
    }
    if (pb->chol) {
        /* beta_a = m_a + sum_{b <= a} L_ab xi_b, L row by row after the means */
        for (ptrdiff_t a = 0; a < q; a++) {
            const double *La = spread + a * (a + 1) / 2;
            const double ma = par[rcol[a]];
            for (ptrdiff_t o = 0; o < Rp; o += W) {
                FSX_VD acc = zero + ma;
                for (ptrdiff_t b = 0; b <= a; b++) acc += La[b] * FSX_LOAD(xi + b * Rp + o);
                FSX_STORE(beta + a * Rp + o, acc);
            }
        }
    } else {
        for (ptrdiff_t j = 0; j < q; j++) {
            const double mj = par[rcol[j]], sj = spread[j];
            const int lognormal = kinds[rcol[j]] == FSX_LOGNORMAL;
            for (ptrdiff_t o = 0; o < Rp; o += W) {
                FSX_VD b = mj + sj * FSX_LOAD(xi + j * Rp + o);
                if (lognormal) b = FSX_EXP(b);
                FSX_STORE(beta + j * Rp + o, b);
            }
        }
    }
    for (ptrdiff_t r = 0; r < Rp; r++) {
        Ls[r] = 0.0;
        prod[r] = 1.0;
        Ex[r] = 0.0;
    }

    const FSX_VL vl0 = {0};
    const FSX_VL exp_mask = vl0 + 0x7ff0000000000000LL;
    const FSX_VL one_bits = vl0 + 0x3ff0000000000000LL;
    const FSX_VL magic_bits = vl0 + 0x4330000000000000LL; /* 2^52 */
    const FSX_VD magic = zero + 0x1p52;
    for (ptrdiff_t s = pb->panel_offsets[p]; s < pb->panel_offsets[p + 1]; s++) {
        const ptrdiff_t row0 = pb->offsets[s], n = pb->offsets[s + 1] - row0;
        const ptrdiff_t c = pb->chosen[s];
        if (n == 1) continue; /* pi_c = 1 at every draw: nothing to add */
        const double *xs = pb->X + row0 * k, *xc = xs + c * k;
        const ptrdiff_t m = n - 1; /* the rows other than the chosen one */
        /* with the gradient, this situation's d_i and pi_i go straight into Pi */
        double *const dv = pb->want_grad ? Pi + n_kept * Rp : dv_situation;
        double *const dx = pb->want_grad ? DX + n_kept * k : dx_situation;
        for (ptrdiff_t i = 0, ii = 0; i < n; i++) {
            if (i == c) continue;
            double f = 0.0;
            for (ptrdiff_t j = 0, jr = 0; j < k; j++) {
                const double t = xs[i * k + j] - xc[j];
                dx[ii * k + j] = t;
                if (kinds[j] == FSX_FIXED)
                    f += t * par[j];
                else
                    dxr[ii * q + jr++] = t;
            }
            cfix[ii++] = f;
        }
        /* d_i = (x_i - x_c) . beta at every draw, in long loops over the
         * draws; and their largest value anywhere */
        FSX_VD top_d = zero - INFINITY;
        for (ptrdiff_t ii = 0; ii < m; ii++) {
            const double *di = dxr + ii * q;
            const FSX_VD f = zero + cfix[ii];
            double *d = dv + ii * Rp;
            for (ptrdiff_t o = 0; o < Rp; o += W) {
                FSX_VD acc = f;
                for (ptrdiff_t j = 0; j < q; j++) acc += di[j] * FSX_LOAD(beta + j * Rp + o);
                FSX_STORE(d + o, acc);
                top_d = FSX_SEL(acc > top_d, acc, top_d);
            }
        }
        long long any = 0;
        for (int l = 0; l < W; l++) any |= top_d[l] > FSX_SHIFT_AT;
        for (ptrdiff_t o = 0; o < Rp; o += W) {
            FSX_VD sum, L = FSX_LOAD(Ls + o);
            if (any) {
                /* lanes with some d_i > FSX_SHIFT_AT are shifted by their
                 * largest d_i; the others by 0, which gives the same bits as
                 * the branch below (exp(-0) = 1, d - 0 = d) */
                FSX_VD mx = zero - INFINITY;
                for (ptrdiff_t ii = 0; ii < m; ii++) {
                    FSX_VD d = FSX_LOAD(dv + ii * Rp + o);
                    mx = FSX_SEL(d > mx, d, mx);
                }
                FSX_VD M = FSX_SEL(mx > FSX_SHIFT_AT, mx, zero);
                sum = FSX_EXP(zero - M);
                for (ptrdiff_t ii = 0; ii < m; ii++) {
                    FSX_VD e = FSX_EXP(FSX_LOAD(dv + ii * Rp + o) - M);
                    FSX_STORE(dv + ii * Rp + o, e);
                    sum += e;
                }
                L -= M;
            } else {
                sum = one;
                for (ptrdiff_t ii = 0; ii < m; ii++) {
                    FSX_VD e = FSX_EXP(FSX_LOAD(dv + ii * Rp + o));
                    FSX_STORE(dv + ii * Rp + o, e);
                    sum += e;
                }
            }
            /* sum - sum is 0, or NaN when sum is NaN (which the exponent move
             * below would turn into a number) */
            FSX_STORE(Ls + o, L + (sum - sum));
            FSX_VD pr = FSX_LOAD(prod + o) * sum;
            FSX_VL bits = (FSX_VL)pr;
            FSX_VD ebits = (FSX_VD)(((bits & exp_mask) >> 52) | magic_bits) - magic;
            FSX_STORE(Ex + o, FSX_LOAD(Ex + o) + (ebits - 1023.0));
            FSX_STORE(prod + o, (FSX_VD)((bits & ~exp_mask) | one_bits));
            if (pb->want_grad) FSX_STORE(inv + o, one / sum);
        }
        if (pb->want_grad) {
            /* pi_i = exp(d_i - M) / sum, kept for the gradient */
            for (ptrdiff_t ii = 0; ii < m; ii++)
                for (ptrdiff_t o = 0; o < Rp; o += W)
                    FSX_STORE(dv + ii * Rp + o, FSX_LOAD(dv + ii * Rp + o) * FSX_LOAD(inv + o));
            n_kept += m;
        }
    }

    /* P_pr = exp(L) 2^-E / prod, prod in [1, 2).  The weights are
     * w_r = P_pr exp(-A) with A = max_r (L_r - E_r ln2), log P_pr to within
     * ln2: they lie in (0, 1], the largest above 1/2.  When A is reached by a
     * lane without a shift (L = 0, as every lane is unless some utility
     * differences pass FSX_SHIFT_AT), A = -E_A ln2 and every unshifted lane's
     * weight is the power of two 2^(E_A - E_r) over its prod: one division,
     * no exp or log (weights below 2^-1022 of the largest are 0).  Other
     * lanes take exp.  Each lane's case depends on its own values and on
     * the panel's A only, so every vector width gives the same bits. */
    const double ln2 = 0x1.62e42fefa39efp-1;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    FSX_VL lane;
    for (int l = 0; l < W; l++) lane[l] = l;
    FSX_VD amax = zero - INFINITY, emin = zero + INFINITY;
    FSX_VL shifted = vl0; /* lanes with L != 0 (or NaN) */
    for (ptrdiff_t o = 0; o < Rp; o += W) {
        const FSX_VD L = FSX_LOAD(Ls + o), E = FSX_LOAD(Ex + o);
        const FSX_VL valid = lane + o < R;
        const FSX_VD a = FSX_SEL(valid, L - E * ln2, zero - INFINITY);
        amax = FSX_SEL(a > amax, a, amax);
        emin = FSX_SEL(valid & (L == zero) & (E < emin), E, emin);
        shifted |= valid & ~(FSX_VL)(L == zero);
    }
    double A = -INFINITY, Ea = INFINITY;
    long long any_shifted = 0;
    for (int l = 0; l < W; l++) {
        A = amax[l] > A ? amax[l] : A;
        Ea = emin[l] < Ea ? emin[l] : Ea;
        any_shifted |= shifted[l];
    }
    if (!(A > -INFINITY)) {
        /* every draw has probability 0 (or NaN) */
        *ll = -INFINITY;
        if (pb->want_grad)
            for (ptrdiff_t a = 0; a < pb->n_params; a++) score[a] = NAN;
        if (post)
            for (ptrdiff_t j = 0; j < k; j++) post[j] = NAN;
        if (hess)
            for (ptrdiff_t a = 0; a < pb->n_params * pb->n_params; a++) hess[a] = NAN;
        return;
    }
    const int plain_ref = Ea < INFINITY && -(Ea * ln2) == A;
    const FSX_VL plain_ok = vl0 + (plain_ref ? -1LL : 0LL);
    const FSX_VD shifter = zero + 0x1.8p52;
    const FSX_VL shifter_bits = vl0 + 0x4338000000000000LL;
    for (ptrdiff_t o = 0; o < Rp; o += W) {
        const FSX_VD L = FSX_LOAD(Ls + o), E = FSX_LOAD(Ex + o), pr = FSX_LOAD(prod + o);
        const FSX_VL valid = lane + o < R;
        const FSX_VL plain = valid & (L == zero) & plain_ok;
        /* 2^(E_A - E) by its exponent bits (E_A - E is a whole number <= 0,
         * read off as an integer by the 1.5 * 2^52 shifter) */
        const FSX_VL n = (FSX_VL)((Ea - FSX_SEL(plain, E, zero + Ea)) + shifter) - shifter_bits;
        const FSX_VD scale = (FSX_VD)(((n + 1023) << 52) & (FSX_VL)(n >= -1022));
        FSX_VD w = FSX_SEL(plain, scale / pr, zero);
        /* the exp only where some lane of this vector needs it (a lane's
         * value is the same either way) */
        long long general = 0;
        if (any_shifted || !plain_ref)
            for (int l = 0; l < W; l++) general |= valid[l] & ~plain[l];
        if (general) {
            const FSX_VD x = plain_ref
                ? L - ((E - Ea) * ln2_hi + (E - Ea) * ln2_lo)
                : (L - E * ln2) - A;
            w = FSX_SEL(valid & ~plain, FSX_EXP(x) / pr, w);
        }
        FSX_STORE(prod + o, w);
    }
    FSX_VD acc[NACC];
    for (int a = 0; a < NACC; a++) acc[a] = zero;
    for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
        for (int a = 0; a < NACC; a++) acc[a] += FSX_LOAD(prod + o + a * W);
    const double total = fsx_tree8(acc); /* > 1/2: the largest weight's */
    const double base = plain_ref ? -(Ea * ln2_hi) - Ea * ln2_lo : A;
    *ll = base + (fs_log1p(total - 1.0) - pb->log_R);
    const double inv_total = 1.0 / total;
    for (ptrdiff_t o = 0; o < Rp; o += W) FSX_STORE(prod + o, FSX_LOAD(prod + o) * inv_total);
    const double *h = prod;

    if (hess) {
        /* The panel's Hessian of log L = log mean_r P_r, h_r the posterior
         * weights, g_r = grad log P_r:
         *   sum_r h_r (grad^2 log P_r + g_r g_r') - gbar gbar',
         *   grad^2 log P_r = -sum_i pi_i u_i u_i' + sum_s A_s A_s'
         *                    + sum_j G_j grad^2 beta_j,
         * u_i = J' (x_i - x_c) with J = d beta / d params at the draw,
         * A_s = sum_{i in s} pi_i u_i, g_r = -sum_s A_s, G = -sum_i pi_i (x_i - x_c).
         * Entry a of u_i is (x_i - x_c)[col a] times the draw's weight w_a
         * (1; beta for a lognormal location; xi or beta xi for a spread; xi_b
         * for a Cholesky entry), so the rows' term needs only the sums
         * sum_r h pi_i w w' over pairs of distinct weights.  gbar gbar' is
         * subtracted after the gradient. */
        double *ones = Hw, *bx = Hw + Rp;
        for (ptrdiff_t r = 0; r < Rp; r++) ones[r] = 1.0;
        for (ptrdiff_t b = 0; b < q; b++)
            if (kinds[rcol[b]] == FSX_LOGNORMAL)
                for (ptrdiff_t o = 0; o < Rp; o += W)
                    FSX_STORE(bx + b * Rp + o,
                              FSX_LOAD(beta + b * Rp + o) * FSX_LOAD(xi + b * Rp + o));
        /* the weights: wl[0..nw) distinct arrays, param a uses wl[wid[a]] on column col[a] */
        const double *wl[1 + 3 * q];
        ptrdiff_t nw = 1, wid[n], col[n], id_xi[q + 1], id_beta[q + 1], id_bx[q + 1];
        wl[0] = ones;
        for (ptrdiff_t b = 0; b < q; b++) {
            id_xi[b] = nw;
            wl[nw++] = xi + b * Rp;
            if (kinds[rcol[b]] == FSX_LOGNORMAL) {
                id_beta[b] = nw;
                wl[nw++] = beta + b * Rp;
                id_bx[b] = nw;
                wl[nw++] = bx + b * Rp;
            }
        }
        for (ptrdiff_t j = 0, b = 0; j < k; j++) {
            col[j] = j;
            wid[j] = 0;
            if (kinds[j] != FSX_FIXED) {
                if (kinds[j] == FSX_LOGNORMAL) wid[j] = id_beta[b];
                b++;
            }
        }
        if (pb->chol) {
            for (ptrdiff_t a = 0; a < q; a++)
                for (ptrdiff_t b = 0; b <= a; b++) {
                    col[k + a * (a + 1) / 2 + b] = rcol[a];
                    wid[k + a * (a + 1) / 2 + b] = id_xi[b];
                }
        } else {
            for (ptrdiff_t b = 0; b < q; b++) {
                col[k + b] = rcol[b];
                wid[k + b] = kinds[rcol[b]] == FSX_LOGNORMAL ? id_bx[b] : id_xi[b];
            }
        }
        for (ptrdiff_t a = 0; a < n * n; a++) hess[a] = 0.0;
        for (ptrdiff_t a = 0; a < n * Rp; a++) Hg[a] = 0.0;
        ptrdiff_t n_situations = 0, row = 0;
        for (ptrdiff_t s = pb->panel_offsets[p]; s < pb->panel_offsets[p + 1]; s++)
            n_situations += pb->offsets[s + 1] - pb->offsets[s] > 1;
        /* A panel of one situation has g = -A: its g g' term repeats the
         * situation's, which is then added twice. */
        const int twice = n_situations == 1;
        for (ptrdiff_t s = pb->panel_offsets[p]; s < pb->panel_offsets[p + 1]; s++) {
            const ptrdiff_t m = pb->offsets[s + 1] - pb->offsets[s] - 1;
            if (m == 0) continue;
            /* sum_r h A A' two ways, chosen by the shapes alone: a Gram matrix
             * of the A_a over the draws (n (n + 1) / 2 sums), or, for few
             * rows and weights, sums of h pi_i pi_i' w w' over pairs of rows
             * and of weights, A_a = w_a sum_i pi_i (x_i - x_c)[col a]. */
            const int by_pairs = m <= FSX_PAIR_ROWS &&
                                 m * (m + 1) / 2 * (nw * (nw + 1) / 2) < n * (n + 1) / 2;
            if (!by_pairs || !twice) {
                /* c_j = sum_{i in s} pi_i (x_i - x_c)_j; A_a = w_a c_{col a} */
                for (ptrdiff_t j = 0; j < k; j++)
                    for (ptrdiff_t o = 0; o < Rp; o += W) {
                        FSX_VD t = DX[row * k + j] * FSX_LOAD(Pi + row * Rp + o);
                        for (ptrdiff_t ii = 1; ii < m; ii++)
                            t += DX[(row + ii) * k + j] * FSX_LOAD(Pi + (row + ii) * Rp + o);
                        FSX_STORE(Hc + j * Rp + o, t);
                    }
                for (ptrdiff_t a = 0; a < n; a++)
                    for (ptrdiff_t o = 0; o < Rp; o += W) {
                        const FSX_VD A =
                            FSX_LOAD(wl[wid[a]] + o) * FSX_LOAD(Hc + col[a] * Rp + o);
                        FSX_STORE(Ha + a * Rp + o, A);
                        FSX_STORE(Hha + a * Rp + o, FSX_LOAD(h + o) * A);
                        FSX_STORE(Hg + a * Rp + o, FSX_LOAD(Hg + a * Rp + o) + A);
                    }
            }
            if (!by_pairs) {
                FSX_GRAM(Hha, Ha, n, Rp, hess);
                if (twice) FSX_GRAM(Hha, Ha, n, Rp, hess);
            } else {
                /* T[i i'][u v] = sum_r h pi_i pi_i' w_u w_v, i <= i' */
                for (ptrdiff_t i = 0, t = 0; i < m; i++)
                    for (ptrdiff_t i2 = i; i2 < m; i2++, t++) {
                        for (ptrdiff_t o = 0; o < Rp; o += W)
                            FSX_STORE(Hhp + o, (FSX_LOAD(h + o) * FSX_LOAD(Pi + (row + i) * Rp + o)) *
                                                   FSX_LOAD(Pi + (row + i2) * Rp + o));
                        double *Tt = T + t * nw * nw;
                        for (ptrdiff_t u = 0; u < nw; u++)
                            for (ptrdiff_t v = u; v < nw; v++)
                                Tt[u * nw + v] = Tt[v * nw + u] = FSX_DOT(Hhp, wl[u], wl[v], Rp);
                    }
                for (ptrdiff_t a = 0; a < n; a++)
                    for (ptrdiff_t b = a; b < n; b++) {
                        const ptrdiff_t wa = wid[a], wb = wid[b];
                        double v = 0.0;
                        for (ptrdiff_t i = 0, t = 0; i < m; i++) {
                            const double *di = DX + (row + i) * k;
                            v += (di[col[a]] * di[col[b]]) * T[t * nw * nw + wa * nw + wb];
                            t++;
                            for (ptrdiff_t i2 = i + 1; i2 < m; i2++, t++) {
                                const double *d2 = DX + (row + i2) * k;
                                v += (di[col[a]] * d2[col[b]] + d2[col[a]] * di[col[b]]) *
                                     T[t * nw * nw + wa * nw + wb];
                            }
                        }
                        hess[a * n + b] += v;
                        if (twice) hess[a * n + b] += v;
                    }
            }
            /* the rows: - sum_i (x_i - x_c)[col a] (x_i - x_c)[col b] sum_r h pi_i w_a w_b */
            for (ptrdiff_t ii = 0; ii < m; ii++, row++) {
                const double *d = DX + row * k;
                for (ptrdiff_t o = 0; o < Rp; o += W)
                    FSX_STORE(Hhp + o, FSX_LOAD(h + o) * FSX_LOAD(Pi + row * Rp + o));
                for (ptrdiff_t u = 0; u < nw; u++)
                    for (ptrdiff_t v = u; v < nw; v++)
                        S[u * nw + v] = S[v * nw + u] = FSX_DOT(Hhp, wl[u], wl[v], Rp);
                for (ptrdiff_t a = 0; a < n; a++)
                    for (ptrdiff_t b = a; b < n; b++)
                        hess[a * n + b] -= (d[col[a]] * d[col[b]]) * S[wid[a] * nw + wid[b]];
                /* sum_j G_j grad^2 beta_j: a lognormal column's beta = exp(m + s xi) */
                if (!pb->chol)
                    for (ptrdiff_t b = 0; b < q; b++) {
                        if (kinds[rcol[b]] != FSX_LOGNORMAL) continue;
                        const ptrdiff_t jm = rcol[b], js = k + b;
                        const double dj = d[jm];
                        hess[jm * n + jm] -= dj * S[id_beta[b]];
                        hess[jm * n + js] -= dj * S[id_bx[b]];
                        hess[js * n + js] -= dj * S[id_xi[b] * nw + id_bx[b]];
                    }
            }
        }
        if (!twice && n_situations > 1) {
            /* the panel's sum_r h g g' */
            for (ptrdiff_t a = 0; a < n; a++)
                for (ptrdiff_t o = 0; o < Rp; o += W)
                    FSX_STORE(Hha + a * Rp + o, FSX_LOAD(h + o) * FSX_LOAD(Hg + a * Rp + o));
            FSX_GRAM(Hha, Hg, n, Rp, hess);
        }
    }
    if (pb->want_grad) {
        /* d ll / d params = sum_r h_r sum_s sum_{i != c} pi_i (x_c - x_i) d beta[r] / d params,
         * taken row by row: each kept row's pi_i becomes h pi_i in place, and
         * its sums over the draws (of h pi_i, and of h pi_i times xi or beta)
         * multiply that row's x_i - x_c: the fixed columns cost nothing per
         * draw. */
        for (ptrdiff_t a = 0; a < pb->n_params; a++) score[a] = 0.0;
        for (ptrdiff_t i = 0; i < n_kept; i++) {
            double *hp = Pi + i * Rp;
            const double *d = DX + i * k;
            FSX_VD acc[NACC];
            for (int a = 0; a < NACC; a++) acc[a] = zero;
            for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
                for (int a = 0; a < NACC; a++) {
                    const ptrdiff_t oa = o + a * W;
                    const FSX_VD v = FSX_LOAD(h + oa) * FSX_LOAD(hp + oa);
                    FSX_STORE(hp + oa, v);
                    acc[a] += v;
                }
            const double sum_h = fsx_tree8(acc);
            for (ptrdiff_t j = 0; j < k; j++)
                if (kinds[j] != FSX_LOGNORMAL) score[j] -= d[j] * sum_h;
            for (ptrdiff_t b = 0; b < q; b++) {
                /* sum_r h pi_i xi_b, and for a lognormal column the chain
                 * factor beta: sum_r h pi_i beta_b (its location) and
                 * sum_r h pi_i beta_b xi_b (its spread) */
                const int lognormal = kinds[rcol[b]] == FSX_LOGNORMAL;
                const double *xb = xi + b * Rp, *bb = beta + b * Rp;
                FSX_VD ax[NACC], ab[NACC];
                for (int a = 0; a < NACC; a++) ax[a] = ab[a] = zero;
                for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
                    for (int a = 0; a < NACC; a++) {
                        const ptrdiff_t oa = o + a * W;
                        FSX_VD v = FSX_LOAD(hp + oa);
                        if (lognormal) {
                            v = v * FSX_LOAD(bb + oa);
                            ab[a] += v;
                        }
                        ax[a] += v * FSX_LOAD(xb + oa);
                    }
                const double sum_x = fsx_tree8(ax);
                if (pb->chol) {
                    /* d beta_a / d L_ab = xi_b, a >= b */
                    for (ptrdiff_t a = b; a < q; a++)
                        score[k + a * (a + 1) / 2 + b] -= d[rcol[a]] * sum_x;
                } else {
                    score[k + b] -= d[rcol[b]] * sum_x;
                    if (lognormal) score[rcol[b]] -= d[rcol[b]] * fsx_tree8(ab);
                }
            }
        }
    }
    if (hess) {
        for (ptrdiff_t a = 0; a < n; a++)
            for (ptrdiff_t b = a; b < n; b++) {
                hess[a * n + b] -= score[a] * score[b];
                hess[b * n + a] = hess[a * n + b];
            }
    }
    if (post) {
        ptrdiff_t jr = 0;
        for (ptrdiff_t j = 0; j < k; j++) {
            if (kinds[j] == FSX_FIXED) {
                post[j] = par[j];
                continue;
            }
            FSX_VD a0[NACC];
            for (int a = 0; a < NACC; a++) a0[a] = zero;
            for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
                for (int a = 0; a < NACC; a++)
                    a0[a] += FSX_LOAD(h + o + a * W) * FSX_LOAD(beta + jr * Rp + o + a * W);
            post[j] = fsx_tree8(a0);
            jr++;
        }
    }
}
