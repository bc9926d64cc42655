"""Leaks: every public function, called many times on small inputs and on its
error paths, keeps its memory flat.

Per registry entry, the call variants below (valid calls through the fast
path, the coercion path, malloc'd scratch (d > 256), both threaded drivers,
and one call per error path) run round-robin: a warm-up, then a window of
calls over which the growth of the resident set (RSS: catches raw malloc
leaks in C) and of tracemalloc's traced memory (Python objects and NumPy
buffers) must stay below a few hundred KiB.  A leak of one small block per
call over the window exceeds that.

Calls per function: FASTSCORE_LEAK_CALLS (default 40 000, about 1 s for
score; nightly: 1 000 000, the same criterion).
"""
import gc
import os
import tracemalloc

import numpy as np
import pytest

import robust_cases as rc

CALLS = int(os.environ.get("FASTSCORE_LEAK_CALLS", "40000"))
SANITIZER = os.environ.get("FASTSCORE_SANITIZER", "")
# Under ASan, freed memory sits in quarantine: RSS says nothing (LeakSanitizer
# checks raw mallocs there instead), and every call is slower.
if SANITIZER:
    CALLS = min(CALLS, 4000)

RSS_LIMIT = 1 << 20          # bytes of RSS growth allowed over the window
TRACED_LIMIT = 256 << 10     # bytes of traced growth allowed over the window


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def variants(entry):
    """[(label, kwargs, expected exception or None)] for entry."""
    rng = np.random.default_rng(7)
    kinds = {k: n for n, k in entry.params.items()}
    out = []

    def add(label, p, exc=None, **opts):
        mutate = opts.pop("mutate", None)
        kw = (rc.matrix_call_kwargs(entry, p, **opts) if entry.problem_kind == "matrix"
              else entry.call_kwargs(p, **opts))
        if mutate:
            mutate(kw)
        out.append((label, kw, exc))

    mk = rc.make_matrix_problem if entry.problem_kind == "matrix" else rc.make_problem
    small = {"B": 3, "N": 5, "d": 3}
    for layout in entry.layouts:
        p = mk(rng, layout, **small)
        add(f"{layout}", p)
        add(f"{layout}-masked-tau", mk(rng, layout, masked=True, temperature=0.7, **small))
        add(f"{layout}-f32", mk(rng, layout, dtype=np.float32, **small))
        if entry.out_shape is not None:
            add(f"{layout}-out", p, out=True)
        if entry.problem_kind == "matrix":
            add(f"{layout}-bias", mk(rng, layout, bias=True, **small),
                out=entry.out_shape is not None)
    p = mk(rng, entry.layouts[-1], **small)
    big_d = mk(rng, entry.layouts[-1], B=2, N=3, d=300)
    add("malloc-scratch", big_d)
    if "n_threads" in entry.params and entry.problem_kind == "phi":
        add("threads-over-states", mk(rng, "batch" if "batch" in entry.layouts else
                                      entry.layouts[0], B=8, N=30, d=300), n_threads=2)
        add("threads-over-chunks", mk(rng, "single", N=2100, d=32), n_threads=2)
    if "n_threads" in entry.params and entry.problem_kind == "matrix":
        # past PARALLEL_MIN_WORK (B k N >= 2**16): threaded; loglik's BLAS blocks
        add("threads-over-states", mk(rng, "batch", B=64, N=40, d=32, bias=True),
            n_threads=2)

    def setitem(name, value):
        def f(kw):
            kw[name] = value
        return f

    def nan_in(name, where):
        def f(kw):
            x = np.array(kw[name], dtype=np.float64)
            x.flat[where] = np.nan
            kw[name] = x
        return f

    # The coercion path: lists and integer features.
    feat = kinds.get("features") or kinds.get("states")
    if feat:
        add("coerce-list", p, mutate=lambda kw: kw.__setitem__(feat, np.asarray(kw[feat])
                                                                 .tolist()))
        add("coerce-int", p, mutate=lambda kw: kw.__setitem__(feat, np.asarray(kw[feat])
                                                                .astype(np.int32)))
        # Error paths.
        add("err-nan-features", p, ValueError, mutate=nan_in(feat, 1))
        add("err-nan-features-big-d", big_d, ValueError, mutate=nan_in(feat, 5))
        add("err-features-str", p, TypeError,
            mutate=lambda kw: kw.__setitem__(feat, np.asarray(kw[feat]).astype(str)))
        if "n_threads" in entry.params and entry.problem_kind == "matrix":
            q = mk(rng, "batch", B=64, N=40, d=32)
            add("err-nan-threads-over-states", q, ValueError, n_threads=2,
                mutate=nan_in(feat, 64 * 32 - 5))
        if "n_threads" in entry.params and entry.problem_kind == "phi":
            q = mk(rng, "batch" if "batch" in entry.layouts else entry.layouts[0],
                   B=8, N=30, d=300)
            add("err-nan-threads-over-states", q, ValueError, n_threads=2,
                mutate=nan_in(feat, 8 * 30 * 300 - 7))
            q = mk(rng, "single", N=2100, d=32)
            add("err-nan-threads-over-chunks", q, ValueError, n_threads=2,
                mutate=nan_in(feat, 1500 * 32))
    par = kinds.get("params") or kinds.get("matrix")
    if par:
        add("err-nan-params", p, ValueError, mutate=nan_in(par, 0))
        add("err-nan-params-big-d", big_d, ValueError, mutate=nan_in(par, 299))
        add("err-params-shape", p, ValueError,
            mutate=lambda kw: kw.__setitem__(par, np.ones(17)))
    act = kinds.get("actions")
    if act:
        def bad_action(kw):
            a = kw[act]
            kw[act] = 10**6 if np.ndim(a) == 0 else np.full(np.shape(a), 10**6)
        add("err-action-range", p, IndexError, mutate=bad_action)
        add("err-action-type", p, TypeError, mutate=setitem(act, "x"))
    if "temperature" in kinds:
        add("err-temperature", p, ValueError, mutate=setitem(kinds["temperature"], 0.0))
        add("err-temperature-type", p, TypeError, mutate=setitem(kinds["temperature"], "x"))
    if "n_threads" in kinds:
        add("err-n_threads", p, ValueError, mutate=setitem(kinds["n_threads"], 0))
    if "mask" in kinds:
        def all_masked(kw):
            shape = rc.result_dtype  # placeholder to keep flake quiet
            del shape
            m = kw.get(kinds["mask"])
            if m is None:
                phi = kw.get(feat)
                m = np.ones(np.shape(phi)[:-1] if entry.problem_kind == "phi" else
                            np.shape(kw[kinds["matrix"]])[1:], bool)
            kw[kinds["mask"]] = np.zeros(np.shape(m), bool)
        add("err-all-masked", p, ValueError, mutate=all_masked)
    if entry.out_shape is not None:
        add("err-out-dtype", p, TypeError, out=True,
            mutate=lambda kw: kw.__setitem__("out", np.zeros(np.shape(kw["out"]), np.int64)))
    if "bias" in kinds:
        add("err-nan-bias", mk(rng, entry.layouts[-1], bias=True, **small), ValueError,
            mutate=nan_in(kinds["bias"], 2))
        add("err-bias-shape", mk(rng, entry.layouts[-1], bias=True, **small), ValueError,
            mutate=setitem(kinds["bias"], np.ones(17)))
    if "offsets" in kinds and "ragged" in entry.layouts:
        q = mk(rng, "ragged", **small)
        add("err-offsets", q, ValueError,
            mutate=lambda kw: kw.__setitem__("offsets", kw["offsets"][::-1].copy()))
    return out


