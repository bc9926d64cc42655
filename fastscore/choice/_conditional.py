"""McFadden's conditional logit, fitted by Newton's method on the kernel's
exact gradient and Hessian."""
from __future__ import annotations

import numpy as np

from .. import _core
from ._data import LongFormatModel
from ._optim import (check_cov, information, newton, null_loglik, sandwich,
                     separating_columns)
from ._results import ChoiceResults


class ConditionalLogit(LongFormatModel):
    """McFadden's conditional logit on long-format data.

    Parameters
    ----------
    data : pandas.DataFrame (or a polars or pyarrow table, converted once)
        One row per observation and alternative.  Rows may come in any order;
        every result is the same for any row order.
    choice : str
        Column of 0/1 (or bool): exactly one chosen available row per
        observation.
    obs : str
        Column labelling the observation (choice situation).
    alt : str
        Column labelling the alternative.
    x : list of str
        Columns with one generic coefficient each.
    asc : label, optional
        Adds an alternative-specific constant, named ``asc.<alt>``, for every
        alternative but this reference one.
    x_by_alt : dict, optional
        ``{column: reference}``: alternative-specific coefficients of the
        column, named ``<column>.<alt>``, for every alternative but the
        reference.
    avail : str, optional
        Column of 0/1: unavailable rows are left out (and may hold missing
        values).  An observation with a single available alternative adds
        nothing to the likelihood; it is left out and counted in
        ``n_single``.
    weights : str, optional
        Column of nonnegative weights, constant within each observation.

    Raises
    ------
    KeyError
        For a column that is not in the data.
    ChoiceDataError
        For data that cannot be a choice data set: zero or two chosen rows in
        an observation, a chosen alternative that is unavailable, a choice or
        availability column that is not 0/1 (strings included), a missing
        value in a used column (weights included) of an available row,
        weights that vary within an observation, two rows of one alternative
        in one observation.  The message names the column and the first
        offending observation.

    Examples
    --------
    >>> import pandas as pd
    >>> import fastscore.choice as fc
    >>> df = pd.read_csv("examples/data/fishing_long.csv")
    >>> model = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
    ...                             x=["price", "catch"])
    >>> res = model.fit()
    >>> round(res.llf, 3)
    -1311.98
    >>> model.param_names
    ['price', 'catch']
    """

    def __init__(self, data, choice, obs, alt, x=(), asc=None, x_by_alt=None, avail=None,
                 weights=None):
        super().__init__(data, choice, obs, alt, x, asc, x_by_alt, avail, weights)
        self._names = self._spec.names

    def loglik(self, params, grad=False, hess=False, n_threads=None):
        """The log-likelihood at ``params``.

        Parameters
        ----------
        params : array_like, dict or pandas.Series
            Values in ``param_names`` order, or keyed by name.
        grad, hess : bool
            Also return the gradient (k,) and the Hessian (k, k).
        n_threads : int, optional
            Threads of the kernel (the bits do not depend on it).

        Returns
        -------
        float, or tuple
            The value; with ``grad`` or ``hess`` the tuple
            ``fastscore.loglik`` returns.

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
        >>> model = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                             x=["price", "catch"])
        >>> value, grad = model.loglik({"price": -0.02, "catch": 0.5}, grad=True)
        >>> round(value, 3), grad.round(1)
        (-1325.913, array([768.7,  63. ]))
        """
        beta = self._params(params)
        return _core.loglik(self.X, beta, self.chosen, offsets=self.offsets, weights=self.w,
                            grad=grad, hess=hess, n_threads=n_threads)

    def fit(self, start=None, cov="hessian", cluster=None, maxiter=100, tol=1e-10,
            n_threads=None):
        """Maximise the log-likelihood by Newton's method with the analytic
        Hessian.

        Parameters
        ----------
        start : array_like or dict, optional
            Starting values (default: zeros).
        cov : {"hessian", "robust", "cluster"}
            ``"hessian"``: inv(-H).  ``"robust"``: the sandwich
            ``H^-1 B H^-1``, B the sum of outer products of the
            observations' (weighted) scores, no small-sample factor.
            ``"cluster"``: the same with the scores summed per cluster,
            times G / (G - 1).
        cluster : str, optional
            With ``cov="cluster"``: the column of cluster labels, constant
            within each observation.
        maxiter : int
            Newton iterations at most.
        tol : float
            Convergence when the scaled gradient ``g' (-H)^-1 g`` falls below
            it; a last Newton step from there makes the estimates exact to
            rounding (Newton converges quadratically).
        n_threads : int, optional
            Threads of the kernel; every result is bitwise the same for any
            count.

        Returns
        -------
        ChoiceResults
            The estimates, their covariance (as ``cov`` asks), the
            log-likelihood and the fit statistics, with ``summary()``,
            ``predict``, ``elasticity`` and ``wtp``.

        Raises
        ------
        ValueError
            A ``cov`` other than the three, ``cluster`` without
            ``cov="cluster"`` (or the reverse), ``maxiter < 1``, or a
            ``cluster`` column with fewer than two clusters.
        KeyError
            A ``cluster`` column that is not in the data.
        ChoiceDataError
            A ``cluster`` column that varies within an observation or has a
            missing label in an available row.
        NotIdentifiedError
            When a parameter is not identified (the Hessian is singular at the
            start) or the choices are separated (the estimates diverge); the
            message names the parameters: for separation, the columns that
            separate the choices alone (the chosen alternative has the
            largest, or the smallest, value in every observation), or, when
            none does alone, the parameters of the combination that does.

        Warns
        -----
        ConvergenceWarning
            When ``maxiter`` iterations end before the criterion is met.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> model = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                             x=["price", "catch"])
        >>> res = model.fit(cov="robust")
        >>> res.converged, res.cov_type, res.niter
        (True, 'robust', 6)
        >>> res.params.round(4).to_dict()
        {'price': -0.0205, 'catch': 0.9531}
        """
        check_cov(cov, cluster, maxiter)
        if cluster is not None:
            groups, n_clusters = self._cluster_codes(cluster, "obs")
        beta = np.zeros(len(self._names)) if start is None else self._params(start)
        beta, ll, g, H, niter, converged = newton(
            lambda b: self.loglik(b, grad=True, hess=True, n_threads=n_threads),
            lambda b: self.loglik(b, n_threads=n_threads), beta, self._names,
            int(maxiter), float(tol),
            separating=lambda: separating_columns(self.X, self.chosen, self.offsets, self.w))
        cov_matrix = np.linalg.inv(information(H, self._names))
        if cov != "hessian":
            s = _core.score(self.X, beta, self.chosen, offsets=self.offsets, n_threads=n_threads)
            if self.w is not None:
                s *= self.w[:, None]
            cov_matrix = sandwich(cov_matrix, s, groups if cluster is not None else None)
        return ChoiceResults(self, beta, cov_matrix, ll, null_loglik(self.offsets, self.w),
                             niter, converged, cov, cluster,
                             n_clusters if cluster is not None else None, method="Newton")
