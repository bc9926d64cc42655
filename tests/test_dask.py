"""fastscore.dask on a real cluster of worker processes and on the threaded
scheduler, against the in-memory functions: bit for bit for per-state
results, and for loglik against an in-memory tree reduction of the same
chunks.  Skipped when Dask is not installed (the test extra installs it)."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastscore  # noqa: E402
import fastscore.dask as fd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _has(name, keyword=None):
    func = getattr(fastscore, name, None)
    if func is None:
        return False
    if keyword is None:
        return True
    try:
        return keyword in inspect.signature(func).parameters
    except (TypeError, ValueError):  # pragma: no cover - no signature
        return True


def need(name, keyword=None):
    if not _has(name, keyword):
        what = f"fastscore.{name}" + (f"({keyword}=)" if keyword else "")
        pytest.skip(f"{what} is not in this fastscore yet")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(params=["threads", "processes"])
def compute(request):
    """dask.compute on the threaded scheduler or on the 2-process cluster."""
    if request.param == "threads":
        return lambda *xs: dask.compute(*xs, scheduler="threads")
    c = request.getfixturevalue("client")
    return lambda *xs: dask.compute(*xs, scheduler=c)


CHUNKS = [(40, 40, 40, 13), (133,), (1,) * 5 + (128,)]


def padded(rng, B=133, N=9, d=6, dtype=np.float64):
    phi = rng.standard_normal((B, N, d)).astype(dtype)
    theta = rng.standard_normal(d).astype(dtype)
    a = rng.integers(0, N, size=B)
    mask = rng.random((B, N)) < 0.7
    mask[np.arange(B), a] = True
    return phi, theta, a, mask


def ragged(rng, B=97, d=5, max_n=8):
    sizes = rng.integers(1, max_n + 1, size=B)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    phi = rng.standard_normal((offsets[-1], d))
    theta = rng.standard_normal(d)
    a = (rng.random(B) * sizes).astype(np.intp)
    return phi, theta, a, offsets


def inside_a_state(offsets):
    """A row that is not a state boundary."""
    return int(np.setdiff1d(np.arange(1, offsets[-1]), offsets)[0])


def same(x, y):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert np.array_equal(x, y, equal_nan=True), np.max(np.abs(x - y))


# --------------------------------------------------------------------------
# Per-state functions: bit for bit the in-memory call
# --------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_score(rng, compute, chunks, dtype):
    phi, theta, a, mask = padded(rng, dtype=dtype)
    P = da.from_array(phi, chunks=(chunks, -1, -1))
    A = da.from_array(a, chunks=chunks)
    M = da.from_array(mask, chunks=(chunks, -1))
    m0 = mask[0] | (np.arange(9) == 0)
    a0 = np.where(m0[a], a, 0)  # legal under the shared mask
    plain = fd.score(P, theta, a)
    masked = fd.score(P, theta, A, mask=M, temperature=0.3)
    shared = fd.score(P, theta, a0, mask=m0, temperature=2.0)
    assert plain.chunks == (chunks, (6,)) and plain.dtype == np.dtype(dtype)
    got = compute(plain, masked, shared)
    same(got[0], fastscore.score(phi, theta, a))
    same(got[1], fastscore.score(phi, theta, a, mask=mask, temperature=0.3))
    same(got[2], fastscore.score(phi, theta, a0, mask=m0, temperature=2.0))


@pytest.mark.parametrize("name", ["log_prob", "entropy", "probs"])
def test_per_state_family(rng, compute, name):
    need(name)
    phi, theta, a, mask = padded(rng)
    chunks = CHUNKS[0]
    P = da.from_array(phi, chunks=(chunks, -1, -1))
    M = da.from_array(mask, chunks=(chunks, -1))
    f, g = getattr(fd, name), getattr(fastscore, name)
    args = (a,) if name == "log_prob" else ()
    lazy = f(P, theta, *args, mask=M, temperature=0.7)
    want = g(phi, theta, *args, mask=mask, temperature=0.7)
    assert lazy.chunks[0] == chunks and lazy.shape == want.shape and lazy.dtype == want.dtype
    same(compute(lazy)[0], want)


def test_sample_same_actions_as_in_memory(rng, compute):
    need("sample", "state_offset")
    phi, theta, _, mask = padded(rng, B=301)
    P = da.from_array(phi, chunks=((100, 1, 37, 163), -1, -1))
    acts, logp = fd.sample(P, theta, seed=1234, mask=mask)
    got = compute(acts, logp)
    want = fastscore.sample(phi, theta, seed=1234, mask=mask)
    same(got[0], want[0])
    same(got[1], want[1])
    # another chunking, the same draws
    acts2, _ = fd.sample(P.rechunk((150, -1, -1)), theta, seed=1234, mask=mask)
    same(compute(acts2)[0], want[0])


def test_sample_generator_key_is_fixed_at_build(rng):
    need("sample", "state_offset")
    phi, theta, _, _ = padded(rng)
    acts, _ = fd.sample(da.from_array(phi, chunks=(50, -1, -1)), theta, seed=np.random.default_rng(0))
    first = acts.compute(scheduler="threads")
    same(acts.compute(scheduler="sync"), first)
    # one draw from the Generator, as the in-memory call makes
    same(first, fastscore.sample(phi, theta, seed=np.random.default_rng(0))[0])
    with pytest.raises(TypeError, match="seed"):
        fd.sample(phi, theta, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        fd.sample(phi, theta, seed=-1)


# --------------------------------------------------------------------------
# loglik: fixed-order tree of per-chunk partials
# --------------------------------------------------------------------------

def in_memory_tree(parts):
    """Pairwise, level by level, left to right, odd last carried (written
    here independently of fastscore.dask.tree_sum)."""
    while len(parts) > 1:
        nxt = [tuple(x + y for x, y in zip(parts[i], parts[i + 1]))
               for i in range(0, len(parts) - 1, 2)]
        parts = nxt + parts[len(nxt) * 2:]
    return parts[0]


def chunk_partials(phi, theta, a, chunks, **kw):
    out, start = [], 0
    for n in chunks:
        s = slice(start, start + n)
        sub = {k: (v[s] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        r = fastscore.loglik(phi[s], theta, a[s], grad=True, hess=True, **sub)
        out.append(tuple(np.asarray(x, dtype=np.float64) for x in r))
        start += n
    return out


@pytest.mark.parametrize("chunks", [(40, 40, 40, 13), (133,), (10,) * 13 + (3,)])
def test_loglik_bitwise_tree(rng, compute, chunks):
    need("loglik")
    phi, theta, a, mask = padded(rng)
    w = rng.standard_normal(133)
    P = da.from_array(phi, chunks=(chunks, -1, -1))
    W = da.from_array(w, chunks=chunks)
    M = da.from_array(mask, chunks=(chunks, -1))
    v, g, h = fd.loglik(P, theta, a, weights=W, mask=M, grad=True, hess=True, temperature=0.8)
    assert v.shape == () and g.shape == (6,) and h.shape == (6, 6)
    got = compute(v, g, h)
    want = in_memory_tree(chunk_partials(phi, theta, a, chunks, weights=w, mask=mask,
                                         temperature=0.8))
    for x, y in zip(got, want):
        same(x, y)
    whole = fastscore.loglik(phi, theta, a, weights=w, mask=mask, grad=True, hess=True,
                             temperature=0.8)
    for x, y in zip(got, whole):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
    # value only, and (value, grad)
    v1 = fd.loglik(P, theta, a, weights=W, mask=M, temperature=0.8)
    v2, g2 = fd.loglik(P, theta, a, weights=W, mask=M, grad=True, temperature=0.8)
    got1 = compute(v1, v2, g2)
    same(got1[0], want[0])
    same(got1[1], want[0])
    same(got1[2], want[1])
    v3, h3 = fd.loglik(P, theta, a, weights=W, mask=M, hess=True, temperature=0.8)
    got3 = compute(v3, h3)
    same(got3[0], want[0])
    same(got3[1], want[2])


def test_loglik_same_bits_on_every_scheduler(rng, client):
    need("loglik")
    phi, theta, a, _ = padded(rng, B=400)
    P = da.from_array(phi, chunks=(37, -1, -1))
    res = fd.loglik(P, theta, a, grad=True, hess=True)
    runs = [dask.compute(*res, scheduler=s) for s in ("sync", "threads", client)]
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            same(x, y)


def test_tree_sum_order():
    parts = [(np.float64(x),) for x in (1e16, 1.0, -1e16, 1.0, 3.0)]
    # ((1e16 + 1) + (-1e16 + 1)) + 3: the documented order, not left to right
    assert fd.tree_sum(parts)[0] == in_memory_tree(parts)[0] == ((1e16 + 1.0) + (-1e16 + 1.0)) + 3.0
    assert fd.tree_sum([np.float64(2.0)]) == 2.0
    with pytest.raises(ValueError):
        fd.tree_sum([])


# --------------------------------------------------------------------------
# Long format: offsets, rows chunked on state boundaries
# --------------------------------------------------------------------------

def test_rechunk_to_states_and_state_chunks(rng):
    phi, _, _, offsets = ragged(rng)
    X = da.from_array(phi, chunks=(50, -1))
    Y = fd.rechunk_to_states(X, offsets)
    edges = np.cumsum(Y.chunks[0])
    assert np.isin(edges, offsets).all() and edges[-1] == len(phi)
    n = fd.state_chunks(offsets, Y.chunks[0])
    assert sum(n) == len(offsets) - 1 and len(n) == len(Y.chunks[0])
    Z = fd.rechunk_to_states(phi, offsets, rows_per_chunk=30)  # NumPy in, Dask out
    assert np.isin(np.cumsum(Z.chunks[0]), offsets).all()
    same(Z.compute(), phi)
    r = inside_a_state(offsets)
    with pytest.raises(ValueError, match="state boundaries"):
        fd.state_chunks(offsets, (r, len(phi) - r))


def test_ragged_score(rng, compute):
    need("score", "offsets")
    phi, theta, a, offsets = ragged(rng)
    P = fd.rechunk_to_states(da.from_array(phi, chunks=(60, -1)), offsets)
    n = fd.state_chunks(offsets, P.chunks[0])
    A = da.from_array(a, chunks=n)
    mask = rng.random(len(phi)) < 0.8
    mask[offsets[:-1] + a] = True
    M = da.from_array(mask, chunks=P.chunks[0])
    lazy = fd.score(P, theta, A, offsets=offsets, mask=M)
    assert lazy.chunks == (n, (phi.shape[1],))
    same(compute(lazy)[0], fastscore.score(phi, theta, a, offsets=offsets, mask=mask))


@pytest.mark.parametrize("name", ["log_prob", "entropy", "probs", "loglik", "sample"])
def test_ragged_family(rng, compute, name):
    need(name, "offsets")
    if name == "sample":
        need("sample", "state_offset")
    phi, theta, a, offsets = ragged(rng)
    P = fd.rechunk_to_states(phi, offsets, rows_per_chunk=70)
    n = fd.state_chunks(offsets, P.chunks[0])
    f, g = getattr(fd, name), getattr(fastscore, name)
    if name == "loglik":
        w = rng.standard_normal(len(a))
        got = compute(*f(P, theta, a, weights=w, offsets=offsets, grad=True, hess=True))
        parts, r0 = [], 0
        bounds = np.concatenate([[0], np.cumsum(n)])
        for k in range(len(n)):
            b0, b1 = bounds[k], bounds[k + 1]
            r0, r1 = offsets[b0], offsets[b1]
            r = g(phi[r0:r1], theta, a[b0:b1], weights=w[b0:b1], offsets=offsets[b0:b1 + 1] - r0,
                  grad=True, hess=True)
            parts.append(tuple(np.asarray(x, dtype=np.float64) for x in r))
        for x, y in zip(got, in_memory_tree(parts)):
            same(x, y)
        return
    if name == "sample":
        got = compute(*f(P, theta, seed=7, offsets=offsets))
        want = g(phi, theta, seed=7, offsets=offsets)
        same(got[0], want[0])
        same(got[1], want[1])
        return
    args = (a,) if name == "log_prob" else ()
    lazy = f(P, theta, *args, offsets=offsets)
    want = g(phi, theta, *args, offsets=offsets)
    assert lazy.chunks[0] == (P.chunks[0] if name == "probs" else n)
    same(compute(lazy)[0], want)


# --------------------------------------------------------------------------
# Inputs: NumPy accepted, nothing computed at build time, clear errors
# --------------------------------------------------------------------------

def test_numpy_phi_and_dask_a(rng):
    phi, theta, a, _ = padded(rng)
    r = fd.score(phi, theta, a)
    assert isinstance(r, da.Array) and r.npartitions == 1
    A = da.from_array(a, chunks=CHUNKS[0])
    r = fd.score(phi, theta, A)
    assert r.chunks[0] == CHUNKS[0]
    same(r.compute(scheduler="sync"), fastscore.score(phi, theta, a))


def test_graph_build_computes_nothing(rng):
    phi, theta, a, _ = padded(rng)

    def boom(x):
        raise AssertionError("computed at graph build time")

    P = da.from_array(phi, chunks=(40, -1, -1)).map_blocks(boom, dtype=phi.dtype)
    fd.score(P, theta, a)
    if _has("loglik"):
        fd.loglik(P, theta, a, grad=True, hess=True)
    if _has("sample", "state_offset"):
        fd.sample(P, theta, seed=1)


def test_errors(rng):
    phi, theta, a, mask = padded(rng)
    P = da.from_array(phi, chunks=(40, -1, -1))
    with pytest.raises(ValueError, match="action axis"):
        fd.score(P.rechunk((40, 3, -1)), theta, a)
    with pytest.raises(ValueError, match="feature axis"):
        fd.score(P.rechunk((40, -1, 2)), theta, a)
    with pytest.raises(ValueError, match=r"rechunk it: a\.rechunk"):
        fd.score(P, theta, da.from_array(a, chunks=50))
    with pytest.raises(ValueError, match="mask has chunks"):
        fd.score(P, theta, a, mask=da.from_array(mask, chunks=(50, -1)))
    with pytest.raises(ValueError, match="mask is chunked along axis 1"):
        fd.score(P, theta, a, mask=da.from_array(mask, chunks=(40, 3)))
    with pytest.raises(ValueError, match=r"a must have shape \(133,\)"):
        fd.score(P, theta, a[:-1])
    with pytest.raises(TypeError, match="theta must be a NumPy array"):
        fd.score(P, da.from_array(theta), a)
    with pytest.raises(ValueError, match="theta"):
        fd.score(P, theta[:-1], a)
    with pytest.raises(ValueError, match="temperature"):
        fd.score(P, theta, a, temperature=-1.0)
    with pytest.raises(ValueError, match="one state"):
        fd.score(P[0], theta, 0)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fd.score(P[P[:, 0, 0] > 0], theta, a)
    # a bad action surfaces at compute time, naming the chunk
    bad = a.copy()
    bad[90] = 99
    with pytest.raises(IndexError, match=r"chunk of states 80:120"):
        fd.score(P, theta, bad).compute(scheduler="sync")


def test_errors_long_format(rng):
    phi, theta, a, offsets = ragged(rng)
    r = inside_a_state(offsets)
    X = da.from_array(phi, chunks=((r, len(phi) - r), -1))
    with pytest.raises(ValueError, match="state boundaries"):
        fd.score(X, theta, a, offsets=offsets)
    with pytest.raises(TypeError, match="offsets must be a NumPy array"):
        fd.score(X, theta, a, offsets=da.from_array(offsets))
    with pytest.raises(ValueError, match="offsets"):
        fd.score(X, theta, a, offsets=offsets[:-1])
    with pytest.raises(ValueError, match="with offsets, phi must be 2-D"):
        fd.score(da.from_array(phi[None]), theta, a, offsets=offsets)
    Y = fd.rechunk_to_states(X, offsets)
    with pytest.raises(ValueError, match="state_chunks"):
        fd.score(Y, theta, da.from_array(a, chunks=len(a) // 3 + 1), offsets=offsets)


def test_errors_on_the_cluster(rng, client):
    phi, theta, a, _ = padded(rng)
    bad = a.copy()
    bad[5] = -1
    lazy = fd.score(da.from_array(phi, chunks=(40, -1, -1)), theta, bad)
    with pytest.raises(IndexError, match="chunk of states 0:40"):
        dask.compute(lazy, scheduler=client)


def test_import_fastscore_does_not_import_dask():
    code = "import sys, fastscore; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)


# --------------------------------------------------------------------------
# The Zarr example, small
# --------------------------------------------------------------------------

def test_zarr_example_runs_small(tmp_path):
    need("loglik")
    pytest.importorskip("zarr")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dask_zarr_logit.py"),
         "--size", "20MB", "--workers", "2", "--path", str(tmp_path / "data.zarr")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "converged" in proc.stdout
    assert not (tmp_path / "data.zarr").exists()  # the example deletes its data


# --------------------------------------------------------------------------
# The mixed logit on Parquet partitioned by panel
# --------------------------------------------------------------------------

ELECTRICITY = ROOT / "examples" / "data" / "electricity_long.csv"
X_ELEC = ["pf", "cl", "loc", "wk", "tod", "seas"]


def write_panels(df, path, groups):
    """One Parquet file per group of panel labels (file i: part.i)."""
    path.mkdir()
    for i, ids in enumerate(groups):
        df[df["id"].isin(ids)].to_parquet(path / f"part.{i}.parquet", index=False)
    return path


def bits(*arrays):
    return [np.asarray(a, dtype=np.float64).tobytes() for a in arrays]


def test_mixed_logit_on_parquet_is_the_in_memory_fit(client, tmp_path):
    """Electricity in 4 Parquet files of whole panels, 2 worker processes:
    start, params, bse, llf, Hessian and covariance bit for bit, hessian and
    robust."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import fastscore.choice as fc

    df = pd.read_csv(ELECTRICITY)
    path = write_panels(df, tmp_path / "elec", np.array_split(np.sort(df["id"].unique()), 4))
    kw = dict(choice="choice", obs="chid", alt="alt", x=X_ELEC, panel="id", n_draws=50,
              random={"pf": "normal", "cl": "normal", "loc": "normal"})
    model = fd.MixedLogit(str(path), client=client, **kw)
    memory = fc.MixedLogit(df, **kw)
    assert model.n_partitions == 4 and model.n_panels == memory.n_panels == 361
    assert model.param_names == memory.param_names and model.nobs == memory.nobs
    assert bits(model.start_values()) == bits(memory.start_values())
    for cov in ("hessian", "robust"):
        res, mem = model.fit(cov=cov), memory.fit(cov=cov)
        assert res.converged and res.niter == mem.niter
        assert bits(res.params, res.bse, res.llf, res.hessian, res.cov_params()) == \
            bits(mem.params, mem.bse, mem.llf, mem.hessian, mem.cov_params())
        assert res.llnull == mem.llnull
    assert res.individual_coefficients().equals(mem.individual_coefficients())
    with pytest.raises(NotImplementedError, match="not available"):
        res.predict()


