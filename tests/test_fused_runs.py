"""The fused kernel of runs of tiny states (score, log_prob, entropy, loglik
value and gradient; padded or ragged, masked or not, N <= 32, d <= 32, the
AVX-512 set): bit for bit, and error for error, the per-state path.

A call with one state (phi of shape (N, d)) never takes the fused path, so
scoring the states one call at a time gives the per-state results to
compare with; per_state() runs any call with the fused kernel switched off
(_core._fused_enabled).  The shapes cover N from 1 to 17, 24, 32 and 33
(the first N the per-state path does in two blocks, which must not take the
fused path), and partial last runs (B % 8 != 0); the hypothesis tests every
N up to 32."""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastscore
from fastscore import _core

FUSED = _core._fused_available()


def one_by_one(phi, theta, a, **kw):
    return np.stack([fastscore.score(phi[b], theta, int(a[b]), **kw) for b in range(len(a))])


@contextlib.contextmanager
def per_state_path():
    """Calls inside take the per-state path: the fused kernel switched off."""
    prev = _core._fused_enabled(False)
    try:
        yield
    finally:
        _core._fused_enabled(prev)


def per_state(f, *args, **kw):
    """f(*args, **kw) by the per-state path."""
    with per_state_path():
        return f(*args, **kw)


def same_bits(x, y):
    return x.shape == y.shape and np.array_equal(x.view(np.int64), y.view(np.int64))


def data(B, N, d, seed, scale=1.0, kind="normal"):
    rng = np.random.default_rng(seed)
    if kind == "int":  # tied logits
        phi = rng.integers(-2, 3, (B, N, d)).astype(np.float64)
        theta = rng.integers(-2, 3, d).astype(np.float64) * scale
    elif kind == "wide":  # magnitudes over many binades
        phi = rng.standard_normal((B, N, d)) * np.exp2(rng.integers(-30, 30, (B, N, d)))
        theta = rng.standard_normal(d) * scale
    else:
        phi = rng.standard_normal((B, N, d))
        theta = rng.standard_normal(d) * scale
    return phi, theta, rng.integers(0, N, B)


# (B, N, d): the last run partial for most; 4000 x 4 x 8 and up is enough
# work for the threaded driver; runs more than FS_FUSED_AHEAD runs long
# read rows the kernel prefetched.
SHAPES = [(1000, 1, 1), (999, 2, 3), (777, 5, 7), (1001, 6, 13), (513, 7, 17), (333, 8, 24),
          (10, 4, 9), (3, 8, 31), (2, 8, 32), (4001, 4, 8), (2049, 3, 5), (1500, 8, 32),
          (301, 9, 5), (403, 10, 20), (77, 12, 1), (64, 13, 31), (33, 15, 17), (1201, 16, 32),
          (129, 17, 9), (67, 24, 20), (35, 32, 32), (41, 33, 7)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind,scale", [("normal", 0.1), ("normal", 1.0), ("normal", 300.0),
                                        ("int", 1.0), ("int", 30.0), ("wide", 1.0)])
def test_fused_equals_per_state(shape, kind, scale):
    phi, theta, a = data(*shape, seed=sum(shape), scale=scale, kind=kind)
    for tau in (1.0, 0.3):
        want = one_by_one(phi, theta, a, temperature=tau)
        for nt in (1, 2):
            got = fastscore.score(phi, theta, a, temperature=tau, n_threads=nt)
            assert same_bits(got, want), (shape, kind, scale, tau, nt)


@pytest.mark.parametrize("shape", [(4001, 4, 8), (333, 7, 17), (21, 3, 32)])
def test_fused_strided_out(shape):
    """Output rows written through their strides; strided phi too."""
    B, N, d = shape
    phi, theta, a = data(B, N, d, seed=5)
    want = one_by_one(phi, theta, a)
    for nt in (1, 2):
        big = np.full((B, 2 * d), 7.0)
        fastscore.score(phi, theta, a, n_threads=nt, out=big[:, ::2])
        assert same_bits(big[:, ::2].copy(), want)
        assert np.all(big[:, 1::2] == 7.0)
        buf = np.full((d, B), 5.0)
        fastscore.score(phi, theta, a, n_threads=nt, out=buf.T)
        assert same_bits(buf.T.copy(), want)
        phi2 = np.zeros((2 * B, 2 * N, d))
        phi2[::2, ::2] = phi
        assert same_bits(fastscore.score(phi2[::2, ::2], theta, a, n_threads=nt), want)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 40), N=st.integers(1, 32), d=st.integers(1, 32),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0, 300.0]),
       kind=st.sampled_from(["normal", "int", "wide"]), tau=st.sampled_from([1.0, 0.3, 2.5]))
