"""fastscore.score against fastscore.reference.score (plain NumPy), over
shapes, dtypes, memory layouts, masks, temperatures and ``out=``.

The inputs here are well conditioned (random normal features, moderate
logits), where the textbook reference is accurate to a few ulps of max|phi|;
the tolerances below are set from that, not from fastscore's own (better)
accuracy, which test_accuracy.py checks against an extended-precision oracle.
"""
import numpy as np
import pytest

import fastscore
from fastscore import reference


def tolerance(phi, temperature, dtype):
    scale = float(np.nanmax(np.abs(np.asarray(phi, dtype=np.float64)), initial=1.0))
    scale = max(scale, 1.0) / temperature
    if np.dtype(dtype) == np.float32:
        return dict(rtol=1e-4, atol=1e-5 * scale)
    return dict(rtol=1e-10, atol=1e-12 * scale)


def assert_matches_reference(phi, theta, a, *, mask=None, temperature=1.0, ref_inputs=None,
                             **kw):
    """fastscore vs the reference on the same inputs (or on ref_inputs, the
    same values in a dtype the reference computes in float64)."""
    got = fastscore.score(phi, theta, a, mask=mask, temperature=temperature, **kw)
    rphi, rtheta = ref_inputs if ref_inputs is not None else (phi, theta)
    want = reference.score(rphi, rtheta, a, mask=mask, temperature=temperature)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **tolerance(rphi, temperature, got.dtype))
    return got


def expected_dtype(phi, theta):
    both32 = (np.asarray(phi).dtype.type is np.float32
              and np.asarray(theta).dtype.type is np.float32)
    return np.dtype(np.float32 if both32 else np.float64)


def make(rng, shape, *, mask_p=0.0, scale=1.0):
    *batch, n, d = shape
    phi = rng.standard_normal(shape)
    theta = rng.standard_normal(d) * scale / np.sqrt(max(d, 1))
    if batch:
        a = rng.integers(0, n, size=batch[0]) if n else np.zeros(batch[0], np.intp)
    else:
        a = int(rng.integers(n))
    mask = None
    if mask_p:
        mask = rng.random(tuple(batch) + (n,)) >= mask_p
        if batch:
            mask[np.arange(batch[0]), a] = True
        else:
            mask[a] = True
    return phi, theta, a, mask


# ---------------------------------------------------------------------------
# Shapes.

