"""The exp that weighs a block's rows in the pass (fastscore_simd.h,
fs_vexp4) is our own, the same function on every CPU: its error against
the exactly rounded exp (numpy.longdouble) is at most 1 ulp (about 0.7 ulp
for normal results), and its special values are those of exp."""
import numpy as np
import pytest

from fastscore import _core


def ulp_error(x):
    got = _core._vexp(x)
    exact = np.exp(x.astype(np.longdouble))
    rounded = exact.astype(np.float64)
    ulp = np.spacing(np.maximum(rounded, np.finfo(np.float64).smallest_subnormal))
    return np.abs((got.astype(np.longdouble) - exact) / ulp.astype(np.longdouble)).astype(np.float64)


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
