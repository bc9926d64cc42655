"""Discrete choice models fitted on long-format data.

``ConditionalLogit`` is McFadden's conditional logit: for observation n the
utility of alternative j is ``x_nj @ beta`` and the chosen alternative has
probability ``softmax(X_n @ beta)[chosen]``.  The data come in long format,
one row per observation and alternative, as choice modellers keep them::

    import fastscore.choice as fc
    model = fc.ConditionalLogit(df, choice="choice", obs="chid", alt="alt",
                                x=["pf", "cl", "loc", "wk", "tod", "seas"])
    res = model.fit()
    print(res.summary())

The log-likelihood, its gradient and its Hessian come from one pass of
``fastscore.loglik`` over the rows; the data checks, the grouping and the
design matrix are done once, when the model is made.

pandas is imported when a model is made, not when this module is imported;
SciPy (for p-values) when results are summarised.  Polars and pyarrow tables
are converted once to pandas (their ``to_pandas()``); other data frames
through the dataframe interchange protocol.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from . import _core

__all__ = [
    "ChoiceDataError", "ChoiceResults", "ConditionalLogit", "ConvergenceWarning",
    "NotIdentifiedError",
]

# Rows of the design matrix filled per step: a block of at most this many rows
# stays in cache while its columns are written one by one.
_BLOCK_ROWS = 4096


class ChoiceDataError(ValueError):
    """Long-format data that cannot be a choice data set; the message names the
    column and the first offending observation."""


class NotIdentifiedError(ValueError):
    """The log-likelihood has no unique maximum: a parameter is not identified
    (its column is constant within every observation, or collinear with
    others), or the data are separated (the estimates diverge)."""


class ConvergenceWarning(UserWarning):
    """The optimiser stopped before meeting its convergence criterion."""


def _pandas():
    import pandas as pd

    return pd


def _as_frame(data):
    """A pandas DataFrame holding ``data`` (converted once, if it is not one)."""
    pd = _pandas()
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas"):  # polars.DataFrame, pyarrow.Table
        frame = data.to_pandas()
        if isinstance(frame, pd.DataFrame):
            return frame
    if hasattr(data, "__dataframe__"):
        return pd.api.interchange.from_dataframe(data)
    raise TypeError(
        f"data must be a data frame in long format (pandas, polars or pyarrow), "
        f"got {type(data).__name__}"
    )


def _check_columns(frame, columns):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(
            f"column {missing[0]!r} is not in the data (columns: "
            f"{', '.join(map(repr, frame.columns[:20]))}{', ...' if len(frame.columns) > 20 else ''})"
        )


def _numeric(frame, column):
    """The column as a NumPy array of a real dtype (NaN for missing values)."""
    s = frame[column]
    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return s.to_numpy()
    try:
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise TypeError(f"column {column!r} must hold numbers, got dtype {dtype}") from None


def _codes(frame, column):
    """(codes, labels) of a column; missing labels are an error."""
    pd = _pandas()
    values = frame[column].to_numpy()
    if (values.dtype.kind in "biuf" and values.size
            and np.all(values[1:] >= values[:-1])):
        # Sorted numbers (the usual observation column): codes by counting
        # changes, no hashing.  (NaN fails the comparison and goes below.)
        change = values[1:] != values[:-1]
        codes = np.empty(values.size, dtype=np.intp)
        codes[0] = 0
        np.cumsum(change, out=codes[1:])
        return codes, pd.Index(values[np.r_[True, change]])
    codes, labels = pd.factorize(frame[column], sort=True)
    if codes.size and codes.min() < 0:
        raise ChoiceDataError(
            f"column {column!r} has missing values (row {frame.index[np.argmin(codes)]!r})"
        )
    return codes.astype(np.intp, copy=False), labels


def _label(x):
    """A label as the user wrote it (NumPy scalars as Python ones)."""
    return x.item() if isinstance(x, np.generic) else x


class _Layout:
    """The rows of a long-format frame in the order the kernel reads them.

    Available rows are sorted by (panel, observation, alternative), labels
    sorted, so that the arrays, and every result, are the same for any row
    order of the frame.  ``rows`` are positions in the frame; ``offsets``
    cut them into observations; ``alt`` holds each row's alternative code
    (into ``alt_labels``); ``obs_labels`` each observation's label.
    """

    def __init__(self, frame, obs, alt, avail=None, panel=None, alt_labels=None):
        n = len(frame)
        if n == 0:
            raise ChoiceDataError("data has no rows")
        keep = None
        if avail is not None:
            keep = _zero_one(_numeric(frame, avail), avail, frame, "avail")
            if keep.all():
                keep = None
        obs_codes, obs_labels = _codes(frame, obs)
        if alt_labels is None:
            alt_codes, alt_labels = _codes(frame, alt)
        else:
            alt_codes = _codes_in(frame, alt, alt_labels)
        self.frame = frame
        self.alt_labels = alt_labels
        self.n_obs_all = len(obs_labels)
        n_alt = max(len(alt_labels), 1)

        rows = np.arange(n) if keep is None else np.flatnonzero(keep)
        o, a = obs_codes[rows], alt_codes[rows]
        if panel is not None:
            # Observations ranked by (panel, observation): a panel's rows are contiguous.
            panel_codes, _ = _codes(frame, panel)
            obs_panel = np.full(len(obs_labels), -1, dtype=np.intp)
            obs_panel[obs_codes] = panel_codes
            _constant_within(panel_codes, obs_panel[obs_codes], obs_codes, obs_labels, panel,
                             "a panel")
            rank = np.empty(len(obs_labels), dtype=np.intp)
            rank[np.lexsort((np.arange(len(obs_labels)), obs_panel))] = np.arange(len(obs_labels))
            o = rank[o]
            obs_labels = obs_labels[np.argsort(rank)]
        key = o.astype(np.int64) * n_alt + a
        # True while rows are the frame's rows in its own order.
        self.identity = keep is None
        if key.size > 1 and not np.all(key[1:] > key[:-1]):
            self.identity = False
            order = np.argsort(key, kind="stable")
            rows, o, a, key = rows[order], o[order], a[order], key[order]
            dup = np.flatnonzero(key[1:] == key[:-1])
            if dup.size:
                r = rows[dup[0]]
                raise ChoiceDataError(
                    f"observation {_label(frame[obs].iloc[r])!r} has two rows for alternative "
                    f"{_label(frame[alt].iloc[r])!r}"
                )
        starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]]) if o.size else np.zeros(0, np.intp)
        present = o[starts]
        if present.size != len(obs_labels):
            lost = np.setdiff1d(np.arange(len(obs_labels)), present)[0]
            raise ChoiceDataError(
                f"observation {_label(obs_labels[lost])!r} has no available alternative "
                f"(column {avail!r})"
            )
        offsets = np.r_[starts, o.size].astype(np.intp)
        self.keep = keep
        self.n_single = 0
        self.rows = rows
        self.alt = a
        self.offsets = offsets
        self.obs_labels = obs_labels
        self.obs_name, self.alt_name = obs, alt

    def drop_single(self):
        """Leave out the observations with one available alternative (they add
        nothing to a likelihood); returns the kept observations' mask."""
        sizes = np.diff(self.offsets)
        kept = sizes > 1
        self.n_single = int(sizes.size - kept.sum())
        if self.n_single:
            self.identity = False
            rows = np.repeat(kept, sizes)
            self.rows, self.alt = self.rows[rows], self.alt[rows]
            self.obs_labels = self.obs_labels[np.flatnonzero(kept)]
            self.offsets = np.r_[0, np.cumsum(sizes[kept])].astype(np.intp)
        return kept

    @property
    def n_obs(self):
        return len(self.offsets) - 1

    def first_rows(self):
        """Each observation's first row, as a position in the frame."""
        return self.rows[self.offsets[:-1]]

    def per_obs(self, column, what):
        """A column constant within each observation, as one value per
        observation (float64); an error names the first one where it varies."""
        values = _numeric(self.frame, column)[self.rows].astype(np.float64)
        first = values[self.offsets[:-1]]
        sizes = np.diff(self.offsets)
        bad = np.flatnonzero((values != np.repeat(first, sizes)) & ~np.isnan(values))
        if bad.size:
            raise ChoiceDataError(
                f"{what} column {column!r} varies within observation "
                f"{self.describe_row(bad[0])}"
            )
        return first

    def per_obs_labels(self, column, what):
        """Codes of a label column constant within each observation."""
        codes, labels = _codes(self.frame, column)
        codes = codes[self.rows]
        first = codes[self.offsets[:-1]]
        bad = np.flatnonzero(codes != np.repeat(first, np.diff(self.offsets)))
        if bad.size:
            raise ChoiceDataError(
                f"{what} column {column!r} varies within observation {self.describe_row(bad[0])}"
            )
        return first, labels

    def obs_of_row(self, i):
        """The label of the observation owning sorted row i."""
        return _label(self.obs_labels[np.searchsorted(self.offsets, i, side="right") - 1])

    def describe_row(self, i):
        return (f"{self.obs_of_row(i)!r} (alternative {_label(self.alt_labels[self.alt[i]])!r}, "
                f"row {self.frame.index[self.rows[i]]!r})")


