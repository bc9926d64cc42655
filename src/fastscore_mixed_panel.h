/*
 * The panel function of fastscore_mixed.h (see there), included once per
 * instruction set with FSX_PANEL (its name) and FSX_ATTRS (its target)
 * defined.  No include guard on purpose.
 */

FSX_ATTRS static void FSX_PANEL(const fsx_problem *pb, ptrdiff_t p, double *scr, double *ll,
                                double *score, double *post) {
    const ptrdiff_t k = pb->k, q = pb->q, R = pb->R, Rp = pb->Rp, nv = Rp / FSX_LANES;
    const double *par = pb->params;
    const double *spread = par + k;
    const ptrdiff_t *rcol = pb->rcol;
    const int *kinds = pb->kinds;
    double *xi = scr;               /* (q, Rp): the draws, draws contiguous */
    double *beta = xi + q * Rp;     /* (q, Rp): the random coefficients */
    double *Ls = beta + q * Rp;     /* (Rp): sum of the shifts, then log P_pr */
    double *prod = Ls + Rp;         /* (Rp): product of the normalisers, then h_pr */
    double *Ex = prod + Rp;         /* (Rp): the exponents moved out of prod */
    double *G = Ex + Rp;            /* (k, Rp): d log P_pr / d beta_j */
    double *dx = G + k * Rp;        /* (max_rows, k): x_i - x_c of one situation */
    ptrdiff_t nr = (pb->max_rows * k + FSX_LANES - 1) / FSX_LANES * FSX_LANES;
    double *dv = dx + nr;           /* (max_rows, lanes): d_i, then exp(d_i - M) */
    double *cfix = dv + pb->max_rows * FSX_LANES; /* (max_rows): the fixed columns' part */
    const fs_vd zero = {0};
    const fs_vd one = zero + 1.0;

    /* The draws, transposed so that a column's draws are contiguous; lanes
     * past R read draw 0 (finite; their weight is set to 0 below). */
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
            for (ptrdiff_t v = 0; v < nv; v++) {
                fs_vd acc = zero + ma;
                for (ptrdiff_t b = 0; b <= a; b++) acc += La[b] * fsx_load(xi + b * Rp + v * FSX_LANES);
                fsx_store(beta + a * Rp + v * FSX_LANES, acc);
            }
        }
    } else {
        for (ptrdiff_t j = 0; j < q; j++) {
            const double mj = par[rcol[j]], sj = spread[j];
            const int lognormal = kinds[rcol[j]] == FSX_LOGNORMAL;
            for (ptrdiff_t v = 0; v < nv; v++) {
                fs_vd b = mj + sj * fsx_load(xi + j * Rp + v * FSX_LANES);
                if (lognormal) b = fsx_vexp(b);
                fsx_store(beta + j * Rp + v * FSX_LANES, b);
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

    const fs_vl exp_mask = (fs_vl){0} + 0x7ff0000000000000LL;
    const fs_vl one_bits = (fs_vl){0} + 0x3ff0000000000000LL;
    const fs_vl magic_bits = (fs_vl){0} + 0x4330000000000000LL; /* 2^52 */
    const fs_vd magic = zero + 0x1p52;
    for (ptrdiff_t s = pb->panel_offsets[p]; s < pb->panel_offsets[p + 1]; s++) {
        const ptrdiff_t row0 = pb->offsets[s], n = pb->offsets[s + 1] - row0;
        const ptrdiff_t c = pb->chosen[s];
        if (n == 1) continue; /* pi_c = 1 at every draw: nothing to add */
        const double *xs = pb->X + row0 * k, *xc = xs + c * k;
        const ptrdiff_t m = n - 1; /* the rows other than the chosen one */
        for (ptrdiff_t i = 0, ii = 0; i < n; i++) {
            if (i == c) continue;
            double f = 0.0;
            for (ptrdiff_t j = 0; j < k; j++) {
                dx[ii * k + j] = xs[i * k + j] - xc[j];
                if (kinds[j] == FSX_FIXED) f += dx[ii * k + j] * par[j];
            }
            cfix[ii++] = f;
        }
        for (ptrdiff_t v = 0; v < nv; v++) {
            const ptrdiff_t o = v * FSX_LANES;
            fs_vd mx = zero - INFINITY;
            for (ptrdiff_t ii = 0; ii < m; ii++) {
                fs_vd d = zero + cfix[ii];
                for (ptrdiff_t j = 0; j < q; j++) d += dx[ii * k + rcol[j]] * fsx_load(beta + j * Rp + o);
                fsx_store(dv + ii * FSX_LANES, d);
                mx = fsx_sel(d > mx, d, mx);
            }
            fs_vl shifted = mx > FSX_SHIFT_AT;
            long long any = 0;
            for (int l = 0; l < FSX_LANES; l++) any |= shifted[l];
            fs_vd sum, L = fsx_load(Ls + o);
            if (any) {
                fs_vd M = fsx_sel(shifted, mx, zero);
                sum = fsx_vexp(zero - M);
                for (ptrdiff_t ii = 0; ii < m; ii++) {
                    fs_vd e = fsx_vexp(fsx_load(dv + ii * FSX_LANES) - M);
                    fsx_store(dv + ii * FSX_LANES, e);
                    sum += e;
                }
                L -= M;
            } else {
                sum = one;
                for (ptrdiff_t ii = 0; ii < m; ii++) {
                    fs_vd e = fsx_vexp(fsx_load(dv + ii * FSX_LANES));
                    fsx_store(dv + ii * FSX_LANES, e);
                    sum += e;
                }
            }
            /* sum - sum is 0, or NaN when sum is NaN (which the exponent move
             * below would turn into a number) */
            fsx_store(Ls + o, L + (sum - sum));
            fs_vd pr = fsx_load(prod + o) * sum;
            fs_vl bits = (fs_vl)pr;
            fs_vd ebits = (fs_vd)(((bits & exp_mask) >> 52) | magic_bits) - magic;
            fsx_store(Ex + o, fsx_load(Ex + o) + (ebits - 1023.0));
            fsx_store(prod + o, (fs_vd)((bits & ~exp_mask) | one_bits));
            if (pb->want_grad) {
                /* score of beta_j: sum_{i != c} pi_i (x_c - x_i)_j */
                fs_vd inv = one / sum;
                for (ptrdiff_t j = 0; j < k; j++) {
                    fs_vd t = dx[j] * fsx_load(dv);
                    for (ptrdiff_t ii = 1; ii < m; ii++) t += dx[ii * k + j] * fsx_load(dv + ii * FSX_LANES);
                    fsx_store(G + j * Rp + o, fsx_load(G + j * Rp + o) - t * inv);
                }
            }
        }
    }

    /* log P_pr = L - (E ln2 + log(prod)), prod in [1, 2); then the
     * log-mean-exp over the draws and the posterior weights h_pr. */
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double top = -INFINITY;
    for (ptrdiff_t v = 0; v < nv; v++) {
        const ptrdiff_t o = v * FSX_LANES;
        fs_vd E = fsx_load(Ex + o);
        fs_vd lp = fsx_load(Ls + o) -
                   (E * ln2_hi + (E * ln2_lo + fsx_vlog1p(fsx_load(prod + o) - one)));
        fsx_store(Ls + o, lp);
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
    fs_vd acc = zero;
    for (ptrdiff_t v = 0; v < nv; v++) {
        const ptrdiff_t o = v * FSX_LANES;
        fs_vd w = fsx_vexp(fsx_load(Ls + o) - top);
        if (o + FSX_LANES > R)
            for (int l = 0; l < FSX_LANES; l++)
                if (o + l >= R) w[l] = 0.0;
        fsx_store(prod + o, w);
        acc += w;
    }
    const double total = fsx_hsum(acc); /* >= 1: the top draw's weight is 1 */
    *ll = top + (fs_log1p(total - 1.0) - pb->log_R);
    const double inv_total = 1.0 / total;
    for (ptrdiff_t v = 0; v < nv; v++) fsx_store(prod + v * FSX_LANES, fsx_load(prod + v * FSX_LANES) * inv_total);
    const double *h = prod;

    if (pb->want_grad) {
        /* d ll / d params = sum_r h_r sum_j G_j[r] d beta_j[r] / d params */
        ptrdiff_t jr = 0;
        for (ptrdiff_t j = 0; j < k; j++) {
            const double *Gj = G + j * Rp;
            const int kind = kinds[j];
            if (kind == FSX_FIXED) {
                fs_vd a0 = zero;
                for (ptrdiff_t v = 0; v < nv; v++)
                    a0 += fsx_load(h + v * FSX_LANES) * fsx_load(Gj + v * FSX_LANES);
                score[j] = fsx_hsum(a0);
                continue;
            }
            const double *bj = beta + jr * Rp, *xj = xi + jr * Rp;
            fs_vd am = zero, as = zero;
            for (ptrdiff_t v = 0; v < nv; v++) {
                const ptrdiff_t o = v * FSX_LANES;
                fs_vd hg = fsx_load(h + o) * fsx_load(Gj + o);
                if (kind == FSX_LOGNORMAL) hg = hg * fsx_load(bj + o);
                am += hg;
                if (!pb->chol) as += hg * fsx_load(xj + o);
            }
            score[j] = fsx_hsum(am);
            if (pb->chol) {
                /* d beta_a / d L_ab = xi_b, b <= a */
                double *Sa = score + k + jr * (jr + 1) / 2;
                for (ptrdiff_t b = 0; b <= jr; b++) {
                    const double *xb = xi + b * Rp;
                    fs_vd ab = zero;
                    for (ptrdiff_t v = 0; v < nv; v++) {
                        const ptrdiff_t o = v * FSX_LANES;
                        ab += (fsx_load(h + o) * fsx_load(Gj + o)) * fsx_load(xb + o);
                    }
                    Sa[b] = fsx_hsum(ab);
                }
            } else {
                score[k + jr] = fsx_hsum(as);
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
            fs_vd a0 = zero;
            for (ptrdiff_t v = 0; v < nv; v++)
                a0 += fsx_load(h + v * FSX_LANES) * fsx_load(beta + jr * Rp + v * FSX_LANES);
            post[j] = fsx_hsum(a0);
            jr++;
        }
    }
}
