"""Bad input for every new argument and every new function: one clear
exception naming the argument, never a crash or a silent wrong number; and
the accepted side (read-only, non-contiguous, object-of-ints offsets)."""
import numpy as np
import pytest

import fastscore

RNG = np.random.default_rng(8)
D = 3
ROWS = RNG.standard_normal((9, D))           # ragged: states of 2, 3, 4 rows
OFFS = np.array([0, 2, 5, 9])
A_R = np.array([1, 0, 3])
THETA = RNG.standard_normal(D)
PHI_B = RNG.standard_normal((4, 5, D))
A_B = np.array([0, 1, 2, 3])

FUNCS = ["score", "log_prob", "entropy", "probs", "sample", "loglik"]
TAKES_A = {"score", "log_prob", "loglik"}


def call(fn, phi, theta, a=None, **kw):
    f = getattr(fastscore, fn)
    if fn in TAKES_A:
        return f(phi, theta, a, **kw)
    return f(phi, theta, **kw)


def ragged(fn, **kw):
    args = dict(phi=ROWS, theta=THETA, a=A_R, offsets=OFFS)
    args.update(kw)
    return fn, args


OFFSET_CASES = [
    ("offsets[0]!=0", dict(offsets=np.array([1, 2, 5, 9])), ValueError, r"offsets\[0\] must be 0"),
    ("decreasing", dict(offsets=np.array([0, 5, 2, 9])), ValueError, r"offsets must be nondecr"),
    ("empty-state", dict(offsets=np.array([0, 2, 2, 5, 9]), a=np.array([1, 0, 0, 3])),
     ValueError, r"state 1 has no actions"),
    ("last-short", dict(offsets=np.array([0, 2, 5, 8])), ValueError, r"offsets\[-1\] must equal"),
    ("last-long", dict(offsets=np.array([0, 2, 5, 10])), ValueError, r"offsets\[-1\] must equal"),
    ("2-d", dict(offsets=OFFS[None]), ValueError, r"offsets must be 1-D"),
    ("0-d", dict(offsets=np.array(0)), ValueError, r"offsets must be 1-D"),
    ("length-0", dict(offsets=np.array([], np.intp)), ValueError, r"offsets must be 1-D"),
    ("float", dict(offsets=OFFS.astype(float)), TypeError, r"offsets must be .*integer"),
    ("bool", dict(offsets=np.array([False, True, True, True])), TypeError,
     r"offsets must be .*integer"),
    ("strings", dict(offsets=["0", "2", "5", "9"]), TypeError, r"offsets"),
    ("huge", dict(offsets=np.array([0, 2, 2**62, 9])), ValueError, r"offsets"),
    ("huge-last", dict(offsets=np.array([0, 2, 5, 2**62])), ValueError, r"offsets\[-1\]"),
    ("negative", dict(offsets=np.array([0, -2, 5, 9])), ValueError, r"offsets"),
    ("beyond-int64", dict(offsets=[0, 2, 2**70, 9]), (IndexError, ValueError, OverflowError),
     r"offsets"),
    ("uint64-max", dict(offsets=np.array([0, 2, 2**64 - 1, 9], np.uint64)),
     (IndexError, ValueError), r"offsets"),
    ("phi-3d", dict(phi=PHI_B), ValueError, r"with offsets=, phi must be 2-D"),
    ("phi-1d", dict(phi=ROWS[:, 0]), ValueError, r"phi must be 2-D"),
    ("a-out-of-own-state", dict(a=np.array([2, 0, 3])), IndexError,
     r"a\[0\] = 2 is out of range for N = 2 actions of state 0"),
    ("a-negative", dict(a=np.array([1, -1, 3])), IndexError, r"a\[1\] = -1"),
    ("a-beyond-last", dict(a=np.array([1, 0, 4])), IndexError, r"a\[2\] = 4"),
    ("a-short", dict(a=np.array([1, 0])), ValueError, r"\ba must have shape \(3,\)"),
    ("mask-padded-shape", dict(mask=np.ones((3, 4), bool)), ValueError,
     r"with offsets=, mask must have shape \(9,\)"),
    ("mask-short", dict(mask=np.ones(8, bool)), ValueError, r"mask must have shape \(9,\)"),
    ("mask-all-masked-state", dict(mask=np.array([1, 1, 0, 0, 0, 1, 1, 1, 1], bool),
                                   a=np.array([1, 0, 3])), ValueError, r"state 1|a\[1\]"),
]