def _zero_one(values, column, frame, what):
    """A 0/1 or bool column as bool; anything else names the row."""
    if values.dtype == np.bool_:
        return values
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        v = values[bad[0]]
        problem = "a missing value" if isinstance(v, float) and math.isnan(v) else f"the value {_label(v)!r}"
        raise ChoiceDataError(
            f"{what} column {column!r} must hold 0/1 or bool; row {frame.index[bad[0]]!r} has {problem}"
        )
    return values == 1


def _codes_in(frame, column, labels):
    """Codes of a column's values in ``labels``; a value not there is an error."""
    pd = _pandas()
    codes = pd.Index(labels).get_indexer(frame[column])
    if codes.size and codes.min() < 0:
        i = int(np.argmin(codes))
        raise ChoiceDataError(
            f"alternative {_label(frame[column].iloc[i])!r} (row {frame.index[i]!r}) is not one "
            f"of the model's alternatives {[_label(v) for v in labels]}"
        )
    return codes.astype(np.intp, copy=False)


def _constant_within(values, expected, obs_codes, obs_labels, column, what):
    bad = np.flatnonzero(values != expected)
    if bad.size:
        raise ChoiceDataError(
            f"{what} column {column!r} varies within observation "
            f"{_label(obs_labels[obs_codes[bad[0]]])!r}"
        )


