"""The optimisers of the choice models and their identification checks."""
from __future__ import annotations

import warnings

import numpy as np

from ._data import ConvergenceWarning, NotIdentifiedError


def information(H, names):
    """-H, checked to be positive definite; otherwise the parameters that are
    not identified are named."""
    info = -H
    d = np.sqrt(np.clip(np.diag(info), 0.0, None))
    flat = np.flatnonzero(d <= 1e-300)
    if flat.size:
        raise NotIdentifiedError(
            f"parameter {names[flat[0]]!r} is not identified: its column does not vary across "
            f"the available alternatives of any observation"
        )
    r = info / np.outer(d, d)
    eig, vec = np.linalg.eigh(r)
    if eig[0] <= 1e-11 * max(eig[-1], 1.0):
        v = vec[:, 0]
        involved = [names[j] for j in np.flatnonzero(np.abs(v) > 0.1 * np.abs(v).max())]
        raise NotIdentifiedError(
            f"the Hessian is singular: {', '.join(map(repr, involved))} "
            f"{'is' if len(involved) == 1 else 'are'} not identified (collinear columns, or "
            f"a combination of them that the data cannot separate)"
        )
    return info


def newton(f_all, f_value, beta, names, maxiter, tol, separating=None, stacklevel=3):
    """Newton's method with step halving on a concave log-likelihood.

    ``f_all(b)`` returns (value, gradient, Hessian), ``f_value(b)`` the value.
    The trial point of a full step is evaluated with its derivatives, so an
    accepted step costs one pass; only a rejected one costs value passes.
    ``separating()``, when given, is called once separation is detected and
    returns what ``separating_columns`` does, for the error's message.
    Returns (beta, value, gradient, Hessian, iterations, converged).
    ``stacklevel`` of the warnings: 3 points at the caller of the function
    that calls this one.
    """
    ll, g, H = f_all(beta)
    information(H, names)
    separation = Separation(H, names, separating)
    beta0 = beta
    for it in range(1, maxiter + 1):
        info = -H
        try:
            step = np.linalg.solve(info, g)
        except np.linalg.LinAlgError:
            information(H, names)
            raise
        scaled = float(g @ step)
        if not np.isfinite(scaled):
            information(H, names)
            raise NotIdentifiedError("the Newton step is not finite")
        if scaled < tol:
            separation.check(H, beta - beta0)
            # Converged: one last full step (the error falls from sqrt(tol)
            # to about tol).  The value no longer tells the better point (it
            # changes by rounding alone), so the step is kept when it shrinks
            # the scaled gradient.
            trial = beta + step
            ll_t, g_t, H_t = f_all(trial)
            if float(g_t @ np.linalg.solve(-H_t, g_t)) <= scaled:
                beta, ll, g, H = trial, ll_t, g_t, H_t
            return beta, ll, g, H, it, True
        trial = beta + step
        ll_t, g_t, H_t = f_all(trial)
        t = 1.0
        while not ll_t >= ll:
            t /= 2
            if t < 1e-10:
                warnings.warn(
                    f"the line search found no increase after {it} iterations (scaled gradient "
                    f"{scaled:.3g}); the estimates may not be the maximum",
                    ConvergenceWarning, stacklevel=stacklevel)
                return beta, ll, g, H, it, False
            trial = beta + t * step
            ll_t = f_value(trial)
            if ll_t >= ll:
                ll_t, g_t, H_t = f_all(trial)
        beta, ll, g, H = trial, ll_t, g_t, H_t
        separation.check(H, beta - beta0)
    warnings.warn(
        f"Newton's method did not converge in {maxiter} iterations (scaled gradient "
        f"{float(g @ np.linalg.solve(-H, g)):.3g}); raise maxiter or give start=",
        ConvergenceWarning, stacklevel=stacklevel)
    return beta, ll, g, H, maxiter, False