def test_fused_equals_per_state_fuzz(B, N, d, seed, scale, kind, tau):
    phi, theta, a = data(B, N, d, seed, scale, kind)
    got = fastscore.score(phi, theta, a, temperature=tau, n_threads=1)
    assert same_bits(got, one_by_one(phi, theta, a, temperature=tau))


@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("shape", [(4000, 4, 8), (1003, 7, 17), (1003, 10, 20)])
def test_fused_error_in_middle_run(shape, nt):
    """A NaN in a middle run (and another later in the same run): the first
    bad state and the message of the per-state path."""
    B, N, d = shape
    phi, theta, a = data(B, N, d, seed=7)
    phi[700, N - 1, d // 2] = np.nan
    phi[702, 0, 0] = np.nan
    with pytest.raises(ValueError) as fused:
        fastscore.score(phi, theta, a, n_threads=nt)
    with pytest.raises(ValueError) as one:
        fastscore.score(phi[700], theta, int(a[700]))
    assert "state 700" in str(fused.value)
    assert f"row {N - 1} of state 700" in str(fused.value)
    assert "NaN or inf" in str(one.value)


@pytest.mark.parametrize("nt", [1, 2])
def test_fused_result_overflow_names_state(nt):
    """Finite logits, an overflowing result (phi_a - phi_k = inf where theta is
    0): the per-state path's message for the first such state."""
    B, N, d = 4000, 4, 8
    phi, theta, a = data(B, N, d, seed=8)
    theta[3] = 0.0
    for b in (700, 703):
        phi[b, 2, 3] = 1.7e308
        phi[b, 1, 3] = -1.7e308
        a[b] = 2
    with pytest.raises(ValueError, match=r"the result for state 700 overflows"):
        fastscore.score(phi, theta, a, n_threads=nt)


def test_fused_active_where_expected():
    """The fused kernel exists exactly with the AVX-512 set."""
    level = _core.build_info()["float64_logits"]
    if "AVX-512" not in level:
        assert not FUSED


def flat(r):
    """A result (an array, or a tuple of them: loglik's value and gradient) as one array."""
    return np.hstack([np.ravel(x) for x in (r if isinstance(r, tuple) else (r,))])


def loglik_pair(phi, theta, a, **kw):
    """loglik by the fused path and by the per-state path."""
    got = fastscore.loglik(phi, theta, a, **kw)
    want = per_state(fastscore.loglik, phi, theta, a, **kw)
    return flat(got), flat(want)


@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("shape", [(4000, 4, 8), (1003, 10, 20)])
def test_fused_loglik_error_in_middle_run(shape, nt):
    """A NaN in a middle run: the per-state path's error for the same state."""
    B, N, d = shape
    phi, theta, a = data(B, N, d, seed=9)
    phi[700, N - 1, d // 2] = np.nan
    phi[702, 0, 0] = np.nan
    with pytest.raises(ValueError) as fused:
        fastscore.loglik(phi, theta, a, grad=True, n_threads=nt)
    with pytest.raises(ValueError) as slow, per_state_path():
        fastscore.loglik(phi, theta, a, grad=True, n_threads=nt)
    assert "state 700" in str(fused.value)
    assert str(fused.value) == str(slow.value)


@pytest.mark.parametrize("nt", [1, 2])
def test_fused_loglik_overflow_as_per_state(nt):
    """A state's gradient term overflows (finite logits): the same error."""
    B, N, d = 4000, 4, 8
    phi, theta, a = data(B, N, d, seed=8)
    theta[3] = 0.0
    phi[700, 2, 3], phi[700, 1, 3], a[700] = 1.7e308, -1.7e308, 2
    with pytest.raises(ValueError) as fused:
        fastscore.loglik(phi, theta, a, grad=True, n_threads=nt)
    with pytest.raises(ValueError) as slow, per_state_path():
        fastscore.loglik(phi, theta, a, grad=True, n_threads=nt)
    assert str(fused.value) == str(slow.value)


# float32 phi: with float32 theta the per-state path takes the plain-dot logits
# and float32 results (fs_rows_dot_f32, fs_store_f32); with float64 theta the
# Dot2 logits and float64 results.  Each has its fused instance; loglik's
# sums are float64 either way.
FUSED32 = _core._fused_available("float32")
F32_KINDS = [(np.float32, np.float32), (np.float32, np.float64)]
F32_IDS = ["phi32-theta32", "phi32-theta64"]
ALL_KINDS = [(np.float64, np.float64), (np.float64, np.float32)] + F32_KINDS
ALL_IDS = ["phi64-theta64", "phi64-theta32"] + F32_IDS


def data32(B, N, d, seed, scale=1.0, kind="normal", dtypes=F32_KINDS[0]):
    phi, theta, a = data(B, N, d, seed, scale, kind)
    return phi.astype(dtypes[0]), theta.astype(dtypes[1]), a


def same_bits_any(x, y):
    """Bit equality of float32 or float64 arrays (dtype included)."""
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def test_fused_f32_active_where_expected():
    assert FUSED32 == FUSED


@pytest.mark.parametrize("dtypes", F32_KINDS, ids=F32_IDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind,scale", [("normal", 0.1), ("normal", 1.0), ("normal", 30.0),
                                        ("normal", 300.0), ("int", 1.0), ("int", 30.0),
                                        ("wide", 1.0)])
def test_fused_f32_equals_per_state(shape, kind, scale, dtypes):
    phi, theta, a = data32(*shape, seed=sum(shape) + 2, scale=scale, kind=kind, dtypes=dtypes)
    want_dtype = np.float32 if dtypes[1] == np.float32 else np.float64
    for tau in (1.0, 0.3, 2.5):  # (x / 0.3 rounds as x * (1 / 0.3) for most x)
        want = one_by_one(phi, theta, a, temperature=tau)
        assert want.dtype == want_dtype
        for nt in (1, 2):
            got = fastscore.score(phi, theta, a, temperature=tau, n_threads=nt)
            assert same_bits_any(got, want), (shape, kind, scale, tau, nt)


@pytest.mark.parametrize("dtypes", F32_KINDS, ids=F32_IDS)
@pytest.mark.parametrize("shape", [(4001, 4, 8), (333, 7, 17), (21, 3, 32), (1201, 16, 32)])
def test_fused_f32_strided_out(shape, dtypes):
    """float32 phi: output rows written through their strides; strided phi too."""
    B, N, d = shape
    phi, theta, a = data32(B, N, d, seed=6, dtypes=dtypes)
    want = one_by_one(phi, theta, a, temperature=0.3)
    odt = want.dtype
    for nt in (1, 2):
        big = np.full((B, 2 * d), 7.0, odt)
        fastscore.score(phi, theta, a, n_threads=nt, temperature=0.3, out=big[:, ::2])
        assert same_bits_any(big[:, ::2].copy(), want)
        assert np.all(big[:, 1::2] == 7.0)
        buf = np.full((d, B), 5.0, odt)
        fastscore.score(phi, theta, a, n_threads=nt, temperature=0.3, out=buf.T)
        assert same_bits_any(buf.T.copy(), want)
        phi2 = np.zeros((2 * B, 2 * N, d), phi.dtype)
        phi2[::2, ::2] = phi
        got = fastscore.score(phi2[::2, ::2], theta, a, n_threads=nt, temperature=0.3)
        assert same_bits_any(got, want)


@settings(max_examples=80, deadline=None)
@given(B=st.integers(1, 40), N=st.integers(1, 32), d=st.integers(1, 32),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0, 300.0]),
       kind=st.sampled_from(["normal", "int", "wide"]), tau=st.sampled_from([1.0, 0.3, 2.5]),
       dtypes=st.sampled_from(F32_KINDS))