SHAPES = [
    (1, 1), (1, 5), (3, 1), (4, 3), (5, 7), (6, 9), (8, 17), (10, 8), (31, 6), (32, 6),
    (33, 6), (63, 5), (64, 5), (65, 5), (1023, 3), (1024, 3), (1025, 3), (2049, 2),
    (3072, 4), (3, 1, 4), (1, 5, 3), (4, 33, 7), (2, 1025, 5), (17, 31, 16), (5, 2048, 9),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_shapes(rng, shape):
    phi, theta, a, _ = make(rng, shape, scale=2.0)
    got = assert_matches_reference(phi, theta, a)
    assert got.dtype == np.float64
    assert got.shape == shape[:-2] + shape[-1:]


@pytest.mark.parametrize("shape", [(1, 0), (5, 0), (3, 4, 0)], ids=str)
def test_d_zero(shape, rng):
    phi = np.empty(shape)
    a = rng.integers(0, shape[-2], size=shape[0]) if len(shape) == 3 else 2 % shape[0]
    got = fastscore.score(phi, np.empty(0), a)
    assert got.shape == shape[:-2] + (0,)
    assert got.dtype == np.float64
    got32 = fastscore.score(phi.astype(np.float32), np.empty(0, np.float32), a)
    assert got32.shape == shape[:-2] + (0,) and got32.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_b_zero(dtype):
    """An empty batch gives an empty (0, d) result, whatever form the empty a takes."""
    phi = np.ones((0, 5, 3), dtype)
    theta = np.ones(3, dtype)
    for a in (np.empty(0, np.intp), [], np.empty(0, np.int32)):
        got = fastscore.score(phi, theta, a)
        assert got.shape == (0, 3) and got.dtype == dtype
        out = np.empty((0, 3), dtype)
        assert fastscore.score(phi, theta, a, out=out) is out
    # also when phi comes from slicing a non-empty batch
    assert fastscore.score(np.ones((4, 5, 3), dtype)[:0], theta, []).shape == (0, 3)


def test_single_action_scores_zero(rng):
    """N = 1: pi = 1 and the score is exactly 0, also with a mask and tau."""
    phi = rng.standard_normal((1, 6))
    assert np.all(fastscore.score(phi, rng.standard_normal(6), 0, temperature=0.1) == 0)
    phi = rng.standard_normal((4, 3, 6))
    mask = np.zeros((4, 3), bool)
    mask[:, 1] = True
    phi[:, [0, 2]] = np.nan
    got = fastscore.score(phi, rng.standard_normal(6), [1, 1, 1, 1], mask=mask)
    assert got.shape == (4, 6) and np.all(got == 0)


# ---------------------------------------------------------------------------
# dtypes.

DTYPE_CASES = {
    "f64": (np.float64, np.float64),
    "f32": (np.float32, np.float32),
    "f32-phi-f64-theta": (np.float32, np.float64),
    "f64-phi-f32-theta": (np.float64, np.float32),
    "f16": (np.float16, np.float16),
    "f16-phi-f32-theta": (np.float16, np.float32),
    "longdouble": (np.longdouble, np.longdouble),
    "int64": (np.int64, np.int64),
    "int8-phi-f32-theta": (np.int8, np.float32),
    "uint16": (np.uint16, np.int32),
    "bool": (np.bool_, np.float64),
    "bigendian-f64": (np.dtype(">f8"), np.dtype(">f8")),
    "bigendian-f32": (np.dtype(">f4"), np.dtype(">f4")),
}


@pytest.mark.parametrize("case", DTYPE_CASES, ids=str)
@pytest.mark.parametrize("shape", [(20, 9), (3, 40, 5)], ids=str)
def test_dtypes(rng, case, shape):
    pdt, tdt = DTYPE_CASES[case]
    phi, theta, a, _ = make(rng, shape, scale=2.0)
    if np.dtype(pdt).kind in "iub":
        phi = rng.integers(0, 4, size=shape)
    if np.dtype(tdt).kind in "iu":
        theta = rng.integers(-2, 3, size=shape[-1])
    phi, theta = phi.astype(pdt), theta.astype(tdt)
    # The reference computes int/f16 in its own promoted precision; fastscore
    # converts those to float64.  Compare on the same values in float64 (or
    # float32 when both are float32).
    want_dtype = expected_dtype(phi, theta)
    ref = (phi.astype(want_dtype), theta.astype(want_dtype))
    got = assert_matches_reference(phi, theta, a, ref_inputs=ref, temperature=0.7)
    assert got.dtype == want_dtype


@pytest.mark.parametrize("batch", [False, True])
def test_python_lists(batch):
    phi = [[0.5, 1, -2], [3, 0.25, 1], [0, 0, 1]]
    theta = [1, -0.5, 0.25]
    if batch:
        phi = [phi, phi[::-1]]
        a = [0, 2]
    else:
        a = 1
    got = assert_matches_reference(phi, theta, a, ref_inputs=(np.array(phi, float),
                                                              np.array(theta, float)))
    assert got.dtype == np.float64


def test_float32_result_only_when_both_float32(rng):
    phi, theta, a, _ = make(rng, (8, 4))
    f32, f64 = np.float32, np.float64
    assert fastscore.score(phi.astype(f32), theta.astype(f32), a).dtype == f32
    assert fastscore.score(phi.astype(f32), theta.astype(f64), a).dtype == f64
    assert fastscore.score(phi.astype(f64), theta.astype(f32), a).dtype == f64
    assert fastscore.score(phi.astype(f32), theta.astype(np.float16), a).dtype == f64
    assert fastscore.score(phi.astype(f32), theta.tolist(), a).dtype == f64


# ---------------------------------------------------------------------------
# Layouts: the kernel follows strides (or copies phi once), never misreads.

def layouts_single(rng, dtype):
    base = rng.standard_normal((40, 18)).astype(dtype)
    theta = (rng.standard_normal(18) * 0.5).astype(dtype)
    big_theta = (rng.standard_normal(36) * 0.5).astype(dtype)
    yield "C", base, theta
    yield "F", np.asfortranarray(base), theta
    yield "rows-reversed", base[::-1], theta
    yield "cols-reversed", base[:, ::-1], theta
    yield "both-reversed", base[::-1, ::-1], theta
    yield "cols-strided", base[:, ::2], theta[:9]
    yield "rows-strided", base[::3], theta
    yield "rows-strided-F", np.asfortranarray(base)[::2], theta
    yield "theta-strided", base[:, :18], big_theta[::2]
    yield "theta-reversed", base, theta[::-1]
    yield "transposed", np.ascontiguousarray(base.T).T, theta
    yield "broadcast-rows", np.broadcast_to(base[3], (40, 18)), theta
    yield "broadcast-theta", base, np.broadcast_to(np.array(0.3, dtype), (18,))
    yield "one-column-strided", base[:, 5:6], theta[:1]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layouts_single_state(rng, dtype):
    for name, phi, theta in layouts_single(rng, dtype):
        assert phi.dtype == dtype and theta.dtype == dtype
        a = 7
        contiguous = fastscore.score(np.ascontiguousarray(phi), np.ascontiguousarray(theta), a)
        got = assert_matches_reference(phi, theta, a)
        # same values, same order of operations: bitwise equal to the contiguous call
        assert got.tobytes() == contiguous.tobytes(), name


def unaligned(x):
    """A C-contiguous copy of x starting one byte past an aligned address."""
    buf = np.zeros(x.nbytes + 1, np.uint8)
    out = np.frombuffer(buf.data, dtype=x.dtype, offset=1, count=x.size).reshape(x.shape)
    out[...] = x
    assert not out.flags.aligned
    return out


def packed_field(x):
    """x as a field of a packed structured array: unaligned rows, odd stride."""
    rec = np.zeros(x.shape[:-1], dtype=[("tag", "u1"), ("f", x.dtype, x.shape[-1:])])
    rec["f"] = x
    out = rec["f"]
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("which", ["phi", "theta", "phi-packed-field", "batch-phi",
                                   "batch-phi-packed-field"])
def test_unaligned_inputs(rng, dtype, which):
    """Unaligned arrays (np.frombuffer at an odd offset, fields of packed
    structured arrays) are read correctly -- or copied -- like any layout."""
    shape = (4, 30, 6) if which.startswith("batch") else (30, 6)
    phi, theta, a, _ = make(rng, shape)
    phi, theta = phi.astype(dtype), theta.astype(dtype)
    want = fastscore.score(phi, theta, a)
    if which in ("phi", "batch-phi"):
        phi = unaligned(phi)
    elif which == "theta":
        theta = unaligned(theta)
    else:
        phi = packed_field(phi)
    got = fastscore.score(phi, theta, a)
    assert got.tobytes() == want.tobytes()


def layouts_batch(rng, dtype):
    base = rng.standard_normal((6, 50, 10)).astype(dtype)
    theta = (rng.standard_normal(10) * 0.5).astype(dtype)
    yield "C", base, theta
    yield "F", np.asfortranarray(base), theta
    yield "batch-reversed", base[::-1], theta
    yield "rows-reversed", base[:, ::-1], theta
    yield "cols-reversed", base[:, :, ::-1], theta
    yield "strided", base[::2, ::3, ::2], theta[:5]
    yield "axes-swapped", np.ascontiguousarray(base.transpose(1, 0, 2)).transpose(1, 0, 2), theta
    yield "broadcast-batch", np.broadcast_to(base[0], (6, 50, 10)), theta


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layouts_batch(rng, dtype):
    for name, phi, theta in layouts_batch(rng, dtype):
        a = np.arange(phi.shape[0]) * 7 % phi.shape[1]
        contiguous = fastscore.score(np.ascontiguousarray(phi), np.ascontiguousarray(theta), a)
        got = assert_matches_reference(phi, theta, a)
        assert got.tobytes() == contiguous.tobytes(), name


@pytest.mark.parametrize("a_layout", ["reversed", "strided", "int32", "uint8", "list",
                                      "bigendian", "readonly", "unaligned", "packed-field"])
def test_batch_action_layouts(rng, a_layout):
    phi, theta, _, _ = make(rng, (5, 12, 4))
    a0 = np.array([3, 0, 11, 5, 5])
    a = {
        "reversed": lambda: a0[::-1].copy()[::-1],
        "strided": lambda: np.repeat(a0, 2)[::2],
        "int32": lambda: a0.astype(np.int32),
        "uint8": lambda: a0.astype(np.uint8),
        "list": lambda: a0.tolist(),
        "bigendian": lambda: a0.astype(">i8"),
        "readonly": lambda: a0.copy(),
        # e.g. the action column of a packed record array (a replay buffer)
        "unaligned": lambda: unaligned(a0.astype(np.intp)),
        "packed-field": lambda: packed_field(a0[:, None].astype(np.intp))[:, 0],
    }[a_layout]()
    if a_layout == "readonly":
        a.setflags(write=False)
    got = fastscore.score(phi, theta, a)
    assert got.tobytes() == fastscore.score(phi, theta, a0).tobytes()
    assert_matches_reference(phi, theta, a0)


def test_read_only_inputs(rng):
    phi, theta, a, mask = make(rng, (4, 30, 6), mask_p=0.3)
    for x in (phi, theta, a, mask):
        x.setflags(write=False)
    assert_matches_reference(phi, theta, a, mask=mask)
    assert_matches_reference(phi[0], theta, int(a[0]), mask=mask[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_read_only_memmap(tmp_path, rng, dtype):
    phi0, theta, a, mask = make(rng, (3, 1100, 8), mask_p=0.2)
    path = tmp_path / "phi.bin"
    phi0.astype(dtype).tofile(path)
    phi = np.memmap(path, dtype=dtype, mode="r", shape=phi0.shape)
    assert not phi.flags.writeable
    theta = theta.astype(dtype)
    got = assert_matches_reference(phi, theta, a, mask=mask)
    assert got.tobytes() == fastscore.score(np.array(phi), theta, a, mask=mask).tobytes()
    assert type(got) is np.ndarray
    single = assert_matches_reference(phi[1], theta, int(a[1]), mask=mask[1])
    assert single.tobytes() == got[1].tobytes()


# ---------------------------------------------------------------------------
# Masks.

@pytest.mark.parametrize("shape", [(40, 5), (1100, 3), (6, 70, 9), (2, 2050, 4)], ids=str)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.95])
def test_mask_nan_padding(rng, shape, p):
    """Masked rows hold NaN: they must not matter (they are never read)."""
    phi, theta, a, mask = make(rng, shape, mask_p=p, scale=2.0)
    clean = fastscore.score(phi, theta, a, mask=mask)
    phi[~mask] = np.nan
    got = assert_matches_reference(phi, theta, a, mask=mask)
    assert got.tobytes() == clean.tobytes()
    phi[~mask] = np.inf
    assert fastscore.score(phi, theta, a, mask=mask).tobytes() == clean.tobytes()


def test_mask_equals_dropping_rows(rng):
    """A masked action contributes nothing: same as deleting its row."""
    phi, theta, _, _ = make(rng, (50, 6), scale=3.0)
    mask = rng.random(50) < 0.5
    mask[10] = True
    keep = np.flatnonzero(mask)
    got = fastscore.score(phi, theta, 10, mask=mask)
    dropped = fastscore.score(phi[keep], theta, int(np.searchsorted(keep, 10)))
    np.testing.assert_allclose(got, dropped, rtol=1e-13, atol=1e-15)


def test_shared_1d_mask_for_batch(rng):
    phi, theta, _, _ = make(rng, (7, 40, 5))
    mask = rng.random(40) < 0.5
    legal = np.flatnonzero(mask)
    a = rng.choice(legal, size=7)
    phi[:, ~mask] = np.nan
    got = assert_matches_reference(phi, theta, a, mask=mask)
    per_state = fastscore.score(phi, theta, a, mask=np.broadcast_to(mask, (7, 40)))
    assert got.tobytes() == per_state.tobytes()


@pytest.mark.parametrize("layout", ["F", "strided", "reversed", "list", "broadcast"])
def test_mask_layouts(rng, layout):
    phi, theta, a, mask = make(rng, (6, 30, 4), mask_p=0.4)
    m = {
        "F": np.asfortranarray(mask),
        "strided": np.repeat(mask, 2, axis=1)[:, ::2],
        "reversed": mask[::-1, ::-1].copy()[::-1, ::-1],
        "list": mask.tolist(),
        "broadcast": None,
    }[layout]
    if layout == "broadcast":
        shared = mask.all(axis=0) | (np.arange(30) == 0)
        a = np.zeros(6, np.intp)
        mask, m = np.broadcast_to(shared, (6, 30)), np.broadcast_to(shared, (6, 30))
    got = fastscore.score(phi, theta, a, mask=m)
    assert got.tobytes() == fastscore.score(phi, theta, a, mask=np.array(mask)).tobytes()
    assert_matches_reference(phi, theta, a, mask=np.array(mask))


def test_all_true_mask_is_no_mask(rng):
    phi, theta, a, _ = make(rng, (5, 2000, 6))
    got = fastscore.score(phi, theta, a, mask=np.ones(2000, bool))
    assert got.tobytes() == fastscore.score(phi, theta, a).tobytes()


# ---------------------------------------------------------------------------
# Temperature.

@pytest.mark.parametrize("tau", [0.01, 0.5, 1.0, 7.0, 1e3])
@pytest.mark.parametrize("shape", [(30, 6), (4, 1030, 5)], ids=str)
def test_temperature(rng, shape, tau):
    phi, theta, a, mask = make(rng, shape, mask_p=0.3)
    if tau == 0.01:
        # keep the reference well conditioned: the least likely legal action
        z = np.where(mask, phi @ theta, np.inf)
        a = np.argmin(z, axis=-1) if phi.ndim == 3 else int(np.argmin(z))
    assert_matches_reference(phi, theta, a, mask=mask, temperature=tau)


@pytest.mark.parametrize("tau", [2, np.float32(0.5), np.float64(3.0), np.int64(2)])
def test_temperature_types(rng, tau):
    phi, theta, a, _ = make(rng, (10, 3))
    got = fastscore.score(phi, theta, a, temperature=tau)
    assert got.tobytes() == fastscore.score(phi, theta, a, temperature=float(tau)).tobytes()


def test_temperature_scales_the_gradient(rng):
    """tau scales logits by 1/tau and the result by 1/tau: score(phi, theta,
    tau) = score(phi / tau, theta, 1) / tau ... = score(phi, theta / tau) / tau."""
    phi, theta, a, _ = make(rng, (25, 4), scale=2.0)
    tau = 2.5
    got = fastscore.score(phi, theta, a, temperature=tau)
    np.testing.assert_allclose(got, fastscore.score(phi, theta / tau, a) / tau,
                               rtol=1e-13, atol=1e-15)
    assert not np.allclose(got, fastscore.score(phi, theta / tau, a), rtol=1e-3)


# ---------------------------------------------------------------------------
# out=.

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["contiguous", "strided", "reversed", "F", "column-of-2d"])
def test_out_batch(rng, dtype, kind):
    phi, theta, a, mask = make(rng, (5, 40, 6), mask_p=0.3)
    phi, theta = phi.astype(dtype), theta.astype(dtype)
    want = fastscore.score(phi, theta, a, mask=mask)
    out = {
        "contiguous": np.full((5, 6), -7.0, dtype),
        "strided": np.full((10, 18), -7.0, dtype)[::2, ::3],
        "reversed": np.full((5, 6), -7.0, dtype)[::-1, ::-1],
        "F": np.asfortranarray(np.full((5, 6), -7.0, dtype)),
        "column-of-2d": np.full((6, 5), -7.0, dtype).T,
    }[kind]
    res = fastscore.score(phi, theta, a, mask=mask, out=out)
    assert res is out
    assert out.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_single_state(rng, dtype):
    phi, theta, a, _ = make(rng, (30, 7))
    phi, theta = phi.astype(dtype), theta.astype(dtype)
    want = fastscore.score(phi, theta, a)
    for out in (np.empty(7, dtype), np.zeros(21, dtype)[::3], np.zeros(7, dtype)[::-1],
                np.zeros((3, 7), dtype)[1], np.zeros((7, 3), dtype)[:, 2]):
        before = out.base.copy() if out.base is not None else None
        res = fastscore.score(phi, theta, a, out=out)
        assert res is out
        assert out.tobytes() == want.tobytes()
        if before is not None:  # only the viewed elements were written
            changed = np.flatnonzero(out.base.ravel() != before.ravel())
            assert changed.size <= 7


