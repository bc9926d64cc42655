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


@pytest.mark.parametrize("module", ["phi", "matrix"])
def test_loglik_unaligned_weights_are_copied_aligned(module):
    """The fuzzer under UBSan (CI's sanitizer step): fastscore.loglik with a
    float64 weights array that is contiguous but not 8-byte aligned read
    weights[b] through a misaligned double pointer (undefined behaviour;
    x86 tolerates it, so only the sanitizer saw it).  coerce_weights used
    np.ascontiguousarray, which keeps such an array as it is."""
    from fastscore._coerce import coerce_weights
    import fastscore

    w = np.array([0.65, 0.57, 0.68, 1.49])
    buf = np.empty(w.nbytes + 1, np.uint8)
    wu = buf[1:].view(np.float64)
    wu[...] = w
    assert not wu.flags.aligned
    assert coerce_weights(wu, 4).flags.aligned
    rng = np.random.default_rng(0)
    a = np.zeros(4, np.intp)
    if module == "phi":
        phi, theta = rng.standard_normal((4, 2, 3)), rng.standard_normal(3)
        got = fastscore.loglik(phi, theta, a, weights=wu, grad=True, hess=True)
        want = fastscore.loglik(phi, theta, a, weights=w, grad=True, hess=True)
    else:
        s, W = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
        got = M.loglik(s, W, a, weights=wu, grad=True)
        want = M.loglik(s, W, a, weights=w, grad=True)
    assert got[0] == want[0]
    for x, y in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(x, y)
