"""SHA-256 of the outputs of every public function of fastscore,
fastscore.matrix and the mixed logit's kernel over a fixed set of inputs,
one hash per function (and per module's error messages) plus a total: two
builds that print the same lines return the same bits.

The inputs cover one state and batches (padded, ragged, the fused kernel's
tiny states, wide states split over threads), float32, float64 and mixed
dtypes, masks, temperatures, out=, loglik's gradient, Hessian and weights,
sample with int and Generator seeds and state_offset, the state-input form's
bias, its BLAS blocks and its refined (compensated) logits; every call runs
with n_threads 1 and 2; and the policy-gradient objectives (kl, the
entropy's gradient, loglik's entropy term, sample's score and trace) in both
forms; the mixed logit's kernel (every distribution, Cholesky, weights, every
output), its Halton and normal draws, and a conditional and a mixed logit fit
of fastscore.choice.  Error messages of bad calls are hashed separately.

Compare builds from outside their trees (else the cwd's fastscore wins):

    PYTHONPATH=/path/to/tree python tools/hash_outputs.py
    FASTSCORE_NO_FMA=1 PYTHONPATH=/path/to/tree python tools/hash_outputs.py
    PYTHONPATH=... python tools/hash_outputs.py --per-state  # no fused kernel

``--per-state`` sends every call through the per-state path
(``_core._fused_enabled(False)``); it must print the same hashes.
usage: python hash_outputs.py [--per-state]
"""
import hashlib
import sys

import numpy as np

import fastscore
import fastscore.matrix as fm
from fastscore import _core

DTYPES = [("f64", np.float64, np.float64), ("f32", np.float32, np.float32),
          ("f32mixed", np.float32, np.float64), ("f64mixed", np.float64, np.float32)]
THREADS = (1, 2)
TAUS = (1.0, 0.7)