class _Spec:
    """Which design columns a model has, and their names, in order: the
    generic ``x`` columns, then ``asc.<alt>`` for every alternative but the
    reference, then ``<col>.<alt>`` for the alternative-specific columns."""

    def __init__(self, x, asc, x_by_alt, alt_labels):
        if isinstance(x, str):
            x = [x]
        self.x = list(x)
        self.asc = asc
        self.x_by_alt = dict(x_by_alt or {})
        labels = [_label(v) for v in alt_labels]
        self.terms = [("x", c, None) for c in self.x]
        if asc is not None:
            if asc not in labels:
                raise ValueError(f"asc={asc!r} is not an alternative (alternatives: {labels})")
            self.terms += [("asc", None, j) for j, v in enumerate(labels) if v != asc]
        for col, ref in self.x_by_alt.items():
            if ref not in labels:
                raise ValueError(f"x_by_alt[{col!r}]={ref!r} is not an alternative "
                                 f"(alternatives: {labels})")
            self.terms += [("by_alt", col, j) for j, v in enumerate(labels) if v != ref]
        if not self.terms:
            raise ValueError("the model has no parameters: give x=, asc= or x_by_alt=")
        self.names = []
        for kind, col, j in self.terms:
            if kind == "x":
                self.names.append(str(col))
            elif kind == "asc":
                self.names.append(f"asc.{labels[j]}")
            else:
                self.names.append(f"{col}.{labels[j]}")
        dup = [n for n in self.names if self.names.count(n) > 1]
        if dup:
            raise ValueError(f"parameter {dup[0]!r} appears twice")
        self.columns = list(dict.fromkeys(self.x + list(self.x_by_alt)))

    def design(self, layout):
        """The (rows, k) float64 design matrix of the layout's rows, filled a
        cache-sized block of rows at a time; a missing value in a used column
        names its observation."""
        frame = layout.frame
        cols = {c: _numeric(frame, c) for c in self.columns}
        n, k = layout.rows.size, len(self.terms)
        X = np.empty((n, k), dtype=np.float64)
        # Rows in the frame's own order (sorted data, all available) are read
        # by slices, the others gathered.
        identity = layout.identity
        for i0 in range(0, n, _BLOCK_ROWS):
            i1 = min(i0 + _BLOCK_ROWS, n)
            rows = slice(i0, i1) if identity else layout.rows[i0:i1]
            alt = layout.alt[i0:i1]
            block = X[i0:i1]
            for j, (kind, col, a) in enumerate(self.terms):
                if kind == "x":
                    block[:, j] = cols[col][rows]
                elif kind == "asc":
                    block[:, j] = alt == a
                else:
                    block[:, j] = np.where(alt == a, cols[col][rows], 0.0)
            bad = ~np.isfinite(block)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                col = self.terms[j][1]
                raise ChoiceDataError(
                    f"column {col!r} has a missing or infinite value in observation "
                    f"{layout.describe_row(i0 + i)}"
                )
        return X

    def slope(self, var, params, alt):
        """d utility / d var for each row of alternative codes ``alt``: the sum
        of the coefficients of the design columns built from ``var``."""
        b = np.zeros(alt.size)
        found = False
        for p, (kind, col, a) in zip(params, self.terms):
            if col != var:
                continue
            found = True
            b += p if kind == "x" else p * (alt == a)
        if not found:
            raise ValueError(f"{var!r} is not a variable of the model (variables: {self.columns})")
        return b


