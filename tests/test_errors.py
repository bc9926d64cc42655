"""Bad input: one clear exception naming the argument, never a crash, never a
silent wrong number.  Every row of the API's bad-input table, parametrised."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastscore

RNG = np.random.default_rng(20240601)
N, D, B = 5, 3, 4
PHI = RNG.standard_normal((N, D))
THETA = RNG.standard_normal(D)
PHI_B = RNG.standard_normal((B, N, D))
A_B = np.array([0, 1, 2, 3])


def single(**kw):
    args = dict(phi=PHI, theta=THETA, a=2)
    args.update(kw)
    return args


def batch(**kw):
    args = dict(phi=PHI_B, theta=THETA, a=A_B)
    args.update(kw)
    return args


def call(args):
    args = dict(args)
    return fastscore.score(args.pop("phi"), args.pop("theta"), args.pop("a"), **args)


def with_nan(x, idx, value=np.nan):
    x = np.array(x, dtype=float)
    x[idx] = value
    return x


def all_false(shape):
    return np.zeros(shape, bool)


def mask_without(shape, idx):
    m = np.ones(shape, bool)
    m[idx] = False
    return m


A_NAME = r"\ba(\[\d+\])? = "       # "a = 7 is ..." / "a[2] = 7 is ..."
A_TYPE = r"\ba must be"

CASES = [
    # --- a outside [0, N) -> IndexError ------------------------------------
    ("a=N", single(a=N), IndexError, A_NAME),
    ("a=N+100", single(a=N + 100), IndexError, A_NAME),
    ("a=-1", single(a=-1), IndexError, A_NAME),
    ("a=-N", single(a=-N), IndexError, A_NAME),
    ("a=2**70", single(a=2**70), IndexError, A_NAME),
    ("a=-2**70", single(a=-(2**70)), IndexError, A_NAME),
    ("a=2**63", single(a=2**63), IndexError, A_NAME),
    ("a=np.int64(N)", single(a=np.int64(N)), IndexError, A_NAME),
    ("a=np.uint64-max", single(a=np.uint64(2**64 - 1)), IndexError, r"\ba\b"),
    ("batch-a-entry=N", batch(a=[0, 1, N, 3]), IndexError, r"a\[2\] = 5"),
    ("batch-a-entry=-1", batch(a=[0, -1, 2, 3]), IndexError, r"a\[1\] = -1"),
    ("batch-a-int64-max", batch(a=np.array([0, 1, 2, 2**63 - 1])), IndexError, r"a\[3\]"),
    ("batch-a-uint64-max", batch(a=np.array([0, 1, 2, 2**64 - 1], np.uint64)), IndexError,
     r"\ba\b"),
    ("batch-a-uint8-out", batch(a=np.array([0, 1, 200, 3], np.uint8)), IndexError, r"a\[2\]"),
    ("batch-a-2**70", batch(a=[0, 1, 2**70, 3]), IndexError, r"\ba\b"),
    # --- a of the wrong type -> TypeError -----------------------------------
    ("a=1.0", single(a=1.0), TypeError, A_TYPE),
    ("a=2.5", single(a=2.5), TypeError, A_TYPE),
    ("a=True", single(a=True), TypeError, A_TYPE),
    ("a=False", single(a=False), TypeError, A_TYPE),
    ("a=None", single(a=None), TypeError, A_TYPE),
    ("a=np.bool_", single(a=np.bool_(True)), TypeError, A_TYPE),
    ("a=np.float64", single(a=np.float64(1.0)), TypeError, A_TYPE),
    ("a=str", single(a="1"), TypeError, A_TYPE),
    ("a=complex", single(a=1 + 0j), TypeError, A_TYPE),
    ("a=list-for-one-state", single(a=[1]), TypeError, A_TYPE),
    ("batch-a-floats", batch(a=np.array([0.0, 1.0, 2.0, 3.0])), TypeError, A_TYPE),
    ("batch-a-float-list", batch(a=[0.0, 1.0, 2.0, 3.0]), TypeError, A_TYPE),
    ("batch-a-bools", batch(a=np.array([True, False, True, False])), TypeError, A_TYPE),
    ("batch-a-strings", batch(a=["0", "1", "2", "3"]), TypeError, A_TYPE),
    ("batch-a-None", batch(a=None), TypeError, A_TYPE),
    # --- batch a of the wrong length / shape -> ValueError ------------------
    ("batch-a-short", batch(a=[0, 1, 2]), ValueError, r"\ba must have shape \(4,\)"),
    ("batch-a-long", batch(a=[0, 1, 2, 3, 4]), ValueError, r"\ba must have shape \(4,\)"),
    ("batch-a-2d", batch(a=np.zeros((4, 1), int)), ValueError, r"\ba must have shape"),
    ("batch-a-scalar", batch(a=0), ValueError, r"\ba must have shape"),
    ("batch-a-empty", batch(a=[]), ValueError, r"\ba must have shape"),
    # --- phi not 2-D or 3-D -> ValueError -----------------------------------
    ("phi-1d", single(phi=PHI[0]), ValueError, r"\bphi must be 2-D"),
    ("phi-0d", single(phi=np.float64(1.0)), ValueError, r"\bphi must be 2-D"),
    ("phi-4d", single(phi=np.ones((2, 2, N, D))), ValueError, r"\bphi must be 2-D"),
    ("phi-1d-list", single(phi=[1.0, 2.0, 3.0]), ValueError, r"\bphi must be 2-D"),
    ("phi-1d-int", single(phi=np.arange(3)), ValueError, r"\bphi must be 2-D"),
    # --- theta not (d,) -> ValueError ---------------------------------------
    ("theta-short", single(theta=THETA[:2]), ValueError, r"\btheta must have shape \(3,\)"),
    ("theta-long", single(theta=np.ones(4)), ValueError, r"\btheta must have shape \(3,\)"),
    ("theta-column", single(theta=THETA[:, None]), ValueError, r"\btheta must have shape"),
    ("theta-row", single(theta=THETA[None]), ValueError, r"\btheta must have shape"),
    ("theta-scalar", single(theta=1.0), ValueError, r"\btheta must have shape"),
    ("theta-batch", batch(theta=np.ones((B, D))), ValueError, r"\btheta must have shape"),
    ("theta-f32-short", single(phi=PHI.astype(np.float32), theta=np.ones(2, np.float32)),
     ValueError, r"\btheta must have shape"),
    # --- mask of the wrong shape -> ValueError ------------------------------
    ("mask-short", single(mask=np.ones(N - 1, bool)), ValueError, r"\bmask must have shape"),
    ("mask-long", single(mask=np.ones(N + 1, bool)), ValueError, r"\bmask must have shape"),
    ("mask-2d-for-one-state", single(mask=np.ones((1, N), bool)), ValueError,
     r"\bmask must have shape \(5,\)"),
    ("mask-column", single(mask=np.ones((N, 1), bool)), ValueError, r"\bmask must have shape"),
    ("mask-0d", single(mask=np.True_), ValueError, r"\bmask must have shape"),
    ("batch-mask-few-states", batch(mask=np.ones((B - 1, N), bool)), ValueError,
     r"\bmask must have shape"),
    ("batch-mask-transposed", batch(mask=np.ones((N, B), bool)), ValueError,
     r"\bmask must have shape"),
    ("batch-mask-3d", batch(mask=np.ones((B, N, 1), bool)), ValueError,
     r"\bmask must have shape"),
    ("batch-mask-one-row", batch(mask=np.ones((1, N), bool)), ValueError,
     r"\bmask must have shape"),
    # --- out of the wrong shape -> ValueError --------------------------------
    ("out-short", single(out=np.empty(D - 1)), ValueError, r"\bout must have shape \(3,\)"),
    ("out-2d", single(out=np.empty((1, D))), ValueError, r"\bout must have shape"),
    ("out-0d", single(out=np.empty(())), ValueError, r"\bout must have shape"),
    ("batch-out-flat", batch(out=np.empty(B * D)), ValueError, r"\bout must have shape"),
    ("batch-out-few-states", batch(out=np.empty((B - 1, D))), ValueError,
     r"\bout must have shape \(4, 3\)"),
    ("batch-out-transposed", batch(out=np.empty((D, B))), ValueError, r"\bout must have shape"),
    ("batch-out-3d", batch(out=np.empty((B, D, 1))), ValueError, r"\bout must have shape"),
    # --- complex, string or object arrays -> TypeError -----------------------
    ("phi-complex", single(phi=PHI.astype(complex)), TypeError, r"\bphi must be .*real"),
    ("phi-complex64", single(phi=PHI.astype(np.complex64)), TypeError, r"\bphi must be .*real"),
    ("phi-str", single(phi=PHI.astype(str)), TypeError, r"\bphi must be .*real"),
    ("phi-bytes", single(phi=PHI.astype(bytes)), TypeError, r"\bphi must be .*real"),
    ("phi-object-str", single(phi=PHI.astype(str).astype(object)), TypeError,
     r"\bphi must be .*real"),
    ("phi-object-list-None", single(phi=[[1.0, None, 2.0]] * N), TypeError,
     r"\bphi holds missing values"),
    ("phi-datetime", single(phi=np.zeros((N, D), "datetime64[s]")), TypeError,
     r"\bphi must be .*real"),
    ("batch-phi-complex", batch(phi=PHI_B + 0j), TypeError, r"\bphi must be .*real"),
    ("theta-complex", single(theta=THETA + 1j), TypeError, r"\btheta must be .*real"),
    ("theta-str", single(theta=["1", "2", "3"]), TypeError, r"\btheta must be .*real"),
    ("theta-object-None", single(theta=np.array([1.0, None, 2.0], object)), TypeError,
     r"\btheta holds missing values"),
    # --- NaN or inf in theta / an unmasked row of phi -> ValueError ----------
    ("theta-nan", single(theta=with_nan(THETA, 1)), ValueError, r"\btheta contains NaN"),
    ("theta-inf", single(theta=with_nan(THETA, 0, np.inf)), ValueError,
     r"\btheta contains NaN or inf"),
    ("theta-neg-inf", single(theta=with_nan(THETA, 2, -np.inf)), ValueError,
     r"\btheta contains NaN or inf"),
    ("theta-f32-nan", single(phi=PHI.astype(np.float32),
                             theta=with_nan(THETA, 1).astype(np.float32)), ValueError,
     r"\btheta contains NaN"),
    ("batch-theta-inf", batch(theta=with_nan(THETA, 1, np.inf)), ValueError, r"\btheta"),
    ("phi-nan-other-row", single(phi=with_nan(PHI, (0, 1))), ValueError, r"\bphi has NaN"),
    ("phi-nan-taken-row", single(phi=with_nan(PHI, (2, 0))), ValueError, r"\bphi has NaN"),
    ("phi-inf", single(phi=with_nan(PHI, (4, 2), np.inf)), ValueError, r"\bphi has NaN or inf"),
    ("phi-neg-inf", single(phi=with_nan(PHI, (3, 2), -np.inf)), ValueError, r"\bphi has NaN"),
    ("phi-f32-nan", single(phi=with_nan(PHI, (1, 1)).astype(np.float32),
                           theta=THETA.astype(np.float32)), ValueError, r"\bphi has NaN"),
    ("phi-nan-where-theta-is-0", single(phi=with_nan(PHI, (1, 1)),
                                        theta=np.array([1.0, 0.0, 1.0])), ValueError,
     r"\bphi has NaN"),
    ("phi-nan-unmasked-row", single(phi=with_nan(PHI, (1, 1)), mask=mask_without(N, 0)),
     ValueError, r"\bphi has NaN"),
    ("batch-phi-nan", batch(phi=with_nan(PHI_B, (2, 3, 1))), ValueError,
     r"\bphi has NaN.*|state 2"),
    ("batch-phi-nan-2d-mask-other-state",
     batch(phi=with_nan(PHI_B, (1, 4, 0)), mask=mask_without((B, N), (2, 4))), ValueError,
     r"\bphi has NaN"),
    ("phi-nan-int-list", single(phi=[[1, 2, 3], [4, float("nan"), 6], [7, 8, 9]]),
     ValueError, r"\bphi has NaN"),
    # --- N = 0, all masked, taken action masked -> ValueError ----------------
    ("N=0", single(phi=np.empty((0, D)), a=0), ValueError, r"\bphi has no actions \(N = 0\)"),
    ("N=0-d=1", single(phi=np.empty((0, 1)), theta=np.ones(1), a=0), ValueError,
     r"\bphi has no actions"),
    ("N=0-f32", single(phi=np.empty((0, D), np.float32), a=0), ValueError,
     r"\bphi has no actions"),
    ("batch-N=0", batch(phi=np.empty((B, 0, D)), a=[0] * B), ValueError,
     r"\bphi has no actions"),
    ("all-masked", single(mask=all_false(N)), ValueError, r"every action.* is masked"),
    ("batch-all-masked-one-state", batch(mask=mask_without((B, N), (1, slice(None)))),
     ValueError, r"every action of state 1 is masked"),
    ("batch-all-masked-shared", batch(mask=all_false(N)), ValueError,
     r"every action.* is masked"),
    ("taken-action-masked", single(mask=mask_without(N, 2)), ValueError,
     r"\ba = 2 is masked"),
    ("batch-taken-action-masked", batch(mask=mask_without((B, N), (3, 3))), ValueError,
     r"\ba\[3\] = 3 is masked"),
    ("batch-taken-action-masked-shared", batch(mask=mask_without(N, 1)), ValueError,
     r"\ba\[1\] = 1 is masked"),
    # --- temperature <= 0, NaN, inf -> ValueError ---------------------------
    ("tau=0", single(temperature=0.0), ValueError, r"\btemperature must be finite and > 0"),
    ("tau=-0.0", single(temperature=-0.0), ValueError, r"\btemperature"),
    ("tau=-1", single(temperature=-1.0), ValueError, r"\btemperature"),
    ("tau=int0", single(temperature=0), ValueError, r"\btemperature"),
    ("tau=1e-400", single(temperature=1e-400), ValueError, r"\btemperature"),
    ("tau=nan", single(temperature=float("nan")), ValueError, r"\btemperature"),
    ("tau=np.nan", single(temperature=np.float64("nan")), ValueError, r"\btemperature"),
    ("tau=inf", single(temperature=float("inf")), ValueError, r"\btemperature"),
    ("tau=-inf", single(temperature=-np.inf), ValueError, r"\btemperature"),
    ("batch-tau=0", batch(temperature=0.0), ValueError, r"\btemperature"),
    # --- temperature not a number -> TypeError ------------------------------
    ("tau='x'", single(temperature="x"), TypeError, r"\btemperature must be a real number"),
    ("tau=None", single(temperature=None), TypeError, r"\btemperature must be a real number"),
    ("tau=complex", single(temperature=1j), TypeError, r"\btemperature must be a real number"),
    ("tau=True", single(temperature=True), TypeError, r"\btemperature must be a real number"),
    ("tau=[1.0]", single(temperature=[1.0]), TypeError, r"\btemperature must be a real number"),
    # --- n_threads ------------------------------------------------------------
    ("n_threads=0", single(n_threads=0), ValueError, r"\bn_threads must be >= 1"),
    ("n_threads=-1", single(n_threads=-1), ValueError, r"\bn_threads must be >= 1"),
    ("n_threads=np.int64(0)", single(n_threads=np.int64(0)), ValueError, r"\bn_threads"),
    ("batch-n_threads=0", batch(n_threads=0), ValueError, r"\bn_threads"),
    ("n_threads=1.5", single(n_threads=1.5), TypeError, r"\bn_threads must be an integer"),
    ("n_threads=2.0", single(n_threads=2.0), TypeError, r"\bn_threads must be an integer"),
    ("n_threads='2'", single(n_threads="2"), TypeError, r"\bn_threads must be an integer"),
    ("n_threads=True", single(n_threads=True), TypeError, r"\bn_threads"),
    # --- out of the wrong dtype / kind -> TypeError ---------------------------
    ("out-f32-for-f64", single(out=np.empty(D, np.float32)), TypeError,
     r"\bout must have dtype float64"),
    ("out-f64-for-f32", single(phi=PHI.astype(np.float32), theta=THETA.astype(np.float32),
                               out=np.empty(D)), TypeError, r"\bout must have dtype float32"),
    ("out-f32-for-mixed", single(phi=PHI.astype(np.float32), out=np.empty(D, np.float32)),
     TypeError, r"\bout must have dtype float64"),
    ("out-int", single(out=np.empty(D, np.int64)), TypeError, r"\bout must have dtype"),
    ("out-complex", single(out=np.empty(D, complex)), TypeError, r"\bout must have dtype"),
    ("out-longdouble", single(out=np.empty(D, np.longdouble)), TypeError,
     r"\bout must have dtype"),
    ("out-bigendian", single(out=np.empty(D, ">f8")), TypeError, r"\bout must have dtype"),
    ("out-list", single(out=[0.0] * D), TypeError, r"\bout must be a numpy.ndarray"),
    ("batch-out-f32", batch(out=np.empty((B, D), np.float32)), TypeError,
     r"\bout must have dtype"),
    # --- out not writeable / aliasing an input -> ValueError ------------------
    ("out-readonly", single(out=np.broadcast_to(np.empty(D), (D,))), ValueError,
     r"\bout must be a writeable"),
    ("out-is-row-of-phi", "alias-phi-row", ValueError, r"\bout must not share memory"),
    ("out-is-theta", "alias-theta", ValueError, r"\bout must not share memory"),
    ("batch-out-is-phi-slice", "alias-batch-phi", ValueError, r"\bout must not share memory"),
    ("out-is-reversed-phi-row", "alias-reversed-phi", ValueError, r"\bout must not share memory"),
    # --- mask of the wrong dtype -> TypeError ---------------------------------
    ("mask-int-2", single(mask=np.array([0, 1, 2, 1, 1])), ValueError,
     r"\bmask must be boolean; an integer mask may hold only 0 and 1"),
    ("mask-float", single(mask=np.ones(N)), TypeError, r"\bmask must be a boolean"),
]


def _aliasing_args(kind):
    """Arguments whose out shares memory with an input (fresh arrays per call)."""
    phi = PHI.copy()
    if kind == "alias-phi-row":
        return single(phi=phi, out=phi[1])
    if kind == "alias-theta":
        theta = THETA.copy()
        return single(theta=theta, out=theta)
    if kind == "alias-batch-phi":
        phi_b = PHI_B.copy()
        return batch(phi=phi_b, out=phi_b[:, 0, :])
    if kind == "alias-reversed-phi":
        # phi's last axis is reversed, so fastscore works on a contiguous copy;
        # out is still a row of the caller's phi and must be refused, not
        # written while the caller's phi is being read.
        x = RNG.standard_normal((N, D))
        return single(phi=x[:, ::-1], out=x[2])
    raise AssertionError(kind)


@pytest.mark.parametrize("args, exc, match",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input(args, exc, match):
    if isinstance(args, str):
        args = _aliasing_args(args)
    snapshot = {k: np.array(v, copy=True) for k, v in args.items()
                if isinstance(v, np.ndarray) and k != "out"}
    with pytest.raises(exc, match=match):
        call(args)
    for k, v in snapshot.items():  # a refused call modifies no input
        assert np.asarray(args[k]).tobytes() == v.tobytes(), k


# ---------------------------------------------------------------------------
# The accepted side of the same boundaries.

@pytest.mark.parametrize("a", [np.int8(2), np.int16(2), np.int32(2), np.int64(2), np.uint8(2),
                               np.uint64(2), np.intp(2), np.array(2), np.array(2, np.uint32)],
                         ids=lambda x: f"{type(x).__name__}-{getattr(x, 'dtype', '')}")
def test_numpy_integer_action_accepted(a):
    want = fastscore.score(PHI, THETA, 2)
    assert fastscore.score(PHI, THETA, a).tobytes() == want.tobytes()


def test_int_subclass_action_accepted():
    class MyInt(int):
        pass
    assert fastscore.score(PHI, THETA, MyInt(2)).tobytes() == \
        fastscore.score(PHI, THETA, 2).tobytes()


@pytest.mark.parametrize("a", [0, N - 1])
def test_action_range_boundaries_accepted(a):
    assert fastscore.score(PHI, THETA, a).shape == (D,)
    assert fastscore.score(PHI_B, THETA, [a] * B).shape == (B, D)


def test_masked_nan_padding_is_fine():
    phi = PHI.copy()
    phi[[0, 4]] = np.nan
    mask = np.array([False, True, True, True, False])
    got = fastscore.score(phi, THETA, 2, mask=mask)
    assert np.all(np.isfinite(got))
    phi_b = PHI_B.copy()
    phi_b[1, 3] = np.nan
    phi_b[2, :] = np.inf
    mask_b = np.ones((B, N), bool)
    mask_b[1, 3] = False
    mask_b[2, :] = False
    mask_b[2, 2] = True
    phi_b[2, 2] = 1.0
    got = fastscore.score(phi_b, THETA, A_B, mask=mask_b)
    assert np.all(np.isfinite(got))


def test_nan_in_theta_entry_multiplied_by_nothing_still_raises():
    """d > 0 with theta NaN raises even when every action is masked but a."""
    mask = np.zeros(N, bool)
    mask[2] = True
    with pytest.raises(ValueError, match=r"\btheta"):
        fastscore.score(PHI, with_nan(THETA, 0), 2, mask=mask)


def test_error_reports_first_bad_state():
    phi = RNG.standard_normal((64, 40, 8))
    phi[37, 5, 2] = np.nan
    phi[9, 30, 0] = np.inf
    for n_threads in (1, 2, 3, 4):
        with pytest.raises(ValueError, match=r"state 9\b"):
            fastscore.score(phi, np.ones(8), np.zeros(64, int), n_threads=n_threads)


def test_nan_far_into_a_large_state():
    phi = RNG.standard_normal((5000, 4))
    phi[4321, 1] = np.nan
    for n_threads in (1, 2, 4):
        with pytest.raises(ValueError, match=r"\bphi has NaN"):
            fastscore.score(phi, np.ones(4), 0, n_threads=n_threads)
        mask = np.ones(5000, bool)
        mask[4321] = False
        assert np.all(np.isfinite(fastscore.score(phi, np.ones(4), 0, mask=mask,
                                                  n_threads=n_threads)))


def test_overflowing_logits_raise_not_nan():
    """Finite input whose logits overflow: a ValueError, never inf/NaN out."""
    phi = np.array([[1e300, 1.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"phi @ theta / temperature overflows"):
        fastscore.score(phi, np.array([1e10, 0.0]), 1)
    with pytest.raises(ValueError, match=r"overflow"):
        fastscore.score(PHI, THETA, 1, temperature=1e-310)


def test_overflowing_float32_result_raises():
    """The score is finite in double but not in float32: a ValueError."""
    phi = np.array([[3e38, 0.0], [-3e38, 0.0]], np.float32)
    with pytest.raises(ValueError, match=r"overflows"):
        fastscore.score(phi, np.zeros(2, np.float32), 0, temperature=0.5)


@pytest.mark.parametrize("tau", ["2.0", b"2.0"], ids=["str", "bytes"])
def test_temperature_numeric_string_rejected(tau):
    """A string is not a real number, even one float() can parse: temperature
    "x" raises TypeError, so "2.0" must too (else a typo-free config string
    silently becomes a temperature while a malformed one raises)."""
    with pytest.raises(TypeError, match=r"\btemperature"):
        fastscore.score(PHI, THETA, 1, temperature=tau)


def test_huge_n_threads_is_a_clear_error_or_works():
    """n_threads far beyond any machine: clamp it or raise ValueError naming
    n_threads -- not an OverflowError from C conversion."""
    want = fastscore.score(PHI, THETA, 1, n_threads=1)
    for n in (2**63, 2**70):
        try:
            got = fastscore.score(PHI, THETA, 1, n_threads=n)
        except ValueError as e:
            assert "n_threads" in str(e)
        else:
            assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("n_threads", [2**20, 2**40])
def test_huge_n_threads_does_not_kill_the_process(n_threads, tmp_path):
    """A batch large enough to run threaded with an absurd n_threads: the
    result (same as n_threads=1) or a ValueError, never a dead interpreter
    (libgomp aborting thread creation, or a segfault).  Run in a child."""
    code = textwrap.dedent(f"""
        import numpy as np, fastscore
        phi = np.random.default_rng(0).standard_normal((64, 2000, 8))
        a = np.zeros(64, int)
        want = fastscore.score(phi, np.ones(8), a, n_threads=1)
        try:
            got = fastscore.score(phi, np.ones(8), a, n_threads={n_threads})
        except ValueError as e:
            assert "n_threads" in str(e), e
            print("ValueError")
        else:
            assert got.tobytes() == want.tobytes()
            print("same")
    """)
    # cwd: not the checkout, whose fastscore/ has no compiled module after a
    # non-editable install
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() in ("ValueError", "same")


@pytest.mark.parametrize("dtype, big", [(np.float64, 1e308), (np.float32, 3e38)])
@pytest.mark.parametrize("contiguous_out", [True, False])
def test_score_overflowing_the_result_dtype_raises(dtype, big, contiguous_out):
    """Finite logits but a score beyond the result dtype's range (phi_a - E[phi]
    with rows of opposite sign): a ValueError, never inf in the output, also
    through a strided out."""
    phi = np.zeros((3, 9), dtype=dtype)
    phi[0, 4], phi[1, 4], phi[2, 4] = big, -big, -big
    out = np.zeros((9, 2), dtype=dtype)[:, 0] if not contiguous_out else np.zeros(9, dtype)
    with pytest.raises(ValueError, match="overflows"):
        fastscore.score(phi, np.zeros(9, dtype=dtype), 0, out=out)


def test_object_arrays_of_numbers_accepted():
    """What pandas gives for a column of mixed ints and floats."""
    want = fastscore.score(PHI, THETA, 2)
    assert fastscore.score(PHI.astype(object), THETA.astype(object), 2).tobytes() == want.tobytes()


def test_integer_mask_of_zeros_and_ones_accepted():
    mask = np.array([1, 1, 1, 0, 1])
    want = fastscore.score(PHI, THETA, 2, mask=mask.astype(bool))
    for dtype in (np.int8, np.int64, np.uint8):
        assert fastscore.score(PHI, THETA, 2, mask=mask.astype(dtype)).tobytes() == want.tobytes()


def test_transposed_phi_is_blamed_on_phi():
    with pytest.raises(ValueError, match=r"phi's last axis must be the features.*transposed"):
        fastscore.score(PHI.T, THETA, 2)


def test_nan_in_phi_names_state_and_row():
    phi_b = PHI_B.copy()
    phi_b[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"row 3 of state 2"):
        fastscore.score(phi_b, THETA, A_B)
    with pytest.raises(ValueError, match=r"row 3 of state 2"):
        fastscore.entropy(phi_b, THETA)


def test_ragged_nested_list_suggests_offsets():
    with pytest.raises(ValueError, match=r"phi is a ragged nested sequence.*offsets="):
        fastscore.score([[[1.0, 2.0]], [[1.0, 2.0], [3.0, 4.0]]], [1.0, 1.0], [0, 0])


def test_show_config_returns_the_dict(capsys):
    info = fastscore.show_config()
    assert isinstance(info, dict) and info["openmp"] in (True, False)
    assert "simd" in info and capsys.readouterr().out
