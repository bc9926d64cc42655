"""Conditional logit by Newton's method on a Zarr data set larger than the
workers' memory, with fastscore.dask.

    python examples/dask_zarr_logit.py --size 4GB          # the full run
    python examples/dask_zarr_logit.py --size 20MB         # seconds

Writes a synthetic data set (B choice situations x N alternatives x d
features, float64; choices drawn from the model with known parameters) to
disk as Zarr, chunk by chunk, then fits it on a LocalCluster whose workers
have ``--memory-limit`` each (default 1 GiB: two workers hold at most 2 GiB,
less than the 4 GB data).  Every Newton iteration reads the data chunk by
chunk from disk: each chunk's task computes its partial log-likelihood,
gradient and Hessian (``fastscore.loglik``), and only those (1 + d + d^2
numbers) come back, summed in a fixed order.  Prints the estimates next to
the true parameters with standard errors, the time per iteration and the
workers' peak memory.  The data are deleted at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import time

import dask
import dask.array as da
import numpy as np
import zarr
from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster

import fastscore.dask as fd


def true_theta(d):
    return np.round(np.linspace(-1.0, 1.0, d), 3)


def write_data(path, n_states, n_alts, d, states_per_chunk, seed, client):
    """phi ~ N(0, 1) and choices drawn from the logit with true_theta, written
    to Zarr by the workers chunk by chunk (each chunk is made once)."""
    theta = true_theta(d)
    rng = da.random.default_rng(seed)
    phi = rng.standard_normal((n_states, n_alts, d), chunks=(states_per_chunk, -1, -1))
    choices, _ = fd.sample(phi, theta, seed=seed + 1)
    no_compression = {"compressors": None} if zarr.__version__[0] >= "3" else {"compressor": None}
    group = zarr.open_group(path, mode="w")
    targets = [
        group.create_array("phi", shape=phi.shape, chunks=(states_per_chunk, n_alts, d),
                           dtype="f8", **no_compression)
        if hasattr(group, "create_array")
        else group.create_dataset("phi", shape=phi.shape, chunks=(states_per_chunk, n_alts, d),
                                  dtype="f8", **no_compression),
        group.create_array("choice", shape=(n_states,), chunks=(states_per_chunk,),
                           dtype="i8", **no_compression)
        if hasattr(group, "create_array")
        else group.create_dataset("choice", shape=(n_states,), chunks=(states_per_chunk,),
                                  dtype="i8", **no_compression),
    ]
    da.store([phi, choices.astype("i8")], targets, lock=False, scheduler=client)
    return theta


def worker_peak_rss():
    """This process's peak resident memory in bytes (Linux: ru_maxrss in KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024)


