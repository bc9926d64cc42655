"""The mixed (random-coefficients) logit, fitted by simulated maximum
likelihood on the compiled panel kernel (``fastscore._mixedlogit``)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from ._data import (Layout, LongFormatModel, as_frame,
                    check_columns, label, pandas_module)
from ._optim import (bfgs, check_cov, information, newton, null_loglik, sandwich,
                     separating_columns)
from ._results import FittedModel

DISTRIBUTIONS = {"normal": 1, "lognormal": 2, "triangular": 3, "uniform": 4}
DRAWS = ("halton", "sobol", "mlhs", "random")
# Panels a step of the simulated prediction takes: their rows x draws x
# coefficients stay near this many doubles.
_PREDICT_CHUNK = 1 << 21


class MixedLogit(LongFormatModel):
    """The mixed logit with random coefficients, by simulated maximum
    likelihood.

    For person (panel) n and draw r the coefficients are
    ``beta_nr = m + s * xi_nr`` (normal, triangular, uniform),
    ``exp(m + s * xi_nr)`` (lognormal) or, with ``correlated=True``,
    ``m + L xi_nr`` with L lower triangular; the simulated likelihood of a
    person is the mean over the draws of the product of their choice
    situations' logit probabilities.

    Parameters
    ----------
    data, choice, obs, alt, x, asc, x_by_alt, avail, weights
        As for ``ConditionalLogit``; ``weights`` must be constant within a
        panel.
    random : dict
        ``{column of x: distribution}``, the distribution one of
        ``"normal"``, ``"lognormal"``, ``"triangular"``, ``"uniform"``.
        Lognormal coefficients are positive: negate a column whose effect is
        negative.
    panel : str, optional
        Column of the person whose observations share one draw of the
        coefficients; without it each observation is its own panel.
    n_draws : int
        Draws per panel.
    draws : str or array_like
        ``"halton"`` (the scrambled Halton points of SciPy's
        ``qmc.Halton(d, scramble=True, seed=seed)``, bit for bit, computed
        here in threads: random digit permutations as in Owen's randomized
        Halton algorithm (2017), point 0 included and none skipped; dimension
        j, of base the j-th prime, is the j-th random column in ``x`` order;
        panel p takes points ``p * n_draws`` to ``(p + 1) * n_draws - 1``),
        ``"sobol"`` (SciPy's scrambled Sobol', likewise), ``"mlhs"``
        (modified Latin hypercube: for each panel and column the points
        ``(r + u) / n_draws`` shuffled, one uniform u each) or ``"random"``
        (pseudo-random uniforms); or an array of uniforms in (0, 1) of shape
        (panels, n_draws, random columns), panels in the order of
        ``panel_labels`` (their sorted labels) and random columns in ``x``
        order, transformed by each distribution's inverse CDF.  Generated
        uniforms are clipped to [2^-53, 1 - 2^-53].
    seed : int
        Seed of the generated draws.
    correlated : bool
        Estimate a full Cholesky factor of the (normal) random coefficients.

    Raises
    ------
    ValueError
        ``random`` empty, naming a column not in ``x`` or an unknown
        distribution; ``correlated=True`` with a random column that is not
        normal; ``n_draws`` not an integer >= 1; an array of ``draws`` of
        the wrong shape or not in (0, 1).
    KeyError, ChoiceDataError
        As for ``ConditionalLogit`` (a missing column; data that cannot be
        a choice data set), and weights that vary within a panel.

    Attributes
    ----------
    param_names : list of str
        The ``x`` (and constant) names in order (means; a lognormal's location
        of the log), then ``sd.<name>`` for each random column in ``x`` order,
        or with ``correlated=True`` the Cholesky entries ``chol.<row>.<col>``
        row by row.  A spread's sign is not identified (the distribution is
        the same); the estimate keeps the sign the optimiser reached.

    Examples
    --------
    >>> import pandas as pd
    >>> import fastscore.choice as fc
    >>> df = pd.read_csv("examples/data/fishing_long.csv")
    >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
    ...                       x=["price", "catch"], random={"catch": "normal"},
    ...                       asc="beach", n_draws=50)
    >>> model.param_names
    ['price', 'catch', 'asc.boat', 'asc.charter', 'asc.pier', 'sd.catch']
    >>> res = model.fit()
    >>> res.converged
    True
    """

    # The alternatives, for a model of one part of a data set (fastscore.dask).
    _fixed_alt_labels = None

    def __init__(self, data, choice, obs, alt, x, random, panel=None, n_draws=1000,
                 draws="halton", seed=0, correlated=False, asc=None, x_by_alt=None, avail=None,
                 weights=None):
        x_cols = [x] if isinstance(x, str) else list(x)
        if not isinstance(random, dict) or not random:
            raise ValueError("random must be a non-empty dict {column of x: distribution}")
        for col, dist in random.items():
            if col not in x_cols:
                raise ValueError(f"random column {col!r} is not in x (x: {x_cols})")
            if dist not in DISTRIBUTIONS:
                raise ValueError(f"random[{col!r}] = {dist!r} is not a distribution "
                                 f"({', '.join(DISTRIBUTIONS)})")
        if correlated and any(d != "normal" for d in random.values()):
            raise ValueError("correlated=True needs every random column to be 'normal'")
        if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
            raise ValueError(f"n_draws must be an integer >= 1, got {n_draws!r}")
        super().__init__(data, choice, obs, alt, x_cols, asc, x_by_alt, avail, weights,
                         panel=panel, alt_labels=self._fixed_alt_labels)
        self.random = {c: random[c] for c in x_cols if c in random}
        self.correlated = bool(correlated)
        self.n_draws = int(n_draws)
        self.seed = seed
        names = self._spec.names
        self.kinds = np.zeros(len(names), dtype=np.intp)
        for j, (kind, col, _) in enumerate(self._spec.terms):
            if kind == "x" and col in self.random:
                self.kinds[j] = DISTRIBUTIONS[self.random[col]]
        rand = [n for n in self._spec.x if n in self.random]
        if correlated:
            extra = [f"chol.{rand[a]}.{rand[b]}" for a in range(len(rand)) for b in range(a + 1)]
        else:
            extra = [f"sd.{n}" for n in rand]
        self._names = names + extra
        self.panel_offsets, self.panel_labels = self._layout.panel_offsets()
        self.n_panels = len(self.panel_offsets) - 1
        self.w_panel = None if self.w is None else self.w[self.panel_offsets[:-1]]
        self.draws_method = draws if isinstance(draws, str) else "given"
        self.xi = standard_draws(self._uniforms(draws, self.n_panels),
                                 [self.random[n] for n in rand])
        self._prepared = None

    def _uniforms(self, draws, n_panels):
        q = len(self.random)
        if isinstance(draws, str):
            return uniform_draws(draws, n_panels, self.n_draws, q, self.seed)
        u = np.asarray(draws, dtype=np.float64)
        if u.shape != (n_panels, self.n_draws, q):
            raise ValueError(f"draws must have shape (panels, n_draws, random columns) = "
                             f"({n_panels}, {self.n_draws}, {q}), got {u.shape}")
        if not np.all((u > 0) & (u < 1)):
            bad = np.argwhere(~((u > 0) & (u < 1)))[0]
            raise ValueError(f"draws must be uniforms in (0, 1); draws[{', '.join(map(str, bad))}]"
                             f" = {float(u[tuple(bad)])!r}")
        # a copy the model owns, in the kernel's layout (standard_draws
        # transforms it in place)
        own = np.empty((n_panels, q, self.n_draws)).transpose(0, 2, 1)
        own[...] = u
        return own

    def loglik(self, params, grad=False, panel_scores=False, n_threads=None):
        """The simulated log-likelihood at ``params`` with the model's draws.

        Parameters
        ----------
        params : array_like, dict or pandas.Series
            Values in ``param_names`` order, or keyed by name.
        grad : bool
            Also return the exact gradient (n_params,).
        panel_scores : bool
            Also return each panel's gradient of its log simulated
            likelihood, unweighted (P, n_params).
        n_threads : int, optional
            Threads of the kernel (the bits do not depend on it).

        Returns
        -------
        float, or tuple
            The value, then the asked outputs in the order grad,
            panel_scores.

        Raises
        ------
        KeyError
            A dict or Series of ``params`` without a value for a parameter.
        ValueError
            ``params`` of the wrong length or not finite.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
        ...                       x=["price", "catch"], random={"catch": "normal"}, n_draws=20)
        >>> value, grad = model.loglik(model.start_values(), grad=True)
        >>> round(value, 3), grad.shape
        (-1311.924, (3,))
        """
        return self._kernel(self._params(params), grad=grad, panel_scores=panel_scores,
                            n_threads=n_threads)

    def _kernel(self, theta, **outputs):
        if self._prepared is None:
            from .._mixedlogit import prepare

            # the data checked once (a pass over the draws), not each evaluation
            self._prepared = prepare(self.X, self.offsets, self.chosen, self.panel_offsets,
                                     self.xi, self.kinds, weights=self.w_panel,
                                     chol=self.correlated)
        return self._prepared(theta, **outputs)

    def start_values(self, n_threads=None):
        """The default starting values of ``fit``.

        Parameters
        ----------
        n_threads : int, optional
            Threads of the kernel.

        Returns
        -------
        numpy.ndarray
            The conditional logit's estimates for the means, 0.1 for the
            spreads (the Cholesky diagonal, 0 off it); a lognormal's location
            is the log of its conditional-logit coefficient (of 0.01 when that
            is not positive).  The conditional logit's sums are taken panel by
            panel (``cl_panel_parts``), so the same panels held in parts give
            the same bits.

        Raises
        ------
        NotIdentifiedError
            When the conditional logit of the means is not identified (as
            ``ConditionalLogit.fit``).

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
        ...                       x=["price", "catch"], random={"catch": "normal"}, n_draws=20)
        >>> dict(zip(model.param_names, model.start_values().round(4).tolist()))
        {'price': -0.0205, 'catch': 0.9531, 'sd.catch': 0.1}
        """
        return start_newton(
            lambda b, hess: cl_panel_parts(self.X, self.offsets, self.chosen, self.panel_offsets,
                                           b, hess, n_threads),
            self.w_panel, self.kinds, len(self.random), self.correlated, self._spec.names,
            separating=lambda: separating_columns(self.X, self.chosen, self.offsets, self.w))

    def fit(self, start=None, method="bfgs", cov="hessian", cluster=None, maxiter=500,
            tol=1e-6, n_threads=None):
        """Maximise the simulated log-likelihood.

        Parameters
        ----------
        start : array_like or dict, optional
            Starting values (default: ``start_values()``).
        method : {"bfgs"}
            BFGS on the exact gradient, its first inverse Hessian the inverse
            of the BHHH matrix (the outer products of the panels' scores) at
            the start, steps shortened where they do not increase the value;
            near the maximum, Newton steps on the exact Hessian.
        cov : {"hessian", "robust", "cluster"}
            ``"hessian"``: the inverse of minus the exact Hessian of the
            simulated log-likelihood (computed by the kernel in one pass).
            ``"robust"``: the sandwich over panels; ``"cluster"``: over
            clusters (constant within a panel), times G / (G - 1).
        cluster : str, optional
            With ``cov="cluster"``: the column of cluster labels, constant
            within each panel.
        maxiter : int
            BFGS iterations at most.
        tol : float
            Convergence when the predicted gain ``g' H^-1 g`` (H^-1 the BFGS
            inverse curvature) falls below it.
        n_threads : int, optional
            Threads of the kernel; every result is bitwise the same for any
            count.

        Returns
        -------
        MixedLogitResults
            The estimates (means, then spreads or Cholesky entries), their
            covariance (as ``cov`` asks), the simulated log-likelihood and
            the fit statistics, with ``individual_coefficients`` and
            ``predict``.

        Raises
        ------
        ValueError
            A ``method`` other than ``"bfgs"``, a ``cov`` other than the
            three, ``cluster`` without ``cov="cluster"`` (or the reverse),
            ``maxiter < 1``, a ``cluster`` column with fewer than two
            clusters, or ``start`` of the wrong length or not finite.
        KeyError
            A ``cluster`` column not in the data, or a ``start`` dict
            without a parameter.
        ChoiceDataError
            A ``cluster`` column that varies within a panel.
        NotIdentifiedError
            A parameter that is not identified at the start or at the
            estimates (a singular information matrix; the message names the
            parameters).

        Warns
        -----
        ConvergenceWarning
            When ``maxiter`` iterations end before the criterion is met.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
        ...                       x=["price", "catch"], random={"catch": "normal"}, n_draws=20)
        >>> res = model.fit(cov="robust")
        >>> res.converged, res.cov_type, round(res.llf, 3)
        (True, 'robust', -1306.032)
        >>> res.params.round(3).to_dict()
        {'price': -0.023, 'catch': 1.189, 'sd.catch': 1.336}
        """
        if method != "bfgs":
            raise ValueError(f"method must be 'bfgs', got {method!r}")
        check_cov(cov, cluster, maxiter)
        if cluster is not None:
            groups, n_clusters = self._cluster_codes(cluster, "panel")
        theta = self.start_values(n_threads) if start is None else self._params(start)
        theta, cov_matrix, ll, H, niter, evaluations, converged = fit_steps(
            lambda t, scores=False, hessian=False: self._kernel(
                t, grad=True, panel_scores=scores, hessian=hessian, n_threads=n_threads),
            theta, self._names, self.w_panel, cov, groups if cluster is not None else None,
            maxiter, tol)
        return MixedLogitResults(self, theta, cov_matrix, ll, null_loglik(self.offsets, self.w),
                                 niter, converged, cov, cluster,
                                 n_clusters if cluster is not None else None, method="BFGS",
                                 evaluations=evaluations, hessian=H)

    def hessian(self, params, n_threads=None):
        """The exact Hessian of the simulated log-likelihood.

        Parameters
        ----------
        params : array_like, dict or pandas.Series
            Where to take it.
        n_threads : int, optional
            Threads of the kernel.

        Returns
        -------
        numpy.ndarray
            (n_params, n_params), symmetric: each panel's
            ``sum_r h_r (grad^2 log P_r + g_r g_r') - gbar gbar'`` (h the
            posterior weights over the draws, g_r the draw's score), summed
            over the panels with their weights; within 1e-7 of central
            differences of the exact gradient in the tests.

        Raises
        ------
        KeyError
            A dict or Series of ``params`` without a value for a parameter.
        ValueError
            ``params`` of the wrong length or not finite.

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
        ...                       x=["price", "catch"], random={"catch": "normal"}, n_draws=20)
        >>> res = model.fit()
        >>> H = model.hessian(res.params)
        >>> H.shape, bool(np.all(np.linalg.eigvalsh(H) < 0))
        ((3, 3), True)
        >>> bool(np.allclose(np.sqrt(np.diag(np.linalg.inv(-H))), res.bse))
        True
        """
        return self._kernel(self._params(params), grad=True, hessian=True,
                            n_threads=n_threads)[2]


def _weighted_outer(scores, w):
    """sum_p w_p s_p s_p'."""
    return scores.T @ (scores if w is None else scores * w[:, None])


# The steps of a fit on evaluation callables, shared by MixedLogit.fit and
# fastscore.dask.MixedLogit.fit (which evaluates partition by partition).

def fit_steps(evaluate, theta, names, w_panel, cov, groups, maxiter, tol):
    """BFGS from ``theta``, its first inverse curvature the inverse BHHH
    matrix there, then the exact Hessian and the covariance.

    ``evaluate(theta, scores=False, hessian=False)`` returns (value,
    gradient), then the panel scores (P, n_params) with ``scores`` and the
    Hessian with ``hessian``.  Returns (theta, cov, value, Hessian,
    iterations, evaluations, converged).
    """
    ll0, g0, scores = evaluate(theta, scores=True)
    bhhh = _weighted_outer(scores, w_panel)
    hess_inv = np.linalg.inv(information(-bhhh, names))
    with np.errstate(over="ignore", invalid="ignore"):
        # A trial step may overflow a lognormal coefficient; its value is
        # then -inf or NaN, and the step is shortened.
        theta, _, _, niter, evaluations, converged, last = bfgs(
            evaluate, theta, hess_inv, int(maxiter), float(tol), first=(ll0, g0), stacklevel=4,
            newton=lambda t: evaluate(t, scores=True, hessian=True))
    ll, g, scores, H = last if last is not None else evaluate(theta, scores=True, hessian=True)
    cov_matrix = np.linalg.inv(information(H, names))
    if cov != "hessian":
        s = scores if w_panel is None else scores * w_panel[:, None]
        cov_matrix = sandwich(cov_matrix, s, groups)
    return theta, cov_matrix, ll, H, niter, evaluations, converged


def start_newton(parts, w_panel, kinds, q, correlated, names, separating=None):
    """The default start: the conditional logit by Newton's method, its
    value, gradient and Hessian the panel-order sums (``panel_sum``) of
    ``parts(beta, hess)``, each panel's (values (P,), gradients (P, k)[,
    Hessians (P, k, k)]); then the lognormal locations and the spreads.
    ``separating`` as for ``newton``."""
    from .._mixedlogit import panel_sum

    def totals(beta, hess):
        out = parts(beta, hess)
        ll = panel_sum(out[0], w_panel)
        if not hess:
            return ll
        k = beta.size
        H = panel_sum(out[2].reshape(out[2].shape[0], k * k), w_panel).reshape(k, k)
        return ll, panel_sum(out[1], w_panel), (H + H.T) / 2

    beta, *_ = newton(lambda b: totals(b, True), lambda b: totals(b, False),
                      np.zeros(kinds.size), names, 100, 1e-10, separating=separating,
                      stacklevel=4)
    lognormal = kinds == DISTRIBUTIONS["lognormal"]
    beta[lognormal] = np.log(np.maximum(beta[lognormal], 1e-2))
    if correlated:
        spread = np.concatenate([np.r_[np.zeros(a), 0.1] for a in range(q)])
    else:
        spread = np.full(q, 0.1)
    return np.concatenate([beta, spread])


def cl_panel_parts(X, offsets, chosen, panel_offsets, beta, hess=True, n_threads=None):
    """Each panel's conditional-logit log-likelihood (P,) and gradient (P, k)
    and, with ``hess``, Hessian (P, k, k), unweighted: the mixed-logit kernel
    with every column fixed and one draw (its simulated likelihood is then
    the conditional logit's), panel by panel.  A panel's parts depend on its
    own rows alone."""
    from .._mixedlogit import prepare

    P, k = len(panel_offsets) - 1, X.shape[1]
    problem = prepare(X, offsets, chosen, panel_offsets, np.zeros((P, 1, 0)),
                      np.zeros(k, dtype=np.intc))
    if not hess:
        return (problem(beta, panel_values=True, n_threads=n_threads)[1],)
    _, scores, values, H = problem(beta, panel_scores=True, panel_values=True,
                                   panel_hessians=True, n_threads=n_threads)
    return values, scores, H


def uniform_draws(method, n_panels, n_draws, q, seed):
    """(n_panels, n_draws, q) uniforms in (0, 1) by the named method (a view
    of a (n_panels, q, n_draws) array: each column's draws contiguous, as the
    kernel reads them)."""
    if method not in DRAWS:
        raise ValueError(f"draws must be one of {', '.join(map(repr, DRAWS))} or an array, "
                         f"got {method!r}")
    lo, hi = 2.0 ** -53, 1.0 - 2.0 ** -53  # no inverse CDF takes 0 or 1
    if method == "halton":
        return halton_uniforms(n_panels, n_draws, q, seed, lo, hi)
    n = n_panels * n_draws
    if method == "sobol":
        from scipy.stats import qmc

        with warnings.catch_warnings():
            # Sobol' warns for sample sizes that are not powers of two.
            warnings.simplefilter("ignore", UserWarning)
            u = qmc.Sobol(d=q, scramble=True, seed=seed).random(n)
        # Each panel takes n_draws consecutive points (see halton_uniforms).
        u = u.reshape(n_panels, n_draws, q)
    elif method == "mlhs":
        rng = np.random.default_rng(seed)
        u = (np.arange(n_draws)[None, :, None] + rng.random((n_panels, 1, q))) / n_draws
        u = rng.permuted(u, axis=1)
    else:
        u = np.random.default_rng(seed).random((n_panels, n_draws, q))
    out = np.empty((n_panels, q, n_draws)).transpose(0, 2, 1)
    np.clip(u, lo, hi, out=out)
    return out


def _primes(q):
    """The first q primes."""
    primes = []
    n = 2
    while len(primes) < q:
        if all(n % p for p in primes if p * p <= n):
            primes.append(n)
        n += 1
    return primes


def halton_uniforms(panels, n_draws, q, seed, lo, hi, n_threads=None):
    """The scrambled Halton points SciPy's ``qmc.Halton(d=q, scramble=True,
    seed=seed).random(n_panels * n_draws)`` gives for an integer seed (the
    same bits: its digit permutations, drawn from ``default_rng(seed)`` in
    its order, and its sums digit by digit), clipped to [lo, hi], for the
    panels ``panels`` (indices; an int n: the first n); panel p takes the
    points p * n_draws to (p + 1) * n_draws - 1.  Consecutive
    points to one panel, as xlogit and Train's textbook assign them:
    spreading consecutive points over the panels instead (point r P + p)
    fixes a panel's leading digits in every base that divides P (with
    P = 4000, base 2's draws of a panel all fall in 1/32 of (0, 1)).

    Computed here rather than by SciPy, whose generator divides the index for
    each of its 53 (base 2) to 22 (base 5) digits: 4000 panels x 500 draws x 3
    columns took it 0.5-0.9 s, a whole fit's worth."""
    from .. import _mixed as kernel

    rng = np.random.default_rng(seed)
    bases = _primes(q)
    counts = [math.ceil(54 / math.log2(b)) - 1 for b in bases]
    tables = np.zeros((q, max(counts, default=1), max(bases, default=2)))
    for d, (base, count) in enumerate(zip(bases, counts)):
        perms = np.repeat(np.arange(base)[None], count, axis=0)
        for row in perms:
            rng.shuffle(row)
        scale = 1.0 / base
        for j in range(count):
            tables[d, j, :base] = perms[j] * scale
            scale /= base
    panels = np.arange(panels, dtype=np.intp) if np.ndim(panels) == 0 else \
        np.ascontiguousarray(panels, dtype=np.intp)
    out = np.empty((panels.size, q, n_draws))
    kernel.halton_into(out, panels, tables, np.array(counts, dtype=np.intp),
                       np.array(bases, dtype=np.int_), lo, hi, n_threads)
    return out.transpose(0, 2, 1)


def uniform_draws_rows(method, panels, n_panels, n_draws, q, seed):
    """Rows ``panels`` (increasing panel indices) of ``uniform_draws(method,
    n_panels, n_draws, q, seed)``, the same bits and layout: for "halton" and
    "sobol" from the sequence itself (the panels' own points; Sobol' by
    ``fast_forward`` to each run of consecutive panels), without the other
    panels' points; for "mlhs" and "random" by drawing the whole array.
    Keep in step with ``uniform_draws``."""
    panels = np.asarray(panels, dtype=np.intp)
    lo, hi = 2.0 ** -53, 1.0 - 2.0 ** -53
    out = np.empty((panels.size, q, n_draws)).transpose(0, 2, 1)
    if method == "halton":
        return halton_uniforms(panels, n_draws, q, seed, lo, hi)
    if method != "sobol":
        out[...] = uniform_draws(method, n_panels, n_draws, q, seed)[panels]
        return out
    from scipy.stats import qmc

    u = np.empty((panels.size, n_draws, q))
    cuts = np.flatnonzero(np.diff(panels) != 1) + 1
    for run in np.split(np.arange(panels.size), cuts):
        if run.size == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            engine = qmc.Sobol(d=q, scramble=True, seed=seed)
            if panels[run[0]]:  # (fast_forward(0) raises)
                engine.fast_forward(int(panels[run[0]]) * n_draws)
            u[run] = engine.random(run.size * n_draws).reshape(run.size, n_draws, q)
    np.clip(u, lo, hi, out=out)
    return out


def standard_draws(u, dists):
    """Uniforms (P, R, q), the caller's to overwrite, in the kernel's layout
    (a view of a C-order (P, q, R) array, as ``uniform_draws`` makes them),
    transformed in place column by column to the standard form of each
    distribution: N(0, 1) for normal and lognormal, the standard triangular
    and uniform on [-1, 1].  In place because a fresh array of this size
    costs its page faults (up to 2 us a page on this kind of virtual
    machine: 0.1 s for 4000 panels x 500 draws x 3).  The inverse normal CDF
    is SciPy's ``ndtri``, bit for bit, compiled here and run in threads over
    the panels (SciPy's ufunc: 14 ns a point)."""
    from .. import _mixed as kernel

    normal = [j for j, dist in enumerate(dists) if dist in ("normal", "lognormal")]
    for j, dist in enumerate(dists):
        v = u[..., j]
        if dist == "triangular":
            low = v < 0.5
            v[...] = np.where(low, np.sqrt(2.0 * v) - 1.0, 1.0 - np.sqrt(2.0 * (1.0 - v)))
        elif dist == "uniform":
            v *= 2.0
            v -= 1.0
    if normal:
        kernel.ndtri_columns(u.transpose(0, 2, 1), np.array(normal, dtype=np.intp), None)
    return u


def coefficients(theta, xi, kinds, chol):
    """beta (P, R, k) for the draws xi (P, R, q): the coefficients the kernel
    computes, for prediction."""
    k = kinds.size
    m = theta[:k]
    rand = np.flatnonzero(kinds)
    beta = np.broadcast_to(m, xi.shape[:2] + (k,)).copy()
    if chol:
        q = rand.size
        L = np.zeros((q, q))
        L[np.tril_indices(q)] = theta[k:]
        beta[..., rand] += xi @ L.T
    else:
        beta[..., rand] += xi * theta[k:]
    lognormal = kinds == DISTRIBUTIONS["lognormal"]
    beta[..., lognormal] = np.exp(beta[..., lognormal])
    return beta


class MixedLogitResults(FittedModel):
    """The results of ``MixedLogit.fit`` (see ``FittedModel``), with each
    person's conditional coefficients and simulated prediction.

    Made by ``MixedLogit.fit``, not by hand.

    Attributes
    ----------
    model : MixedLogit
        The fitted model.
    n_panels, n_draws : int
        The model's panels and draws per panel.
    evaluations : int
        Evaluations of the simulated log-likelihood by the optimiser.
    hessian : numpy.ndarray
        The exact Hessian at the estimates, whose inverse gives
        ``cov="hessian"``.
    params, bse, tvalues, pvalues, llf, llnull, rho2, rho2_adj, aic, bic
        As for ``FittedModel``, and ``nobs``, ``niter``, ``converged``,
        ``cov_type``.

    Examples
    --------
    >>> import pandas as pd
    >>> import fastscore.choice as fc
    >>> df = pd.read_csv("examples/data/fishing_long.csv")
    >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
    ...                       x=["price", "catch"], random={"catch": "normal"}, n_draws=20)
    >>> res = model.fit()
    >>> type(res).__name__, res.n_panels, res.n_draws, res.hessian.shape
    ('MixedLogitResults', 1182, 20, (3, 3))
    >>> res.bse.round(3).to_dict()
    {'price': 0.002, 'catch': 0.146, 'sd.catch': 0.306}
    """

    kind = "mixed logit"

    def __init__(self, model, theta, cov, llf, llnull, niter, converged, cov_type, cluster,
                 n_clusters, method, evaluations, hessian):
        super().__init__(model, theta, cov, llf, llnull, niter, converged, cov_type, cluster,
                         n_clusters, method)
        self.n_panels = model.n_panels
        self.n_draws = model.n_draws
        self.evaluations = evaluations
        self.hessian = hessian

    def _extra_facts(self):
        m = self.model
        return [("Panels", f"{m.n_panels}"),
                ("Draws", f"{m.n_draws} {m.draws_method}"),
                ("Evaluations", f"{self.evaluations} (+ 1 with the Hessian)")]

    def individual_coefficients(self, n_threads=None):
        """Each panel's conditional mean of its random coefficients given its
        choices (the posterior over the model's draws).

        Parameters
        ----------
        n_threads : int, optional
            Threads of the kernel.

        Returns
        -------
        pandas.DataFrame
            One row per panel (indexed by its label), one column per random
            coefficient.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
        ...                       x=["price", "catch"], random={"catch": "normal"}, n_draws=20)
        >>> res = model.fit()
        >>> res.individual_coefficients().head(3).round(3)
            catch
        id
        1   1.629
        2   1.751
        3   0.525
        """
        pd = pandas_module()
        m = self.model
        _, post = m._kernel(self.params.to_numpy(), posterior=True, n_threads=n_threads)
        rand = np.flatnonzero(m.kinds)
        index = pd.Index([label(v) for v in m.panel_labels], name=m.panel or m.obs)
        return pd.DataFrame(post[:, rand], index=index,
                            columns=[m._spec.names[j] for j in rand])

    def predict(self, data=None):
        """Each row's choice probability, simulated with the model's draws.

        Parameters
        ----------
        data : DataFrame, optional
            Long-format data with the model's columns (``choice`` is not
            needed); its panels get draws made the way the model's were.
            Default: the estimation data.

        Returns
        -------
        pandas.Series
            Aligned with the data's index (unavailable rows 0).

        Raises
        ------
        ValueError
            For new data when the model was given an array of draws.
        KeyError, ChoiceDataError
            New data without one of the model's columns, or that cannot be
            a choice data set.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> model = fc.MixedLogit(df, choice="choice", obs="id", alt="alt",
        ...                       x=["price", "catch"], random={"catch": "normal"}, n_draws=20)
        >>> res = model.fit()
        >>> p = res.predict()
        >>> p.head(4).round(3).tolist(), round(float(p.sum()), 6) == res.nobs
        ([0.236, 0.289, 0.242, 0.233], True)
        """
        pd = pandas_module()
        m = self.model
        if data is None:
            layout, X, offsets = m._layout, m.X, m.offsets
            panel_offsets, xi = m.panel_offsets, m.xi
        else:
            frame = as_frame(data)
            cols = [m.obs, m.alt, *m._spec.columns]
            cols += [c for c in (m.avail, m.panel) if c is not None]
            check_columns(frame, cols)
            layout = Layout(frame, m.obs, m.alt, avail=m.avail, panel=m.panel,
                            alt_labels=m._layout.alt_labels)
            X, offsets = m._spec.design(layout), layout.offsets
            panel_offsets, _ = layout.panel_offsets()
            if m.draws_method == "given":
                raise ValueError("predict(data) needs generated draws; this model was given "
                                 "an array of draws for its own panels")
            u = uniform_draws(m.draws_method, len(panel_offsets) - 1, m.n_draws,
                              len(m.random), m.seed)
            xi = standard_draws(u, list(m.random.values()))
        p = simulated_probs(X, offsets, panel_offsets, xi, m.kinds, self.params.to_numpy(),
                            m.correlated)
        out = np.zeros(len(layout.frame))
        out[layout.rows] = p
        return pd.Series(out, index=layout.frame.index, name="probability")


def simulated_probs(X, offsets, panel_offsets, xi, kinds, theta, chol):
    """Each row's probability averaged over the draws of its panel."""
    P, R, _ = xi.shape
    out = np.empty(X.shape[0])
    situation_panel = np.repeat(np.arange(P), np.diff(panel_offsets))
    row_panel = np.repeat(situation_panel, np.diff(offsets))
    k = X.shape[1]
    rows_per_panel = max(1, X.shape[0] // max(P, 1))
    step = max(1, _PREDICT_CHUNK // (rows_per_panel * R * k))
    for p0 in range(0, P, step):
        p1 = min(P, p0 + step)
        beta = coefficients(theta, xi[p0:p1], kinds, chol)
        s0, s1 = panel_offsets[p0], panel_offsets[p1]
        r0, r1 = offsets[s0], offsets[s1]
        U = np.einsum("nk,nrk->nr", X[r0:r1], beta[row_panel[r0:r1] - p0])
        starts = offsets[s0:s1] - r0
        sizes = np.diff(offsets[s0:s1 + 1])
        U -= np.repeat(np.maximum.reduceat(U, starts, axis=0), sizes, axis=0)
        E = np.exp(U)
        E /= np.repeat(np.add.reduceat(E, starts, axis=0), sizes, axis=0)
        out[r0:r1] = E.mean(axis=1)
    return out