class Separation:
    """Watches the curvature against the start's: the curvature vanishing
    along a direction (the data separated, no finite maximum) shows as a
    generalised eigenvalue of -H against -H at the start falling to nothing,
    while in a fit with a maximum it changes by modest factors.

    Once detected, the error names the columns that separate the choices
    alone (``separating()``, when the model gives one); when none does, the
    parameters that moved most along the flat directions."""

    LIMIT = 1e-8

    def __init__(self, H0, names, separating=None):
        self.L0 = np.linalg.cholesky(-H0)
        self.L0inv = np.linalg.inv(self.L0)
        self.scale = np.sqrt(np.diag(-H0))
        self.names = names
        self.separating = separating

    def check(self, H, moved):
        eig, vec = np.linalg.eigh(self.L0inv @ -H @ self.L0inv.T)
        if eig[0] > self.LIMIT:
            return
        alone = self.separating() if self.separating is not None else []
        if alone:
            names = [repr(self.names[j]) for j, *_ in alone]
            clauses = [
                f"the chosen alternative has the {'largest' if sign > 0 else 'smallest'} "
                f"{self.names[j]!r} in every observation (strictly in {strict} of {n_obs})"
                for j, sign, strict, n_obs in alone]
            one = len(alone) == 1
            raise NotIdentifiedError(
                f"the choices are separated by {', '.join(names)}: {'; '.join(clauses)}; the "
                f"estimates diverge and there is no finite maximum (drop "
                f"{'the variable' if one else 'these variables'}, or the observations "
                f"{'it predicts' if one else 'they predict'} perfectly)"
            )
        # No column separates alone: the parameters that moved most along the
        # flat directions, each in units of its starting standard deviation
        # (a combination of them separates the choices).
        flat = vec[:, eig <= self.LIMIT]
        along = self.L0inv.T @ flat @ (flat.T @ self.L0.T @ moved)
        v = np.abs(along * self.scale)
        involved = [self.names[j] for j in np.flatnonzero(v > 0.1 * v.max())]
        raise NotIdentifiedError(
            f"the choices are separated by a combination of {', '.join(map(repr, involved))} "
            f"(no column separates them alone; these moved most along the direction of no "
            f"curvature): the estimates diverge and there is no finite maximum (drop a "
            f"variable, or the observations they predict perfectly)"
        )


def separating_columns(X, chosen, offsets, w=None):
    """The design columns that separate the choices alone: within every
    observation (of positive weight) ``x_nj - x_n,chosen`` is of one sign over
    all its available alternatives, <= 0 (the chosen one has the largest
    value: sign +1) or >= 0 (sign -1), and not zero everywhere.  Returns
    [(column, sign, observations where the chosen value is strictly the
    largest (smallest), observations)].  Only called on the error path: one
    column at a time, no (rows, k) temporary."""
    return separating_from_counts(separating_counts(X, chosen, offsets, w))


def separating_counts(X, chosen, offsets, w=None):
    """For each design column, over the observations of positive weight:
    whether some ``x_nj - x_n,chosen`` is not 0, whether all are <= 0,
    whether all are >= 0, the observations where every other alternative's
    is not 0, and the observations; (k, 5) int64.  The counts of parts of a
    data set combine (``combine_separating_counts``) into the whole's."""
    sizes = np.diff(offsets)
    first = offsets[:-1]
    keep = np.ones(sizes.size, bool) if w is None else w > 0
    rows = np.repeat(keep, sizes)
    out = np.zeros((X.shape[1], 5), dtype=np.int64)
    for j in range(X.shape[1]):
        col = X[:, j]
        d = col - np.repeat(col[first + chosen], sizes)
        used = d[rows]
        out[j, :3] = np.any(used != 0), np.all(used <= 0), np.all(used >= 0)
        if out[j, 1] or out[j, 2]:
            # Strictly: every other alternative of the observation off zero.
            strict = np.add.reduceat((d != 0).astype(np.intp), first) == sizes - 1
            out[j, 3] = strict[keep].sum()
        out[j, 4] = keep.sum()
    return out


def combine_separating_counts(parts):
    """The ``separating_counts`` of a data set from those of its parts."""
    parts = np.stack(parts)
    return np.concatenate([parts[:, :, :1].max(axis=0), parts[:, :, 1:3].min(axis=0),
                           parts[:, :, 3:].sum(axis=0)], axis=1)


def separating_from_counts(counts):
    """``separating_columns``' list from ``separating_counts``."""
    found = []
    for j, (nonzero, le, ge, strict, n_obs) in enumerate(counts):
        if not nonzero:
            continue
        for sign, side in ((1, le), (-1, ge)):
            if side:
                found.append((j, sign, int(strict), int(n_obs)))
                break
    return found


def check_cov(cov, cluster, maxiter):
    """The arguments every fit takes, checked once."""
    if cov not in ("hessian", "robust", "cluster"):
        raise ValueError(f"cov must be 'hessian', 'robust' or 'cluster', got {cov!r}")
    if (cov == "cluster") != (cluster is not None):
        raise ValueError("cov='cluster' needs cluster=<column>, and cluster= needs cov='cluster'")
    if int(maxiter) < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")


def sandwich(bread, scores, groups=None):
    """``bread @ B @ bread`` with B the sum of outer products of the units'
    scores (rows of ``scores``), or with ``groups`` of their sums per group,
    times G / (G - 1)."""
    factor = 1.0
    if groups is not None:
        n = int(groups.max()) + 1
        scores = np.stack([np.bincount(groups, weights=scores[:, j], minlength=n)
                           for j in range(scores.shape[1])], axis=1)
        factor = n / (n - 1)
    cov = factor * (bread @ (scores.T @ scores) @ bread)
    return (cov + cov.T) / 2


def null_loglik(offsets, w):
    """The log-likelihood with every available alternative equally likely."""
    sizes = np.diff(offsets).astype(np.float64)
    return -float(np.log(sizes) @ (np.ones_like(sizes) if w is None else w))


