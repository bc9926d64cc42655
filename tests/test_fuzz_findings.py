"""Library bugs the fuzzer (tests/robust_fuzz.py) found, as minimal cases.

Each is a strict xfail: it turns into a failure (XPASS) the day the fix
lands, and the marker is then removed (the fuzzer's matching exemption in
robust_fuzz.KNOWN_BAD_RESULTS too).  Error-message findings are in
test_error_messages.py.
"""
import numpy as np
import pytest

M = pytest.importorskip("fastscore.matrix")

TINY_TAU = 1e-310   # subnormal: 1 / tau overflows to inf in double


@pytest.mark.parametrize("case", ["one-action", "one-action-batch", "one-action-bias",
                                  "masked-to-one", "s-zero"])
def test_matrix_score_one_legal_action_tiny_temperature_is_not_nan(case):
    """With one legal action pi_a = 1, so e_a - pi = 0 and the score is 0
    (fastscore.score gives 0 for the same policy).  The kernel formed the
    residual as (sum of the others) * (1 / l / tau) = 0 * inf = NaN (and
    -0 * inf for masked actions); its overflow guard took max(rmax, |NaN|),
    which dropped the NaN, so NaN was returned instead of 0 or an error."""
    s, W = np.array([0.001]), np.array([[1.0]])
    if case == "one-action":
        call = lambda: M.score(s, W, 0, temperature=TINY_TAU)          # noqa: E731
    elif case == "one-action-batch":
        call = lambda: M.score(s[None], W, np.zeros(1, np.intp),         # noqa: E731
                               temperature=TINY_TAU)
    elif case == "one-action-bias":
        call = lambda: M.score(s, W, 0, b=np.zeros(1), temperature=TINY_TAU)  # noqa: E731
    elif case == "masked-to-one":
        call = lambda: M.score(s, np.array([[1.0, 2.0]]), 0,             # noqa: E731
                               mask=np.array([True, False]), temperature=TINY_TAU)
    else:  # s = 0 (the fuzzer's first case): logits 0
        call = lambda: M.score(np.zeros(1), np.array([[0.3]]), 0,        # noqa: E731
                               temperature=TINY_TAU)
    try:
        got = call()
    except ValueError as e:   # an overflow error would be acceptable too
        assert "temperature" in str(e)
        return
    for r in (got if isinstance(got, tuple) else (got,)):
        assert np.all(np.isfinite(r)), f"NaN result {r!r}"
        assert np.all(r == 0)


@pytest.mark.parametrize("k", [0, 1])
def test_matrix_score_zero_state_cannot_overflow(k):
    """grad_W = outer(s, e_a - pi) / tau: with k = 0 it is empty, with s = 0 it
    is 0, whatever tau; fastscore.score gives 0 for the same policy (phi = 0).
    A tiny temperature used to raise 'the result of the state overflows' (the
    residual (e_a - pi) / tau, not part of the result without b, did)."""
    got = M.score(np.zeros(k), np.zeros((k, 2)), 0, temperature=TINY_TAU)
    assert got.shape == (k, 2) and np.all(got == 0)


@pytest.mark.parametrize("layout", ["single", "batch", "blocks"])
def test_matrix_log_prob_float32_overflow_raises(layout):
    """float32 inputs, logits 1e300 apart: log pi(1) = -1e300, not finite in
    the float32 result.  fastscore.log_prob (batch) and fastscore.matrix.loglik
    raise ValueError ('... overflows ... float32; the temperature is too
    small ...'); fastscore.matrix.log_prob returned np.float32(-inf) (single)
    or array([-inf], dtype=float32) (batch)."""
    s, W = np.array([1.0], np.float32), np.array([[1.0, 0.0]], np.float32)
    if layout == "batch":
        s, a = s[None], np.array([1])
    elif layout == "blocks":   # a batch large enough for the block path
        s, a = np.repeat(s[None], 200, axis=0), np.ones(200, np.intp)
    else:
        a = 1
    with pytest.raises(ValueError, match="overflow"):
        M.log_prob(s, W, a, temperature=1e-300)