@pytest.mark.parametrize("fn", FUNCS)
@pytest.mark.parametrize("kw, exc, match", [pytest.param(*c[1:], id=c[0]) for c in OFFSET_CASES])
def test_bad_offsets_and_ragged_arguments(fn, kw, exc, match):
    if fn not in TAKES_A and kw.keys() == {"a"}:
        pytest.skip("takes no action")
    if fn not in TAKES_A and "a" in kw and "mask" in kw:
        match = r"every action of state 1 is masked"
    _, args = ragged(fn, **kw)
    snapshot = {k: np.array(v, copy=True) for k, v in args.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc, match=match):
        call(fn, **args)
    for k, v in snapshot.items():
        assert args[k].tobytes() == v.tobytes(), k


@pytest.mark.parametrize("fn", FUNCS)
def test_offsets_accepted_forms(fn):
    """A list, object array of ints, int32 and uint8 offsets are the same
    offsets; read-only and non-contiguous inputs give the same results."""
    want = call(fn, ROWS, THETA, A_R, offsets=OFFS, **({"seed": 1} if fn == "sample" else {}))
    extra = {"seed": 1} if fn == "sample" else {}
    ro = ROWS.copy()
    ro.flags.writeable = False
    ro_off = OFFS.copy()
    ro_off.flags.writeable = False
    wide = np.zeros((9, 2 * D))
    wide[:, ::2] = ROWS  # non-contiguous last axis
    for offs, phi in [(OFFS.tolist(), ROWS), (np.array(OFFS.tolist(), dtype=object), ROWS),
                      (OFFS.astype(np.int32), ROWS), (OFFS.astype(np.uint8), ROWS),
                      (ro_off, ro), (OFFS, wide[:, ::2]), (np.repeat(OFFS, 2)[::2], ROWS)]:
        got = call(fn, phi, THETA, A_R, offsets=offs, **extra)
        assert _bits(got) == _bits(want)


def _bits(x):
    if isinstance(x, tuple):
        return b"".join(_bits(v) for v in x)
    return np.asarray(x).tobytes()


# ---------------------------------------------------------------------------
# weights

W_CASES = [
    ("short", [1.0, 2.0, 3.0], ValueError, r"weights must have shape \(4,\)"),
    ("2-d", np.ones((4, 1)), ValueError, r"weights must have shape"),
    ("scalar", 1.0, ValueError, r"weights must have shape"),
    ("nan", [1.0, np.nan, 1.0, 1.0], ValueError, r"weights contains NaN or inf \(weights\[1\]"),
    ("inf", [1.0, 1.0, -np.inf, 1.0], ValueError, r"weights contains NaN or inf"),
    ("complex", np.ones(4, complex), TypeError, r"weights must be real"),
    ("strings", ["1", "2", "3", "4"], TypeError, r"weights must be real"),
    ("object-None", np.array([1.0, None, 1.0, 1.0], object), TypeError, r"weights"),
    ("masked-array", np.ma.masked_array(np.ones(4), [0, 1, 0, 0]), TypeError, r"weights"),
]


@pytest.mark.parametrize("w, exc, match", [pytest.param(*c[1:], id=c[0]) for c in W_CASES])
def test_bad_weights(w, exc, match):
    with pytest.raises(exc, match=match):
        fastscore.loglik(PHI_B, THETA, A_B, weights=w, grad=True)


def test_weights_accepted_forms():
    w = np.array([1.0, -2.0, 0.5, 3.0])
    want = fastscore.loglik(PHI_B, THETA, A_B, weights=w, grad=True)
    for ww in (w.tolist(), w.astype(np.float32).astype(np.float64), w[::-1][::-1],
               np.repeat(w, 2)[::2]):
        got = fastscore.loglik(PHI_B, THETA, A_B, weights=ww, grad=True)
        assert got[0] == want[0] and got[1].tobytes() == want[1].tobytes()
    ints = fastscore.loglik(PHI_B, THETA, A_B, weights=np.array([1, -2, 0, 3]))
    assert ints == fastscore.loglik(PHI_B, THETA, A_B, weights=[1.0, -2.0, 0.0, 3.0])


# ---------------------------------------------------------------------------
# seed and state_offset

