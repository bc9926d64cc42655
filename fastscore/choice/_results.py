"""Fitted choice models: estimates, covariances and the results table."""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ._data import Layout, as_frame, check_columns, numeric, pandas_module


class FittedModel:
    """What every fitted choice model has, named as in statsmodels.  Made by
    a model's ``fit``, not by hand.

    Attributes
    ----------
    params, bse, tvalues, pvalues : pandas.Series
        Estimates, standard errors, t statistics (z) and two-sided p-values
        (normal), indexed by parameter name.
    llf : float
        Log-likelihood at the estimates.
    llnull : float
        Log-likelihood with every available alternative equally likely.
    rho2, rho2_adj : float
        McFadden's ``1 - llf / llnull`` and ``1 - (llf - k) / llnull``.
    aic, bic : float
        ``-2 llf + 2 k`` and ``-2 llf + k log(nobs)``.
    nobs : int
        Observations (choice situations) in the likelihood, those with two or
        more available alternatives; ``n_single`` were left out.
    niter : int
        Iterations of the optimiser.
    converged : bool
        Whether the optimiser met its convergence criterion.
    cov_type : str
        ``"hessian"``, ``"robust"`` or ``"cluster"``.
    model : ConditionalLogit or MixedLogit
        The fitted model.
    df_model : int
        The number of parameters.

    Examples
    --------
    >>> import pandas as pd
    >>> import fastscore.choice as fc
    >>> df = pd.read_csv("examples/data/fishing_long.csv")
    >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
    ...                           x=["price", "catch"]).fit()
    >>> res.params.round(4).to_dict()
    {'price': -0.0205, 'catch': 0.9531}
    >>> res.bse.round(4).to_dict()
    {'price': 0.0012, 'catch': 0.0894}
    >>> round(res.llf, 3), round(res.rho2, 4), res.nobs, res.converged
    (-1311.98, 0.1993, 1182, True)
    """

    kind = "choice model"

    def __init__(self, model, beta, cov, llf, llnull, niter, converged, cov_type, cluster,
                 n_clusters, method):
        pd = pandas_module()
        names = model.param_names
        self.model = model
        self.params = pd.Series(beta, index=names, name="estimate")
        self._cov = cov
        self.bse = pd.Series(np.sqrt(np.diag(cov)), index=names, name="std_err")
        self.tvalues = pd.Series(beta / self.bse.to_numpy(), index=names, name="t")
        self.pvalues = pd.Series(_two_sided_p(self.tvalues.to_numpy()), index=names, name="p")
        self.llf = float(llf)
        self.llnull = float(llnull)
        k = len(names)
        self.df_model = k
        self.nobs = model.nobs
        self.n_single = model.n_single
        self.rho2 = 1.0 - self.llf / self.llnull if self.llnull else float("nan")
        self.rho2_adj = 1.0 - (self.llf - k) / self.llnull if self.llnull else float("nan")
        self.aic = -2.0 * self.llf + 2.0 * k
        self.bic = -2.0 * self.llf + k * math.log(self.nobs)
        self.niter = niter
        self.converged = converged
        self.method = method
        self.cov_type = cov_type
        self.cluster = cluster
        self.n_clusters = n_clusters

    def cov_params(self):
        """The covariance matrix of the estimates.

        Returns
        -------
        pandas.DataFrame
            (k, k), indexed and labelled by parameter name: the ``cov`` the
            fit was asked for.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                           x=["price", "catch"]).fit()
        >>> res.cov_params().round(6)
                  price     catch
        price  0.000001 -0.000030
        catch -0.000030  0.007995
        """
        pd = pandas_module()
        names = self.model.param_names
        return pd.DataFrame(self._cov, index=names, columns=names)

    def conf_int(self, alpha=0.05):
        """Normal confidence intervals.

        Parameters
        ----------
        alpha : float
            1 - the coverage, in (0, 1).

        Returns
        -------
        pandas.DataFrame
            Columns ``lower`` and ``upper``, indexed by parameter name.

        Raises
        ------
        ValueError
            ``alpha`` not in (0, 1).

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                           x=["price", "catch"]).fit()
        >>> res.conf_int(alpha=0.1).round(4)
                lower   upper
        price -0.0225 -0.0185
        catch  0.8060  1.1002
        """
        pd = pandas_module()
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        z = _normal_quantile(1 - alpha / 2)
        b, s = self.params.to_numpy(), self.bse.to_numpy()
        return pd.DataFrame({"lower": b - z * s, "upper": b + z * s}, index=self.params.index)

    def to_frame(self, alpha=0.05):
        """The results table as data.

        Parameters
        ----------
        alpha : float
            1 - the coverage of the confidence interval.

        Returns
        -------
        pandas.DataFrame
            Columns ``estimate``, ``std_err``, ``t``, ``p``, ``lower``,
            ``upper``, indexed by parameter name.

        Raises
        ------
        ValueError
            ``alpha`` not in (0, 1).

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                           x=["price", "catch"]).fit()
        >>> res.to_frame().round(3)
               estimate  std_err       t    p  lower  upper
        price    -0.020    0.001 -16.742  0.0 -0.023 -0.018
        catch     0.953    0.089  10.659  0.0  0.778  1.128
        """
        pd = pandas_module()
        ci = self.conf_int(alpha)
        return pd.DataFrame({
            "estimate": self.params, "std_err": self.bse, "t": self.tvalues, "p": self.pvalues,
            "lower": ci["lower"], "upper": ci["upper"],
        })

    def _extra_facts(self):
        """Model-specific lines of the summary's header."""
        return []

    def summary(self, alpha=0.05):
        """The results table.

        Parameters
        ----------
        alpha : float
            1 - the coverage of the confidence interval.

        Returns
        -------
        Summary
            Its ``str()`` is the text table; a notebook renders it as HTML.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                           x=["price", "catch"]).fit()
        >>> print(res.summary())
        =======================================================================================
        Model                 conditional logit    Log-likelihood     -1311.9796
        Choice                           choice    LL (equal shares)  -1638.5999
        Observations                       1182    McFadden rho2          0.1993
        Parameters                            2    adjusted rho2          0.1981
        Covariance              inverse Hessian    AIC                  2627.959
        Converged     yes (6 Newton iterations)    BIC                  2638.109
        ---------------------------------------------------------------------------------------
                          estimate       std err         t    P>|t|        [0.025        0.975]
        price           -0.0204765    0.00122306   -16.742   0.0000    -0.0228737    -0.0180794
        catch             0.953099     0.0894134    10.659   0.0000      0.777851       1.12835
        =======================================================================================
        """
        return Summary(self, alpha)

    def wtp(self, numer, denom, alpha=0.05):
        """Willingness to pay ``-b_numer / b_denom``.

        Parameters
        ----------
        numer, denom : str
            Parameter names: the attribute's and the cost's coefficients.
        alpha : float
            1 - the coverage of the confidence interval.

        Returns
        -------
        pandas.Series
            ``estimate``, ``std_err`` (delta method), ``lower``, ``upper``.

        Raises
        ------
        KeyError
            ``numer`` or ``denom`` not a parameter.
        ValueError
            The coefficient of ``denom`` is 0.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                           x=["price", "catch"]).fit()
        >>> res.wtp("catch", "price").round(3).to_dict()
        {'estimate': 46.546, 'std_err': 4.486, 'lower': 37.754, 'upper': 55.338}
        """
        pd = pandas_module()
        names = self.model.param_names
        for n in (numer, denom):
            if n not in names:
                raise KeyError(f"{n!r} is not a parameter (parameters: {names})")
        i, j = names.index(numer), names.index(denom)
        bi, bj = self.params.iloc[i], self.params.iloc[j]
        if bj == 0:
            raise ValueError(f"the coefficient of {denom!r} is 0")
        value = -bi / bj
        grad = np.zeros(len(names))
        grad[i], grad[j] = -1.0 / bj, bi / bj ** 2
        se = math.sqrt(float(grad @ self._cov @ grad))
        z = _normal_quantile(1 - alpha / 2)
        return pd.Series({"estimate": value, "std_err": se, "lower": value - z * se,
                          "upper": value + z * se}, name=f"wtp {numer}/{denom}")