def test_fused_f32_equals_per_state_fuzz(B, N, d, seed, scale, kind, tau, dtypes):
    phi, theta, a = data32(B, N, d, seed, scale, kind, dtypes)
    got = fastscore.score(phi, theta, a, temperature=tau, n_threads=1)
    assert same_bits_any(got, one_by_one(phi, theta, a, temperature=tau))


@pytest.mark.parametrize("dtypes", ALL_KINDS, ids=ALL_IDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind,scale", [("normal", 0.1), ("normal", 1.0), ("normal", 300.0),
                                        ("int", 30.0), ("wide", 1.0)])
def test_fused_loglik_equals_per_state(shape, kind, scale, dtypes):
    phi, theta, a = data32(*shape, seed=sum(shape) + 3, scale=scale, kind=kind, dtypes=dtypes)
    w = np.random.default_rng(4).standard_normal(shape[0])
    for tau in (1.0, 0.3, 2.5):  # (x / 0.3 rounds as x * (1 / 0.3) for most x)
        for weights in (None, w):
            for grad in (False, True):
                for nt in (1, 2):
                    got, want = loglik_pair(phi, theta, a, weights=weights, grad=grad,
                                            temperature=tau, n_threads=nt)
                    assert same_bits_any(got, want), (shape, kind, scale, tau, grad, nt)


@settings(max_examples=120, deadline=None)
@given(B=st.integers(1, 40), N=st.integers(1, 32), d=st.integers(1, 32),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0, 300.0]),
       kind=st.sampled_from(["normal", "int", "wide"]), tau=st.sampled_from([1.0, 0.3, 2.5]),
       weighted=st.booleans(), grad=st.booleans(), dtypes=st.sampled_from(ALL_KINDS))
