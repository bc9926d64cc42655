"""Threads: the result is bitwise the same for every thread count, n_threads
None follows OpenMP's current limit, concurrent Python callers are safe, and
the build really has OpenMP."""
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastscore
from fastscore import _core, reference

THREADS = (1, 2, 3, 4)
HAVE_OPENMP = bool(_core.build_info()["openmp"])


def test_openmp_compiled_in():
    """Fails if this build silently lost OpenMP (a serial module is a valid
    build only where FASTSCORE_ALLOW_SERIAL=1 says it is expected)."""
    info = _core.build_info()
    if not info["openmp"] and os.environ.get("FASTSCORE_ALLOW_SERIAL") == "1":
        pytest.skip("serial build allowed by FASTSCORE_ALLOW_SERIAL=1")
    assert info["openmp"] is True
    assert info["max_threads"] >= 1


@pytest.fixture(scope="module")
def big_state():
    """One state with 300 000 actions (293 chunks of 1024 rows) x 8 features."""
    rng = np.random.default_rng(300_000)
    phi = rng.standard_normal((300_000, 8))
    theta = rng.standard_normal(8)
    mask = rng.random(300_000) < 0.5
    mask[[0, 123_457, 299_999]] = True
    return phi, theta, mask


def all_bitwise_equal(results):
    first = results[0].tobytes()
    return all(r.tobytes() == first for r in results)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("a", [0, 123_457, 299_999])
def test_large_state_bitwise_identical_over_thread_counts(big_state, dtype, masked, a):
    phi, theta, mask = big_state
    phi, theta = phi.astype(dtype, copy=False), theta.astype(dtype, copy=False)
    m = mask if masked else None
    results = [fastscore.score(phi, theta, a, mask=m, temperature=0.7, n_threads=n)
               for n in THREADS + (None, 7)]
    assert all_bitwise_equal(results)
    # ...and it is the right number (the work was not split and lost)
    want = reference.score(phi.astype(np.float64), theta.astype(np.float64), a, mask=m,
                           temperature=0.7)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(results[0], want, rtol=tol, atol=tol * 1e-2)


def test_large_state_chunk_boundaries(big_state):
    """A state of 8 chunks + 1 row: rows either side of every 1024 boundary
    matter (the taken action and a dominant action sit on boundaries)."""
    phi, theta, _ = big_state
    phi = phi[: 8 * 1024 + 1].copy()
    phi[4096] = theta * 0.5  # a large logit right at a chunk start
    results = [fastscore.score(phi, theta, 1023, n_threads=n) for n in THREADS]
    assert all_bitwise_equal(results)
    np.testing.assert_allclose(results[0], reference.score(phi, theta, 1023), rtol=1e-10,
                               atol=1e-13)


def test_large_state_whole_chunks_masked(big_state):
    """Chunks with no legal action at all (first, middle, last) merge as
    nothing, whatever the thread count."""
    phi, theta, mask = big_state
    mask = mask.copy()
    mask[: 5 * 1024] = False
    mask[100 * 1024: 140 * 1024 + 17] = False
    mask[-3000:] = False
    a = int(np.flatnonzero(mask)[1000])
    phi = phi.copy()
    phi[~mask] = np.nan
    results = [fastscore.score(phi, theta, a, mask=mask, n_threads=n) for n in THREADS]
    assert all_bitwise_equal(results)
    np.testing.assert_allclose(results[0], reference.score(phi, theta, a, mask=mask),
                               rtol=1e-9, atol=1e-11)


BATCHES = {
    # shape -> which driver it exercises for n_threads in 2..4
    "many-states": (64, 2000, 16),      # threads over states
    "few-large-states": (3, 5000, 16),  # threads over the chunks of each state
    "few-states-few-chunks": (3, 3000, 24),  # chunks < threads: over states
    "odd": (13, 1100, 7),
    "many-tiny-states": (50_000, 3, 2),
}