def worker_cpu_seconds():
    """CPU time (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def newton(phi, choice, d, client, max_iter=25, tol=1e-10):
    """Maximise the log-likelihood; returns (theta, value, Hessian, seconds
    per iteration, workers' CPU seconds per iteration)."""
    theta = np.zeros(d)
    times, cpus = [], []
    for it in range(1, max_iter + 1):
        cpu0 = sum(client.run(worker_cpu_seconds).values())
        t0 = time.perf_counter()
        value, grad, hess = dask.compute(
            *fd.loglik(phi, theta, choice, grad=True, hess=True), scheduler=client
        )
        times.append(time.perf_counter() - t0)
        cpus.append(sum(client.run(worker_cpu_seconds).values()) - cpu0)
        step = np.linalg.solve(-hess, grad)
        decrement = float(grad @ step)  # Newton decrement squared
        print(f"  iteration {it:2d}: loglik {value:.10e}  decrement {decrement:.2e}  "
              f"{times[-1]:.2f} s (workers' CPU {cpus[-1]:.2f} s)", flush=True)
        theta = theta + step
        if decrement < tol * max(1.0, abs(value)):
            value, grad, hess = dask.compute(
                *fd.loglik(phi, theta, choice, grad=True, hess=True), scheduler=client
            )
            print(f"converged after {it} Newton steps")
            return theta, value, hess, times, cpus
    print(f"not converged after {max_iter} Newton steps")
    return theta, value, hess, times, cpus


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="4GB", help="bytes of phi on disk, e.g. 4GB, 20MB")
    p.add_argument("--alternatives", type=int, default=10, help="N, alternatives per choice")
    p.add_argument("--features", type=int, default=10, help="d, features (parameters)")
    p.add_argument("--chunk", default="64MB", help="bytes of phi per chunk (at most size / 8)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="1GiB", help="per worker")
    p.add_argument("--path", default="fastscore_logit.zarr")
    p.add_argument("--reuse", action="store_true", help="fit the data already at --path")
    p.add_argument("--keep", action="store_true", help="do not delete the data at the end")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--max-iter", type=int, default=25, help="Newton steps at most")
    args = p.parse_args(argv)

    n, d = args.alternatives, args.features
    per_state = n * d * 8
    size = parse_bytes(args.size)
    n_states = max(1, size // per_state)
    states_per_chunk = max(1, min(parse_bytes(args.chunk), size // 8) // per_state)

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory_limit, dashboard_address=None)
    client = Client(cluster)
    try:
        print(f"{args.workers} worker processes, 1 thread and {args.memory_limit} each")
        if args.reuse and os.path.exists(args.path):
            print(f"fitting the data at {args.path}")
            theta_true = true_theta(d)
        else:
            t0 = time.perf_counter()
            theta_true = write_data(args.path, n_states, n, d, states_per_chunk, args.seed, client)
            print(f"wrote {format_bytes(n_states * per_state)} of phi ({n_states} choices x "
                  f"{n} alternatives x {d} features) to {args.path} in "
                  f"{time.perf_counter() - t0:.1f} s")
        phi = da.from_zarr(args.path, component="phi")
        choice = da.from_zarr(args.path, component="choice")
        print(f"phi {phi.shape} {phi.dtype}, {phi.npartitions} chunks of "
              f"{format_bytes(phi.chunks[0][0] * per_state)}")
        peak0 = max(client.run(worker_peak_rss).values())

        theta, value, hess, times, cpus = newton(phi, choice, d, client, max_iter=args.max_iter)
        cov = np.linalg.inv(-hess)
        se = np.sqrt(np.diag(cov))
        print()
        print(f"{'param':>6} {'true':>9} {'estimate':>11} {'std.err':>9} {'z(est-true)':>12}")
        for j in range(d):
            print(f"{j:>6} {theta_true[j]:>9.4f} {theta[j]:>11.6f} {se[j]:>9.6f} "
                  f"{(theta[j] - theta_true[j]) / se[j]:>12.2f}")
        print(f"log-likelihood at the estimate: {value:.10e}")
        peaks = client.run(worker_peak_rss)
        print(f"time per iteration: median {statistics.median(times):.3f} s, "
              f"min {min(times):.3f} s over {len(times)} iterations; the workers used "
              f"{statistics.median(cpus) / statistics.median(times):.2f} cores "
              f"(median CPU {statistics.median(cpus):.2f} s per iteration)")
        print("workers' peak memory (RSS): " + ", ".join(format_bytes(v) for v in peaks.values())
              + f" (limit {args.memory_limit} each; {format_bytes(peak0)} before the fit)")
        print(f"RESULT workers={args.workers} bytes={n_states * per_state} "
              f"median_s={statistics.median(times):.4f} min_s={min(times):.4f} "
              f"iters={len(times)} peak_rss={max(peaks.values())} cpu_s={statistics.median(cpus):.4f}")
    finally:
        client.close()
        cluster.close()
        if not args.keep and os.path.exists(args.path):
            shutil.rmtree(args.path)
            print(f"deleted {args.path}")


if __name__ == "__main__":
    main()
