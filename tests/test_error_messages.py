"""Errors that point at the fix (issue 13), and message findings of the fuzzer.

Each test states the message a user should see.  Those the lead is
implementing in the core are strict xfails: they flip to failures (XPASS)
the day the fix lands, and the marker is then removed.
"""
import numpy as np
import pytest

import fastscore


rng = np.random.default_rng(13)
PHI = rng.standard_normal((5, 3))
THETA = rng.standard_normal(3)


def test_transposed_phi_blames_phi_layout():
    """phi given as (d, N) with theta (N,)... here phi (3, 5) is phi.T of a
    5-action, 3-feature state and theta has the 3 features: the error must
    say that phi's last axis must be the features, not only blame theta."""
    with pytest.raises(ValueError, match=r"phi.*last axis.*features"):
        fastscore.score(PHI.T, THETA, 0)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_phi_names_state_and_row(value):
    phi = rng.standard_normal((4, 6, 3))
    phi[2, 4, 1] = value
    with pytest.raises(ValueError, match=r"state 2\b.*row 4\b|row 4\b.*state 2\b"):
        fastscore.score(phi, THETA, np.zeros(4, int))


def test_nonfinite_phi_names_row_single_state():
    phi = PHI.copy()
    phi[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"\brow 3\b"):
        fastscore.score(phi, THETA, 0)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint8])
def test_integer_mask_of_zeros_and_ones_accepted(dtype):
    mask = np.array([1, 0, 1, 1, 0], dtype=dtype)
    want = fastscore.score(PHI, THETA, 2, mask=mask.astype(bool))
    assert fastscore.score(PHI, THETA, 2, mask=mask).tobytes() == want.tobytes()


@pytest.mark.parametrize("mask", [np.array([1, 2, 1, 1, 0]), np.array([1, -1, 1, 1, 1]),
                                  np.array([0.0, 1.0, 1.0, 1.0, 1.0])],
                         ids=["int-2", "int-minus-1", "float"])
def test_other_masks_rejected_clearly(mask):
    """Integer masks holding anything but 0 and 1 (and float masks) are
    rejected with an error naming mask (today: every non-bool mask is)."""
    with pytest.raises((TypeError, ValueError), match=r"\bmask\b"):
        fastscore.score(PHI, THETA, 2, mask=mask)


@pytest.mark.parametrize("which", ["phi-ragged-states", "phi-ragged-rows"])
def test_ragged_nested_list_suggests_offsets(which):
    if which == "phi-ragged-states":   # states with different numbers of actions
        phi = [PHI.tolist(), PHI[:3].tolist()]
        a = [0, 1]
    else:                               # rows of different lengths
        phi = [[1.0, 2.0, 3.0], [1.0, 2.0]]
        a = 0
    with pytest.raises(ValueError, match=r"(?s)\bphi\b.*offsets="):
        fastscore.score(phi, THETA, a)


def test_object_column_with_missing_values_says_so():
    """What a pandas column with missing values gives (dtype object with
    None / NaN / pd.NA): the message must say it holds missing values."""
    phi = np.array([[1.0, None, 2.0], [0.5, 1.0, 2.0]], dtype=object)
    with pytest.raises((TypeError, ValueError), match=r"\bphi\b.*missing"):
        fastscore.score(phi, THETA, 0)


def test_pandas_column_with_missing_values_says_so():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": [1.0, None, 2.0], "y": [pd.NA, 1.0, 2.0]}, dtype=object)
    with pytest.raises((TypeError, ValueError), match=r"\bphi\b.*missing"):
        fastscore.score(df.to_numpy(), np.ones(2), 0)


def test_show_config_returns_the_dict(capsys):
    info = fastscore.show_config()
    assert isinstance(info, dict)
    assert {"fastscore", "openmp", "simd"} <= set(info)


# ---------------------------------------------------------------------------
# Found by the fuzzer (tests/robust_fuzz.py KNOWN_UNNAMED).

@pytest.mark.parametrize("case", ["tiny-temperature", "float32-range"])
def test_overflowing_result_names_an_argument(case):
    if case == "tiny-temperature":
        phi = rng.standard_normal((5, 3)).astype(np.float32)   # score ~ 1e300: not a float32
        kw = dict(theta=np.zeros(3, np.float32), temperature=1e-300)
    else:
        phi = np.array([[3e38, 0.0], [-3e38, 0.0]], np.float32)
        kw = dict(theta=np.zeros(2, np.float32), temperature=0.5)
    with pytest.raises(ValueError, match=r"\b(phi|temperature)\b"):
        fastscore.score(phi, a=0, **kw)


# ---------------------------------------------------------------------------
# fastscore.matrix: findings of the fuzzer (tests/robust_fuzz.py accepted these
# messages through KNOWN_UNNAMED until the fixes landed).

@pytest.mark.parametrize("call", ["score-one", "score-batch", "loglik-grad", "loglik-value-f32"])
def test_matrix_overflow_names_the_arguments(call):
    """A result that overflows its dtype: the message must say what to change
    (the temperature, s, W or b, the weights), as fastscore.score's does.
    They were: 'the result of the state overflows (it is not finite in the output
    dtype)', 'the gradient overflows (...)', 'the log-likelihood overflows (...)'."""
    import fastscore.matrix as M
    ones = np.ones((2, 1))
    calls = {
        "score-one": lambda: M.score(np.array([1.0]), np.zeros((1, 2)), 0, temperature=1e-310),
        "score-batch": lambda: M.score(ones, np.zeros((1, 2)), np.zeros(2, int),
                                       temperature=1e-310),
        "loglik-grad": lambda: M.loglik(ones, np.zeros((1, 2)), np.zeros(2, int),
                                        temperature=1e-310, grad=True),
        "loglik-value-f32": lambda: M.loglik(ones.astype(np.float32),
                                             np.ones((1, 2), np.float32), np.zeros(2, int),
                                             weights=np.full(2, 3e38, np.float32)),
    }
    with pytest.raises(ValueError, match=r"\btemperature\b|\bweights\b"):
        calls[call]()

