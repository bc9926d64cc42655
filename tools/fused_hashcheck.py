"""SHA-256 of many outputs the fused tiny-state kernels compute (score, also
into a strided out, and loglik: value, gradient, weights), per dtype pair of
(phi, theta): f32 (float32, float32), f32mixed (float32, float64), f64,
f64mixed (float64, float32); the fused-test shapes, theta scaled by 0.1, 1,
30, 300, temperatures 1, 0.3, 2.5, one and two threads.

Compare two builds (e.g. a worktree at the commit before a kernel change):

    PYTHONPATH=/path/to/base python tools/fused_hashcheck.py
    PYTHONPATH=/path/to/new python tools/fused_hashcheck.py
    FASTSCORE_NO_FMA=1 PYTHONPATH=... python tools/fused_hashcheck.py

Run it from outside the repository (or the path's tree is the one imported).
usage: python fused_hashcheck.py [f32|f32mixed|f64|f64mixed ...]"""
import hashlib, sys
import numpy as np
import fastscore

SHAPES = [(1000, 1, 1), (999, 2, 3), (777, 5, 7), (1001, 6, 13), (513, 7, 17), (333, 8, 24),
          (10, 4, 9), (3, 8, 31), (2, 8, 32), (4001, 4, 8), (2049, 3, 5), (1500, 8, 32),
          (301, 9, 5), (403, 10, 20), (77, 12, 1), (64, 13, 31), (33, 15, 17), (1201, 16, 32)]
KINDS = {"f32": (np.float32, np.float32), "f32mixed": (np.float32, np.float64),
         "f64": (np.float64, np.float64), "f64mixed": (np.float64, np.float32)}


def feed(h, x):
    if isinstance(x, tuple):
        for y in x:
            feed(h, y)
    else:
        x = np.asarray(x)
        h.update(str(x.dtype).encode() + str(x.shape).encode())
        h.update(np.ascontiguousarray(x).tobytes())


def run(kind):
    pdt, tdt = KINDS[kind]
    h = hashlib.sha256()
    n = 0
    for si, (B, N, d) in enumerate(SHAPES):
        rng = np.random.default_rng(1000 + si)
        phi0 = rng.standard_normal((B, N, d))
        th0 = rng.standard_normal(d)
        a = rng.integers(0, N, B)
        w = rng.standard_normal(B)
        for scale in (0.1, 1.0, 30.0, 300.0):
            phi = phi0.astype(pdt)
            theta = (th0 * scale).astype(tdt)
            for tau in (1.0, 0.3, 2.5):
                for nt in (1, 2):
                    outs = [lambda: fastscore.score(phi, theta, a, temperature=tau, n_threads=nt),
                            lambda: fastscore.loglik(phi, theta, a, temperature=tau, n_threads=nt),
                            lambda: fastscore.loglik(phi, theta, a, temperature=tau, n_threads=nt,
                                                     grad=True),
                            lambda: fastscore.loglik(phi, theta, a, temperature=tau, n_threads=nt,
                                                     grad=True, weights=w)]
                    for f in outs:
                        try:
                            feed(h, f())
                        except ValueError as e:
                            h.update(str(e).encode())
                        n += 1
                    # strided score output
                    odt = np.float32 if (pdt == np.float32 and tdt == np.float32) else np.float64
                    big = np.full((B, 2 * d), 7, odt)
                    try:
                        fastscore.score(phi, theta, a, temperature=tau, n_threads=nt,
                                        out=big[:, ::2])
                    except ValueError as e:
                        h.update(str(e).encode())
                    feed(h, big)
                    n += 1
    return h.hexdigest(), n


if __name__ == "__main__":
    print(fastscore.__file__)
    for kind in sys.argv[1:] or list(KINDS):
        dig, n = run(kind)
        print(f"{kind:9s} {n} calls sha256 {dig}")
