"""Long-format choice data laid out once for the kernels: the rows in a
canonical order, the design matrix, the chosen rows, and every data check."""
from __future__ import annotations

import math

import numpy as np

# Doubles of the design matrix filled per step (2 MiB): a block of rows stays
# in cache while its columns are written one by one.  Measured on 10^7 x 20:
# 0.45 s a fill at this size, 0.53 s at a quarter of it, 0.77 s at a sixteenth.
BLOCK_DOUBLES = 1 << 18


class ChoiceDataError(ValueError):
    """Long-format data that cannot be a choice data set; the message names the
    column and the first offending observation."""


class NotIdentifiedError(ValueError):
    """The log-likelihood has no unique maximum: a parameter is not identified
    (its column is constant within every observation, or collinear with
    others), or the data are separated (the estimates diverge)."""


class ConvergenceWarning(UserWarning):
    """The optimiser stopped before meeting its convergence criterion."""


def pandas_module():
    import pandas as pd

    return pd


def as_frame(data):
    """A pandas DataFrame holding ``data`` (converted once, if it is not one)."""
    pd = pandas_module()
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


def check_columns(frame, columns):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(
            f"column {missing[0]!r} is not in the data (columns: "
            f"{', '.join(map(repr, frame.columns[:20]))}{', ...' if len(frame.columns) > 20 else ''})"
        )


def numeric(frame, column):
    """The column as a NumPy array of a real dtype (NaN for missing values)."""
    s = frame[column]
    dtype = s.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return s.to_numpy()
    try:
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise TypeError(f"column {column!r} must hold numbers, got dtype {dtype}") from None


def label_codes(frame, column, obs=None, missing_ok=False):
    """(codes, labels) of a column; missing labels are an error (naming the
    row, and its observation when ``obs`` is given), or code -1 with
    ``missing_ok``."""
    pd = pandas_module()
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
    if codes.size and codes.min() < 0 and not missing_ok:
        r = int(np.argmin(codes))
        where = "" if obs is None else f"observation {label(frame[obs].iloc[r])!r}, "
        raise ChoiceDataError(
            f"column {column!r} has missing values ({where}row {frame.index[r]!r})"
        )
    return codes.astype(np.intp, copy=False), labels


def label(x):
    """A label as the user wrote it (NumPy scalars as Python ones)."""
    return x.item() if isinstance(x, np.generic) else x