SEED_CASES = [
    ("negative", -1, ValueError, r"seed must be in \[0, 2\*\*64\)"),
    ("2**64", 2**64, ValueError, r"seed must be in \[0, 2\*\*64\)"),
    ("float", 1.0, TypeError, r"seed must be an int, None or a numpy.random.Generator"),
    ("bool", True, TypeError, r"seed must be an int"),
    ("np.bool_", np.bool_(True), TypeError, r"seed must be an int"),
    ("string", "1", TypeError, r"seed must be an int"),
    ("RandomState", np.random.RandomState(0), TypeError, r"seed must be an int"),
    ("list", [1], TypeError, r"seed must be an int"),
]


@pytest.mark.parametrize("seed, exc, match", [pytest.param(*c[1:], id=c[0]) for c in SEED_CASES])
def test_bad_seed(seed, exc, match):
    with pytest.raises(exc, match=match):
        fastscore.sample(PHI_B, THETA, seed=seed)


SO_CASES = [
    ("negative", -1, ValueError, r"state_offset must be in"),
    ("huge", 2**62, ValueError, r"state_offset must be in"),
    ("float", 1.0, TypeError, r"state_offset must be an int"),
    ("bool", True, TypeError, r"state_offset must be an int"),
    ("None", None, TypeError, r"state_offset must be an int"),
    ("string", "1", TypeError, r"state_offset must be an int"),
]


@pytest.mark.parametrize("so, exc, match", [pytest.param(*c[1:], id=c[0]) for c in SO_CASES])
def test_bad_state_offset(so, exc, match):
    with pytest.raises(exc, match=match):
        fastscore.sample(PHI_B, THETA, seed=1, state_offset=so)


# ---------------------------------------------------------------------------
# out for log_prob, entropy, probs

def out_args(fn, shape_ok=True):
    if fn == "probs":
        return dict(phi=PHI_B, theta=THETA), (4, 5)
    return dict(phi=PHI_B, theta=THETA, a=A_B), (4,)


OUT_FUNCS = ["log_prob", "entropy", "probs"]


@pytest.mark.parametrize("fn", OUT_FUNCS)
def test_out_is_written_and_returned(fn):
    args, shape = out_args(fn)
    want = call(fn, **args)
    out = np.full(shape, np.nan)
    got = call(fn, **args, out=out)
    assert got is out and out.tobytes() == want.tobytes()
    # float32 inputs: a float32 out
    args32 = dict(args, phi=PHI_B.astype(np.float32), theta=THETA.astype(np.float32))
    out32 = np.empty(shape, np.float32)
    assert call(fn, **args32, out=out32) is out32
    assert out32.tobytes() == call(fn, **args32).tobytes()
    # ragged probs: (total rows,)
    if fn == "probs":
        o = np.empty(9)
        assert fastscore.probs(ROWS, THETA, offsets=OFFS, out=o) is o
    else:
        o = np.empty(3)
        assert call(fn, ROWS, THETA, A_R, offsets=OFFS, out=o) is o


@pytest.mark.parametrize("fn", OUT_FUNCS)
@pytest.mark.parametrize("case", ["shape", "dtype-f32", "dtype-int", "list", "alias-phi",
                                  "alias-theta", "readonly", "zero-stride"])
def test_bad_out(fn, case):
    args, shape = out_args(fn)
    args = dict(args)
    exc, match = ValueError, r"\bout must"
    if case == "shape":
        out = np.empty((shape[0] + 1,) + shape[1:])
        match = r"\bout must have shape"
    elif case == "dtype-f32":
        out, exc = np.empty(shape, np.float32), TypeError
    elif case == "dtype-int":
        out, exc = np.empty(shape, np.int64), TypeError
    elif case == "list":
        out, exc = [0.0] * shape[0], TypeError
    elif case == "alias-phi":
        phi = PHI_B.copy()
        args["phi"] = phi
        out = phi[:, :, 0] if fn == "probs" else phi[:, 0, 0]
        match = r"\bout must not share memory"
    elif case == "alias-theta":
        theta = np.zeros(20)
        theta[:D] = THETA
        args["theta"] = theta[:D]
        out = theta.reshape(4, 5) if fn == "probs" else theta[:4]
        match = r"\bout must not share memory"
    elif case == "readonly":
        out = np.empty(shape)
        out.flags.writeable = False
        match = r"\bout must be a writeable"
    else:
        out = np.broadcast_to(np.empty(1), shape)
    with pytest.raises(exc, match=match):
        call(fn, **args, out=out)


