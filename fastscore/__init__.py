"""fastscore: the score function of a linear softmax policy, in one pass.

For features ``phi`` (N, d), parameters ``theta`` (d,) and a taken action
``a``, the policy is ``pi = softmax(phi @ theta / tau)`` and the score is::

    grad_theta log pi(a) = (phi[a] - pi @ phi) / tau

``fastscore.score`` computes it (and its batched form) in a compiled kernel
that reads ``phi`` once; ``fastscore.reference.score`` is the plain NumPy
version of the same function.
"""
from ._config import show_config
from ._core import score

__version__ = "0.1.0"

__all__ = ["score", "show_config", "__version__"]
