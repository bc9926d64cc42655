"""The registry of fastscore's public compute functions, for the robustness tests.

One ``Entry`` per public function says how to build a valid call from a
``Problem`` (shapes, dtypes, random values), what each argument is (its kind,
which the fuzzer's mutators are chosen by), and how to check a result (a NumPy
reference).  The fuzzer (``tests/robust_fuzz.py``), the leak, concurrency and
valgrind tests iterate over ``available()``; adding a public function is adding
one ``Entry`` to ``ENTRIES``.

An entry whose function does not exist yet, or whose signature differs from
``params``, is inactive: the tests that use it skip with the reason (so the
table entry is checked against the real function the day it lands).

Argument kinds (what ``robust_fuzz.MUTATORS`` knows how to break):

    features     phi: (N, d), (B, N, d), or (rows, d) with offsets
    params       theta (d,)
    actions      a: int for one state, (B,) ints for a batch
    mask         (N,), (B, N) or (rows,) bools
    offsets      (B + 1,) ints, CSR row pointers
    weights      (B,) reals
    temperature  a positive real
    out          a preallocated result
    n_threads    None or a positive int
    seed         None or a non-negative int
    flag         a bool (loglik's grad=, hess=)
    states       s: (k,) or (B, k) (fastscore.matrix)
    matrix       W: (k, N) (fastscore.matrix)
    bias         b: (N,) or absent (fastscore.matrix)
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Callable, Optional

import numpy as np

import fastscore

# ---------------------------------------------------------------------------
# Problems: the shapes and values of one valid call.


@dataclasses.dataclass
class Problem:
    """A valid input: layout "single" (N, d), "batch" (B, N, d) or "ragged"
    ((rows, d) with offsets, state b owning rows offsets[b]:offsets[b+1])."""

    layout: str
    phi: np.ndarray
    theta: np.ndarray
    a: object                       # int or (B,) intp
    mask: Optional[np.ndarray]      # None or bools matching the rows of phi
    offsets: Optional[np.ndarray]   # ragged only
    weights: np.ndarray             # (B,) (single: (1,))
    temperature: float

    @property
    def n_states(self) -> int:
        if self.layout == "single":
            return 1
        if self.layout == "batch":
            return self.phi.shape[0]
        return len(self.offsets) - 1

    @property
    def d(self) -> int:
        return self.phi.shape[-1]

    def states(self):
        """[(phi_b (N_b, d), a_b, mask_b or None)] for every state, float64."""
        phi = np.asarray(self.phi, dtype=np.float64)
        a = np.atleast_1d(np.asarray(self.a))
        if self.layout == "single":
            return [(phi, int(a[0]), self.mask)]
        if self.layout == "batch":
            m = self.mask
            return [(phi[b], int(a[b]),
                     None if m is None else (m if m.ndim == 1 else m[b]))
                    for b in range(phi.shape[0])]
        out = []
        for b in range(self.n_states):
            lo, hi = int(self.offsets[b]), int(self.offsets[b + 1])
            out.append((phi[lo:hi], int(a[b]), None if self.mask is None else self.mask[lo:hi]))
        return out


def make_problem(rng: np.random.Generator, layout: str = "batch", *, B: int = 3, N: int = 4,
                 d: int = 3, dtype=np.float64, theta_dtype=None, masked: bool = False,
                 temperature: float = 1.0, scale: float = 1.0) -> Problem:
    """A random valid problem with moderate values (logits of order 1-10).

    For "ragged", ``N`` is the largest state size; sizes are drawn in [1, N]."""
    theta_dtype = dtype if theta_dtype is None else theta_dtype
    theta = (rng.standard_normal(d) * scale).astype(theta_dtype)
    offsets = None
    if layout == "single":
        phi = rng.standard_normal((N, d)).astype(dtype)
        sizes = [N]
    elif layout == "batch":
        phi = rng.standard_normal((B, N, d)).astype(dtype)
        sizes = [N] * B
    elif layout == "ragged":
        sizes = rng.integers(1, N + 1, size=B)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
        phi = rng.standard_normal((int(offsets[-1]), d)).astype(dtype)
    else:
        raise ValueError(layout)
    a = np.array([rng.integers(0, n) for n in sizes], dtype=np.intp)
    mask = None
    if masked:
        if layout == "ragged":
            mask = rng.random(phi.shape[0]) < 0.7
            mask[offsets[:-1] + a] = True
        elif layout == "batch":
            mask = rng.random((B, N)) < 0.7
            mask[np.arange(B), a] = True
        else:
            mask = rng.random(N) < 0.7
            mask[a[0]] = True
    weights = rng.random(len(sizes)) + 0.5
    return Problem(layout, phi, theta, int(a[0]) if layout == "single" else a, mask, offsets,
                   weights, float(temperature))


# ---------------------------------------------------------------------------
# NumPy references, per state (float64), for the whole family.  Used when
# fastscore.reference does not provide the function.

def _logits(phi, theta, mask, tau):
    z = (phi @ np.asarray(theta, np.float64)) / tau
    if mask is not None:
        z = np.where(np.asarray(mask, bool), z, -np.inf)
    return z


def _softmax(z):
    z = z - z.max()
    p = np.exp(z)
    return p / p.sum()


def _state_probs(phi, theta, mask, tau):
    return _softmax(_logits(phi, theta, mask, tau))


def _state_log_prob(phi, theta, a, mask, tau):
    z = _logits(phi, theta, mask, tau)
    m = z.max()
    return (z[a] - m) - np.log(np.exp(z - m).sum())


def _state_entropy(phi, theta, mask, tau):
    p = _state_probs(phi, theta, mask, tau)
    z = _logits(phi, theta, mask, tau)
    m = z.max()
    lp = np.where(p > 0, (z - m) - np.log(np.exp(z - m).sum()), 0.0)
    return -np.sum(np.where(p > 0, p * lp, 0.0))


def _state_score(phi, theta, a, mask, tau):
    p = _state_probs(phi, theta, mask, tau)
    legal = p > 0
    return (p[legal] @ (phi[a] - phi[legal])) / tau


def _state_hess(phi, theta, mask, tau):
    p = _state_probs(phi, theta, mask, tau)
    legal = p > 0
    x = phi[legal]
    mean = p[legal] @ x
    cov = (x - mean).T @ ((x - mean) * p[legal][:, None])
    return -cov / tau**2


def _stack(problem: Problem, values, per_state_shape=()):
    """The per-state values as the function returns them: one state's value,
    or a (B, ...) array (B may be 0: then (0,) + per_state_shape)."""
    values = [np.asarray(v, dtype=np.float64) for v in values]
    if problem.layout == "single":
        return values[0]
    if not values:  # an empty batch: np.stack needs at least one array
        return np.zeros((0,) + tuple(per_state_shape))
    return np.stack(values)


def ref_score(p: Problem):
    return _stack(p, [_state_score(x, p.theta, a, m, p.temperature) for x, a, m in p.states()],
                  (p.d,))


def ref_log_prob(p: Problem):
    return _stack(p, [_state_log_prob(x, p.theta, a, m, p.temperature)
                      for x, a, m in p.states()])


def ref_entropy(p: Problem):
    return _stack(p, [_state_entropy(x, p.theta, m, p.temperature) for x, _, m in p.states()])


def ref_probs(p: Problem):
    per = [_state_probs(x, p.theta, m, p.temperature) for x, _, m in p.states()]
    if p.layout == "ragged":
        return np.concatenate(per) if per else np.zeros(0)
    return _stack(p, per, np.shape(p.phi)[1:-1])


def _state_kl(phi, theta_ref, theta, mask, tau):
    """sum pi_ref (log pi_ref - log pi) over the legal rows, in float64."""
    zr = _logits(phi, theta_ref, mask, tau)
    z = _logits(phi, theta, mask, tau)
    legal = np.isfinite(zr)
    lr = (zr - zr.max()) - np.log(np.exp(zr - zr.max()).sum())
    lp = (z - z.max()) - np.log(np.exp(z - z.max()).sum())
    return np.sum(np.where(legal, np.exp(lr) * (np.where(legal, lr, 0) - np.where(legal, lp, 0)),
                           0.0))


def ref_kl(p: Problem, kw):
    theta_ref = np.asarray(kw["theta_ref"], dtype=np.float64)
    if theta_ref.shape != p.theta.shape or not np.all(np.isfinite(theta_ref)):
        raise ValueError("no clear reference")
    vals = [_state_kl(x, theta_ref, p.theta, m, p.temperature) for x, _, m in p.states()]
    return np.float64(vals[0]) if p.layout == "single" else np.array(vals, np.float64)


def ref_loglik(p: Problem, grad=False, hess=False):
    """Sums over the states, starting from zeros of the right shape (an empty
    batch gives 0.0, zeros(d), zeros((d, d)))."""
    w = np.asarray(p.weights, np.float64)
    states = p.states()
    d = p.d
    value = sum((wb * _state_log_prob(x, p.theta, a, m, p.temperature)
                 for wb, (x, a, m) in zip(w, states)), np.float64(0.0))
    res = [np.float64(value)]
    if grad:
        res.append(sum((wb * _state_score(x, p.theta, a, m, p.temperature)
                        for wb, (x, a, m) in zip(w, states)), np.zeros(d)))
    if hess:
        res.append(sum((wb * _state_hess(x, p.theta, m, p.temperature)
                        for wb, (x, _, m) in zip(w, states)), np.zeros((d, d))))
    return res[0] if len(res) == 1 else tuple(res)


# ---------------------------------------------------------------------------
# The registry.


@dataclasses.dataclass
class Entry:
    name: str                        # "score", "matrix.log_prob", ...
    params: dict                     # argument name -> kind, in signature order
    positional: tuple                # names passed positionally
    layouts: tuple                   # layouts the function takes
    reference: Callable              # Problem, call kwargs -> expected result (float64)
    result_kind: str = "array"       # "array", "tuple", "sample"
    out_shape: Optional[Callable] = None   # Problem -> shape of `out` (None: no out=)
    deterministic: bool = True       # same arguments -> same bits
    needs_flags: tuple = ()          # keyword flags the builder may set (grad, hess)

    # -- resolution ---------------------------------------------------------
    def resolve(self):
        """The function, or None when it is not there (yet)."""
        *mod, fname = self.name.split(".")
        try:  # fastscore.matrix is not loaded by `import fastscore`
            obj = importlib.import_module(".".join(["fastscore"] + mod))
        except ImportError:
            return None
        return getattr(obj, fname, None)

    def inactive_reason(self) -> Optional[str]:
        fn = self.resolve()
        if fn is None:
            return f"fastscore.{self.name} does not exist yet"
        try:
            names = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            return None
        missing = [n for n in self.params if n not in names]
        if missing:
            return (f"fastscore.{self.name} has no parameter(s) {missing}: update its entry "
                    f"in tests/robust_cases.py to the signature {names}")
        return None

    @property
    def func(self):
        return self.resolve()

    # -- building calls -----------------------------------------------------
    def call_kwargs(self, p: Problem, *, n_threads=None, out=False, seed=None,
                    flags=None) -> dict:
        """A valid call for problem p, as {argument name: value} (every
        argument the function takes that this problem uses)."""
        kw = {}
        for name, kind in self.params.items():
            if kind == "features":
                kw[name] = p.phi
            elif kind == "params":
                kw[name] = p.theta
            elif kind == "actions":
                kw[name] = p.a
            elif kind == "mask":
                if p.mask is not None:
                    kw[name] = p.mask
            elif kind == "offsets":
                if p.layout == "ragged":
                    kw[name] = p.offsets
            elif kind == "weights":
                kw[name] = p.weights if p.layout != "single" else p.weights[:1]
            elif kind == "temperature":
                if p.temperature != 1.0:
                    kw[name] = p.temperature
            elif kind == "out":
                if out and self.out_shape is not None:
                    kw[name] = np.empty(self.out_shape(p), dtype=result_dtype(p))
            elif kind == "n_threads":
                if n_threads is not None:
                    kw[name] = n_threads
            elif kind == "seed":
                kw[name] = 12345 if seed is None else seed
            elif kind == "flag":
                if flags and name in flags:
                    kw[name] = flags[name]
        return kw

    def call(self, kw: dict):
        """Call the function with kw (positional names passed positionally)."""
        kw = dict(kw)
        args = [kw.pop(n) for n in self.positional]
        return self.func(*args, **kw)

    def expected(self, p: Problem, kw: dict):
        return self.reference(p, kw)


def result_dtype(p: Problem):
    both32 = (np.asarray(p.phi).dtype == np.float32 and np.asarray(p.theta).dtype == np.float32)
    return np.float32 if both32 else np.float64


def _score_ref(p, kw):
    return ref_score(p)


def _family(extra=None):
    """The parameters the phi-form family shares, in signature order."""
    params = {"phi": "features", "theta": "params"}
    params.update(extra or {})
    params.update({"mask": "mask", "temperature": "temperature", "out": "out",
                   "n_threads": "n_threads"})
    return params


def _with_offsets(params):
    return dict(params, offsets="offsets")


_ALL_LAYOUTS = ("single", "batch", "ragged")

ENTRIES = [
    # Today's API: no offsets.
    Entry("score", _family({"a": "actions"}), ("phi", "theta", "a"), ("single", "batch"),
          _score_ref, out_shape=lambda p: (p.d,) if p.layout == "single" else (p.n_states, p.d)),
    # The lead's family (activate when they land; the layouts include ragged
    # once `offsets=` exists).
    Entry("log_prob", _with_offsets(_family({"a": "actions"})), ("phi", "theta", "a"),
          _ALL_LAYOUTS, lambda p, kw: ref_log_prob(p),
          out_shape=lambda p: () if p.layout == "single" else (p.n_states,)),
    Entry("entropy", _with_offsets(_family()), ("phi", "theta"), _ALL_LAYOUTS,
          lambda p, kw: ref_entropy(p),
          out_shape=lambda p: () if p.layout == "single" else (p.n_states,)),
    Entry("probs", _with_offsets(_family()), ("phi", "theta"), _ALL_LAYOUTS,
          lambda p, kw: ref_probs(p),
          out_shape=lambda p: p.phi.shape[:-1]),
    Entry("sample", _with_offsets({k: v for k, v in _family({"seed": "seed"}).items()
                                   if k != "out"}),
          ("phi", "theta"), _ALL_LAYOUTS, lambda p, kw: None, result_kind="sample"),
    Entry("loglik", _with_offsets({k: v for k, v in _family(
              {"a": "actions", "weights": "weights", "grad": "flag", "hess": "flag"}).items()
              if k != "out"}),
          ("phi", "theta", "a"), _ALL_LAYOUTS,
          lambda p, kw: ref_loglik(p, bool(kw.get("grad")), bool(kw.get("hess"))),
          result_kind="tuple", needs_flags=("grad", "hess")),
    # KL(pi_ref || pi) of the arguments as called (a mutation may change
    # theta_ref alone: the reference reads it from the call's kwargs).
    Entry("kl", _with_offsets({"phi": "features", "theta_ref": "params", "theta": "params",
                               "mask": "mask", "temperature": "temperature", "out": "out",
                               "n_threads": "n_threads"}),
          ("phi", "theta_ref", "theta"), _ALL_LAYOUTS, ref_kl,
          out_shape=lambda p: () if p.layout == "single" else (p.n_states,)),
]


def _register_score_with_offsets():
    """score gains offsets= with the family: the same entry, ragged too."""
    e = ENTRIES[0]
    fn = e.resolve()
    try:
        if fn is not None and "offsets" in inspect.signature(fn).parameters:
            e.params = _with_offsets(e.params)
            e.layouts = _ALL_LAYOUTS
    except (TypeError, ValueError):
        pass


_register_score_with_offsets()


# fastscore.matrix: z = (s @ W + b) / tau, the state-input form (src/_matrix.pyx,
# fastscore/matrix.pyi).  s (k,) or (B, k), W (k, N), optional bias b (N,).
# Problems for it are built by make_matrix_problem; references are computed
# directly from the logits (the phi form of the same policy, as_phi_problem,
# has k N features per action: too large for the fuzzer's big sizes).

@dataclasses.dataclass
class MatrixProblem:
    layout: str            # "single" (s (k,)) or "batch" (s (B, k))
    s: np.ndarray
    W: np.ndarray          # (k, N)
    a: object
    mask: Optional[np.ndarray]
    weights: np.ndarray
    temperature: float
    b: Optional[np.ndarray] = None   # bias (N,)

    @property
    def n_states(self) -> int:
        return 1 if self.layout == "single" else np.shape(self.s)[0]

    def logits(self):
        """[(z (N,) float64 with masked entries -inf, a_b, s_b (k,))] per state."""
        s = np.atleast_2d(np.asarray(self.s, np.float64))
        W = np.asarray(self.W, np.float64)
        z = s @ W
        if self.b is not None:
            z = z + np.asarray(self.b, np.float64)
        z = z / self.temperature
        if self.mask is not None:
            m = np.broadcast_to(np.asarray(self.mask, bool), z.shape)
            z = np.where(m, z, -np.inf)
        a = np.atleast_1d(np.asarray(self.a))
        return [(z[i], int(a[i]) if i < a.size else 0, s[i]) for i in range(s.shape[0])]

    def as_phi_problem(self) -> Problem:
        """The same policy in phi form: phi_k = s (x) e_k (then e_k when there
        is a bias), theta = (vec(W), b)."""
        s = np.atleast_2d(np.asarray(self.s, np.float64))
        d, N = self.W.shape
        B = s.shape[0]
        nb = 0 if self.b is None else N
        phi = np.zeros((B, N, d * N + nb))
        for k in range(N):
            phi[:, k, k:d * N:N] = s
            if nb:
                phi[:, k, d * N + k] = 1.0
        theta = np.asarray(self.W, np.float64).reshape(-1)
        if nb:
            theta = np.concatenate([theta, np.asarray(self.b, np.float64)])
        lay = "single" if self.layout == "single" else "batch"
        return Problem(lay, phi[0] if lay == "single" else phi, theta, self.a, self.mask, None,
                       self.weights, self.temperature)


def make_matrix_problem(rng, layout="batch", *, B=3, N=4, d=3, dtype=np.float64,
                        masked=False, temperature=1.0, bias=False) -> MatrixProblem:
    p = make_problem(rng, "single" if layout == "single" else "batch", B=B, N=N, d=1,
                     dtype=dtype, masked=masked, temperature=temperature)
    s = rng.standard_normal((B, d) if layout != "single" else (d,)).astype(dtype)
    W = rng.standard_normal((d, N)).astype(dtype)
    b = rng.standard_normal(N).astype(dtype) if bias else None
    return MatrixProblem("single" if layout == "single" else "batch", s, W, p.a, p.mask,
                         p.weights, p.temperature, b)


def _z_log_softmax(z):
    m = z.max()
    return (z - m) - np.log(np.exp(z - m).sum())


def _z_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _z_entropy(z):
    p = _z_softmax(z)
    lp = _z_log_softmax(z)
    return -np.sum(np.where(p > 0, p * np.where(p > 0, lp, 0.0), 0.0))


def _z_residual(z, a, tau):
    """(e_a - pi) / tau."""
    r = -_z_softmax(z)
    r[a] += 1.0
    return r / tau


def _matrix_stack(mp, values, per_state_shape=()):
    values = [np.asarray(v, np.float64) for v in values]
    if mp.layout == "single":
        return values[0]
    if not values:
        return np.zeros((0,) + tuple(per_state_shape))
    return np.stack(values)


def _matrix_ref(kind):
    """The float64 NumPy reference of fastscore.matrix.<kind> (None: sample,
    checked by robust_fuzz.check_sample)."""
    def ref(mp: MatrixProblem, kw):
        states = mp.logits()
        k, N = np.shape(mp.W)
        tau = mp.temperature
        if kind == "score":
            gw = _matrix_stack(mp, [np.outer(s, _z_residual(z, a, tau)) for z, a, s in states],
                               (k, N))
            if mp.b is None:
                return gw
            gb = _matrix_stack(mp, [_z_residual(z, a, tau) for z, a, s in states], (N,))
            return gw, gb
        if kind == "log_prob":
            return _matrix_stack(mp, [_z_log_softmax(z)[a] for z, a, s in states])
        if kind == "entropy":
            return _matrix_stack(mp, [_z_entropy(z) for z, a, s in states])
        if kind == "probs":
            return _matrix_stack(mp, [_z_softmax(z) for z, a, s in states], (N,))
        if kind == "loglik":
            w = np.broadcast_to(np.asarray(mp.weights, np.float64).reshape(-1),
                                (len(states),)) if len(states) else np.zeros(0)
            value = np.float64(sum((wi * _z_log_softmax(z)[a]
                                    for wi, (z, a, s) in zip(w, states)), 0.0))
            if not kw.get("grad"):
                return value
            gw = sum((wi * np.outer(s, _z_residual(z, a, tau))
                      for wi, (z, a, s) in zip(w, states)), np.zeros((k, N)))
            if mp.b is None:
                return value, gw
            gb = sum((wi * _z_residual(z, a, tau) for wi, (z, a, s) in zip(w, states)),
                     np.zeros(N))
            return value, (gw, gb)
        return None
    return ref


def ref_matrix_kl(mp: MatrixProblem, kw):
    """KL(pi_ref || pi) per state in float64, of the W_ref, W, b_ref and b of
    the call as made (the fuzzer may have changed any of them)."""
    W_ref = np.asarray(kw["W_ref"], np.float64)
    W = np.asarray(kw["W"], np.float64)
    b_ref, b = kw.get("b_ref"), kw.get("b")
    if W_ref.shape != np.shape(mp.W) or W.shape != W_ref.shape or (b_ref is None) != (b is None) \
            or not (np.all(np.isfinite(W_ref)) and np.all(np.isfinite(W))):
        raise ValueError("no clear reference")
    vals = []
    for z, _, s_i in mp.logits():
        legal = np.isfinite(z)
        zr, zq = s_i @ W_ref, s_i @ W
        if b is not None:
            zr, zq = zr + np.asarray(b_ref, np.float64), zq + np.asarray(b, np.float64)
        zr = np.where(legal, zr / mp.temperature, -np.inf)
        zq = np.where(legal, zq / mp.temperature, -np.inf)
        lr, lq = _z_log_softmax(zr), _z_log_softmax(zq)
        vals.append(np.sum(np.where(legal, np.exp(lr) * (np.where(legal, lr - lq, 0.0)), 0.0)))
    return _matrix_stack(mp, vals)


def matrix_result_dtype(mp: MatrixProblem, weights=None):
    """float32 when every float input (s, W, b, weights) is float32."""
    arrs = [mp.s, mp.W] + ([mp.b] if mp.b is not None else []) \
        + ([weights] if weights is not None else [])
    return np.float32 if all(np.asarray(x).dtype == np.float32 for x in arrs) else np.float64


def _matrix_out_shape(kind):
    def shape(mp: MatrixProblem):
        k, N = np.shape(mp.W)
        lead = () if mp.layout == "single" else (mp.n_states,)
        if kind == "score":
            return (lead + (k, N), lead + (N,)) if mp.b is not None else lead + (k, N)
        if kind == "probs":
            return lead + (N,)
        return lead
    return shape


def _matrix_params(extra=None, out=True, seed=False):
    params = {"s": "states", "W": "matrix", **(extra or {}), "b": "bias"}
    if seed:
        params["seed"] = "seed"
    params.update({"mask": "mask", "temperature": "temperature"})
    if out:
        params["out"] = "out"
    params["n_threads"] = "n_threads"
    return params


MATRIX_ENTRIES = [
    Entry("matrix.score", _matrix_params({"a": "actions"}), ("s", "W", "a"), ("single", "batch"),
          _matrix_ref("score"), out_shape=_matrix_out_shape("score")),
    Entry("matrix.log_prob", _matrix_params({"a": "actions"}), ("s", "W", "a"),
          ("single", "batch"), _matrix_ref("log_prob"), out_shape=_matrix_out_shape("log_prob")),
    Entry("matrix.entropy", _matrix_params(), ("s", "W"), ("single", "batch"),
          _matrix_ref("entropy"), out_shape=_matrix_out_shape("entropy")),
    # W_ref is the call's policy scaled by 0.5 (matrix_call_kwargs), W the problem's own.
    Entry("matrix.kl", {"s": "states", "W_ref": "matrix_ref", "W": "matrix",
                        "b_ref": "bias_ref", "b": "bias", "mask": "mask",
                        "temperature": "temperature", "out": "out", "n_threads": "n_threads"},
          ("s", "W_ref", "W"), ("single", "batch"), ref_matrix_kl,
          out_shape=_matrix_out_shape("entropy")),
    Entry("matrix.probs", _matrix_params(), ("s", "W"), ("single", "batch"),
          _matrix_ref("probs"), out_shape=_matrix_out_shape("probs")),
    Entry("matrix.sample", _matrix_params(out=False, seed=True), ("s", "W"),
          ("single", "batch"), _matrix_ref("sample"), result_kind="sample"),
    Entry("matrix.loglik", _matrix_params({"a": "actions", "weights": "weights",
                                           "grad": "flag"}, out=False),
          ("s", "W", "a"), ("single", "batch"), _matrix_ref("loglik"), result_kind="tuple",
          needs_flags=("grad",)),
]
for _e in MATRIX_ENTRIES:
    _e.problem_kind = "matrix"
for _e in ENTRIES:
    _e.problem_kind = "phi"

ALL = ENTRIES + MATRIX_ENTRIES
BY_NAME = {e.name: e for e in ALL}


def available():
    """The entries whose function exists with the signature the entry describes."""
    return [e for e in ALL if e.inactive_reason() is None]


def params_for_pytest():
    """pytest.param per entry, skipped (with the reason) while inactive."""
    import pytest
    out = []
    for e in ALL:
        reason = e.inactive_reason()
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        out.append(pytest.param(e.name, id=e.name, marks=marks))
    return out


def build(entry: Entry, rng, layout=None, *, dtype=np.float64, masked=None, temperature=None,
          B=3, N=4, d=3, flags=None, **call_opts):
    """(problem, kwargs) of a random valid call of entry."""
    layout = layout or entry.layouts[int(rng.integers(len(entry.layouts)))]
    masked = bool(rng.integers(2)) if masked is None else masked
    temperature = (1.0 if rng.integers(2) else float(rng.uniform(0.3, 3.0))) \
        if temperature is None else temperature
    if entry.problem_kind == "matrix":
        p = make_matrix_problem(rng, layout, B=B, N=N, d=d, dtype=dtype, masked=masked,
                                temperature=temperature, bias=bool(rng.integers(2)))
        if flags is None and entry.needs_flags:
            flags = {f: bool(rng.integers(2)) for f in entry.needs_flags}
        kw = matrix_call_kwargs(entry, p, flags=flags, **call_opts)
        return p, kw
    p = make_problem(rng, layout, B=B, N=N, d=d, dtype=dtype, masked=masked,
                     temperature=temperature)
    if flags is None and entry.needs_flags:
        flags = {f: bool(rng.integers(2)) for f in entry.needs_flags}
    return p, entry.call_kwargs(p, flags=flags, **call_opts)


def matrix_call_kwargs(entry, mp: MatrixProblem, *, n_threads=None, out=False, seed=None,
                       flags=None):
    kw = {}
    for name, kind in entry.params.items():
        if kind == "states":
            kw[name] = mp.s
        elif kind == "matrix":
            kw[name] = mp.W
        elif kind == "matrix_ref":
            kw[name] = mp.W * mp.W.dtype.type(0.5)
        elif kind == "bias" and mp.b is not None:
            kw[name] = mp.b
        elif kind == "bias_ref" and mp.b is not None:
            kw[name] = mp.b * mp.b.dtype.type(0.5)
        elif kind == "actions":
            kw[name] = mp.a
        elif kind == "mask" and mp.mask is not None:
            kw[name] = mp.mask
        elif kind == "weights":  # a scalar for one state
            kw[name] = mp.weights if mp.layout != "single" else mp.weights[0]
        elif kind == "temperature" and mp.temperature != 1.0:
            kw[name] = mp.temperature
        elif kind == "out" and out and entry.out_shape is not None:
            kw[name] = matrix_out(entry, mp)
        elif kind == "n_threads" and n_threads is not None:
            kw[name] = n_threads
        elif kind == "seed":
            kw[name] = 12345 if seed is None else seed
        elif kind == "flag" and flags and name in flags:
            kw[name] = flags[name]
    return kw


def matrix_out(entry, mp: MatrixProblem, fill=np.nan):
    """A valid out= for mp: an array, or (out_W, out_b) for score with a bias."""
    shape = entry.out_shape(mp)
    dt = matrix_result_dtype(mp)
    if isinstance(shape[0] if shape else None, tuple):
        return tuple(np.full(sh, fill, dt) for sh in shape)
    return np.full(shape, fill, dt)


def as_arrays(result):
    """A result as a flat list of float64 arrays (tuples flattened)."""
    if isinstance(result, tuple):
        out = []
        for r in result:
            out.extend(as_arrays(r))
        return out
    return [np.asarray(result)]


def bits(result) -> bytes:
    """The exact bits of a result (tuples included), for bitwise comparisons."""
    parts = []
    for r in as_arrays(result):
        parts.append(str(r.dtype).encode() + str(r.shape).encode() + r.tobytes())
    return b"|".join(parts)
