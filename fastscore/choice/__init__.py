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
SciPy (for the p-values of the results) when a model is fitted.  Polars and pyarrow tables
are converted once to pandas (their ``to_pandas()``); other data frames
through the dataframe interchange protocol.
"""
from ._conditional import ConditionalLogit
from ._data import ChoiceDataError, ConvergenceWarning, NotIdentifiedError
from ._mixed import MixedLogit, MixedLogitResults
from ._results import ChoiceResults, FittedModel, Summary

__all__ = [
    "ChoiceDataError", "ChoiceResults", "ConditionalLogit", "ConvergenceWarning", "FittedModel",
    "MixedLogit", "MixedLogitResults", "NotIdentifiedError", "Summary",
]