HEAVY_EVERY = 16  # the threaded variants (a large input each) run every 16th round


def schedule(vs, n_calls):
    """The variants to call, round-robin, heavy ones every HEAVY_EVERY-th round."""
    light = [v for v in vs if "threads" not in v[0]]
    heavy = [v for v in vs if "threads" in v[0]]
    order, r = [], 0
    while len(order) < n_calls:
        order.extend(light + (heavy if r % HEAVY_EVERY == 0 else []))
        r += 1
    return order[:n_calls]


def run_variants(entry, vs, n_calls):
    errors = tuple(e for _, _, e in vs if e is not None) or (Exception,)
    for label, kw, exc in schedule(vs, n_calls):
        if exc is None:
            entry.call(kw)
        else:
            try:
                entry.call(kw)
            except errors:
                pass
            else:  # pragma: no cover - the variant is broken
                raise AssertionError(f"{label} did not raise")


@pytest.mark.parametrize("name", rc.params_for_pytest())
def test_variants_behave_as_labelled(name):
    """Each variant does what its label says (else the leak test measures
    nothing useful): valid ones return, error ones raise their exception."""
    entry = rc.BY_NAME[name]
    for label, kw, exc in variants(entry):
        if exc is None:
            entry.call(kw)
        else:
            with pytest.raises(exc):
                entry.call(kw)


@pytest.mark.skipif(SANITIZER == "valgrind", reason="too slow under valgrind")
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.parametrize("name", rc.params_for_pytest())
def test_memory_is_flat(name):
    entry = rc.BY_NAME[name]
    vs = variants(entry)
    warm = max(CALLS // 5, 2 * len(vs))
    window = CALLS - warm
    # RSS over plain calls (the C side: scratch buffers, theta copies).
    run_variants(entry, vs, warm)
    gc.collect()
    rss0 = rss_bytes()
    run_variants(entry, vs, window)
    gc.collect()
    rss_growth = rss_bytes() - rss0
    # tracemalloc over a shorter window (tracing slows every allocation).
    traced_calls = max(window // 4, 4 * len(vs))
    tracemalloc.start()
    try:
        run_variants(entry, vs, 2 * len(vs))
        gc.collect()
        t0, _ = tracemalloc.get_traced_memory()
        run_variants(entry, vs, traced_calls)
        gc.collect()
        t1, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    traced_growth = t1 - t0
    print(f"{name}: {len(vs)} variants, {CALLS} calls + {traced_calls} traced: "
          f"RSS +{rss_growth} B, traced +{traced_growth} B")
    assert traced_growth < TRACED_LIMIT, (
        f"{name}: Python/NumPy memory grew by {traced_growth} B over {traced_calls} calls")
    if not SANITIZER:
        assert rss_growth < RSS_LIMIT, (
            f"{name}: RSS grew by {rss_growth} B over {window} calls")
