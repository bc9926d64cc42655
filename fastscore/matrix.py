"""The state-input form of the linear softmax policy: z = (s @ W + b) / tau.

For a state vector ``s`` (k,), weights ``W`` (k, N) and an optional bias
``b`` (N,), ``pi = softmax((s @ W + b) / tau)``: the usual linear softmax
policy, and multinomial logistic regression.  The score is an outer product,
``grad_W log pi(a | s) = outer(s, e_a - pi) / tau`` (and ``grad_b = (e_a -
pi) / tau``); no per-action features are ever built.  It is the same model as
:func:`fastscore.score` with ``phi(s, a) = e_a (x) s`` (docs/matrix.md).

Import it explicitly (``import fastscore.matrix``): ``import fastscore`` does
not load it (nor SciPy, whose BLAS it uses for large batches).

Functions (one state: ``s`` (k,), ``a`` int; a batch: ``s`` (B, k), ``a`` (B,)):

* :func:`score` -- ``(k, N)`` or ``(B, k, N)``; with ``b``, ``(grad_W, grad_b)``
* :func:`log_prob`, :func:`entropy` -- a scalar or ``(B,)``; ``entropy(...,
  grad=True)``: ``(H, grad)``, grad as :func:`score` lays it out
* :func:`kl` -- ``KL(pi_ref || pi)``, a scalar or ``(B,)``, of the policies of
  ``W_ref`` and ``W``; ``grad=True``: ``(KL, grad)``, grad in W as :func:`score`
  lays it out
* :func:`probs` -- ``(N,)`` or ``(B, N)``
* :func:`sample` -- ``(actions, log_probs)`` by Gumbel-max; with ``score=True``,
  ``(actions, log_probs, score)``, the score of the drawn actions
* :func:`loglik` -- ``sum_i w_i log pi(a_i | s_i)``; with ``grad=True``,
  ``(value, grad_W)`` or, with ``b``, ``(value, (grad_W, grad_b))``
"""
from ._matrix import entropy, kl, log_prob, loglik, probs, sample, score

__all__ = ["score", "log_prob", "entropy", "kl", "probs", "sample", "loglik"]
