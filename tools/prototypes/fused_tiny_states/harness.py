import ctypes, sys, time, os
import numpy as np
import fastscore

HERE = os.path.dirname(os.path.abspath(__file__))
P = ctypes.c_void_p
def load(name):
    lib = ctypes.CDLL(os.path.join(HERE, name))
    for f in ("fused_score_f64", "ref_score_f64"):
        fn = getattr(lib, f)
        fn.argtypes = [P, P, P, ctypes.c_int64, ctypes.c_int, ctypes.c_int, P, P]
        fn.restype = ctypes.c_int
    return lib

def call(fn, phi, theta, a, out):
    bad = np.zeros(1, np.int64)
    B, N, d = phi.shape
    st = fn(phi.ctypes.data, theta.ctypes.data, a.ctypes.data, B, N, d, out.ctypes.data, bad.ctypes.data)
    return st, int(bad[0])

def data(B, N, d, seed=0, scale=1.0, kind="normal"):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        phi = rng.standard_normal((B, N, d))
    elif kind == "int":   # ties in the logits
        phi = rng.integers(-2, 3, (B, N, d)).astype(np.float64)
    elif kind == "wide":  # magnitudes over many binades
        phi = rng.standard_normal((B, N, d)) * np.exp2(rng.integers(-30, 30, (B, N, d)))
    theta = rng.standard_normal(d) * scale
    a = rng.integers(0, N, B).astype(np.int64)
    return np.ascontiguousarray(phi), theta, a

def bits_equal(x, y):
    return x.shape == y.shape and x.tobytes() == y.tobytes()

def maxrel(x, y):
    den = np.maximum(np.abs(y), 1e-300)
    return float(np.max(np.abs(x - y) / den))