class ChoiceResults(FittedModel):
    """The results of ``ConditionalLogit.fit`` (see ``FittedModel`` for the
    attributes), with prediction and elasticities.

    Made by ``ConditionalLogit.fit``, not by hand.

    Attributes
    ----------
    model : ConditionalLogit
        The fitted model.
    params, bse, tvalues, pvalues, llf, llnull, rho2, rho2_adj, aic, bic
        As for ``FittedModel``, and ``nobs``, ``niter``, ``converged``,
        ``cov_type``.

    Examples
    --------
    >>> import pandas as pd
    >>> import fastscore.choice as fc
    >>> df = pd.read_csv("examples/data/fishing_long.csv")
    >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
    ...                           x=["price", "catch"]).fit()
    >>> type(res).__name__, res.df_model, round(res.aic, 3)
    ('ChoiceResults', 2, 2627.959)
    >>> res.predict(shares=True).round(3).to_dict()
    {'beach': 0.194, 'boat': 0.33, 'charter': 0.293, 'pier': 0.183}
    """

    kind = "conditional logit"

    def _layout_of(self, data):
        """(layout, design matrix) of ``data``, or of the estimation data."""
        model = self.model
        if data is None:
            return model._layout, model.X, model.offsets
        frame = as_frame(data)
        cols = [model.obs, model.alt, *model._spec.columns]
        cols += [model.avail] if model.avail is not None else []
        check_columns(frame, cols)
        layout = Layout(frame, model.obs, model.alt, avail=model.avail,
                         alt_labels=model._layout.alt_labels)
        return layout, model._spec.design(layout), layout.offsets

    def predict(self, data=None, shares=False, n_threads=None):
        """Choice probabilities.

        Parameters
        ----------
        data : DataFrame, optional
            Long-format data with the model's ``obs``, ``alt``, variable and
            availability columns (``choice`` is not needed); default: the
            estimation data.
        shares : bool
            Return each alternative's predicted share (the weighted mean
            probability over observations; with ``data``, unweighted) instead.
        n_threads : int, optional
            Threads of the kernel (the bits do not depend on it).

        Returns
        -------
        pandas.Series
            Each row's probability, aligned with the data's index
            (unavailable rows 0), or with ``shares`` the shares by alternative.

        Raises
        ------
        KeyError, ChoiceDataError
            New data without one of the model's columns, or that cannot be a
            choice data set (an alternative the model does not know, a missing
            value in an available row, ...).

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                           x=["price", "catch"]).fit()
        >>> res.predict().head(4).round(3).tolist()
        [0.242, 0.291, 0.228, 0.238]
        >>> cheaper = df.assign(price=df.price.where(df.alt != "pier", df.price * 0.9))
        >>> res.predict(cheaper, shares=True).round(3).to_dict()
        {'beach': 0.189, 'boat': 0.324, 'charter': 0.288, 'pier': 0.198}
        """
        pd = pandas_module()
        layout, X, offsets = self._layout_of(data)
        p = _core.probs(X, self.params.to_numpy(), offsets=offsets, n_threads=n_threads)
        if shares:
            w = self.model.w if data is None and self.model.w is not None else None
            per = np.repeat(np.ones(layout.n_obs) if w is None else w, np.diff(offsets))
            total = np.bincount(layout.alt, weights=p * per, minlength=len(layout.alt_labels))
            return pd.Series(total / per[offsets[:-1]].sum(), index=pd.Index(
                layout.alt_labels, name=self.model.alt), name="share")
        out = np.zeros(len(layout.frame))
        out[layout.rows] = p
        return pd.Series(out, index=layout.frame.index, name="probability")

    def elasticity(self, var, data=None, n_threads=None):
        """Point elasticities of the choice probabilities with respect to a
        variable, for each row (i, j) of the data.

        ``direct`` is d log P_ij / d log x_ij = b_j x_ij (1 - P_ij); ``cross``
        is d log P_ik / d log x_ij = -b_j x_ij P_ij, the same for every other
        alternative k of the observation (the logit's IIA), with b_j the
        variable's coefficient in alternative j's utility.

        The signature is ``elasticity(var, data=None)``: the variable comes
        first, since the data are optional.  The order ``elasticity(data,
        var)`` raises a TypeError that says so.

        Parameters
        ----------
        var : str
            A column of the model (``x`` or ``x_by_alt``).
        data : DataFrame, optional
            Long-format data with the model's columns; default: the
            estimation data.
        n_threads : int, optional
            Threads of the kernel.

        Returns
        -------
        pandas.DataFrame
            Columns ``direct`` and ``cross``, aligned with the data's index
            (NaN for unavailable rows).

        Raises
        ------
        TypeError
            When ``var`` is a data frame (the arguments in the other order).
        ValueError
            When ``var`` is not a variable of the model.

        Examples
        --------
        >>> import pandas as pd
        >>> import fastscore.choice as fc
        >>> df = pd.read_csv("examples/data/fishing_long.csv")
        >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
        ...                           x=["price", "catch"]).fit()
        >>> res.elasticity("price").head(4).round(3)
           direct  cross
        0  -2.450  0.784
        1  -2.292  0.942
        2  -2.893  0.853
        3  -2.463  0.771
        """
        if _is_frame(var):
            name = repr(data) if data is not None and not _is_frame(data) else "'<column>'"
            raise TypeError(
                f"elasticity(var, data=None) takes the variable first and the data second, got "
                f"a data frame as var: write res.elasticity({name}, data)"
            )
        pd = pandas_module()
        model = self.model
        layout, X, offsets = self._layout_of(data)
        beta = self.params.to_numpy()
        b = model._spec.slope(var, beta, layout.alt)
        x = numeric(layout.frame, var)[layout.rows].astype(np.float64)
        p = _core.probs(X, beta, offsets=offsets, n_threads=n_threads)
        direct = np.full(len(layout.frame), np.nan)
        cross = np.full(len(layout.frame), np.nan)
        direct[layout.rows] = b * x * (1.0 - p)
        cross[layout.rows] = -b * x * p
        return pd.DataFrame({"direct": direct, "cross": cross}, index=layout.frame.index)