def _shorter(t, value, slope, value_t):
    """The next, shorter step after step t failed: the maximum of the
    quadratic through (0, value) with slope ``slope`` per unit step and
    (t, value_t), within [0.1 t, 0.5 t] (0.5 t where value_t is not a
    number)."""
    curvature = (value_t - value - slope * t) / (t * t)  # < 0: value_t < value
    if not (np.isfinite(curvature) and curvature < 0):
        return 0.5 * t
    return min(max(-slope / (2.0 * curvature), 0.1 * t), 0.5 * t)


def bfgs(f, x, hess_inv, maxiter, tol, first=None, stacklevel=3, newton=None,
         newton_below=3.0):
    """Maximise ``f`` (x -> (value, gradient)) by BFGS from the inverse
    curvature ``hess_inv`` (of minus f), shortening steps that do not increase
    the value.  Converged when the predicted gain ``g' hess_inv g`` falls
    below ``tol``.  ``first``: (value, gradient) at x when the caller has
    them (counted as an evaluation).

    ``newton`` (x -> (value, gradient, ..., Hessian)), when given, finishes:
    once the predicted gain falls below ``newton_below``, the next trial
    point is evaluated with its Hessian, and from there Newton steps on the
    exact Hessian, converged when ``g' (-H)^-1 g`` falls below ``tol``.
    Where BFGS creeps to the optimum of a simulated likelihood (electricity:
    30 of its 39 iterations within 1 of the maximum), Newton's quadratic
    convergence takes a few.  Where minus the Hessian is not positive
    definite, BFGS goes on from there.  The default 3 (measured on the
    electricity panel at 1000 draws: 18 iterations with 1, 15 with 3, 40
    with 10, whose Newton steps start where the Hessian is not yet negative
    definite).

    A step that does not increase the value is shortened to the maximum of
    the quadratic through the value and slope at x and the value at the
    step, kept within [0.1, 0.5] of the step (a halving where the quadratic
    says nothing useful).

    Returns (x, value, gradient, iterations, evaluations, converged, last):
    ``last`` the output of ``newton`` at x when the run ended on a Newton
    evaluation, else None.  ``stacklevel`` of the warnings as for
    ``newton``."""
    ll, g = f(x) if first is None else first
    evaluations = 1
    last = None
    for it in range(1, maxiter + 1):
        if last is not None:
            try:
                L = np.linalg.cholesky(-last[-1])
                d = np.linalg.solve(L.T, np.linalg.solve(L, g))
            except np.linalg.LinAlgError:
                d = None
            if d is None or not np.isfinite(d).all():
                last, newton = None, None  # not concave here: BFGS from x on
            else:
                scaled = float(g @ d)
                if scaled < tol:
                    return x, ll, g, it - 1, evaluations, True, last
                t = 1.0
                while True:
                    trial = x + t * d
                    out = newton(trial)
                    evaluations += 1
                    if out[0] >= ll:
                        break
                    t = _shorter(t, ll, scaled, out[0])
                    if t < 1e-10:
                        warnings.warn(
                            f"the line search found no increase after {it} iterations "
                            f"(predicted gain {scaled:.3g}); the estimates may not be the "
                            "maximum", ConvergenceWarning, stacklevel=stacklevel)
                        return x, ll, g, it, evaluations, False, last
                x, ll, g, last = trial, out[0], out[1], out
                continue
        d = hess_inv @ g
        scaled = float(g @ d)
        if scaled < tol:
            return x, ll, g, it - 1, evaluations, True, None
        # Near the optimum the first trial is evaluated with its Hessian, so
        # that Newton starts there without evaluating x again.
        near = newton is not None and scaled < newton_below
        t = 1.0
        while True:
            trial = x + t * d
            out = newton(trial) if near and t == 1.0 else f(trial)
            ll_t, g_t = out[0], out[1]
            evaluations += 1
            if ll_t >= ll:
                break
            t = _shorter(t, ll, scaled, ll_t)
            if t < 1e-10:
                warnings.warn(
                    f"the line search found no increase after {it} iterations (predicted gain "
                    f"{scaled:.3g}); the estimates may not be the maximum",
                    ConvergenceWarning, stacklevel=stacklevel)
                return x, ll, g, it, evaluations, False, None
        s, y = trial - x, g - g_t
        sy = float(s @ y)
        if sy > 0:
            # The BFGS update of the inverse, skipped when the curvature
            # condition fails (it would lose positive definiteness).
            hy = hess_inv @ y
            hess_inv = (hess_inv + ((sy + y @ hy) / sy ** 2) * np.outer(s, s)
                        - (np.outer(hy, s) + np.outer(s, hy)) / sy)
        x, ll, g = trial, ll_t, g_t
        if near and t == 1.0:
            last = out
    warnings.warn(f"BFGS did not converge in {maxiter} iterations (predicted gain "
                  f"{float(g @ hess_inv @ g):.3g}); raise maxiter or give start=",
                  ConvergenceWarning, stacklevel=stacklevel)
    return x, ll, g, maxiter, evaluations, False, last
