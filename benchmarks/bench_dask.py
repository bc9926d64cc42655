"""fastscore.dask: the engine's overhead and its scaling with worker processes.

Two measurements (see docs/dask.md for the numbers and the machine):

(a) overhead: one worker process (one thread) against the in-memory call on
    one thread, on data that fits in memory and already sits in the worker
    (persisted), timed alternately in one process; the ratio is
    dask time / in-memory time (target <= 1.2).
(b) scaling: the Newton fit of examples/dask_zarr_logit.py on Zarr data,
    median time per iteration with one worker over two workers (target >= 1.6).

As a script, from the repository root::

    python -m benchmarks.bench_dask                    # (a), and (b) on 1 GB
    python -m benchmarks.bench_dask --zarr-size 4GB    # (b) on the full data set
    python -m benchmarks.bench_dask --skip-zarr --repeats 9

As an asv suite the ``track_`` methods return the same ratios (smaller data)
for the installed fastscore; everything skips when Dask or distributed is not
installed, and (b) when Zarr is not.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import fastscore

try:
    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    import fastscore.dask as fd
except ImportError:  # the suite still imports; every benchmark skips
    dask = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "dask_zarr_logit.py")


def _need_dask():
    if dask is None:
        raise NotImplementedError("needs dask and distributed: pip install 'fastscore[dask]' "
                                  "distributed")


def _example_env():
    """The example's environment, such that it imports the fastscore this
    process did: an installed one it finds by itself (this tree on its path
    would shadow that with the unbuilt source folder); a build in this tree,
    in place or editable, needs the tree on its path."""
    tree = os.path.dirname(os.path.dirname(os.path.realpath(fastscore.__file__)))
    if tree != os.path.realpath(ROOT):
        return None
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def start_cluster(n_workers, memory_limit="4GiB"):
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           memory_limit=memory_limit, dashboard_address=None)
    return cluster, Client(cluster, set_as_default=False)


def make_persisted(client, shape, chunk_states, seed=0):
    """phi, a, weights generated in the workers and kept there, plus NumPy
    copies in this process (the same numbers)."""
    B, N, d = shape
    rng = da.random.default_rng(seed)
    phi = rng.standard_normal(shape, chunks=(chunk_states, -1, -1))
    a = rng.integers(0, N, size=B, chunks=chunk_states)
    w = rng.standard_normal(B, chunks=chunk_states)
    phi, a, w = client.persist([phi, a, w])
    dask.compute(phi.sum(), a.sum(), w.sum(), scheduler=client)  # wait until they are there
    np_phi, np_a, np_w = dask.compute(phi, a, w, scheduler=client)
    theta = np.random.default_rng(seed).standard_normal(d) / np.sqrt(d)
    return (phi, a, w), (np_phi, np_a, np_w), theta


def interleaved(funcs, repeats):
    """Median time of each function, timed alternately (one warm-up each)."""
    for f in funcs.values():
        f()
    times = {k: [] for k in funcs}
    for _ in range(repeats):
        for k, f in funcs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}, times


def overhead_cases(client, dsk, mem, theta):
    """{case: (dask callable, in-memory callable)} for measurement (a)."""
    (phi, a, w), (np_phi, np_a, np_w) = dsk, mem
    cases = {
        "score (B, d) back to the client": (
            lambda: dask.compute(fd.score(phi, theta, a), scheduler=client),
            lambda: fastscore.score(np_phi, theta, np_a, n_threads=1),
        ),
        "score, result summed in the worker": (
            lambda: dask.compute(fd.score(phi, theta, a).sum(axis=0), scheduler=client),
            lambda: fastscore.score(np_phi, theta, np_a, n_threads=1).sum(axis=0),
        ),
    }
    if hasattr(fastscore, "loglik"):
        cases["loglik(grad, hess)"] = (
            lambda: dask.compute(*fd.loglik(phi, theta, a, weights=w, grad=True, hess=True),
                                 scheduler=client),
            lambda: fastscore.loglik(np_phi, theta, np_a, weights=np_w, grad=True, hess=True,
                                     n_threads=1),
        )
        cases["loglik(grad)"] = (
            lambda: dask.compute(*fd.loglik(phi, theta, a, weights=w, grad=True),
                                 scheduler=client),
            lambda: fastscore.loglik(np_phi, theta, np_a, weights=np_w, grad=True, n_threads=1),
        )
    return cases


def measure_overhead(shape, chunk_states, repeats):
    cluster, client = start_cluster(1)
    try:
        dsk, mem, theta = make_persisted(client, shape, chunk_states)
        rows = []
        for case, (f_dask, f_mem) in overhead_cases(client, dsk, mem, theta).items():
            med, raw = interleaved({"dask": f_dask, "mem": f_mem}, repeats)
            ratios = [x / y for x, y in zip(raw["dask"], raw["mem"])]
            rows.append((case, med["mem"], med["dask"], statistics.median(ratios)))
        return rows
    finally:
        client.close()
        cluster.close()


def run_example(workers, path, size, reuse, max_iter=25):
    cmd = [sys.executable, EXAMPLE, "--size", size, "--workers", str(workers),
           "--path", path, "--keep", "--max-iter", str(max_iter)] + (["--reuse"] if reuse else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_example_env())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    out = proc.stdout
    m = re.search(r"RESULT (.*)", out)
    return dict(kv.split("=") for kv in m.group(1).split()), out


def measure_scaling(size, rounds, directory=None, max_iter=3):
    """Median seconds per Newton iteration (of ``max_iter``) with 1 and 2
    workers, alternating rounds on the same Zarr data (written once, deleted
    at the end)."""
    tmp = tempfile.mkdtemp(dir=directory, prefix="fastscore-bench-")
    path = os.path.join(tmp, "data.zarr")
    try:
        run_example(2, path, size, reuse=False, max_iter=1)  # writes the data
        per, peak, cpu = {1: [], 2: []}, {1: [], 2: []}, {1: [], 2: []}
        for _ in range(rounds):
            for workers in (1, 2):
                res, _ = run_example(workers, path, size, reuse=True, max_iter=max_iter)
                per[workers].append(float(res["median_s"]))
                peak[workers].append(int(res["peak_rss"]))
                cpu[workers].append(float(res["cpu_s"]))
        return per, peak, cpu
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- asv suite

class DaskOverhead:
    """dask time (one worker) / in-memory time (one thread), persisted data."""

    params = [["score", "loglik_hess"]]
    param_names = ["function"]
    unit = "dask time / in-memory time"
    timeout = 300

    def setup(self, function):
        _need_dask()
        if function == "loglik_hess" and not hasattr(fastscore, "loglik"):
            raise NotImplementedError("no fastscore.loglik")
        self.cluster, self.client = start_cluster(1)
        self.dsk, self.mem, self.theta = make_persisted(self.client, (20000, 16, 32), 5000)

    def teardown(self, function):
        # asv calls teardown after a skipped setup too: close only what started.
        if hasattr(self, "client"):
            self.client.close()
            self.cluster.close()

    def track_overhead(self, function):
        cases = overhead_cases(self.client, self.dsk, self.mem, self.theta)
        key = "score, result summed in the worker" if function == "score" else "loglik(grad, hess)"
        f_dask, f_mem = cases[key]
        med, _ = interleaved({"dask": f_dask, "mem": f_mem}, 5)
        return med["dask"] / med["mem"]


class DaskScaling:
    """Seconds per Newton iteration, one worker / two workers (Zarr, 128 MB:
    small enough for CI's smoke run; the script measures the full size)."""

    unit = "1-worker time / 2-worker time"
    timeout = 600

    def setup(self):
        _need_dask()
        if not hasattr(fastscore, "loglik"):
            raise NotImplementedError("no fastscore.loglik")
        if importlib.util.find_spec("zarr") is None:
            raise NotImplementedError("the Zarr example needs zarr: pip install zarr")

    def track_two_workers_speedup(self):
        per, _, _ = measure_scaling("128MB", rounds=1, max_iter=2)
        return per[1][0] / per[2][0]


# ---------------------------------------------------------------- script

def main(argv=None):
    p = argparse.ArgumentParser(description="fastscore.dask overhead and scaling")
    p.add_argument("--shape", default="100000,16,64", help="B,N,d of the in-memory data")
    p.add_argument("--chunk-states", type=int, default=25000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--zarr-size", default="1GB")
    p.add_argument("--rounds", type=int, default=2, help="alternating 1/2-worker fits")
    p.add_argument("--max-iter", type=int, default=3, help="Newton steps per fit")
    p.add_argument("--skip-zarr", action="store_true")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--dir", default=None, help="where to write the Zarr data")
    args = p.parse_args(argv)
    _need_dask()
    print(f"load average {os.getloadavg()}", flush=True)
    if not args.skip_overhead:
        shape = tuple(int(x) for x in args.shape.split(","))
        gb = np.prod(shape) * 8 / 1e9
        print(f"(a) overhead: phi {shape} float64 ({gb:.2f} GB), chunks of "
              f"{args.chunk_states} states, 1 worker x 1 thread vs in-memory n_threads=1, "
              f"median of {args.repeats}")
        print(f"{'case':<36} {'in-memory':>10} {'dask':>10} {'ratio':>7}")
        for case, t_mem, t_dask, ratio in measure_overhead(shape, args.chunk_states, args.repeats):
            print(f"{case:<36} {t_mem * 1e3:>8.1f}ms {t_dask * 1e3:>8.1f}ms {ratio:>7.3f}",
                  flush=True)
    if not args.skip_zarr:
        print(f"(b) scaling: Newton fit on {args.zarr_size} of Zarr, {args.rounds} rounds")
        per, peak, cpu = measure_scaling(args.zarr_size, args.rounds, args.dir, args.max_iter)
        for w in (1, 2):
            cores = [c / t for c, t in zip(cpu[w], per[w])]
            print(f"  {w} worker(s): s/iteration {['%.2f' % t for t in per[w]]}, "
                  f"workers' CPU s/iteration {['%.2f' % c for c in cpu[w]]}, "
                  f"cores used {['%.2f' % c for c in cores]}, "
                  f"peak RSS {max(peak[w]) / 2**20:.0f} MiB")
        ratios = [x / y for x, y in zip(per[1], per[2])]
        print(f"  speedup 2 vs 1 workers (wall): {['%.2f' % r for r in ratios]}, "
              f"median {statistics.median(ratios):.2f}")
        # With a full core per worker, the wall time is the CPU time per worker:
        # 2 workers then take cpu2 / 2 against cpu1.
        ideal = [2 * x / y for x, y in zip(cpu[1], cpu[2])]
        print(f"  2 x CPU(1 worker) / CPU(2 workers), the speedup with a free core per "
              f"worker: {['%.2f' % r for r in ideal]}, median {statistics.median(ideal):.2f}")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