class ConditionalLogit:
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
        availability column that is not 0/1, a missing value in a used
        column of an available row, weights that vary within an
        observation, two rows of one alternative in one observation.
    """

    def __init__(self, data, choice, obs, alt, x=(), asc=None, x_by_alt=None, avail=None,
                 weights=None):
        frame = _as_frame(data)
        x_cols = [x] if isinstance(x, str) else list(x)
        used = [choice, obs, alt, *x_cols, *(x_by_alt or {})]
        used += [c for c in (avail, weights) if c is not None]
        _check_columns(frame, used)
        self.choice, self.obs, self.alt, self.avail, self.weights_col = (
            choice, obs, alt, avail, weights)
        self._layout = layout = _Layout(frame, obs, alt, avail=avail)
        self._spec = spec = _Spec(x_cols, asc, x_by_alt, layout.alt_labels)
        self.param_names = spec.names
        chosen = _chosen_index(frame, choice, layout)
        self.chosen = chosen[layout.drop_single()]
        self.X = spec.design(layout)
        self.offsets = layout.offsets
        if weights is None:
            self.w = None
        else:
            w = layout.per_obs(weights, "weights")
            bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
            if bad.size:
                raise ChoiceDataError(
                    f"weights column {weights!r} must be finite and >= 0; observation "
                    f"{_label(layout.obs_labels[bad[0]])!r} has {w[bad[0]]!r}"
                )
            self.w = w
        self.nobs = layout.n_obs
        self.n_single = layout.n_single
        if self.nobs == 0:
            raise ChoiceDataError("no observation has two or more available alternatives")

    def loglik(self, params, grad=False, hess=False, n_threads=None):
        """The log-likelihood at ``params`` (in ``param_names`` order), with the
        gradient and the Hessian when asked, as ``fastscore.loglik`` returns
        them."""
        beta = self._params(params)
        return _core.loglik(self.X, beta, self.chosen, offsets=self.offsets, weights=self.w,
                            grad=grad, hess=hess, n_threads=n_threads)

    def _params(self, params):
        pd = _pandas()
        if isinstance(params, (pd.Series, dict)):
            missing = [n for n in self.param_names if n not in params]
            if missing:
                raise KeyError(f"params has no value for {missing[0]!r}")
            params = [params[n] for n in self.param_names]
        beta = np.array(params, dtype=np.float64).reshape(-1)
        if beta.shape != (len(self.param_names),):
            raise ValueError(f"params must have {len(self.param_names)} values "
                             f"({', '.join(self.param_names)}), got {beta.size}")
        if not np.all(np.isfinite(beta)):
            raise ValueError("params must be finite")
        return beta

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

        Raises
        ------
        NotIdentifiedError
            When a parameter is not identified (the Hessian is singular at the
            start) or the choices are separated (the estimates diverge); the
            message names the parameters.
        """
        if cov not in ("hessian", "robust", "cluster"):
            raise ValueError(f"cov must be 'hessian', 'robust' or 'cluster', got {cov!r}")
        if (cov == "cluster") != (cluster is not None):
            raise ValueError("cov='cluster' needs cluster=<column>, and cluster= needs cov='cluster'")
        if cluster is not None:
            _check_columns(self._layout.frame, [cluster])
            groups, labels = self._layout.per_obs_labels(cluster, "cluster")
        if int(maxiter) < 1:
            raise ValueError(f"maxiter must be >= 1, got {maxiter}")
        beta = np.zeros(len(self.param_names)) if start is None else self._params(start)
        beta, ll, g, H, niter, converged = _newton(
            lambda b: self.loglik(b, grad=True, hess=True, n_threads=n_threads),
            lambda b: self.loglik(b, n_threads=n_threads), beta, self.param_names,
            int(maxiter), float(tol))
        info = _information(H, self.param_names)
        cov_matrix = np.linalg.inv(info)
        n_clusters = None
        if cov != "hessian":
            s = _core.score(self.X, beta, self.chosen, offsets=self.offsets, n_threads=n_threads)
            if self.w is not None:
                s *= self.w[:, None]
            factor = 1.0
            if cov == "cluster":
                n_clusters = len(labels)
                if n_clusters < 2:
                    raise ValueError(f"cov='cluster' needs two or more clusters in {cluster!r}")
                s = np.stack([np.bincount(groups, weights=s[:, j], minlength=n_clusters)
                              for j in range(s.shape[1])], axis=1)
                factor = n_clusters / (n_clusters - 1)
            meat = s.T @ s
            cov_matrix = factor * (cov_matrix @ meat @ cov_matrix)
            cov_matrix = (cov_matrix + cov_matrix.T) / 2
        sizes = np.diff(self.offsets).astype(np.float64)
        llnull = -float(np.log(sizes) @ (np.ones_like(sizes) if self.w is None else self.w))
        return ChoiceResults(self, beta, cov_matrix, ll, llnull, g, H, niter, converged, cov,
                             cluster, n_clusters)