def test_out_mixed_inputs_is_float64(rng):
    phi, theta, a, _ = make(rng, (9, 3))
    out = np.empty(3)
    assert fastscore.score(phi.astype(np.float32), theta, a, out=out) is out
    np.testing.assert_allclose(out, reference.score(phi.astype(np.float32).astype(float),
                                                    theta, a), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------
# Inputs are never modified.

def test_inputs_unmodified(rng):
    phi, theta, a, mask = make(rng, (6, 2100, 5), mask_p=0.3)
    phi[~mask] = np.nan
    views = {
        "phi": phi, "theta": theta, "a": a, "mask": mask,
        "phi_F": np.asfortranarray(phi), "phi_rev": phi[:, :, ::-1],
    }
    before = {k: v.copy() for k, v in views.items()}
    fastscore.score(phi, theta, a, mask=mask, temperature=0.3)
    fastscore.score(views["phi_F"], theta[::-1], a, mask=mask)
    fastscore.score(views["phi_rev"], theta, a, mask=mask, out=np.empty((6, 5)))
    fastscore.score(phi[0], theta, int(a[0]), mask=mask[0], n_threads=2)
    fastscore.score(phi.astype(np.float32), theta.astype(np.float32), a, mask=mask)
    for k, v in views.items():
        assert v.tobytes() == before[k].tobytes(), k
    lst = [[1.0, 2.0], [3.0, 4.0]]
    fastscore.score(lst, [0.5, 0.5], 0)
    assert lst == [[1.0, 2.0], [3.0, 4.0]]


# ---------------------------------------------------------------------------
# Extreme but finite magnitudes.

@pytest.mark.parametrize("case", ["phi-1.5e300", "phi-max-double", "theta-1.5e300",
                                  "theta-max-double", "control-1e300-batch"])
def test_large_finite_magnitudes(case):
    """Finite phi and theta whose logits (and score) are ordinary numbers must
    be scored, not refused: no NaN/inf is in the input and nothing overflows
    in the true computation.  (Entries beyond ~1.3e300 are where a Dekker
    split 2**27 x overflows, which an exact-product logit must guard.)"""
    big = {"phi-1.5e300": 1.5e300, "phi-max-double": np.finfo(np.float64).max,
           "theta-1.5e300": 1.5e300, "theta-max-double": np.finfo(np.float64).max,
           "control-1e300-batch": 1e300}[case]
    small = 1.0 / big * 2.0  # big * small = 2, exactly or to an ulp
    if case.startswith("phi"):
        phi = np.array([[big, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        theta = np.array([small, 0.5, -0.25])
    elif case.startswith("control"):
        phi = np.array([[[small, 0.0], [0.0, 1.0]], [[0.0, 1.0], [small, 0.0]]])
        theta = np.array([big, 0.5])
    else:
        phi = np.array([[small, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        theta = np.array([big, 0.5, -0.25])
    a = np.array([0, 1]) if phi.ndim == 3 else 1
    want = reference.score(phi, theta, a)
    assert np.all(np.isfinite(want))
    got = fastscore.score(phi, theta, a)
    np.testing.assert_allclose(got, want, rtol=1e-12)