def test_fused_loglik_fuzz(B, N, d, seed, scale, kind, tau, weighted, grad, dtypes):
    phi, theta, a = data32(B, N, d, seed, scale, kind, dtypes)
    w = np.random.default_rng(seed).uniform(-2, 2, B) if weighted else None
    got, want = loglik_pair(phi, theta, a, weights=w, grad=grad, temperature=tau, n_threads=1)
    assert same_bits_any(got, want)


def per_state_error(f, phi, *args, **kw):
    """The message of f by the per-state path."""
    with pytest.raises(ValueError) as e, per_state_path():
        f(phi, *args, **kw)
    return str(e.value)


@pytest.mark.parametrize("dtypes", F32_KINDS, ids=F32_IDS)
@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("shape", [(4000, 4, 8), (1003, 7, 17), (1003, 10, 20)])
def test_fused_f32_error_in_middle_run(shape, nt, dtypes):
    """A NaN in a middle run (and another later in the same run): score and
    loglik give the per-state path's error for the first bad state."""
    B, N, d = shape
    phi, theta, a = data32(B, N, d, seed=7, dtypes=dtypes)
    phi[700, N - 1, d // 2] = np.nan
    phi[702, 0, 0] = np.nan
    for f, kw in ((fastscore.score, {}), (fastscore.loglik, {"grad": True}),
                  (fastscore.loglik, {})):
        with pytest.raises(ValueError) as fused:
            f(phi, theta, a, n_threads=nt, **kw)
        assert f"row {N - 1} of state 700" in str(fused.value)
        assert str(fused.value) == per_state_error(f, phi, theta, a, n_threads=nt, **kw)


@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_fused_f32_result_overflow_as_per_state(nt, tau):
    """float32 results: a score finite in double but beyond FLT_MAX (finite
    logits: theta is 0 where phi is huge) is the per-state path's overflow
    error for the first such state, and the finite ones below it match."""
    B, N, d = 4000, 4, 8
    phi, theta, a = data32(B, N, d, seed=8)
    theta[3] = 0.0
    for b in (700, 703):
        phi[b, :, 3] = -3e38
        phi[b, 2, 3] = 3e38
        a[b] = 2
    # in double 3e38 (2 - 2 pi_a) / tau > FLT_MAX: the float is inf
    with pytest.raises(ValueError) as fused:
        fastscore.score(phi, theta, a, n_threads=nt, temperature=tau)
    want = per_state_error(fastscore.score, phi, theta, a, n_threads=nt, temperature=tau)
    assert "the result for state 700 overflows" in want and "float32" in want
    assert str(fused.value) == want
    # below FLT_MAX: finite float32 scores, the same bits as one-state calls
    for b in (700, 703):
        phi[b, :, 3] = -1e37
        phi[b, 2, 3] = 1e37
    got = fastscore.score(phi, theta, a, n_threads=nt, temperature=tau)
    assert same_bits_any(got, one_by_one(phi, theta, a, temperature=tau))


def outcome(f, *args, **kw):
    """f's result, flattened to float64 bits, or its ValueError's message."""
    try:
        r = f(*args, **kw)
    except ValueError as e:
        return str(e)
    return flat(r).tobytes()


@pytest.mark.parametrize("dtypes", F32_KINDS, ids=F32_IDS)
@pytest.mark.parametrize("nt", [1, 2])
def test_fused_f32_loglik_overflow_as_per_state(nt, dtypes):
    """A float32 state's gradient term overflows in double (finite logits,
    equal in state 700): the same error, or bits, as the per-state path."""
    B, N, d = 4000, 4, 8
    phi, theta, a = data32(B, N, d, seed=8, dtypes=dtypes)
    theta[3] = 0.0
    phi[700] = 0.0
    phi[700, :, 3] = -3e38
    phi[700, 2, 3] = 3e38
    a[700] = 2
    for tau in (1.0, 1e-280):
        kw = dict(grad=True, n_threads=nt, temperature=tau)
        fused = outcome(fastscore.loglik, phi, theta, a, **kw)
        want = per_state(outcome, fastscore.loglik, phi, theta, a, **kw)
        assert fused == want
        assert isinstance(want, str) == (tau != 1.0)


# log_prob and entropy: each output alone takes the fused kernel (float64
# and both float32 pairs).
FAMILY = {"log_prob": lambda phi, theta, a, **kw: fastscore.log_prob(phi, theta, a, **kw),
          "entropy": lambda phi, theta, a, **kw: fastscore.entropy(phi, theta, **kw)}


def family_pair(func, phi, theta, a, **kw):
    f = FAMILY[func]
    return outcome(f, phi, theta, a, **kw), per_state(outcome, f, phi, theta, a, **kw)


@pytest.mark.parametrize("func", sorted(FAMILY))
@pytest.mark.parametrize("dtypes", ALL_KINDS, ids=ALL_IDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind,scale", [("normal", 1.0), ("normal", 300.0), ("int", 30.0),
                                        ("wide", 1.0)])
