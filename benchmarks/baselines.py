"""Optional baselines of the benchmarks: Numba and JAX.

The Numba and JAX columns of ``python -m fastscore bench``
(``harness/functions.py``) and the asv suite's ``bench_baselines.py`` both
use these.  Each is the code a user of that tool writes for ``score`` and for
``loglik(grad=True)`` of a batch, phi (B, N, d), with an optional mask
(B, N) and a temperature:

* ``numba``: the fused loop a performance-minded user writes,
  ``@numba.njit(parallel=True, fastmath=False, cache=False)`` with ``prange``
  over the states and, per state, the textbook two-pass formula: logits
  ``z_k = phi_k . theta / tau`` (masked actions ``-inf``), their max, ``exp``,
  normalise, then ``(phi_a - sum_k pi_k phi_k) / tau``.
* ``jax``: ``jax.jit`` of the NumPy reference's computation written with
  ``jax.numpy``, in float64 where the inputs are (``jax_enable_x64``).

Neither library is imported here: the builders take the module.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import numpy as np

#: The fastscore functions the baselines implement (with ``grad=True`` for loglik).
FUNCS = ("score", "loglik")


def applies(func: str, phi: np.ndarray, offsets: Optional[np.ndarray]) -> bool:
    """Whether the baselines implement this workload: a (B, N, d) batch of
    ``score`` or ``loglik`` (with the gradient), without offsets."""
    return func in FUNCS and offsets is None and phi.ndim == 3


# ---------------------------------------------------------------------------
# Numba.

@functools.lru_cache(maxsize=None)
def numba_kernels(numba: Any) -> dict[str, Callable[..., Any]]:
    """The two ``@njit`` kernels, by fastscore name (each compiles on its
    first call, for the types it is called with)."""

    @numba.njit(parallel=True, fastmath=False, cache=False)
    def score(phi, theta, a, mask, tau):
        n_states, n_actions, d = phi.shape
        out = np.empty((n_states, d), dtype=phi.dtype)
        for b in numba.prange(n_states):
            z = np.empty(n_actions)  # numba hoists it: one per thread
            m = -np.inf
            for k in range(n_actions):
                z[k] = -np.inf
                if mask is not None:
                    if not mask[b, k]:
                        continue
                t = 0.0
                for j in range(d):
                    t += phi[b, k, j] * theta[j]
                z[k] = t / tau
                m = max(m, z[k])
            total = 0.0
            for k in range(n_actions):
                z[k] = np.exp(z[k] - m)
                total += z[k]
            ab = a[b]
            for j in range(d):
                out[b, j] = phi[b, ab, j]
            for k in range(n_actions):
                if mask is not None:
                    if not mask[b, k]:
                        continue  # pi_k = 0, and a masked row may hold NaN
                p = z[k] / total
                for j in range(d):
                    out[b, j] -= p * phi[b, k, j]
            for j in range(d):
                out[b, j] /= tau
        return out

    # The sums over states are prange reductions: numba gives each thread its
    # own copy of ``value`` and ``grad`` (per-thread partial sums) and adds
    # them up after the loop; no (B, d) array of per-state scores is made.
    @numba.njit(parallel=True, fastmath=False, cache=False)
    def loglik(phi, theta, a, mask, tau):
        n_states, n_actions, d = phi.shape
        value = 0.0
        grad = np.zeros(d)
        for b in numba.prange(n_states):
            z = np.empty(n_actions)  # hoisted, one per thread
            s = np.empty(d)
            m = -np.inf
            for k in range(n_actions):
                z[k] = -np.inf
                if mask is not None:
                    if not mask[b, k]:
                        continue
                t = 0.0
                for j in range(d):
                    t += phi[b, k, j] * theta[j]
                z[k] = t / tau
                m = max(m, z[k])
            ab = a[b]
            z_a = z[ab]
            total = 0.0
            for k in range(n_actions):
                z[k] = np.exp(z[k] - m)
                total += z[k]
            value += z_a - m - np.log(total)
            for j in range(d):
                s[j] = phi[b, ab, j]
            for k in range(n_actions):
                if mask is not None:
                    if not mask[b, k]:
                        continue
                p = z[k] / total
                for j in range(d):
                    s[j] -= p * phi[b, k, j]
            for j in range(d):
                s[j] /= tau
            grad += s
        return value, grad

    return {"score": score, "loglik": loglik}


def numba_call(numba: Any, func: str, phi: np.ndarray, theta: np.ndarray, a: np.ndarray,
               mask: Optional[np.ndarray], temperature: float) -> Callable[[], Any]:
    """A zero-argument call of the Numba kernel, compiled for these types by a
    warm-up call here (outside any timing)."""
    call = functools.partial(numba_kernels(numba)[func], phi, theta,
                             np.asarray(a, dtype=np.intp), mask, float(temperature))
    call()
    return call


# ---------------------------------------------------------------------------
# JAX.

@functools.lru_cache(maxsize=None)
def jax_functions(jax: Any) -> dict[str, Callable[..., Any]]:
    """The two jitted functions, by fastscore name.  Turns on float64
    (``jax_enable_x64``) first: without it JAX computes in float32."""
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def log_softmax(phi, theta, mask, tau):
        """(phi with masked rows zeroed, pi, log pi), as the NumPy reference."""
        z = phi @ theta / tau
        if mask is not None:
            z = jnp.where(mask, z, -jnp.inf)
            phi = jnp.where(mask[..., None], phi, 0)  # masked rows may hold NaN
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - jnp.log(jnp.exp(z).sum(axis=-1, keepdims=True))
        return phi, jnp.exp(logp), logp

    def scores(phi, theta, a, mask, tau):
        """The per-state scores (B, d) and log pi (B, N)."""
        phi, pi, logp = log_softmax(phi, theta, mask, tau)
        phi_a = jnp.take_along_axis(phi, a[:, None, None], axis=1)[:, 0]
        return (phi_a - jnp.einsum("bn,bnd->bd", pi, phi)) / tau, logp

    def score(phi, theta, a, mask, tau):
        return scores(phi, theta, a, mask, tau)[0]

    def loglik(phi, theta, a, mask, tau):
        s, logp = scores(phi, theta, a, mask, tau)
        return jnp.take_along_axis(logp, a[:, None], axis=1).sum(), s.sum(axis=0)

    return {"score": jax.jit(score), "loglik": jax.jit(loglik)}


def jax_call(jax: Any, func: str, phi: np.ndarray, theta: np.ndarray, a: np.ndarray,
             mask: Optional[np.ndarray], temperature: float) -> Callable[[], Any]:
    """A zero-argument call of the jitted function that waits for its result
    (``block_until_ready``).  The inputs are converted to JAX arrays here,
    once, and the function compiled for their shapes by a warm-up call."""
    f = jax_functions(jax)[func]
    jnp = jax.numpy
    args = (jnp.asarray(phi), jnp.asarray(theta), jnp.asarray(np.asarray(a, dtype=np.intp)),
            None if mask is None else jnp.asarray(mask), float(temperature))

    def call() -> Any:
        return jax.block_until_ready(f(*args))

    call()
    return call


#: name -> builder of a zero-argument call, for the names the bench knows.
CALLS: dict[str, Callable[..., Callable[[], Any]]] = {"numba": numba_call, "jax": jax_call}