class Hashes:
    def __init__(self):
        self.h = {}
        self.calls = {}

    def feed(self, name, x):
        h = self.h.setdefault(name, hashlib.sha256())
        self.calls[name] = self.calls.get(name, 0) + 1
        self._feed(h, x)

    def _feed(self, h, x):
        if isinstance(x, tuple):
            h.update(b"(")
            for y in x:
                self._feed(h, y)
            h.update(b")")
            return
        h.update(type(x).__name__.encode())
        a = np.asarray(x)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())

    def call(self, name, f, *args, **kw):
        """Hash f(*args, **kw), or its exception's type and message."""
        try:
            self.feed(name, f(*args, **kw))
        except (ValueError, IndexError, TypeError) as e:
            self.feed(name, f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------
# fastscore (the phi form)

def phi_cases(rng):
    """(label, phi, a, mask, offsets): one state, padded and ragged batches."""
    cases = []
    for N, d in [(1, 3), (7, 5), (40, 37), (300, 64), (5000, 12)]:
        phi = rng.standard_normal((N, d))
        a = int(rng.integers(0, N))
        mask = rng.random(N) < 0.7
        mask[a] = True
        cases.append((f"one {N}x{d}", phi, a, mask, None))
    # The fused kernel's tiny states (partial runs included), beyond its
    # limits (N > 32, d > 32), narrow and wide rows, wide states (>= 4096 rows).
    for B, N, d in [(64, 4, 8), (4001, 4, 8), (1003, 5, 7), (77, 12, 1), (33, 16, 32),
                    (300, 9, 5), (40, 33, 20), (50, 40, 37), (10, 33, 70), (3, 300, 64),
                    (3, 5000, 12)]:
        phi = rng.standard_normal((B, N, d)) * (3.0 if d == 5 else 1.0)
        a = rng.integers(0, N, B)
        mask = rng.random((B, N)) < 0.7
        mask[np.arange(B), a] = True
        cases.append((f"batch {B}x{N}x{d}", phi, a, mask, None))
    # One mask (N,) for every state of a batch.
    phi = rng.standard_normal((200, 6, 4))
    shared = np.array([True, False, True, True, False, True])
    a = rng.choice([0, 2, 3, 5], 200)
    cases.append(("batch 200x6x4 shared mask", phi, a, shared, None))
    # Ragged: tiny states (the fused kernel's blocks), and a wide state among them.
    for label, sizes in [("ragged tiny", rng.integers(1, 13, 3000)),
                         ("ragged mixed", np.r_[rng.integers(1, 40, 50), 6000,
                                                rng.integers(1, 9, 100)])]:
        offsets = np.r_[0, np.cumsum(sizes)].astype(np.intp)
        d = 8
        phi = rng.standard_normal((offsets[-1], d))
        a = (rng.random(len(sizes)) * sizes).astype(np.intp)
        mask = rng.random(offsets[-1]) < 0.7
        mask[offsets[:-1] + a] = True
        cases.append((label, phi, a, mask, offsets))
    return cases


def hash_core(H, rng):
    for label, phi0, a, mask0, offsets in phi_cases(rng):
        d = phi0.shape[-1]
        theta0 = rng.standard_normal(d) * (2.0 if d < 10 else 0.3)
        w = rng.standard_normal(np.shape(a) or None)
        batch = np.ndim(a) > 0
        for dname, pdt, tdt in DTYPES:
            phi = phi0.astype(pdt)
            theta = theta0.astype(tdt)
            odt = np.float32 if dname == "f32" else np.float64
            for mask in (None, mask0):
                for tau in TAUS:
                    for nt in THREADS:
                        kw = dict(mask=mask, temperature=tau, offsets=offsets, n_threads=nt)
                        H.call("fastscore.score", fastscore.score, phi, theta, a, **kw)
                        H.call("fastscore.log_prob", fastscore.log_prob, phi, theta, a, **kw)
                        H.call("fastscore.entropy", fastscore.entropy, phi, theta, **kw)
                        H.call("fastscore.probs", fastscore.probs, phi, theta, **kw)
                        if batch:
                            H.call("fastscore.loglik", fastscore.loglik, phi, theta, a, **kw)
                            H.call("fastscore.loglik", fastscore.loglik, phi, theta, a,
                                   grad=True, weights=w, **kw)
                            H.call("fastscore.loglik", fastscore.loglik, phi, theta, a,
                                   hess=True, **kw)
                            H.call("fastscore.loglik", fastscore.loglik, phi, theta, a,
                                   grad=True, hess=True, weights=w, **kw)
                            H.call("fastscore.loglik", fastscore.loglik, phi, theta, a,
                                   grad=True, **kw)
                        for seed in (3, 2 ** 63 + 5):
                            H.call("fastscore.sample", fastscore.sample, phi, theta, seed=seed,
                                   **kw)
                        gen = np.random.default_rng(11)
                        H.call("fastscore.sample", fastscore.sample, phi, theta, seed=gen,
                               state_offset=17, **kw)
                        H.feed("fastscore.sample", int(gen.bit_generator.random_raw()))
                        gen = np.random.Generator(np.random.MT19937(5))
                        H.call("fastscore.sample", fastscore.sample, phi, theta, seed=gen,
                               **kw)
                        # out=: strided views of a filled buffer (the whole buffer is hashed).
                        if batch:
                            B = len(a)
                            big = np.full((B, 2 * d), 7, odt)
                            H.call("fastscore.score", fastscore.score, phi, theta, a,
                                   out=big[:, ::2], **kw)
                            H.feed("fastscore.score", big)
                            big = np.full(2 * B, 7, odt)
                            H.call("fastscore.log_prob", fastscore.log_prob, phi, theta, a,
                                   out=big[::2], **kw)
                            H.feed("fastscore.log_prob", big)
                            H.call("fastscore.entropy", fastscore.entropy, phi, theta,
                                   out=big[1::2], **kw)
                            H.feed("fastscore.entropy", big)
                            pshape = (phi.shape[0],) if offsets is not None else phi.shape[:2]
                            pb = np.full(pshape[:-1] + (2 * pshape[-1],), 7, odt)
                            H.call("fastscore.probs", fastscore.probs, phi, theta,
                                   out=pb[..., ::2], **kw)
                            H.feed("fastscore.probs", pb)
                        else:
                            o = np.full(d, 7, odt)
                            H.call("fastscore.score", fastscore.score, phi, theta, a, out=o, **kw)
                            H.feed("fastscore.score", o)
    # Large logits (compensated sums), one-state loglik, list inputs (coercion).
    phi = rng.standard_normal((20, 9, 6)) * 300.0
    theta = rng.standard_normal(6)
    a = rng.integers(0, 9, 20)
    for nt in THREADS:
        H.call("fastscore.score", fastscore.score, phi, theta, a, n_threads=nt)
        H.call("fastscore.log_prob", fastscore.log_prob, phi, theta, a, n_threads=nt)
        H.call("fastscore.loglik", fastscore.loglik, phi[0], theta, 3, grad=True, hess=True,
               n_threads=nt)
        H.call("fastscore.score", fastscore.score, phi[0].tolist(), theta.tolist(), 2,
               n_threads=nt)
        H.call("fastscore.probs", fastscore.probs, phi[:2].astype(np.int64), theta,
               n_threads=nt)


def core_errors(H):
    """The messages of bad calls of the phi form (each module's checks)."""
    f = fastscore
    e = np.eye(3)
    phi = np.ones((4, 3, 2))
    th = np.zeros(2)
    m = np.ones((4, 3), bool)
    m[2] = False
    m1 = np.ones((4, 3), bool)
    m1[1, 0] = False
    offs = np.array([0, 2, 5], np.intp)
    calls = [
        (f.score, (e, np.zeros(3), 3), {}),
        (f.score, (e, np.zeros(3), -1), {}),
        (f.score, (phi, th, np.array([0, 1, 2, 3])), {}),
        (f.score, (phi, th, np.array([0, 1, 0, 0])), {"mask": m}),
        (f.score, (phi, th, np.array([0, 0, 1, 0])), {"mask": m1}),
        (f.log_prob, (phi, th, np.array([0, 1, 1, 0])), {"mask": m}),
        (f.entropy, (phi, th), {"mask": m}),
        (f.probs, (phi, th), {"mask": m}),
        (f.sample, (phi, th), {"mask": m, "seed": 1}),
        (f.loglik, (phi, th, np.array([0, 1, 1, 0])), {"mask": m}),
        (f.score, (np.ones((5, 2)), th, np.array([0, 2])), {"offsets": offs}),
        (f.score, (np.ones((5, 2)), th, np.array([0, 3])), {"offsets": offs}),
        (f.entropy, (np.ones((5, 2)), th), {"offsets": np.array([0, 2, 2, 5])}),
        (f.entropy, (np.ones((5, 2)), th), {"offsets": np.array([1, 5])}),
        (f.score, (np.ones((5, 2)), th, np.array([0, 1])), {"offsets": offs,
                                                           "mask": np.zeros(5, bool)}),
        (f.score, (phi, th, np.array([0, 1])), {}),
        (f.score, (phi, np.zeros(3), np.zeros(4, int)), {}),
        (f.score, (e, np.array([0.0, np.nan, 0.0]), 0), {}),
        (f.score, (np.array([[0.0, 1.0], [np.inf, 0.0]]), th, 0), {}),
        (f.score, (e * 1e308, np.ones(3) * 1e308, 0), {}),
        (f.score, (e, np.zeros(3), 0), {"temperature": 0.0}),
        (f.score, (e, np.zeros(3), 0), {"n_threads": 0}),
        (f.score, (e, np.zeros(3), 0), {"out": np.zeros(3, np.float32)}),
        (f.score, (e, np.zeros(3), 0), {"out": np.zeros(4)}),
        (f.sample, (e, np.zeros(3)), {"seed": -1}),
        (f.sample, (e, np.zeros(3)), {"seed": 2 ** 64}),
        (f.sample, (e, np.zeros(3)), {"seed": 1.5}),
        (f.sample, (e, np.zeros(3)), {"seed": True}),
        (f.sample, (e, np.zeros(3)), {"seed": 1, "state_offset": -1}),
        (f.loglik, (phi, th, np.zeros(4, int)), {"weights": np.ones(3)}),
        (f.loglik, (phi, th, np.zeros(4, int)), {"weights": np.array([1, np.nan, 1, 1])}),
        (f.log_prob, (np.ones((2, 0, 2)), th, np.zeros(2, int)), {}),
    ]
    for fn, args, kw in calls:
        try:
            fn(*args, **kw)
            H.feed("fastscore errors", "no error")
        except Exception as e:  # the type is hashed with the message
            H.feed("fastscore errors", f"{fn.__name__}: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------
# fastscore.matrix (the state-input form)

def hash_matrix(H, rng):
    shapes = [(None, 5, 7), (None, 300, 50), (None, 1, 1), (2, 10, 64), (16, 10, 64),
              (256, 10, 64), (300, 300, 50), (3000, 10, 20), (5000, 4, 3)]
    for B, k, N in shapes:
        batch = B is not None
        s0 = rng.standard_normal((B, k) if batch else k)
        W0 = rng.standard_normal((k, N)) * (0.5 if k > 50 else 1.0)
        b0 = rng.standard_normal(N)
        a = rng.integers(0, N, B) if batch else int(rng.integers(0, N))
        w = rng.standard_normal(B) if batch else np.float64(0.75)
        mask0 = rng.random((B, N) if batch else N) < 0.7
        if batch:
            mask0[np.arange(B), a] = True
        else:
            mask0[a] = True
        for dname, sdt, wdt in DTYPES:
            for scale in (1.0, 1e3):     # 1e3: logits whose plain dot products are refined
                s = (s0 * scale).astype(sdt)
                W = W0.astype(wdt)
                b = b0.astype(sdt)
                odt = np.float32 if dname == "f32" else np.float64
                for mask in (None, mask0):
                    for tau in TAUS:
                        for nt in THREADS:
                            kw = dict(mask=mask, temperature=tau, n_threads=nt)
                            for bias in (None, b):
                                H.call("matrix.score", fm.score, s, W, a, b=bias, **kw)
                                H.call("matrix.log_prob", fm.log_prob, s, W, a, b=bias, **kw)
                                H.call("matrix.entropy", fm.entropy, s, W, b=bias, **kw)
                                H.call("matrix.probs", fm.probs, s, W, b=bias, **kw)
                                H.call("matrix.loglik", fm.loglik, s, W, a, b=bias, **kw)
                                H.call("matrix.loglik", fm.loglik, s, W, a, b=bias, grad=True,
                                       weights=w.astype(sdt) if batch else w, **kw)
                                H.call("matrix.loglik", fm.loglik, s, W, a, b=bias, grad=True,
                                       **kw)
                                for seed in (3, 2 ** 63 + 5):
                                    H.call("matrix.sample", fm.sample, s, W, b=bias, seed=seed,
                                           **kw)
                            gen = np.random.default_rng(11)
                            H.call("matrix.sample", fm.sample, s, W, seed=gen, **kw)
                            H.feed("matrix.sample", int(gen.bit_generator.random_raw()))
                            gen = np.random.Generator(np.random.MT19937(5))
                            H.call("matrix.sample", fm.sample, s, W, seed=gen, **kw)
                            if scale != 1.0:
                                continue
                            # out=: strided views of a filled buffer.
                            if batch:
                                og = np.full((B, k, 2 * N), 7, odt)
                                ob = np.full((B, 2 * N), 7, odt)
                                H.call("matrix.score", fm.score, s, W, a, b=b,
                                       out=(og[..., ::2], ob[:, 1::2]), **kw)
                                H.feed("matrix.score", (og, ob))
                                o = np.full(2 * B, 7, odt)
                                H.call("matrix.log_prob", fm.log_prob, s, W, a, out=o[::2], **kw)
                                H.call("matrix.entropy", fm.entropy, s, W, out=o[1::2], **kw)
                                H.feed("matrix.log_prob", o)
                                op = np.full((B, 2 * N), 7, odt)
                                H.call("matrix.probs", fm.probs, s, W, out=op[:, ::2], **kw)
                                H.feed("matrix.probs", op)
                            else:
                                og = np.full((k, N), 7, odt)
                                H.call("matrix.score", fm.score, s, W, a, out=og, **kw)
                                H.feed("matrix.score", og)
                                o = np.full((), 7, odt)
                                H.call("matrix.log_prob", fm.log_prob, s, W, a, out=o, **kw)
                                H.feed("matrix.log_prob", o)
    # A transposed (non-contiguous) W, list inputs (coercion).
    s = rng.standard_normal((40, 6))
    W = np.asfortranarray(rng.standard_normal((6, 9)))
    a = rng.integers(0, 9, 40)
    for nt in THREADS:
        H.call("matrix.score", fm.score, s, W, a, n_threads=nt)
        H.call("matrix.loglik", fm.loglik, s, W[:, ::2], a % 5, grad=True, n_threads=nt)
        H.call("matrix.probs", fm.probs, s[0].tolist(), W.tolist(), n_threads=nt)


def matrix_errors(H):
    s = np.ones((4, 2))
    W = np.zeros((2, 3))
    m = np.ones((4, 3), bool)
    m[2] = False
    m1 = np.ones((4, 3), bool)
    m1[1, 0] = False
    sn = s.copy()
    sn[1, 0] = np.nan
    calls = [
        (fm.score, (s[0], W, 3), {}),
        (fm.score, (s, W, np.array([0, 1, 2, 3])), {}),
        (fm.score, (s, W, np.array([0, 1, 0, 0])), {"mask": m}),
        (fm.score, (s, W, np.array([0, 0, 1, 0])), {"mask": m1}),
        (fm.log_prob, (s, W, np.array([0, 1, 1, 0])), {"mask": m}),
        (fm.entropy, (s, W), {"mask": m}),
        (fm.probs, (s, W), {"mask": m}),
        (fm.sample, (s, W), {"mask": m, "seed": 1}),
        (fm.loglik, (s, W, np.array([0, 1, 1, 0])), {"mask": m}),
        (fm.entropy, (sn, W), {"mask": m}),
        (fm.entropy, (sn, W), {}),
        (fm.score, (s, np.zeros((3, 3)), np.zeros(4, int)), {}),
        (fm.score, (s, W, np.zeros(4, int)), {"b": np.zeros(2)}),
        (fm.score, (s, np.array([[0.0, np.nan, 0], [0, 0, 0]]), np.zeros(4, int)), {}),
        (fm.score, (s[0], np.array([[0.0, np.nan, 0], [0, 0, 0]]), 0), {}),
        (fm.score, (s, W, np.zeros(4, int)), {"b": np.array([0, np.inf, 0])}),
        (fm.score, (s * 1e200, np.ones((2, 3)) * 1e200, np.zeros(4, int)), {}),
        (fm.score, (s[0], W, 0), {"temperature": -1.0}),
        (fm.score, (s[0], W, 0), {"n_threads": 0}),
        (fm.score, (s[0], W, 0), {"out": np.zeros((2, 3), np.float32)}),
        (fm.score, (s[0], W, 0), {"b": np.zeros(3), "out": np.zeros((2, 3))}),
        (fm.sample, (s, W), {"seed": -1}),
        (fm.sample, (s, W), {"seed": 1.5}),
        (fm.sample, (s, W), {"seed": True}),
        (fm.loglik, (s, W, np.zeros(4, int)), {"weights": np.ones(3)}),
        (fm.loglik, (s, W, np.zeros(4, int)), {"weights": np.array([1, np.nan, 1, 1])}),
        (fm.log_prob, (s, np.zeros((2, 0)), np.zeros(4, int)), {}),
    ]
    for fn, args, kw in calls:
        try:
            fn(*args, **kw)
            H.feed("matrix errors", "no error")
        except Exception as e:  # the type is hashed with the message
            H.feed("matrix errors", f"{fn.__name__}: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------
# The policy-gradient objectives (issue 24), with their own generator so the
# lines above keep their hashes.

def hash_objectives(H, rng):
    for B, N, d in [(None, 7, 5), (9, 6, 4), (300, 16, 32), (2000, 10, 8)]:
        phi = rng.standard_normal((B, N, d) if B else (N, d))
        th = rng.standard_normal(d)
        a = rng.integers(0, N, B) if B else int(rng.integers(0, N))
        w = rng.standard_normal(B) if B else np.float64(0.5)
        for step in (1e-7, 0.5):
            th2 = th + step * rng.standard_normal(d)
            for dt in (np.float64, np.float32):
                p, t, t2 = phi.astype(dt), th.astype(dt), th2.astype(dt)
                for nt in THREADS:
                    kw = dict(n_threads=nt)
                    H.call("phi.kl", fastscore.kl, p, t, t2, grad=True, **kw)
                    H.call("phi.entropy_grad", fastscore.entropy, p, t, grad=True, **kw)
                    H.call("phi.loglik_entropy", fastscore.loglik, p, t, a, weights=w,
                           entropy_weight=0.01, grad=True, **kw)
                    H.call("phi.sample_score", fastscore.sample, p, t, seed=3, score=True, **kw)
    for B, k, N in [(None, 5, 7), (9, 8, 4), (3000, 64, 10)]:
        s = rng.standard_normal((B, k) if B else k)
        a = rng.integers(0, N, B) if B else int(rng.integers(0, N))
        w = rng.standard_normal(B) if B else np.float64(0.5)
        for scale in (0.1, 3.0):       # plain and compensated (split) logits
            W = scale * rng.standard_normal((k, N))
            b = rng.standard_normal(N)
            W2 = W + 0.01 * rng.standard_normal((k, N))
            for bias in (None, b):
                b2 = None if bias is None else bias + 0.01
                for nt in THREADS:
                    kw = dict(b=bias, n_threads=nt)
                    H.call("matrix.kl", fm.kl, s, W, W2, b_ref=bias, b=b2, grad=True,
                           n_threads=nt)
                    H.call("matrix.entropy_grad", fm.entropy, s, W, grad=True, **kw)
                    H.call("matrix.loglik_entropy", fm.loglik, s, W, a, weights=w,
                           entropy_weight=0.01, grad=True, **kw)
                    H.call("matrix.sample_score", fm.sample, s, W, seed=3, score=True, **kw)
                    shape = ((B, k, N) if B else (k, N))
                    z = np.ones(shape)
                    trace = z if bias is None else (z, np.ones((B, N) if B else N))
                    H.call("matrix.sample_trace", fm.sample, s, W, seed=3, trace=trace,
                           decay=0.9, weight=0.7, **kw)
                    H.feed("matrix.sample_trace", trace)


# ---------------------------------------------------------------------------
# the mixed logit's kernel, its draws, and fastscore.choice's fits

def hash_mixed(H, rng):
    """The kernel on each distribution, Cholesky, weights and every output;
    the Halton and normal draws; a conditional and a mixed logit fit on the
    fishing data (skipped without pandas)."""
    from fastscore import _mixed
    from fastscore._mixedlogit import panel_sum, simulated_loglik
    from fastscore.choice._mixed import halton_uniforms, standard_draws, uniform_draws

    sizes = rng.integers(2, 5, 60)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    chosen = np.array([rng.integers(0, n) for n in sizes])
    panel_offsets = np.arange(0, 61, 3)
    X = rng.standard_normal((offsets[-1], 5))
    weights = rng.uniform(0.5, 2.0, 20)
    for kinds, chol in [([0, 1, 1, 0, 1], False), ([1, 2, 3, 4, 0], False),
                        ([1, 1, 1, 0, 0], True)]:
        kinds = np.array(kinds)
        q = int((kinds > 0).sum())
        draws = rng.standard_normal((20, 37, q))
        n_params = 5 + (q * (q + 1) // 2 if chol else q)
        params = 0.3 * rng.standard_normal(n_params)
        for w in (None, weights):
            for nt in THREADS:
                H.call("mixed.kernel", simulated_loglik, X, offsets, chosen, panel_offsets,
                       draws, kinds, params, weights=w, chol=chol, grad=True,
                       panel_scores=True, posterior=True, panel_values=True, hessian=True,
                       panel_hessians=True, n_threads=nt)
    H.call("mixed.panel_sum", panel_sum, rng.standard_normal((50, 4)), rng.uniform(size=50))
    lo, hi = 2.0 ** -53, 1.0 - 2.0 ** -53
    for nt in THREADS:
        H.call("mixed.halton", halton_uniforms, np.array([0, 5, 977, 10 ** 9]), 300, 6, 3,
               lo, hi, nt)
        u = np.concatenate([rng.random(5000), 10.0 ** rng.uniform(-300, -1, 500)])
        a = u.copy().reshape(1, 1, -1)
        _mixed.ndtri_columns(a, np.array([0]), nt)
        H.feed("mixed.ndtri", a)
    for method in ("halton", "sobol", "mlhs", "random"):
        u = uniform_draws(method, 30, 64, 3, 4)
        H.feed("mixed.draws", standard_draws(u, ["normal", "triangular", "uniform"]))
    try:
        import pandas as pd
    except ImportError:
        return
    import warnings
    from pathlib import Path

    import fastscore.choice as fc

    df = pd.read_csv(Path(__file__).resolve().parent.parent / "examples" / "data"
                     / "fishing_long.csv")
    common = dict(choice="choice", obs="id", alt="alt", x=["price", "catch"])
    res = fc.ConditionalLogit(df, asc="beach", **common).fit()
    H.feed("choice.conditional", (res.params.to_numpy(), res.bse.to_numpy(), res.llf))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fc.MixedLogit(df, random={"catch": "normal"}, n_draws=50, **common).fit()
    H.feed("choice.mixed", (res.params.to_numpy(), res.bse.to_numpy(), res.llf, res.hessian))


def main(argv):
    per_state = "--per-state" in argv
    if per_state:
        _core._fused_enabled(False)
    H = Hashes()
    rng = np.random.default_rng(20261207)
    hash_core(H, rng)
    core_errors(H)
    hash_matrix(H, rng)
    matrix_errors(H)
    hash_objectives(H, np.random.default_rng(24))
    hash_mixed(H, np.random.default_rng(23))
    print(f"# {fastscore.__file__}; {_core.build_info()['float64_logits']}"
          + ("; per-state path" if per_state else ""))
    total = hashlib.sha256()
    for name in sorted(H.h):
        dig = H.h[name].hexdigest()
        total.update(name.encode() + dig.encode())
        print(f"{name:20s} {H.calls[name]:6d} {dig}")
    print(f"{'total':20s} {sum(H.calls.values()):6d} {total.hexdigest()}")


if __name__ == "__main__":
    main(sys.argv[1:])
