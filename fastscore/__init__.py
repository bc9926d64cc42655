"""fastscore: the linear softmax policy, in one pass over the features.

For features ``phi`` (N, d), parameters ``theta`` (d,) and a taken action
``a``, the policy is ``pi = softmax(phi @ theta / tau)``.  Every function
below reads ``phi`` once in a compiled, threaded kernel:

* ``score``: grad_theta log pi(a) = (phi[a] - pi @ phi) / tau
* ``log_prob``: log pi(a);  ``entropy``: H(pi);  ``probs``: pi
* ``sample``: an action drawn from pi, with its log-probability
* ``loglik``: sum_b w_b log pi_b(a_b), with its gradient and Hessian (and
  an entropy bonus beta sum_b H_b); ``kl``: KL(pi_ref || pi), with its gradient

``offsets=`` takes ragged action sets (long format); ``fastscore.matrix``
(imported on demand) has the state-input form ``softmax(s @ W + b)``;
``fastscore.reference`` has plain NumPy versions of the same functions.
"""
from . import _openmp  # first: libgomp's spin count before the compiled modules load it
from ._config import show_config
from ._core import entropy, kl, log_prob, loglik, probs, sample, score

__version__ = "0.2.0"

__all__ = [
    "entropy", "kl", "log_prob", "loglik", "probs", "sample", "score", "show_config", "__version__",
]