def _chosen_index(frame, choice, layout):
    """Each observation's chosen row, as an index within the observation."""
    raw = _numeric(frame, choice)
    if layout.keep is not None:
        chosen_out = np.flatnonzero(~layout.keep & (raw == 1))
        if chosen_out.size:
            r = chosen_out[0]
            raise ChoiceDataError(
                f"observation {_label(frame[layout.obs_name].iloc[r])!r} chose alternative "
                f"{_label(frame[layout.alt_name].iloc[r])!r}, which is unavailable "
                f"(row {frame.index[r]!r})"
            )
    values = raw[layout.rows]
    if values.dtype != np.bool_:
        bad = np.flatnonzero((values != 0) & (values != 1))
        if bad.size:
            v = values[bad[0]]
            what = "a missing value" if math.isnan(float(v)) else f"the value {_label(v)!r}"
            raise ChoiceDataError(
                f"choice column {choice!r} must hold 0/1 or bool; observation "
                f"{layout.describe_row(bad[0])} has {what}"
            )
    picked = values == 1
    counts = np.add.reduceat(picked.astype(np.intp), layout.offsets[:-1])
    bad = np.flatnonzero(counts != 1)
    if bad.size:
        n = bad[0]
        raise ChoiceDataError(
            f"observation {_label(layout.obs_labels[n])!r} has {counts[n]} chosen available rows "
            f"in column {choice!r}; each observation needs exactly one"
        )
    return (np.flatnonzero(picked) - layout.offsets[:-1]).astype(np.intp)