class Layout:
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
            keep = zero_one(frame, avail, "avail", None, obs=obs, alt=alt)
            if keep.all():
                keep = None
        obs_codes, obs_labels = label_codes(frame, obs)
        if alt_labels is None:
            alt_codes, alt_labels = label_codes(frame, alt, obs=obs)
        else:
            alt_codes = codes_in(frame, alt, alt_labels)
        self.frame = frame
        self.alt_labels = alt_labels
        self.n_obs_all = len(obs_labels)
        n_alt = max(len(alt_labels), 1)

        rows = np.arange(n) if keep is None else np.flatnonzero(keep)
        o, a = obs_codes[rows], alt_codes[rows]
        self.obs_panel = self.panel_labels = None
        if panel is not None:
            # Observations ranked by (panel, observation): a panel's rows are contiguous.
            panel_codes, self.panel_labels = label_codes(frame, panel, obs=obs)
            obs_panel = np.full(len(obs_labels), -1, dtype=np.intp)
            obs_panel[obs_codes] = panel_codes
            constant_within(panel_codes, obs_panel[obs_codes], obs_codes, obs_labels, panel,
                            "panel")
            order = np.lexsort((np.arange(len(obs_labels)), obs_panel))
            rank = np.empty(len(obs_labels), dtype=np.intp)
            rank[order] = np.arange(len(obs_labels))
            o = rank[o]
            obs_labels = obs_labels[order]
            self.obs_panel = obs_panel[order]
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
                    f"observation {label(frame[obs].iloc[r])!r} has two rows for alternative "
                    f"{label(frame[alt].iloc[r])!r}"
                )
        starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]]) if o.size else np.zeros(0, np.intp)
        present = o[starts]
        if present.size != len(obs_labels):
            lost = np.setdiff1d(np.arange(len(obs_labels)), present)[0]
            raise ChoiceDataError(
                f"observation {label(obs_labels[lost])!r} has no available alternative "
                f"(column {avail!r})"
            )
        offsets = np.r_[starts, o.size].astype(np.intp)
        self.keep = keep
        self.avail_name = avail
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
            if self.obs_panel is not None:
                self.obs_panel = self.obs_panel[kept]
            self.offsets = np.r_[0, np.cumsum(sizes[kept])].astype(np.intp)
        return kept

    @property
    def n_obs(self):
        return len(self.offsets) - 1

    def panel_offsets(self):
        """(P + 1,) boundaries of the panels' observations (each observation its
        own panel when the layout has none), and the panels' labels."""
        if self.obs_panel is None:
            return np.arange(self.n_obs + 1, dtype=np.intp), self.obs_labels
        p = self.obs_panel
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]]) if p.size else p
        return np.r_[starts, p.size].astype(np.intp), self.panel_labels[p[starts]]

    def per_obs(self, column, what):
        """A column constant within each observation, as one value per
        observation (float64); an error names the first one where it is
        missing (in any available row) or varies."""
        values = numeric(self.frame, column)[self.rows].astype(np.float64)
        missing = np.flatnonzero(np.isnan(values))
        if missing.size:
            raise ChoiceDataError(
                f"{what} column {column!r} has a missing value in observation "
                f"{self.describe_row(missing[0])}"
            )
        first = values[self.offsets[:-1]]
        sizes = np.diff(self.offsets)
        bad = np.flatnonzero(values != np.repeat(first, sizes))
        if bad.size:
            raise ChoiceDataError(
                f"{what} column {column!r} varies within observation "
                f"{self.describe_row(bad[0])}"
            )
        return first

    def per_obs_labels(self, column, what):
        """Codes of a label column constant within each observation; a
        missing label in an available row names its observation."""
        codes, labels = label_codes(self.frame, column, missing_ok=True)
        codes = codes[self.rows]
        missing = np.flatnonzero(codes < 0)
        if missing.size:
            raise ChoiceDataError(
                f"{what} column {column!r} has a missing value in observation "
                f"{self.describe_row(missing[0])}"
            )
        first = codes[self.offsets[:-1]]
        bad = np.flatnonzero(codes != np.repeat(first, np.diff(self.offsets)))
        if bad.size:
            raise ChoiceDataError(
                f"{what} column {column!r} varies within observation {self.describe_row(bad[0])}"
            )
        return first, labels

    def obs_of_row(self, i):
        """The label of the observation owning sorted row i."""
        return label(self.obs_labels[np.searchsorted(self.offsets, i, side="right") - 1])

    def describe_row(self, i):
        return (f"{self.obs_of_row(i)!r} (alternative {label(self.alt_labels[self.alt[i]])!r}, "
                f"row {self.frame.index[self.rows[i]]!r})")


def zero_one(frame, column, what, rows, obs, alt, describe=None):
    """A 0/1 or bool column (its values at ``rows``, or all of them with
    None) as bool; anything else, strings included, is an error naming the
    column and the observation of the first offending value.  ``describe(i)``
    says where position i of ``rows`` is (default: its observation,
    alternative and row in the frame)."""
    if describe is None:
        def describe(i):
            r = i if rows is None else rows[i]
            return (f"{label(frame[obs].iloc[r])!r} (alternative {label(frame[alt].iloc[r])!r}, "
                    f"row {frame.index[r]!r})")
    try:
        values = numeric(frame, column)
    except TypeError:
        # Not numbers (strings, say): the first value that is not 0, 1 or a bool.
        objects = frame[column].to_numpy(dtype=object)
        if rows is not None:
            objects = objects[rows]
        i = next((i for i, v in enumerate(objects)
                  if isinstance(v, (str, bytes)) or not is_zero_one(v)), None)
        if i is None:  # the values that are not numbers are in other rows
            return np.array([v == 1 for v in objects], dtype=bool)
        raise ChoiceDataError(
            f"{what} column {column!r} must hold 0/1 or bool, not dtype {frame[column].dtype}; "
            f"observation {describe(i)} has {describe_value(objects[i])}"
        ) from None
    if rows is not None:
        values = values[rows]
    if values.dtype == np.bool_:
        return values
    bad = np.flatnonzero((values != 0) & (values != 1))
    if bad.size:
        raise ChoiceDataError(
            f"{what} column {column!r} must hold 0/1 or bool; observation {describe(bad[0])} "
            f"has {describe_value(values[bad[0]])}"
        )
    return values == 1


