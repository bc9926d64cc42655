from typing import Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Real = Union[NDArray[np.float32], NDArray[np.float64]]
_Seed = Union[int, None, np.random.Generator]

def score(
    s: ArrayLike,
    W: ArrayLike,
    a: Union[int, ArrayLike],
    *,
    b: Optional[ArrayLike] = None,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    out: Union[None, NDArray[np.floating], tuple[NDArray[np.floating], NDArray[np.floating]]] = None,
    n_threads: Optional[int] = None,
) -> Union[_Real, tuple[_Real, _Real]]: ...
def log_prob(
    s: ArrayLike,
    W: ArrayLike,
    a: Union[int, ArrayLike],
    *,
    b: Optional[ArrayLike] = None,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    out: Optional[NDArray[np.floating]] = None,
    n_threads: Optional[int] = None,
) -> Union[np.floating, _Real]: ...
def entropy(
    s: ArrayLike,
    W: ArrayLike,
    *,
    b: Optional[ArrayLike] = None,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    out: Optional[NDArray[np.floating]] = None,
    n_threads: Optional[int] = None,
    grad: bool = False,
) -> Union[
    np.floating, _Real, tuple[Union[np.floating, _Real], Union[_Real, tuple[_Real, _Real]]]
]: ...
def kl(
    s: ArrayLike,
    W_ref: ArrayLike,
    W: ArrayLike,
    *,
    b_ref: Optional[ArrayLike] = None,
    b: Optional[ArrayLike] = None,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    out: Optional[NDArray[np.floating]] = None,
    n_threads: Optional[int] = None,
    grad: bool = False,
) -> Union[
    np.floating, _Real, tuple[Union[np.floating, _Real], Union[_Real, tuple[_Real, _Real]]]
]: ...
def probs(
    s: ArrayLike,
    W: ArrayLike,
    *,
    b: Optional[ArrayLike] = None,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    out: Optional[NDArray[np.floating]] = None,
    n_threads: Optional[int] = None,
) -> _Real: ...
def sample(
    s: ArrayLike,
    W: ArrayLike,
    *,
    b: Optional[ArrayLike] = None,
    seed: _Seed = None,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    n_threads: Optional[int] = None,
    score: bool = False,
    trace: Union[_Real, tuple[_Real, _Real], None] = None,
    decay: float = 1.0,
    weight: float = 1.0,
) -> Union[
    tuple[int, np.floating],
    tuple[NDArray[np.intp], _Real],
    tuple[int, np.floating, Union[_Real, tuple[_Real, _Real]]],
    tuple[NDArray[np.intp], _Real, Union[_Real, tuple[_Real, _Real]]],
]: ...
def loglik(
    s: ArrayLike,
    W: ArrayLike,
    a: Union[int, ArrayLike],
    *,
    b: Optional[ArrayLike] = None,
    weights: Optional[ArrayLike] = None,
    grad: bool = False,
    mask: Optional[ArrayLike] = None,
    temperature: float = 1.0,
    entropy_weight: float = 0.0,
    n_threads: Optional[int] = None,
) -> Union[np.floating, tuple[np.floating, _Real], tuple[np.floating, tuple[_Real, _Real]]]: ...