@pytest.mark.parametrize("name", BATCHES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("masked", [False, True])
def test_batch_bitwise_identical_over_thread_counts(name, dtype, masked):
    shape = BATCHES[name]
    rng = np.random.default_rng(sum(shape))
    phi = rng.standard_normal(shape).astype(dtype)
    theta = rng.standard_normal(shape[-1]).astype(dtype)
    a = rng.integers(0, shape[1], size=shape[0])
    mask = None
    if masked:
        mask = rng.random(shape[:2]) < 0.6
        mask[np.arange(shape[0]), a] = True
        phi[~mask] = np.nan
    results = [fastscore.score(phi, theta, a, mask=mask, n_threads=n)
               for n in THREADS + (None, 64)]
    assert all_bitwise_equal(results)
    # ...and equal to scoring each state alone on one thread
    singles = np.stack([
        fastscore.score(phi[b], theta, int(a[b]), mask=None if mask is None else mask[b],
                        n_threads=1)
        for b in range(shape[0])])
    assert singles.tobytes() == results[0].tobytes()


def test_n_threads_none_works_and_matches(big_state):
    phi, theta, _ = big_state
    assert fastscore.score(phi, theta, 5).tobytes() == \
        fastscore.score(phi, theta, 5, n_threads=1).tobytes()


@pytest.mark.skipif(not HAVE_OPENMP, reason="serial build")
def test_threadpool_limits_respected(big_state):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    phi, theta, mask = big_state
    want = fastscore.score(phi, theta, 299_999, mask=mask, n_threads=1)
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _core.build_info()["max_threads"] == 1
        got = fastscore.score(phi, theta, 299_999, mask=mask)
    assert got.tobytes() == want.tobytes()
    with threadpoolctl.threadpool_limits(limits=3, user_api="openmp"):
        assert _core.build_info()["max_threads"] == 3
        got = fastscore.score(phi, theta, 299_999, mask=mask)
    assert got.tobytes() == want.tobytes()


# In a fresh interpreter, count this process's threads (Linux /proc) before and
# after one large call: an OpenMP team of t threads leaves t - 1 pooled workers.
_COUNT_THREADS = textwrap.dedent("""
    import os, sys, json
    import numpy as np
    import fastscore
    from fastscore import _core
    def n_tasks():
        return len(os.listdir("/proc/self/task"))
    phi = np.random.default_rng(0).standard_normal((300_000, 8))
    before = n_tasks()
    kw = json.loads(sys.argv[1])
    limit = kw.pop("limit", None)
    if limit is not None:
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=limit, user_api="openmp"):
            fastscore.score(phi, np.ones(8), 0, **kw)
    else:
        fastscore.score(phi, np.ones(8), 0, **kw)
    print(json.dumps({"max_threads": _core.build_info()["max_threads"],
                      "workers": n_tasks() - before}))
""")


def _run_counting(tmp_path, env_threads, kwargs):
    import json
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(env_threads))
    for var in ("OMP_THREAD_LIMIT", "OMP_DYNAMIC", "OMP_MAX_ACTIVE_LEVELS"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-c", _COUNT_THREADS, json.dumps(kwargs)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(not HAVE_OPENMP, reason="serial build")
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize("env_threads, kwargs, workers", [
    (1, {}, 0),                     # OMP_NUM_THREADS=1: n_threads=None runs serially
    (3, {}, 2),                     # OMP_NUM_THREADS=3: a team of 3
    (1, {"n_threads": 2}, 1),       # an explicit n_threads overrides the environment
    (3, {"n_threads": 1}, 0),
    (3, {"limit": 1}, 0),           # threadpoolctl lowers what None means
    (1, {"limit": 4}, 3),
])
def test_n_threads_none_follows_openmp(tmp_path, env_threads, kwargs, workers):
    res = _run_counting(tmp_path, env_threads, kwargs)
    assert res["workers"] == workers, res


@pytest.mark.parametrize("n_threads", [1, 2, None])
def test_concurrent_python_threads(big_state, n_threads):
    """Eight Python threads calling at once (the GIL is released while the
    kernel runs) each get exactly the single-threaded result."""
    phi, theta, mask = big_state
    rng = np.random.default_rng(8)
    batch = rng.standard_normal((40, 1500, 8))
    a_b = rng.integers(0, 1500, size=40)
    jobs = [
        ("big", lambda: fastscore.score(phi, theta, 123_457, mask=mask,
                                        n_threads=n_threads)),
        ("big32", lambda: fastscore.score(phi.astype(np.float32), theta.astype(np.float32),
                                          11, n_threads=n_threads)),
        ("batch", lambda: fastscore.score(batch, theta, a_b, n_threads=n_threads)),
        ("batch-tau", lambda: fastscore.score(batch, theta, a_b, temperature=3.0,
                                              n_threads=n_threads)),
    ]
    want = {name: fn().tobytes() for name, fn in jobs}
    work = [jobs[i % len(jobs)] for i in range(32)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda job: (job[0], job[1]().tobytes()), work))
    for name, bits in got:
        assert bits == want[name], name


def test_concurrent_calls_with_separate_outs():
    """Threads writing into their own out arrays do not interfere."""
    rng = np.random.default_rng(5)
    phis = [rng.standard_normal((16, 3000, 6)) for _ in range(8)]
    theta = rng.standard_normal(6)
    a = np.arange(16) * 100
    want = [fastscore.score(p, theta, a, n_threads=1) for p in phis]
    outs = [np.full((16, 6), np.nan) for _ in phis]

    def job(i):
        for _ in range(4):
            r = fastscore.score(phis[i], theta, a, out=outs[i], n_threads=2)
            assert r is outs[i]
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(job, range(8))) == list(range(8))
    for o, w in zip(outs, want):
        assert o.tobytes() == w.tobytes()


# How libgomp's threads wait (fastscore/_openmp.py): fastscore's spin count
# for the import alone, unless the user chose one or libgomp was loaded first.
_WAIT = textwrap.dedent("""
    import ctypes, ctypes.util, json, os, sys
    if sys.argv[1] == "gomp-first":
        ctypes.CDLL(ctypes.util.find_library("gomp"))
    import fastscore
    from fastscore import _openmp
    print(json.dumps({"wait": fastscore._config.build_info()["omp_wait"],
                      "env": {v: os.environ.get(v) for v in _openmp._USER_VARS}}))
""")


@pytest.mark.skipif(not HAVE_OPENMP, reason="serial build")
@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
@pytest.mark.parametrize("how, user, wait", [
    ("plain", {}, "GOMP_SPINCOUNT=20000 (set by fastscore at import)"),
    ("plain", {"OMP_WAIT_POLICY": "PASSIVE"}, "OMP_WAIT_POLICY=PASSIVE (the user's)"),
    ("plain", {"GOMP_SPINCOUNT": "7"}, "GOMP_SPINCOUNT=7 (the user's)"),
    ("gomp-first", {}, "libgomp's default (loaded before fastscore)"),
])
def test_gomp_spin_count_set_for_the_import_only(tmp_path, how, user, wait):
    import json
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(user)
    proc = subprocess.run([sys.executable, "-c", _WAIT, how], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    assert res["wait"] == wait
    # The process's environment (what child processes inherit) is the user's.
    assert res["env"] == {v: user.get(v) for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