def is_zero_one(v):
    try:
        return bool(v == 0 or v == 1)
    except (TypeError, ValueError):  # pandas.NA, arrays
        return False


def describe_value(v):
    """'a missing value' or 'the value <v>'."""
    pd = pandas_module()
    try:
        missing = bool(pd.isna(v))
    except (TypeError, ValueError):
        missing = False
    return "a missing value" if missing else f"the value {label(v)!r}"


def codes_in(frame, column, labels):
    """Codes of a column's values in ``labels``; a value not there is an error."""
    pd = pandas_module()
    codes = pd.Index(labels).get_indexer(frame[column])
    if codes.size and codes.min() < 0:
        i = int(np.argmin(codes))
        raise ChoiceDataError(
            f"alternative {label(frame[column].iloc[i])!r} (row {frame.index[i]!r}) is not one "
            f"of the model's alternatives {[label(v) for v in labels]}"
        )
    return codes.astype(np.intp, copy=False)


def constant_within(values, expected, obs_codes, obs_labels, column, what):
    bad = np.flatnonzero(values != expected)
    if bad.size:
        raise ChoiceDataError(
            f"{what} column {column!r} varies within observation "
            f"{label(obs_labels[obs_codes[bad[0]]])!r}"
        )


class Spec:
    """Which design columns a model has, and their names, in order: the
    generic ``x`` columns, then ``asc.<alt>`` for every alternative but the
    reference, then ``<col>.<alt>`` for the alternative-specific columns."""

    def __init__(self, x, asc, x_by_alt, alt_labels):
        if isinstance(x, str):
            x = [x]
        self.x = list(x)
        self.asc = asc
        self.x_by_alt = dict(x_by_alt or {})
        labels = [label(v) for v in alt_labels]
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
        cols = {c: numeric(frame, c) for c in self.columns}
        n, k = layout.rows.size, len(self.terms)
        X = np.empty((n, k), dtype=np.float64)
        # Rows in the frame's own order (sorted data, all available) are read
        # by slices, the others gathered.
        identity = layout.identity
        block_rows = max(64, BLOCK_DOUBLES // max(k, 1))
        for i0 in range(0, n, block_rows):
            i1 = min(i0 + block_rows, n)
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
            if not np.isfinite(block).all():
                i, j = np.argwhere(~np.isfinite(block))[0]
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


def chosen_index(frame, choice, layout):
    """Each observation's chosen row, as an index within the observation."""
    picked = zero_one(frame, choice, "choice", layout.rows, layout.obs_name, layout.alt_name,
                      describe=layout.describe_row)
    if layout.keep is not None:
        # Unavailable rows may hold anything but a choice.
        chosen_out = np.flatnonzero(~layout.keep & (numeric(frame, choice) == 1))
        if chosen_out.size:
            r = chosen_out[0]
            raise ChoiceDataError(
                f"observation {label(frame[layout.obs_name].iloc[r])!r} chose alternative "
                f"{label(frame[layout.alt_name].iloc[r])!r}, which is unavailable (row "
                f"{frame.index[r]!r}: choice column {choice!r} is 1, avail column "
                f"{layout.avail_name!r} is 0)"
            )
    counts = np.add.reduceat(picked.astype(np.intp), layout.offsets[:-1])
    bad = np.flatnonzero(counts != 1)
    if bad.size:
        n = bad[0]
        raise ChoiceDataError(
            f"observation {label(layout.obs_labels[n])!r} has {counts[n]} chosen available rows "
            f"in column {choice!r}; each observation needs exactly one"
        )
    return (np.flatnonzero(picked) - layout.offsets[:-1]).astype(np.intp)



class LongFormatModel:
    """What every choice model does with its data, once, when it is made: the
    columns checked, the rows laid out (by panel when there is one), the
    chosen rows found, the observations with one available alternative left
    out, the design matrix built and the weights checked."""

    def __init__(self, data, choice, obs, alt, x, asc, x_by_alt, avail, weights, panel=None,
                 alt_labels=None):
        # alt_labels: the alternatives, when the frame is one part of a data
        # set (fastscore.dask), so that the parameters are the whole set's.
        frame = as_frame(data)
        x_cols = [x] if isinstance(x, str) else list(x)
        used = [choice, obs, alt, *x_cols, *(x_by_alt or {})]
        used += [c for c in (avail, weights, panel) if c is not None]
        check_columns(frame, used)
        self.choice, self.obs, self.alt, self.avail = choice, obs, alt, avail
        self.weights_col, self.panel = weights, panel
        self._layout = layout = Layout(frame, obs, alt, avail=avail, panel=panel,
                                       alt_labels=alt_labels)
        self._spec = spec = Spec(x_cols, asc, x_by_alt, layout.alt_labels)
        chosen = chosen_index(frame, choice, layout)
        self.chosen = chosen[layout.drop_single()]
        self.nobs = layout.n_obs
        self.n_single = layout.n_single
        if self.nobs == 0:
            raise ChoiceDataError("no observation has two or more available alternatives")
        self.X = spec.design(layout)
        self.offsets = layout.offsets
        self.w = None if weights is None else self._weights(weights)

    def _weights(self, column):
        """Per-observation weights: finite, >= 0, constant within each
        observation (and each panel, when there is one)."""
        layout = self._layout
        w = layout.per_obs(column, "weights")
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
        if bad.size:
            raise ChoiceDataError(
                f"weights column {column!r} must be finite and >= 0; observation "
                f"{label(layout.obs_labels[bad[0]])!r} has {float(w[bad[0]])!r}"
            )
        if layout.obs_panel is not None:
            p = layout.obs_panel
            bad = np.flatnonzero((p[1:] == p[:-1]) & (w[1:] != w[:-1]))
            if bad.size:
                raise ChoiceDataError(
                    f"weights column {column!r} varies within panel "
                    f"{label(layout.panel_labels[p[bad[0]]])!r} (column {self.panel!r}); a "
                    f"panel's observations share one weight"
                )
        return w

    @property
    def param_names(self):
        """The parameters' names, in the order of ``params`` and every result."""
        return list(self._names)

    def _params(self, params):
        """Parameters as a float64 vector in ``param_names`` order (from an
        array, a dict or a Series keyed by name)."""
        pd = pandas_module()
        names = self._names
        if isinstance(params, (pd.Series, dict)):
            missing = [n for n in names if n not in params]
            if missing:
                raise KeyError(f"params has no value for {missing[0]!r}")
            params = [params[n] for n in names]
        beta = np.array(params, dtype=np.float64).reshape(-1)
        if beta.shape != (len(names),):
            raise ValueError(f"params must have {len(names)} values "
                             f"({', '.join(names)}), got {beta.size}")
        if not np.all(np.isfinite(beta)):
            raise ValueError("params must be finite")
        return beta

    def _cluster_codes(self, cluster, per):
        """Cluster codes per observation (per="obs") or per panel, from a column
        constant within each; and the number of clusters."""
        groups, _ = self._cluster_labels(cluster, per)
        used, groups = np.unique(groups, return_inverse=True)
        if used.size < 2:
            raise ValueError(f"cov='cluster' needs two or more clusters in {cluster!r}")
        return groups, used.size

    def _cluster_labels(self, cluster, per):
        """(codes into labels, labels) of the cluster column per observation or
        per panel, checked constant within each."""
        check_columns(self._layout.frame, [cluster])
        groups, labels = self._layout.per_obs_labels(cluster, "cluster")
        if per == "panel":
            starts = self._layout.panel_offsets()[0][:-1]
            sizes = np.diff(np.r_[starts, groups.size])
            bad = np.flatnonzero(groups != np.repeat(groups[starts], sizes))
            if bad.size:
                i = int(bad[0])
                raise ChoiceDataError(
                    f"cluster column {cluster!r} varies within panel "
                    f"{label(self._layout.panel_labels[self._layout.obs_panel[i]])!r}")
            groups = groups[starts]
        return groups, labels