def _information(H, names):
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


def _newton(f_all, f_value, beta, names, maxiter, tol):
    """Newton's method with step halving on a concave log-likelihood.

    ``f_all(b)`` returns (value, gradient, Hessian), ``f_value(b)`` the value.
    The trial point of a full step is evaluated with its derivatives, so an
    accepted step costs one pass; only a rejected one costs value passes.
    Returns (beta, value, gradient, Hessian, iterations, converged).
    """
    ll, g, H = f_all(beta)
    _information(H, names)
    separation = _Separation(H, names)
    beta0 = beta
    for it in range(1, maxiter + 1):
        info = -H
        try:
            step = np.linalg.solve(info, g)
        except np.linalg.LinAlgError:
            _information(H, names)
            raise
        scaled = float(g @ step)
        if not np.isfinite(scaled):
            _information(H, names)
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
                    ConvergenceWarning, stacklevel=3)
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
        ConvergenceWarning, stacklevel=3)
    return beta, ll, g, H, maxiter, False


class _Separation:
    """Watches the curvature against the start's: the curvature vanishing
    along a direction (the data separated, no finite maximum) shows as a
    generalised eigenvalue of -H against -H at the start falling to nothing,
    while in a fit with a maximum it changes by modest factors."""

    LIMIT = 1e-8

    def __init__(self, H0, names):
        self.L0 = np.linalg.cholesky(-H0)
        self.L0inv = np.linalg.inv(self.L0)
        self.scale = np.sqrt(np.diag(-H0))
        self.names = names

    def check(self, H, moved):
        eig, vec = np.linalg.eigh(self.L0inv @ -H @ self.L0inv.T)
        if eig[0] > self.LIMIT:
            return
        # Named: the parameters that moved most along the flat directions,
        # each in units of its starting standard deviation.
        flat = vec[:, eig <= self.LIMIT]
        along = self.L0inv.T @ flat @ (flat.T @ self.L0.T @ moved)
        v = np.abs(along * self.scale)
        involved = [self.names[j] for j in np.flatnonzero(v > 0.1 * v.max())]
        raise NotIdentifiedError(
            f"the choices are separated by {', '.join(map(repr, involved))}: the estimates "
            f"diverge and there is no finite maximum (drop the variable, or the observations "
            f"it predicts perfectly)"
        )


