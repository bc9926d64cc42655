"""fastscore.torch against the NumPy-level calls it makes, and against
PyTorch's own autograd of the same computation, on the CPU.

    python benchmarks/torch_bridge.py [--repeats R] [--number N]

One forward + backward per call, the gradient with respect to the parameters
(theta; W and b), of the sum over states; on 4096 x 10 x 64 phi (the phi
form) and 4096 x 64 states with W (64, 10) (the state-input form), float64
and float32.  The three columns of each row compute the same gradient:

* ``fastscore.torch``: the bridge's function, then ``.backward()``;
* ``NumPy calls``: the fastscore calls the bridge makes, on the same arrays
  (for log_prob: ``log_prob`` then ``loglik(weights=1, grad=True)``; for
  entropy and kl of the phi form: ``grad=True``, the per-state gradients
  summed; for the state-input entropy: ``entropy`` then ``loglik(weights=0,
  entropy_weight=1, grad=True)``, the gradient of the sum in one pass; for
  the state-input kl: ``kl``, then dKL/dz in NumPy and one matrix product,
  by PyTorch as the bridge does it);
* ``torch autograd``: ``log_softmax`` of ``phi @ theta / tau`` (or ``s @ W +
  b``) and the textbook formula, then ``.backward()``.

Prints a table: the best of R runs of N calls each, the three timed in turn
within each run, and the ratios.  Run it alone on the machine (the README's
timing lock, ``flock /tmp/fastscore-timing.lock``).  It imports PyTorch in
``main`` only: asv collects this directory and must not need it.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path


def cases(torch, dtype, rng):
    """[(name, form, ours, numpy_calls, autograd)] of zero-argument callables."""
    import numpy as np

    import fastscore
    import fastscore.matrix as fm
    import fastscore.torch as ft
    import fastscore.torch.matrix as ftm
    from fastscore.torch import _numpy
    from fastscore.torch._bridge import matmul

    B, N, d, k = 4096, 10, 64, 64
    npd = np.float64 if dtype == torch.float64 else np.float32
    phi = torch.from_numpy(rng.normal(size=(B, N, d)).astype(npd))
    theta = torch.from_numpy((0.1 * rng.normal(size=d)).astype(npd))
    theta_ref = torch.from_numpy((theta.numpy() + 0.01 * rng.normal(size=d)).astype(npd))
    a = torch.from_numpy(rng.integers(N, size=B))
    w = torch.from_numpy(rng.normal(size=B).astype(npd))
    s = torch.from_numpy(rng.normal(size=(B, k)).astype(npd))
    W = torch.from_numpy((0.1 * rng.normal(size=(k, N))).astype(npd))
    b = torch.from_numpy((0.1 * rng.normal(size=N)).astype(npd))
    W_ref = torch.from_numpy((W.numpy() + 0.01 * rng.normal(size=(k, N))).astype(npd))
    b_ref = b.clone()
    P, T, Tr, A, Wn = phi.numpy(), theta.numpy(), theta_ref.numpy(), a.numpy(), w.numpy()
    S, Wm, bm, Wr = s.numpy(), W.numpy(), b.numpy(), W_ref.numpy()
    ones = np.ones(B, npd)
    beta = 0.01

    def ours(f, *params):
        """f's forward and backward with the parameters as leaves, their
        gradients reset as an optimiser's zero_grad does."""
        leaves = [p.clone().requires_grad_() for p in params]

        def run():
            for x in leaves:
                x.grad = None
            f(*leaves).sum().backward()
        return run

    def lsm_phi(t):
        return torch.log_softmax(phi @ t, dim=-1)

    def lsm_s(W_, b_):
        return torch.log_softmax(s @ W_ + b_, dim=-1)

    def torch_entropy(lp):
        return -(lp.exp() * lp).sum(-1)

    def torch_kl(lr, lp):
        return (lr.exp() * (lr - lp)).sum(-1)

    lr_phi, lr_s = lsm_phi(theta_ref), lsm_s(W_ref, b_ref)

    zeros, a0 = np.zeros(B, npd), np.zeros(B, np.intp)

    def np_entropy_phi():
        return ones @ fastscore.entropy(P, T, grad=True)[1]

    def np_kl_phi():
        return ones @ fastscore.kl(P, Tr, T, grad=True)[1]

    def np_loglik_h_phi():
        return fastscore.loglik(P, T, A, weights=Wn, entropy_weight=beta, grad=True)

    def np_entropy_s():
        fm.entropy(S, Wm, b=bm)
        return fm.loglik(S, Wm, a0, b=bm, weights=zeros, entropy_weight=1.0, grad=True)

    def np_kl_s():
        value = fm.kl(S, Wr, Wm, b_ref=bm, b=bm)
        dz = _numpy.kl_dz_matrix(S, Wr, Wm, bm, bm, value, mask=None, temperature=1.0)[0]
        return matmul(S.T, dz), dz.sum(axis=0)

    def np_loglik_h_s():
        return fm.loglik(S, Wm, A, b=bm, weights=Wn, entropy_weight=beta, grad=True)

    def gather(lp):
        return lp.gather(-1, a[:, None])[:, 0]

    return [
        ("log_prob", "phi", ours(lambda t: ft.log_prob(phi, t, a), theta),
         lambda: (fastscore.log_prob(P, T, A), fastscore.loglik(P, T, A, weights=ones, grad=True)),
         ours(lambda t: gather(lsm_phi(t)), theta)),
        ("entropy", "phi", ours(lambda t: ft.entropy(phi, t), theta), np_entropy_phi,
         ours(lambda t: torch_entropy(lsm_phi(t)), theta)),
        ("kl", "phi", ours(lambda t: ft.kl(phi, theta_ref, t), theta), np_kl_phi,
         ours(lambda t: torch_kl(lr_phi, lsm_phi(t)), theta)),
        ("loglik", "phi", ours(lambda t: ft.loglik(phi, t, a, weights=w), theta),
         lambda: fastscore.loglik(P, T, A, weights=Wn, grad=True),
         ours(lambda t: (w * gather(lsm_phi(t))).sum(), theta)),
        ("loglik+H", "phi", ours(lambda t: ft.loglik(phi, t, a, weights=w, entropy_weight=beta),
                                 theta), np_loglik_h_phi,
         ours(lambda t: (w * gather(lsm_phi(t))).sum() + beta * torch_entropy(lsm_phi(t)).sum(),
              theta)),
        ("log_prob", "state", ours(lambda W_, b_: ftm.log_prob(s, W_, a, b=b_), W, b),
         lambda: (fm.log_prob(S, Wm, A, b=bm),
                  fm.loglik(S, Wm, A, b=bm, weights=np.ones(B, npd), grad=True)),
         ours(lambda W_, b_: gather(lsm_s(W_, b_)), W, b)),
        ("entropy", "state", ours(lambda W_, b_: ftm.entropy(s, W_, b=b_), W, b), np_entropy_s,
         ours(lambda W_, b_: torch_entropy(lsm_s(W_, b_)), W, b)),
        ("kl", "state", ours(lambda W_, b_: ftm.kl(s, W_ref, W_, b_ref=b_ref, b=b_), W, b),
         np_kl_s, ours(lambda W_, b_: torch_kl(lr_s, lsm_s(W_, b_)), W, b)),
        ("loglik", "state", ours(lambda W_, b_: ftm.loglik(s, W_, a, b=b_, weights=w), W, b),
         lambda: fm.loglik(S, Wm, A, b=bm, weights=Wn, grad=True),
         ours(lambda W_, b_: (w * gather(lsm_s(W_, b_))).sum(), W, b)),
        ("loglik+H", "state",
         ours(lambda W_, b_: ftm.loglik(s, W_, a, b=b_, weights=w, entropy_weight=beta), W, b),
         np_loglik_h_s,
         ours(lambda W_, b_: (w * gather(lsm_s(W_, b_))).sum()
              + beta * torch_entropy(lsm_s(W_, b_)).sum(), W, b)),
    ]


