"""Regressions for findings of the kernel review (each failed before its fix)."""
import numpy as np
import pytest

import fastscore
from fastscore import reference


def test_huge_temperature_is_not_flushed_to_zero():
    # l * tau overflowed to inf and the score came out as exact zeros.
    phi = np.array([[1e10, 0.0], [0.0, 1e10]])
    got = fastscore.score(phi, np.zeros(2), 0, temperature=1e308)
    np.testing.assert_allclose(got, [5e-299, -5e-299], rtol=1e-12)


def test_subnormal_temperature_with_zero_score():
    got = fastscore.score(np.ones((1, 2)), np.zeros(2), 0, temperature=1e-310)
    assert got.tolist() == [0.0, 0.0]


def test_signed_zeros_do_not_depend_on_the_thread_count():
    # A tiny negative g[i] underflows to -0.0 when the max is raised; the
    # chunk-parallel path merged chunk 0 into +0.0 and turned it into +0.0.
    n, d = 2048, 32
    phi = np.zeros((n, d))
    theta = np.zeros(d)
    theta[1] = 1.0
    phi[:32, 0] = 1e-310
    phi[32, 1] = 50.0
    mask = np.zeros(n, dtype=bool)
    mask[:33] = True
    results = {t: fastscore.score(phi, theta, 32, mask=mask, n_threads=t).tobytes()
               for t in (1, 2, 3)}
    assert len(set(results.values())) == 1


def test_zero_weight_rows_do_not_poison_the_sum():
    # w = 0 (logit far below the max) times an infinite difference was NaN.
    phi = np.array([[1e308, 1000.0], [-1e308, 0.0]])
    got = fastscore.score(phi, np.array([0.0, 1.0]), 0)
    np.testing.assert_array_equal(got, reference.score(phi, np.array([0.0, 1.0]), 0))


@pytest.mark.parametrize("which", ["phi", "theta", "a", "mask"])
def test_masked_arrays_are_rejected(which):
    phi = np.ma.masked_array([[1.0, 0.0], [5.0, 1.0]], mask=[[0, 0], [1, 0]])
    args = {"phi": phi.data, "theta": np.zeros(2), "a": 0, "mask": None}
    if which == "phi":
        args["phi"] = phi
    elif which == "theta":
        args["theta"] = np.ma.masked_array([0.0, 1.0], mask=[0, 1])
    elif which == "a":
        args["phi"] = phi.data[None].repeat(2, axis=0)
        args["a"] = np.ma.masked_array([0, 1], mask=[0, 1])
    else:
        args["mask"] = np.ma.masked_array([True, True], mask=[0, 1])
    with pytest.raises(TypeError, match=which):
        fastscore.score(args["phi"], args["theta"], args["a"], mask=args["mask"])


def test_memmap_subclass_still_works(tmp_path):
    phi = np.random.default_rng(0).standard_normal((6, 5))
    path = tmp_path / "phi.npy"
    np.save(path, phi)
    mm = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(fastscore.score(mm, np.ones(5), 2),
                                  fastscore.score(phi, np.ones(5), 2))


def test_object_array_of_small_ints_is_accepted():
    phi = np.random.default_rng(1).standard_normal((2, 3, 4))
    a = np.array([0, 2], dtype=object)
    np.testing.assert_array_equal(fastscore.score(phi, np.ones(4), a),
                                  fastscore.score(phi, np.ones(4), np.array([0, 2])))


def test_object_array_with_a_bool_is_rejected():
    phi = np.zeros((2, 3, 4))
    with pytest.raises(TypeError, match="a must be"):
        fastscore.score(phi, np.ones(4), np.array([0, True], dtype=object))


def test_out_with_a_zero_stride_is_rejected():
    phi = np.zeros((4, 3, 2))
    base = np.zeros(2)
    out = np.lib.stride_tricks.as_strided(base, shape=(4, 2), strides=(0, 8), writeable=True)
    with pytest.raises(ValueError, match="out must not overlap itself"):
        fastscore.score(phi, np.ones(2), np.zeros(4, dtype=np.intp), out=out)


def test_zero_features_do_not_write_past_the_scratch():
    """d = 0 once sent the narrow accumulation into its widest case, writing
    28 doubles past the state's scratch (heap corruption that crashed the
    interpreter at exit; found by the fuzzer).  A child process makes many
    such calls and must exit cleanly; glibc does not always notice the
    overwrite, ASan does at once (tools/sanitize.sh asan runs this test)."""
    import subprocess
    import sys
    code = (
        "import numpy as np, fastscore\n"
        "for n in (1, 4, 40, 1100):\n"
        "    phi = np.zeros((n, 0)); theta = np.zeros(0)\n"
        "    for _ in range(200):\n"
        "        fastscore.score(phi, theta, n - 1); fastscore.entropy(phi, theta)\n"
        "        fastscore.loglik(phi[None], theta, [0], grad=True, hess=True)\n"
        "        fastscore.probs(phi, theta); fastscore.log_prob(phi, theta, 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
