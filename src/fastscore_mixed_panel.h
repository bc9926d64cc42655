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

FSX_ATTRS static void FSX_PANEL(const fsx_problem *pb, ptrdiff_t p, double *scr, double *ll,
                                double *score, double *post) {
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
    double *G = inv + Rp;           /* (k, Rp): d log P_pr / d beta_j */
    double *dv = G + k * Rp;        /* (max_rows, Rp): d_i of one situation, then exp(d_i - M) */
    const ptrdiff_t nr = (pb->max_rows * k + FSX_LANES - 1) / FSX_LANES * FSX_LANES;
    double *dx = dv + pb->max_rows * Rp; /* (max_rows, k): x_i - x_c of one situation */
    double *dxr = dx + nr;          /* (max_rows, q): the same, random columns only */
    double *cfix = dxr + nr;        /* (max_rows): the fixed columns' part of d_i */
    const FSX_VD zero = {0};
    const FSX_VD one = zero + 1.0;

    /* The draws, transposed so that a column's draws are contiguous; lanes
     * past R read 0 (finite; their weight is set to 0 below). */
    const double *dr = pb->draws + p * R * q;
    for (ptrdiff_t j = 0; j < q; j++) {
        double *xj = xi + j * Rp;
        for (ptrdiff_t r = 0; r < R; r++) xj[r] = dr[r * q + j];
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
    if (pb->want_grad)
        for (ptrdiff_t r = 0; r < k * Rp; r++) G[r] = 0.0;

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
            /* the score of beta_j: sum_{i != c} pi_i (x_c - x_i)_j */
            for (ptrdiff_t j = 0; j < k; j++) {
                double *Gj = G + j * Rp;
                for (ptrdiff_t o = 0; o < Rp; o += W) {
                    FSX_VD t = dx[j] * FSX_LOAD(dv + o);
                    for (ptrdiff_t ii = 1; ii < m; ii++) t += dx[ii * k + j] * FSX_LOAD(dv + ii * Rp + o);
                    FSX_STORE(Gj + o, FSX_LOAD(Gj + o) - t * FSX_LOAD(inv + o));
                }
            }
        }
    }

    /* log P_pr = L - (E ln2 + log(prod)), prod in [1, 2); then the
     * log-mean-exp over the draws and the posterior weights h_pr. */
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double top = -INFINITY;
    for (ptrdiff_t o = 0; o < Rp; o += W) {
        FSX_VD E = FSX_LOAD(Ex + o);
        FSX_VD lp = FSX_LOAD(Ls + o) -
                    (E * ln2_hi + (E * ln2_lo + FSX_LOG1P(FSX_LOAD(prod + o) - one)));
        FSX_STORE(Ls + o, lp);
    }
    for (ptrdiff_t r = 0; r < R; r++) top = Ls[r] > top ? Ls[r] : top;
    if (!(top > -INFINITY)) {
        /* every draw has probability 0 (or NaN) */
        *ll = top == top ? -INFINITY : top;
        if (pb->want_grad)
            for (ptrdiff_t a = 0; a < pb->n_params; a++) score[a] = top == top ? NAN : top;
        if (post)
            for (ptrdiff_t j = 0; j < k; j++) post[j] = top == top ? NAN : top;
        return;
    }
    for (ptrdiff_t o = 0; o < Rp; o += W) FSX_STORE(prod + o, FSX_EXP(FSX_LOAD(Ls + o) - top));
    for (ptrdiff_t r = R; r < Rp; r++) prod[r] = 0.0; /* the padding lanes weigh nothing */
    FSX_VD acc[NACC];
    for (int a = 0; a < NACC; a++) acc[a] = zero;
    for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
        for (int a = 0; a < NACC; a++) acc[a] += FSX_LOAD(prod + o + a * W);
    const double total = fsx_tree8(acc); /* >= 1: the top draw's weight is 1 */
    *ll = top + (fs_log1p(total - 1.0) - pb->log_R);
    const double inv_total = 1.0 / total;
    for (ptrdiff_t o = 0; o < Rp; o += W) FSX_STORE(prod + o, FSX_LOAD(prod + o) * inv_total);
    const double *h = prod;

    if (pb->want_grad) {
        /* d ll / d params = sum_r h_r sum_j G_j[r] d beta_j[r] / d params */
        ptrdiff_t jr = 0;
        for (ptrdiff_t j = 0; j < k; j++) {
            const double *Gj = G + j * Rp;
            const int kind = kinds[j];
            FSX_VD am[NACC], as[NACC];
            for (int a = 0; a < NACC; a++) am[a] = as[a] = zero;
            if (kind == FSX_FIXED) {
                for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
                    for (int a = 0; a < NACC; a++)
                        am[a] += FSX_LOAD(h + o + a * W) * FSX_LOAD(Gj + o + a * W);
                score[j] = fsx_tree8(am);
                continue;
            }
            const double *bj = beta + jr * Rp, *xj = xi + jr * Rp;
            for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
                for (int a = 0; a < NACC; a++) {
                    const ptrdiff_t oa = o + a * W;
                    FSX_VD hg = FSX_LOAD(h + oa) * FSX_LOAD(Gj + oa);
                    if (kind == FSX_LOGNORMAL) hg = hg * FSX_LOAD(bj + oa);
                    am[a] += hg;
                    if (!pb->chol) as[a] += hg * FSX_LOAD(xj + oa);
                }
            score[j] = fsx_tree8(am);
            if (pb->chol) {
                /* d beta_a / d L_ab = xi_b, b <= a */
                double *Sa = score + k + jr * (jr + 1) / 2;
                for (ptrdiff_t b = 0; b <= jr; b++) {
                    const double *xb = xi + b * Rp;
                    FSX_VD ab[NACC];
                    for (int a = 0; a < NACC; a++) ab[a] = zero;
                    for (ptrdiff_t o = 0; o < Rp; o += FSX_LANES)
                        for (int a = 0; a < NACC; a++) {
                            const ptrdiff_t oa = o + a * W;
                            ab[a] += (FSX_LOAD(h + oa) * FSX_LOAD(Gj + oa)) * FSX_LOAD(xb + oa);
                        }
                    Sa[b] = fsx_tree8(ab);
                }
            } else {
                score[k + jr] = fsx_tree8(as);
            }
            jr++;
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