def best_of(fns, repeats, number):
    """Best seconds per call of each function, timed in turn within each run."""
    best = [float("inf")] * len(fns)
    for f in fns:
        f()  # warm-up
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(number):
                f()
            best[i] = min(best[i], (time.perf_counter() - t0) / number)
    return best


def main(argv=None):
    # This checkout's fastscore (built in place), not another installed copy.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import numpy as np
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=10)
    args = parser.parse_args(argv)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    print(f"CPU {cpu}; torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"best of {args.repeats} x {args.number} calls (forward + backward)")
    head = (f"{'function':<10} {'form':<6} {'dtype':<8} {'fastscore.torch':>15} "
            f"{'NumPy calls':>12} {'torch autograd':>15} {'vs NumPy':>9} {'autograd/ours':>14}")
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(0)
    for dtype in (torch.float64, torch.float32):
        for name, form, ours, numpy_calls, autograd in cases(torch, dtype, rng):
            t_ours, t_np, t_torch = best_of([ours, numpy_calls, autograd], args.repeats,
                                            args.number)
            print(f"{name:<10} {form:<6} {str(dtype)[6:]:<8} {t_ours * 1e3:12.3f} ms "
                  f"{t_np * 1e3:9.3f} ms {t_torch * 1e3:12.3f} ms {t_ours / t_np:8.2f}x "
                  f"{t_torch / t_ours:13.2f}x")


if __name__ == "__main__":
    main()