def _is_frame(x):
    """Whether x is a data frame (pandas, polars, pyarrow or an interchange one)."""
    return (hasattr(x, "columns") and hasattr(x, "__len__")) or hasattr(x, "__dataframe__") \
        or hasattr(x, "to_pandas")


def _two_sided_p(t):
    from scipy.special import ndtr

    return 2.0 * ndtr(-np.abs(t))


def _normal_quantile(q):
    from scipy.special import ndtri

    return float(ndtri(q))


class Summary:
    """A fit's table; ``str()`` is the text, a notebook shows the HTML.

    Made by ``FittedModel.summary``, not by hand.

    Attributes
    ----------
    res : FittedModel
        The results it shows.
    alpha : float
        1 - the coverage of its confidence intervals.

    Examples
    --------
    >>> import pandas as pd
    >>> import fastscore.choice as fc
    >>> df = pd.read_csv("examples/data/fishing_long.csv")
    >>> res = fc.ConditionalLogit(df, choice="choice", obs="id", alt="alt",
    ...                           x=["price", "catch"]).fit()
    >>> table = res.summary(alpha=0.1)
    >>> table.alpha, table.res is res
    (0.1, True)
    >>> print(str(table).splitlines()[8])   # the columns: 90 % intervals
                      estimate       std err         t    P>|t|         [0.05         0.95]
    """

    def __init__(self, res, alpha=0.05):
        self.res = res
        self.alpha = alpha

    def _facts(self):
        r = self.res
        model = r.model
        cov = {"hessian": "inverse Hessian", "robust": "robust (sandwich)",
               "cluster": f"clustered by {r.cluster!r} ({r.n_clusters} clusters)"}[r.cov_type]
        left = [("Model", r.kind), ("Choice", str(model.choice)),
                ("Observations", f"{r.nobs}"), ("Parameters", f"{r.df_model}"),
                ("Covariance", cov),
                ("Converged", f"{'yes' if r.converged else 'NO'} ({r.niter} {r.method} iterations)")]
        right = [("Log-likelihood", f"{r.llf:.4f}"), ("LL (equal shares)", f"{r.llnull:.4f}"),
                 ("McFadden rho2", f"{r.rho2:.4f}"), ("adjusted rho2", f"{r.rho2_adj:.4f}"),
                 ("AIC", f"{r.aic:.3f}"), ("BIC", f"{r.bic:.3f}")]
        left += r._extra_facts()
        if r.n_single:
            left.append(("Left out", f"{r.n_single} with one alternative"))
        return left, right

    def __str__(self):
        left, right = self._facts()
        rows = max(len(left), len(right))
        left += [("", "")] * (rows - len(left))
        right += [("", "")] * (rows - len(right))
        wa, wb = (max(len(p[i]) for p in left) for i in (0, 1))
        wc, wd = (max(len(p[i]) for p in right) for i in (0, 1))
        head = [f"{a:<{wa}}  {b:>{wb}}    {c:<{wc}}  {d:>{wd}}"
                for (a, b), (c, d) in zip(left, right)]
        frame = self.res.to_frame(self.alpha)
        lo, hi = f"[{self.alpha / 2:g}", f"{1 - self.alpha / 2:g}]"
        width = max(12, max(len(n) for n in frame.index) + 2)
        table = [f"{'':<{width}}{'estimate':>14}{'std err':>14}{'t':>10}{'P>|t|':>9}"
                 f"{lo:>14}{hi:>14}"]
        for name, row in frame.iterrows():
            table.append(f"{name:<{width}}{row.estimate:>14.6g}{row.std_err:>14.6g}"
                         f"{row.t:>10.3f}{row.p:>9.4f}{row.lower:>14.6g}{row.upper:>14.6g}")
        rule = "=" * max(len(head[0]), len(table[0]))
        return "\n".join([rule, *head, "-" * len(rule), *table, rule])

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        import html

        left, right = self._facts()
        cells = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>"
                        for a, b in left + right)
        return (f"<table>{cells}</table>"
                + self.res.to_frame(self.alpha).to_html(float_format=lambda v: f"{v:.6g}"))