def test_out_single_state():
    """One state: log_prob and entropy return a float, or write a 0-d out."""
    phi = PHI_B[0]
    assert isinstance(fastscore.log_prob(phi, THETA, 1), float)
    o = np.empty(())
    assert fastscore.entropy(phi, THETA, out=o) is o
    assert o[()] == fastscore.entropy(phi, THETA)
    with pytest.raises(ValueError, match=r"\bout must have shape"):
        fastscore.log_prob(phi, THETA, 1, out=np.empty(1))


# ---------------------------------------------------------------------------
# All-masked states, masked taken action

@pytest.mark.parametrize("fn", ["entropy", "probs", "sample"])
@pytest.mark.parametrize("layout", ["single", "batch", "ragged"])
def test_all_masked_state(fn, layout):
    if layout == "single":
        args = dict(phi=PHI_B[0], theta=THETA, mask=np.zeros(5, bool))
        match = r"every action is masked"
    elif layout == "batch":
        m = np.ones((4, 5), bool)
        m[2] = False
        args = dict(phi=PHI_B, theta=THETA, mask=m)
        match = r"every action of state 2 is masked"
    else:
        m = np.ones(9, bool)
        m[2:5] = False
        args = dict(phi=ROWS, theta=THETA, offsets=OFFS, mask=m)
        match = r"every action of state 1 is masked"
    with pytest.raises(ValueError, match=match):
        call(fn, **args)


@pytest.mark.parametrize("fn", ["entropy", "probs", "sample"])
def test_all_masked_state_is_found_before_the_pass_in_both_forms(fn):
    """A fully masked state is reported before the pass reads a row, in the
    phi form as in the state-input form: before an earlier state's NaN."""
    import fastscore.matrix as fm

    m = np.ones((4, 5), bool)
    m[2] = False
    phi = PHI_B.copy()
    phi[1, 0, 0] = np.nan
    s = RNG.standard_normal((4, D))
    s[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"every action of state 2 is masked"):
        call(fn, phi, THETA, mask=m)
    with pytest.raises(ValueError, match=r"every action of state 2 is masked"):
        getattr(fm, fn)(s, RNG.standard_normal((D, 5)), mask=m)


@pytest.mark.parametrize("fn", ["log_prob", "loglik"])
def test_masked_taken_action(fn):
    m = np.ones((4, 5), bool)
    m[1, 1] = False
    with pytest.raises(ValueError, match=r"a\[1\] = 1 is masked"):
        call(fn, PHI_B, THETA, A_B, mask=m)


@pytest.mark.parametrize("fn", FUNCS)
def test_nan_in_unmasked_row_and_theta(fn):
    phi = ROWS.copy()
    phi[6, 1] = np.nan
    with pytest.raises(ValueError, match=r"phi has NaN or inf in row 1 of state 2 \(phi\[6\]\)"):
        call(fn, phi, THETA, A_R, offsets=OFFS)
    theta = THETA.copy()
    theta[0] = np.inf
    with pytest.raises(ValueError, match=r"theta contains NaN or inf"):
        call(fn, ROWS, theta, A_R, offsets=OFFS)


# ---------------------------------------------------------------------------
# Read-only and non-contiguous inputs give the same results

@pytest.mark.parametrize("fn", FUNCS)
def test_readonly_and_noncontiguous_inputs(fn):
    rng = np.random.default_rng(3)
    phi = rng.standard_normal((6, 7, D))
    theta = rng.standard_normal(D)
    a = rng.integers(0, 7, size=6)
    mask = rng.random((6, 7)) < 0.7
    mask[np.arange(6), a] = True
    extra = {"seed": 4} if fn == "sample" else {}
    if fn == "loglik":
        extra = {"weights": rng.standard_normal(6), "grad": True, "hess": True}
    want = call(fn, phi, theta, a, mask=mask, **extra)
    ro = [x.copy() for x in (phi, theta, a, mask)]
    for x in ro:
        x.flags.writeable = False
    got = call(fn, ro[0], ro[1], ro[2], mask=ro[3], **extra)
    assert _bits(got) == _bits(want)
    big = np.zeros((12, 7, 2 * D))
    big[::2, :, ::2] = phi
    t2 = np.zeros(2 * D)
    t2[::2] = theta
    a2 = np.repeat(a, 2)[::2]
    m2 = np.repeat(mask, 2, axis=0)[::2]
    got = call(fn, big[::2, :, ::2], t2[::2], a2, mask=m2, **extra)
    assert _bits(got) == _bits(want)
    # Fortran-ordered phi and a broadcast (zero-stride, read-only) theta
    got = call(fn, np.asfortranarray(phi), theta, a, mask=mask, **extra)
    assert _bits(got) == _bits(want)