def test_fused_family_equals_per_state(shape, kind, scale, dtypes, func):
    phi, theta, a = data32(*shape, seed=sum(shape) + 4, scale=scale, kind=kind, dtypes=dtypes)
    for tau in (1.0, 2.5):
        for nt in (1, 2):
            got, want = family_pair(func, phi, theta, a, temperature=tau, n_threads=nt)
            assert got == want, (shape, kind, scale, tau, nt)


def test_fused_family_dtype_and_strided_out():
    """The results' dtype follows the inputs, and a strided out= is written
    through its stride with the per-state bits."""
    for dtypes in ALL_KINDS:
        phi, theta, a = data32(1001, 6, 13, seed=3, dtypes=dtypes)
        want_dtype = np.float32 if dtypes == (np.float32, np.float32) else np.float64
        for func in FAMILY:
            got = FAMILY[func](phi, theta, a)
            assert got.dtype == want_dtype
            buf = np.full(2 * len(a), 7.0, want_dtype)
            FAMILY[func](phi, theta, a, out=buf[::2])
            assert buf[::2].tobytes() == got.tobytes() and np.all(buf[1::2] == 7.0)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 40), N=st.integers(1, 32), d=st.integers(1, 32),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0, 300.0]),
       kind=st.sampled_from(["normal", "int", "wide"]), tau=st.sampled_from([1.0, 0.3, 2.5]),
       dtypes=st.sampled_from(ALL_KINDS), func=st.sampled_from(sorted(FAMILY)))
def test_fused_family_fuzz(B, N, d, seed, scale, kind, tau, dtypes, func):
    phi, theta, a = data32(B, N, d, seed, scale, kind, dtypes)
    got, want = family_pair(func, phi, theta, a, temperature=tau, n_threads=1)
    assert got == want


