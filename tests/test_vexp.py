"""The exp that weighs a block's rows in the pass (fastscore_simd.h,
fs_vexp4) and the log1p of log pi(a) and the entropy (fs_log1p, fs_vlog1p4,
fs_vlog1p8) are our own, the same functions on every CPU: their error
against the exactly rounded result (numpy.longdouble) is at most 1 ulp
(about 0.7 ulp for exp's normal results, 0.82 for log1p), and their special
values are those of exp and log1p."""
import numpy as np
import pytest

from fastscore import _core, _matrix


def ulps(got, exact):
    """|got - exact| in units of the last place of exact rounded to float64
    (exact in numpy.longdouble)."""
    ulp = np.spacing(np.maximum(exact.astype(np.float64), np.finfo(np.float64).smallest_subnormal))
    return np.abs((got.astype(np.longdouble) - exact) / ulp.astype(np.longdouble)).astype(np.float64)


def ulp_error(x):
    return ulps(_core._vexp(x), np.exp(x.astype(np.longdouble)))


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs an extended longdouble")
@pytest.mark.parametrize("lo, hi", [(-745.0, 0.0), (-2.0, 2.0), (-1e-6, 1e-6), (0.0, 709.0)])
def test_error_at_most_one_ulp(lo, hi):
    x = np.random.default_rng(1).uniform(lo, hi, size=200_000)
    err = ulp_error(x)
    normal = np.exp(x) >= np.finfo(np.float64).tiny
    assert err.max() <= 1.0
    assert err[normal].max() <= 0.8
    # nearly always the exactly rounded value
    assert np.mean(err[normal] <= 0.5) > 0.95


def test_special_values():
    x = np.array([0.0, -0.0, -np.inf, np.inf, np.nan, -746.0, -1e300, 710.0, 1e300,
                  -744.44, np.log(2.0)])
    got = _core._vexp(x)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == 0.0 and got[3] == np.inf and np.isnan(got[4])
    assert got[5] == 0.0 and got[6] == 0.0
    assert got[7] == np.inf and got[8] == np.inf
    assert got[9] == 5e-324
    assert abs(got[10] - 2.0) <= np.spacing(2.0)


def test_lengths_and_tails():
    for n in (0, 1, 3, 4, 5, 31, 32, 33, 100):
        x = -np.arange(n) / 7.0
        np.testing.assert_allclose(_core._vexp(x), np.exp(x), rtol=3e-16, atol=0)


def log1p_ulp_error(got, x):
    return ulps(got, np.log1p(x.astype(np.longdouble)))


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs an extended longdouble")
@pytest.mark.parametrize("lo, hi, logscale", [(-330, -300, True), (-300, -10, True),
                                              (0.0, 0.4143, False), (0.4142, 1.5, False),
                                              (1.5, 20.0, False), (20.0, 1e6, False),
                                              (6.0, 300.0, True)])
def test_log1p_error_below_one_ulp(lo, hi, logscale):
    rng = np.random.default_rng(2)
    x = 10.0 ** rng.uniform(lo, hi, 100_000) if logscale else rng.uniform(lo, hi, 100_000)
    got = _core._log1p(x)
    err = log1p_ulp_error(got, x)
    assert err.max() <= 0.82
    assert np.mean(err <= 0.5) > 0.9
    # the vector body at four lanes (the state-input form's blocks) gives the same bits
    block = x.copy()
    _matrix._log1p_block(block)
    np.testing.assert_array_equal(block, got)


def test_log1p_special_values():
    x = np.array([0.0, 5e-324, 1e-310, 2.0 ** -60, np.sqrt(2.0) - 1.0, 1.0,
                  np.finfo(np.float64).max, np.inf, np.nan])
    got = _core._log1p(x)
    assert got[0] == 0.0 and not np.signbit(got[0])
    assert got[1] == 5e-324 and got[2] == 1e-310 and got[3] == 2.0 ** -60
    assert abs(got[5] - np.log(2.0)) <= np.spacing(np.log(2.0))
    assert got[6] == np.log1p(np.finfo(np.float64).max)
    assert got[7] == np.inf and np.isnan(got[8])
    assert np.all(log1p_ulp_error(got[:7], x[:7]) <= 0.82)