class ChoiceResults:
    """The results of ``ConditionalLogit.fit``, named as in statsmodels.

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
        Observations in the likelihood (those with two or more available
        alternatives); ``n_single`` were left out.
    niter : int
        Newton iterations.
    converged : bool
    cov_type : str
        ``"hessian"``, ``"robust"`` or ``"cluster"``.
    """

    def __init__(self, model, beta, cov, llf, llnull, gradient, hessian, niter, converged,
                 cov_type, cluster, n_clusters):
        pd = _pandas()
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
        self.gradient = gradient
        self.hessian = hessian
        self.niter = niter
        self.converged = converged
        self.cov_type = cov_type
        self.cluster = cluster
        self.n_clusters = n_clusters

    def cov_params(self):
        """The covariance matrix of the estimates, as a DataFrame."""
        pd = _pandas()
        names = self.model.param_names
        return pd.DataFrame(self._cov, index=names, columns=names)

    def conf_int(self, alpha=0.05):
        """Normal confidence intervals, a DataFrame with columns lower, upper."""
        pd = _pandas()
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        z = _normal_quantile(1 - alpha / 2)
        b, s = self.params.to_numpy(), self.bse.to_numpy()
        return pd.DataFrame({"lower": b - z * s, "upper": b + z * s}, index=self.params.index)

    def to_frame(self, alpha=0.05):
        """Estimates, standard errors, t, p and the confidence interval."""
        pd = _pandas()
        ci = self.conf_int(alpha)
        return pd.DataFrame({
            "estimate": self.params, "std_err": self.bse, "t": self.tvalues, "p": self.pvalues,
            "lower": ci["lower"], "upper": ci["upper"],
        })

    def summary(self, alpha=0.05):
        """The results table: printable, and rendered as HTML in a notebook."""
        return Summary(self, alpha)

    def _layout_of(self, data):
        """(layout, design matrix) of ``data``, or of the estimation data."""
        model = self.model
        if data is None:
            return model._layout, model.X, model.offsets
        frame = _as_frame(data)
        cols = [model.obs, model.alt, *model._spec.columns]
        cols += [model.avail] if model.avail is not None else []
        _check_columns(frame, cols)
        layout = _Layout(frame, model.obs, model.alt, avail=model.avail,
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

        Returns
        -------
        pandas.Series
            Each row's probability, aligned with the data's index
            (unavailable rows 0), or with ``shares`` the shares by alternative.
        """
        pd = _pandas()
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

        Returns
        -------
        pandas.DataFrame
            Columns ``direct`` and ``cross``, aligned with the data's index
            (NaN for unavailable rows).
        """
        pd = _pandas()
        model = self.model
        layout, X, offsets = self._layout_of(data)
        beta = self.params.to_numpy()
        b = model._spec.slope(var, beta, layout.alt)
        x = _numeric(layout.frame, var)[layout.rows].astype(np.float64)
        p = _core.probs(X, beta, offsets=offsets, n_threads=n_threads)
        direct = np.full(len(layout.frame), np.nan)
        cross = np.full(len(layout.frame), np.nan)
        direct[layout.rows] = b * x * (1.0 - p)
        cross[layout.rows] = -b * x * p
        return pd.DataFrame({"direct": direct, "cross": cross}, index=layout.frame.index)

    def wtp(self, numer, denom, alpha=0.05):
        """Willingness to pay ``-b_numer / b_denom`` with its delta-method
        standard error and normal confidence interval, as a Series."""
        pd = _pandas()
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


def _two_sided_p(t):
    from scipy.special import ndtr

    return 2.0 * ndtr(-np.abs(t))


def _normal_quantile(q):
    from scipy.special import ndtri

    return float(ndtri(q))


class Summary:
    """A fit's table; ``str()`` is the text, a notebook shows the HTML."""

    def __init__(self, res, alpha=0.05):
        self.res = res
        self.alpha = alpha

    def _facts(self):
        r = self.res
        model = r.model
        cov = {"hessian": "inverse Hessian", "robust": "robust (sandwich)",
               "cluster": f"clustered by {r.cluster!r} ({r.n_clusters} clusters)"}[r.cov_type]
        left = [("Model", "conditional logit"), ("Choice", str(model.choice)),
                ("Observations", f"{r.nobs}"), ("Parameters", f"{r.df_model}"),
                ("Covariance", cov),
                ("Converged", f"{'yes' if r.converged else 'NO'} ({r.niter} Newton iterations)")]
        right = [("Log-likelihood", f"{r.llf:.4f}"), ("LL (equal shares)", f"{r.llnull:.4f}"),
                 ("McFadden rho2", f"{r.rho2:.4f}"), ("adjusted rho2", f"{r.rho2_adj:.4f}"),
                 ("AIC", f"{r.aic:.3f}"), ("BIC", f"{r.bic:.3f}")]
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