@pytest.mark.parametrize("func", sorted(FAMILY))
@pytest.mark.parametrize("nt", [1, 2])
@pytest.mark.parametrize("shape", [(4000, 4, 8), (1003, 10, 20)])
def test_fused_family_error_in_middle_run(shape, nt, func):
    """A NaN in a middle run: the per-state path's error for the same state."""
    B, N, d = shape
    phi, theta, a = data(B, N, d, seed=9)
    phi[700, N - 1, d // 2] = np.nan
    phi[702, 0, 0] = np.nan
    got, want = family_pair(func, phi, theta, a, n_threads=nt)
    assert isinstance(got, str) and "state 700" in got
    assert got == want


@pytest.mark.parametrize("nt", [1, 2])
def test_fused_f32_log_prob_overflow_as_per_state(nt):
    """float32 results: log pi(a) finite in double but below -FLT_MAX (a logit
    gap of about 6e38) is the per-state path's error for that state."""
    B, N, d = 4000, 4, 8
    phi, theta, a = data32(B, N, d, seed=8)
    theta[3] = 2.0
    phi[700, 1, 3], phi[700, 2, 3], a[700] = 3e38, -3e38, 2
    got, want = family_pair("log_prob", phi, theta, a, n_threads=nt)
    assert isinstance(want, str) and "state 700" in want
    assert got == want


# Masks: a masked row reads zeros (logit 0, then -inf: weight 0, out of the
# maximum, r, S and g), as in the per-state path.  Masked rows hold NaN here,
# which neither path may read.
MASKED_CALLS = {
    "score": lambda phi, theta, a, **kw: fastscore.score(phi, theta, a, **kw),
    "log_prob": FAMILY["log_prob"],
    "entropy": FAMILY["entropy"],
    "loglik": lambda phi, theta, a, **kw: fastscore.loglik(phi, theta, a, **kw),
    "loglik_grad": lambda phi, theta, a, **kw: fastscore.loglik(phi, theta, a, grad=True, **kw),
}


def masked_data(B, N, d, seed, scale=1.0, kind="normal", dtypes=ALL_KINDS[0], p_legal=0.6):
    """Data with a random mask (each state keeps its taken action legal) and
    NaN in every masked row."""
    phi, theta, _ = data32(B, N, d, seed, scale, kind, dtypes)
    rng = np.random.default_rng(seed + 1)
    mask = rng.random((B, N)) < p_legal
    a = rng.integers(0, N, B)
    mask[np.arange(B), a] = True
    phi[~mask] = np.nan
    return phi, theta, a, mask


@pytest.mark.parametrize("func", sorted(MASKED_CALLS))
@pytest.mark.parametrize("dtypes", ALL_KINDS, ids=ALL_IDS)
@pytest.mark.parametrize("shape", [(999, 2, 3), (1001, 6, 13), (403, 10, 20), (1201, 16, 32),
                                   (129, 17, 9), (35, 32, 32), (4001, 4, 8)])
@pytest.mark.parametrize("kind,scale", [("normal", 1.0), ("int", 30.0), ("wide", 1.0)])
def test_fused_masked_equals_per_state(shape, kind, scale, dtypes, func):
    phi, theta, a, mask = masked_data(*shape, seed=sum(shape) + 6, scale=scale, kind=kind,
                                      dtypes=dtypes)
    f = MASKED_CALLS[func]
    for tau in (1.0, 2.5):
        for nt in (1, 2):
            kw = dict(mask=mask, temperature=tau, n_threads=nt)
            got = outcome(f, phi, theta, a, **kw)
            assert got == per_state(outcome, f, phi, theta, a, **kw), (shape, kind, tau, nt)
            assert not isinstance(got, str)


def test_fused_masked_one_mask_for_all_states():
    """A mask of shape (N,) applies to every state of the batch."""
    phi, theta, _ = data(1001, 6, 13, seed=4)
    mask = np.array([True, False, True, True, False, True])
    a = np.random.default_rng(4).choice(np.flatnonzero(mask), 1001)
    for func, f in MASKED_CALLS.items():
        got = outcome(f, phi, theta, a, mask=mask)
        assert got == per_state(outcome, f, phi, theta, a, mask=mask), func
        assert got == outcome(f, phi, theta, a, mask=np.broadcast_to(mask, (1001, 6)).copy())


@pytest.mark.parametrize("nt", [1, 2])
def test_fused_masked_errors_as_per_state(nt):
    """A fully masked state in a middle run (entropy takes no action: the
    kernel's check), a NaN in a legal row, a masked taken action: the same
    error, naming the same state, as the per-state path."""
    phi, theta, a, mask = masked_data(4000, 5, 8, seed=11)
    m1 = mask.copy()
    m1[700] = False
    m1[703] = False
    got = outcome(FAMILY["entropy"], phi, theta, a, mask=m1, n_threads=nt)
    assert "state 700" in got
    assert got == per_state(outcome, FAMILY["entropy"], phi, theta, a, mask=m1, n_threads=nt)
    p2 = phi.copy()
    p2[702, a[702], 0] = np.nan
    for func, f in MASKED_CALLS.items():
        got = outcome(f, p2, theta, a, mask=mask, n_threads=nt)
        assert "state 702" in got, func
        assert got == per_state(outcome, f, p2, theta, a, mask=mask, n_threads=nt)
    m3 = mask.copy()
    m3[705, a[705]] = False
    for func, f in MASKED_CALLS.items():
        if func != "entropy":
            got = outcome(f, phi, theta, a, mask=m3, n_threads=nt)
            assert "a[705]" in got and "masked" in got, func


@settings(max_examples=80, deadline=None)
@given(B=st.integers(1, 40), N=st.integers(1, 32), d=st.integers(1, 32),
       seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.1, 1.0, 30.0, 300.0]),
       kind=st.sampled_from(["normal", "int", "wide"]), tau=st.sampled_from([1.0, 0.3, 2.5]),
       dtypes=st.sampled_from(ALL_KINDS), func=st.sampled_from(sorted(MASKED_CALLS)),
       p_legal=st.sampled_from([0.0, 0.3, 0.9]))
def test_fused_masked_fuzz(B, N, d, seed, scale, kind, tau, dtypes, func, p_legal):
    phi, theta, a, mask = masked_data(B, N, d, seed, scale, kind, dtypes, p_legal)
    f = MASKED_CALLS[func]
    got = outcome(f, phi, theta, a, mask=mask, temperature=tau, n_threads=1)
    assert got == per_state(outcome, f, phi, theta, a, mask=mask, temperature=tau, n_threads=1)


# Ragged rows (offsets=): each run takes its longest state's row count, and a
# shorter state's rows past its own are absent (as masked ones).
def ragged_data(B, lo, hi, d, seed, dtypes=ALL_KINDS[0], masked=False, n=None):
    """B states of lo..hi rows (or of n[b] rows), with a random mask and NaN
    in its masked rows when masked."""
    rng = np.random.default_rng(seed)
    if n is None:
        n = rng.integers(lo, hi + 1, B)
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.intp)
    phi = rng.standard_normal((offsets[-1], d)).astype(dtypes[0])
    theta = rng.standard_normal(d).astype(dtypes[1])
    a = np.array([rng.integers(0, k) for k in n], dtype=np.intp)
    mask = None
    if masked:
        mask = rng.random(offsets[-1]) < 0.6
        mask[offsets[:-1] + a] = True
        phi[~mask] = np.nan
    return phi, theta, a, offsets, mask


