"""fastscore.choice's optimisers (fastscore/choice/_optim.py): the line
search's shortened step and BFGS finished by Newton steps, on functions
whose maximum is known."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastscore.choice._optim import _shorter, bfgs


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e3, 1e3), st.floats(1e-6, 1e3), st.floats(1e-3, 1e3), st.floats(1e-4, 4.0))
def test_shorter_step_is_the_quadratics_maximum_within_bounds(value, slope, curv, t):
    """Where the value along the step is the quadratic v + s t - c t^2, the
    next step is its maximiser s / 2c, kept within [0.1 t, 0.5 t]."""
    value_t = value + slope * t - curv * t * t
    if not value_t < value:  # a step that increased the value is not shortened
        return
    got = _shorter(t, value, slope, value_t)
    # the curvature is recovered from the values to rounding: compare to it
    c = (value - value_t + slope * t) / (t * t)
    expect = min(max(slope / (2 * c), 0.1 * t), 0.5 * t)
    assert 0.1 * t <= got <= 0.5 * t
    assert got == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize("value_t", [np.nan, -np.inf])
def test_shorter_step_halves_where_the_value_is_not_a_number(value_t):
    assert _shorter(0.8, -3.0, 2.0, value_t) == 0.4


def _problem(center, scale):
    """f(x) = -sum scale_i log cosh(x_i - center_i) - |x - center|^2 / 2:
    concave, its maximum 0 at center; value, gradient and Hessian."""
    def f(x):
        d = x - center
        return (float(-(scale * np.log(np.cosh(d))).sum() - 0.5 * d @ d),
                -scale * np.tanh(d) - d)

    def newton(x):
        d = x - center
        value, grad = f(x)
        return value, grad, np.diag(-scale / np.cosh(d) ** 2 - 1.0)

    return f, newton


@pytest.mark.parametrize("seed", range(4))
def test_bfgs_with_newton_finds_the_maximum(seed):
    rng = np.random.default_rng(seed)
    center = rng.normal(size=5) * 3
    f, newton = _problem(center, rng.uniform(0.5, 20.0, 5))
    calls = []

    def counted(fn):
        def g(x):
            calls.append(fn)
            return fn(x)
        return g

    x, value, grad, it, evaluations, converged, last = bfgs(
        counted(f), np.zeros(5), np.eye(5), 100, 1e-12, newton=counted(newton))
    assert converged
    np.testing.assert_allclose(x, center, atol=1e-6)
    assert value == pytest.approx(0.0, abs=1e-12)
    assert evaluations == len(calls)
    # it ended on a Newton evaluation, at x, which it returns
    assert calls[-1] is newton and last is not None
    assert last[0] == value and np.array_equal(last[1], grad)
    np.testing.assert_array_equal(last[2], newton(x)[2])


def test_bfgs_without_newton_finds_the_maximum():
    rng = np.random.default_rng(7)
    center = rng.normal(size=4)
    f, _ = _problem(center, rng.uniform(0.5, 5.0, 4))
    x, value, grad, it, evaluations, converged, last = bfgs(f, np.zeros(4), np.eye(4), 200,
                                                           1e-14)
    assert converged and last is None
    np.testing.assert_allclose(x, center, atol=1e-6)
