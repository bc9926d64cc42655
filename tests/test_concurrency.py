"""Concurrency: Python threads calling every public function at once get
exactly the serial results, with and without OpenMP threads inside each call;
another thread writing to ``a`` (or ``offsets``) during a call gets a clear
error or a correct result, never a read out of bounds (tools/sanitize.sh asan
runs this file under AddressSanitizer too)."""
import os
import threading
import time

import numpy as np
import pytest

import fastscore
import robust_cases as rc

N_PY_THREADS = 8
ROUNDS = int(os.environ.get("FASTSCORE_CONCURRENCY_ROUNDS", "3"))
SANITIZER = os.environ.get("FASTSCORE_SANITIZER", "")


def _jobs(entry, seed):
    """Calls of entry with different arguments: small and large enough to
    release the GIL and run threaded."""
    rng = np.random.default_rng(seed)
    jobs = []
    sizes = [dict(B=3, N=5, d=3), dict(B=16, N=200, d=24), dict(B=1, N=2100, d=32),
             dict(B=4, N=3, d=300)]
    for i, size in enumerate(sizes):
        for n_threads in (1, 2, None):
            p, kw = rc.build(entry, rng, dtype=np.float32 if i % 2 else np.float64,
                             n_threads=n_threads, **size)
            jobs.append(kw)
    return jobs