def check_ragged(f, phi, theta, a, offsets, mask, tau):
    """f with offsets= returns (no error) the per-state path's bits, on one
    thread and on two."""
    for nt in (1, 2):
        kw = dict(offsets=offsets, mask=mask, temperature=tau, n_threads=nt)
        got = outcome(f, phi, theta, a, **kw)
        assert not isinstance(got, str), got
        assert got == per_state(outcome, f, phi, theta, a, **kw), (tau, nt)


@pytest.mark.parametrize("func", sorted(MASKED_CALLS))
@pytest.mark.parametrize("dtypes", ALL_KINDS, ids=ALL_IDS)
@pytest.mark.parametrize("lo,hi,d", [(1, 8, 5), (2, 32, 20), (10, 10, 13), (1, 4, 8), (30, 33, 7),
                                     (1, 1, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_ragged_equals_per_state(lo, hi, d, dtypes, func, masked):
    phi, theta, a, offsets, mask = ragged_data(1001, lo, hi, d, seed=lo + hi + d, dtypes=dtypes,
                                               masked=masked)
    for tau in (1.0, 2.5):
        check_ragged(MASKED_CALLS[func], phi, theta, a, offsets, mask, tau)


@pytest.mark.parametrize("nt", [1, 2])
def test_fused_ragged_error_in_middle_run(nt):
    """A NaN in a ragged state's legal row: the per-state path's error."""
    phi, theta, a, offsets, _ = ragged_data(4000, 1, 9, 8, seed=3)
    phi[offsets[700] + a[700], 2] = np.nan
    for func, f in MASKED_CALLS.items():
        got = outcome(f, phi, theta, a, offsets=offsets, n_threads=nt)
        assert "state 700" in got, func
        assert got == per_state(outcome, f, phi, theta, a, offsets=offsets, n_threads=nt)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 40), hi=st.integers(1, 33), d=st.integers(1, 32),
       seed=st.integers(0, 2**32 - 1), tau=st.sampled_from([1.0, 0.3, 2.5]),
       dtypes=st.sampled_from(ALL_KINDS), func=st.sampled_from(sorted(MASKED_CALLS)),
       masked=st.booleans())
def test_fused_ragged_fuzz(B, hi, d, seed, tau, dtypes, func, masked):
    phi, theta, a, offsets, mask = ragged_data(B, 1, hi, d, seed, dtypes, masked)
    f = MASKED_CALLS[func]
    kw = dict(offsets=offsets, mask=mask, temperature=tau, n_threads=1)
    assert outcome(f, phi, theta, a, **kw) == per_state(outcome, f, phi, theta, a, **kw)


def mixed_blocks():
    """Row counts of 8192 states (64 groups of 128, two blocks of 64 each):
    blocks of 64 states alternately of 3 or 4 rows (3 rows wasted
    a run: the fused kernel) and of runs of one 32-row state among 2-row
    ones (210 rows wasted a run: the per-state path)."""
    taken = np.tile([4, 3, 4, 3, 4, 4, 3, 4], 8)
    left = np.tile([32, 2, 2, 2, 2, 2, 2, 2], 8)
    return np.concatenate([taken, left] * 64)


@pytest.mark.parametrize("func", sorted(MASKED_CALLS))
@pytest.mark.parametrize("dtypes", ALL_KINDS, ids=ALL_IDS)
@pytest.mark.parametrize("masked", [False, True])
def test_fused_ragged_mixed_blocks(func, dtypes, masked):
    """Blocks by the fused kernel and blocks state by state in one call: the
    per-state path's bits."""
    n = mixed_blocks()
    phi, theta, a, offsets, mask = ragged_data(len(n), 0, 0, 6, seed=11, dtypes=dtypes,
                                               masked=masked, n=n)
    check_ragged(MASKED_CALLS[func], phi, theta, a, offsets, mask, 0.7)


@pytest.mark.parametrize("bad", [10, 64 + 9, 8191])
def test_fused_ragged_mixed_blocks_error(bad):
    """A NaN in a legal row of a state in a fused block, in a per-state one,
    and in the last state: the per-state path's error."""
    n = mixed_blocks()
    phi, theta, a, offsets, _ = ragged_data(len(n), 0, 0, 6, seed=12, n=n)
    phi[offsets[bad] + a[bad], 1] = np.nan
    for func, f in MASKED_CALLS.items():
        for nt in (1, 2):
            got = outcome(f, phi, theta, a, offsets=offsets, n_threads=nt)
            assert f"state {bad}" in got, (func, nt)
            assert got == per_state(outcome, f, phi, theta, a, offsets=offsets, n_threads=nt)


def test_ragged_pays_bound():
    """The blocks run_fused sends to the fused kernel: 8 W (d + 20) <= 1700
    a state, W = 8 N_max - sum n a run (a partial run's missing states as
    rows of N_max)."""
    def pays(n, d):
        return _core._ragged_pays(np.concatenate([[0], np.cumsum(n)]).astype(np.intp), d)
    assert pays([4] * 64, 32)                    # no row wasted
    assert pays([3, 4] * 32, 8)                  # W = 4 a run
    assert not pays([32] + [2] * 7, 8)           # W = 210 a run
    assert pays([32] * 6 + [11, 11], 20)         # W = 42: 42 * 40 <= 1700
    assert not pays([32] * 6 + [11, 10], 20)     # W = 43: 1720
    assert pays(([32] * 6 + [11, 11]) * 7 + [32] * 8, 20)
    assert not pays([5], 8)                      # one state: W = 35 for one state's saving
    assert pays([5] * 16, 8)


# Ragged runs whose short states leave rows absent in every part of the
# kernel: N up to 32 and d of 9 to 32 (two to four 8-wide vectors in g).
@pytest.mark.parametrize("N,d", [(32, 9), (24, 17), (17, 25), (12, 32), (9, 20)])
@pytest.mark.parametrize("func", sorted(MASKED_CALLS))
@pytest.mark.parametrize("dtypes", ALL_KINDS, ids=ALL_IDS)
@pytest.mark.parametrize("masked", [False, True])
def test_fused_ragged_absent_rows_wide(N, d, func, dtypes, masked):
    w = min(N - 1, 1700 // (d + 20))             # rows one state a run lacks: the run pays
    rng = np.random.default_rng(N * 100 + d)
    n = np.full(8 * 80, N)
    short = np.arange(0, len(n), 8) + rng.integers(0, 8, len(n) // 8)
    n[short] = N - rng.integers(1, w + 1, len(short))
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.intp)
    assert _core._ragged_pays(offsets, d)
    phi, theta, a, offsets, mask = ragged_data(len(n), 0, 0, d, seed=N + d, dtypes=dtypes,
                                               masked=masked, n=n)
    check_ragged(MASKED_CALLS[func], phi, theta, a, offsets, mask, 1.3)


@pytest.mark.parametrize("dtypes", ALL_KINDS, ids=ALL_IDS)
def test_fused_ragged_loglik_weights(dtypes):
    phi, theta, a, offsets, _ = ragged_data(1203, 1, 6, 7, seed=5, dtypes=dtypes)
    w = np.random.default_rng(6).random(len(a)) * 3
    for grad in (False, True):
        for nt in (1, 2):
            kw = dict(offsets=offsets, weights=w, grad=grad, n_threads=nt)
            got = outcome(fastscore.loglik, phi, theta, a, **kw)
            assert not isinstance(got, str)
            assert got == per_state(outcome, fastscore.loglik, phi, theta, a, **kw)


@pytest.mark.parametrize("b", [0, 413, 1202])
def test_fused_ragged_all_masked_state(b):
    """Every row of a ragged state masked: the per-state path's error, for
    the entropy (no action) and for the others (the taken action masked)."""
    phi, theta, a, offsets, mask = ragged_data(1203, 1, 6, 7, seed=7, masked=True)
    mask[offsets[b]:offsets[b + 1]] = False
    for func, f in MASKED_CALLS.items():
        for nt in (1, 2):
            kw = dict(offsets=offsets, mask=mask, n_threads=nt)
            got = outcome(f, phi, theta, a, **kw)
            assert isinstance(got, str) and f"state {b}" in got, (func, got)
            assert got == per_state(outcome, f, phi, theta, a, **kw)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(65, 700), hi=st.integers(1, 32), d=st.integers(1, 32),
       seed=st.integers(0, 2**32 - 1), tau=st.sampled_from([1.0, 0.3]),
       dtypes=st.sampled_from(ALL_KINDS), func=st.sampled_from(sorted(MASKED_CALLS)),
       masked=st.booleans(), nt=st.sampled_from([1, 2]))
def test_fused_ragged_fuzz_full_runs(B, hi, d, seed, tau, dtypes, func, masked, nt):
    """Batches big enough for runs of 8 states (and blocks of 64)."""
    lo = max(1, hi - int(np.random.default_rng(seed).integers(0, 4)))
    phi, theta, a, offsets, mask = ragged_data(B, lo, hi, d, seed, dtypes, masked)
    f = MASKED_CALLS[func]
    kw = dict(offsets=offsets, mask=mask, temperature=tau, n_threads=nt)
    assert outcome(f, phi, theta, a, **kw) == per_state(outcome, f, phi, theta, a, **kw)