@pytest.mark.parametrize("draws", ["mlhs", "array"])
def test_mixed_logit_partitions_in_any_order(client, tmp_path, draws):
    """Panels dealt to the files in turn (each file's panels not contiguous),
    weights, an alternative-specific constant, draws the client sends out
    (mlhs, an array), one file without alternative 4 and it unavailable in
    other situations: value, gradient, panel scores, Hessian, start and a
    clustered fit bit for bit."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import fastscore.choice as fc

    df = pd.read_csv(ELECTRICITY)
    ids = np.sort(df["id"].unique())
    df["w"] = df["id"].map(dict(zip(ids, np.linspace(0.5, 2.0, ids.size))))
    # The panels of the first file lose alternative 4 (and the situations
    # that chose it); it is unavailable in some other situations.
    chose4 = df["chid"].isin(df.loc[(df["alt"] == 4) & (df["choice"] == 1), "chid"])
    lost = df["id"].isin(ids[2::3])
    df = df[~(lost & (chose4 | (df["alt"] == 4)))].reset_index(drop=True)
    df["ok"] = (df["alt"] != 4) | (df["chid"] % 5 != 0) | (df["choice"] == 1)
    path = write_panels(df, tmp_path / "elec", [ids[2::3], ids[0::3], ids[1::3]])
    u = np.random.default_rng(1).uniform(0.01, 0.99, (ids.size, 20, 2))
    kw = dict(choice="choice", obs="chid", alt="alt", x=X_ELEC, panel="id", n_draws=20,
              random={"pf": "normal", "loc": "triangular"}, weights="w", avail="ok", asc=1,
              draws=u if draws == "array" else draws, seed=3)
    model = fd.MixedLogit(str(path), client=client, **kw)
    memory = fc.MixedLogit(df, **kw)
    assert model.n_partitions == 3 and model.param_names == memory.param_names
    theta = memory.start_values()
    assert bits(model.start_values()) == bits(theta)
    theta = theta + 0.01
    assert bits(*model.loglik(theta, grad=True, panel_scores=True)) == \
        bits(*memory.loglik(theta, grad=True, panel_scores=True))
    assert model.loglik(theta) == memory.loglik(theta)
    assert bits(model.hessian(theta)) == bits(memory.hessian(theta))
    with pytest.warns(fc.ConvergenceWarning) as caught:
        res = model.fit(start=theta, maxiter=3, cov="cluster", cluster="id")
        mem = memory.fit(start=theta, maxiter=3, cov="cluster", cluster="id")
    assert [w.filename for w in caught] == [__file__, __file__]  # the fit's callers
    assert bits(res.params, res.bse, res.llf) == bits(mem.params, mem.bse, mem.llf)
    assert res.n_clusters == mem.n_clusters == 361


def test_mixed_logit_panel_across_partitions_is_an_error(client, tmp_path):
    """A panel (without panel=, an observation) with rows in two files is a
    clear error, naming it; an observation label in two panels of two files
    is the in-memory error."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import fastscore.choice as fc

    df = pd.read_csv(ELECTRICITY)
    ids = np.sort(df["id"].unique())
    first = int(np.flatnonzero(df["id"] == ids[100])[0])
    kw = dict(choice="choice", obs="chid", alt="alt", x=X_ELEC, random={"pf": "normal"},
              n_draws=5)

    def split(frame, cut, name):
        path = tmp_path / name
        path.mkdir()
        frame.iloc[:cut].to_parquet(path / "part.0.parquet", index=False)
        frame.iloc[cut:].to_parquet(path / "part.1.parquet", index=False)
        return str(path)

    # Cut after the panel's first situation (4 rows), then inside it.
    path = split(df, first + 4, "panel")
    with pytest.raises(ValueError, match=rf"panel {ids[100]} \(column 'id'\) has rows in "
                                         r"partitions 0 and 1 of the data: .*one partition"):
        fd.MixedLogit(path, panel="id", client=client, **kw)
    path = split(df, first + 2, "obs")
    chid = df["chid"].iloc[first]
    with pytest.raises(ValueError, match=rf"observation {chid} \(column 'chid'\) has rows in "
                                         r"partitions 0 and 1 .* each observation is its own"):
        fd.MixedLogit(path, client=client, **kw)
    # The last panel's first situation relabelled as the first one's.
    other = df.copy()
    other.loc[other.index[-4:], "chid"] = other["chid"].iloc[0]
    path = split(other, first, "two_panels")
    for model in (fc.MixedLogit, lambda data, **k: fd.MixedLogit(path, client=client, **k)):
        with pytest.raises(fc.ChoiceDataError, match="panel column 'id' varies within "
                                                     "observation 1"):
            model(other, panel="id", **kw)


def test_mixed_logit_separation_named_as_in_memory(client, tmp_path):
    """The starting fit's separation error, from the partitions' counts, is
    the in-memory one."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import fastscore.choice as fc

    df = pd.read_csv(ELECTRICITY)
    df["perfect"] = df["choice"] * 1.0
    path = write_panels(df, tmp_path / "elec", np.array_split(np.sort(df["id"].unique()), 3))
    kw = dict(choice="choice", obs="chid", alt="alt", x=["pf", "cl", "perfect"],
              random={"pf": "normal"}, panel="id", n_draws=5)
    errors = []
    for model in (fc.MixedLogit(df, **kw), fd.MixedLogit(str(path), client=client, **kw)):
        with pytest.raises(fc.NotIdentifiedError, match=r"separated by 'perfect': the chosen") \
                as info:
            model.fit()
        errors.append(str(info.value))
    assert errors[0] == errors[1]