@pytest.mark.parametrize("name", rc.params_for_pytest())
def test_python_threads_get_the_serial_results(name):
    entry = rc.BY_NAME[name]
    jobs = [kw for t in range(N_PY_THREADS) for kw in _jobs(entry, 1000 + t)]
    want = [rc.bits(entry.call(kw)) for kw in jobs]
    per_thread = [list(range(t, len(jobs), N_PY_THREADS)) for t in range(N_PY_THREADS)]
    barrier = threading.Barrier(N_PY_THREADS)
    bad, errors = [], []

    def worker(t):
        try:
            barrier.wait()
            for _ in range(ROUNDS):
                for i in per_thread[t]:
                    if rc.bits(entry.call(jobs[i])) != want[i]:
                        bad.append(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_PY_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert not bad, f"calls whose result differed from the serial one: {sorted(set(bad))}"


def test_all_functions_at_once():
    """Every available function in its own threads, interleaved."""
    entries = rc.available()
    jobs = [(e, kw) for e in entries for kw in _jobs(e, 7)]
    want = [rc.bits(e.call(kw)) for e, kw in jobs]
    bad = []

    def worker(t):
        for i in range(t, len(jobs), N_PY_THREADS):
            e, kw = jobs[i]
            if rc.bits(e.call(kw)) != want[i]:
                bad.append((e.name, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_PY_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not bad


# ---------------------------------------------------------------------------
# Another thread writes to the actions during the call.

def _per_state_scores(phi, theta, actions, **kw):
    """{(b, a): bits of row b of the score with action a for state b}."""
    out = {}
    for b in range(phi.shape[0]):
        for a in set(int(x[b]) for x in actions):
            if not 0 <= a < phi.shape[1]:
                continue
            out[b, a] = fastscore.score(phi[b], theta, a, n_threads=1, **kw).tobytes()
    return out


# shape -> the driver it exercises with n_threads=2: states, or chunks of states
MUTATION_SHAPES = {"threads-over-states": (64, 300, 16), "threads-over-chunks": (2, 16384, 8),
                   "serial": (8, 700, 16)}


# Not strict: a race shows only when a write lands at the wrong moment, which
# most runs of the chunk driver see within the time budget, and the others
# only sometimes (seen under ASan for the state driver).
RACE = pytest.mark.xfail(strict=False, reason=(
    "lead: the kernel reads a[b] from the caller's array while it runs (GIL released): "
    "run_chunks re-reads it for every chunk of a state, and in every driver the C compiler "
    "may reload it between the range check in state_chunk and the row read (a data race), "
    "so a concurrent write gives a row that is the score under neither action, and in "
    "principle a read outside phi; copy a (and offsets) to a private buffer after "
    "validation, before releasing the GIL"))


@RACE
@pytest.mark.parametrize("shape_name", ["threads-over-states", "threads-over-chunks", "serial"])
@pytest.mark.parametrize("invalid", [False, True], ids=["valid-values", "invalid-values"])
def test_actions_written_during_the_call(shape_name, invalid):
    """A writer flips a[] between two action vectors (both valid, or one with
    out-of-range entries) while calls run: each call raises a clear error
    naming a, or returns rows that are each the exact score of state b under
    one of the two actions it could have seen.  Never a crash or a read
    outside phi (ASan checks that)."""
    B, N, d = MUTATION_SHAPES[shape_name]
    n_threads = 1 if shape_name == "serial" else 2
    rng = np.random.default_rng(B * N)
    phi = rng.standard_normal((B, N, d))
    theta = rng.standard_normal(d)
    a0 = rng.integers(0, N, size=B)
    a1 = rng.integers(0, N, size=B)
    if invalid:
        a1[::3] = [N + 10**6, -1, 2**62][0: len(a1[::3])] if B < 3 else \
            np.resize([N + 10**6, -1, 2**62], len(a1[::3]))
    want = _per_state_scores(phi, theta, [a0, a1])
    a = a0.copy()
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            a[:] = a1
            a[:] = a0

    th = threading.Thread(target=writer)
    th.start()
    outcomes = {"ok": 0, "error": 0}
    mixed = []
    try:
        # A time budget, stopping at the first mixed row: the race between
        # chunks needs more tries to show than the others need to pass.
        budget = (4.0 if shape_name == "threads-over-chunks" else 1.0) * (10 if SANITIZER else 1)
        t_end = time.monotonic() + budget
        calls = 0
        while not mixed and (calls < 10 or time.monotonic() < t_end):
            calls += 1
            try:
                got = fastscore.score(phi, theta, a, n_threads=n_threads)
            except (IndexError, ValueError, RuntimeError) as e:
                assert "a" in str(e).split("=")[0] or "a changed" in str(e) \
                    or str(e).startswith("a["), str(e)
                outcomes["error"] += 1
                continue
            outcomes["ok"] += 1
            for b in range(B):
                row = got[b].tobytes()
                cands = {want.get((b, int(a0[b]))), want.get((b, int(a1[b])))}
                if row not in cands:
                    mixed.append(b)
    finally:
        stop.set()
        th.join()
    assert not mixed, (
        f"{len(mixed)} rows (states {sorted(set(mixed))[:10]}) are the score under neither "
        f"action the state had during the call; outcomes {outcomes}")


def _has_offsets():
    try:
        import inspect
        return "offsets" in inspect.signature(fastscore.score).parameters
    except (TypeError, ValueError):
        return False


@pytest.mark.skipif(not _has_offsets(), reason="offsets= not implemented yet")
@pytest.mark.parametrize("n_threads", [1, 2])
def test_offsets_written_during_the_call(n_threads):
    """A writer flips offsets between two valid partitions of the rows and a
    broken one (decreasing, past the end): a clear error naming offsets or a
    (or a correct result for one of the partitions), never a read past phi."""
    rng = np.random.default_rng(11)
    d = 16
    o0 = np.arange(0, 64 * 400 + 1, 400, dtype=np.intp)
    o1 = o0.copy()
    o1[1:-1] += 200
    broken = o0.copy()
    broken[5] = 10**9
    broken[6] = -5
    phi = rng.standard_normal((int(o0[-1]), d))
    theta = rng.standard_normal(d)
    a = np.zeros(64, np.intp)
    want = {tuple(o): fastscore.score(phi, theta, a, offsets=o, n_threads=1).tobytes()
            for o in (o0, o1)}
    offsets = o0.copy()
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            offsets[:] = o1
            offsets[:] = broken
            offsets[:] = o0

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(30):
            try:
                got = fastscore.score(phi, theta, a, offsets=offsets, n_threads=n_threads)
            except (IndexError, ValueError, RuntimeError) as e:
                assert "offsets" in str(e) or "a" in str(e), str(e)
                continue
            # a result is only "correct" per state; each row must come from
            # one of the valid partitions
            assert got.shape == (64, d)
            assert np.all(np.isfinite(got))
    finally:
        stop.set()
        th.join()
    del want
