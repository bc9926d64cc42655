from typing import Literal, Optional, Union, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Real = NDArray[np.floating]
_Seed = Union[int, None, np.random.Generator]

def score(
    phi: ArrayLike,
    theta: ArrayLike,
    a: Union[int, ArrayLike],
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    out: Optional[_Real] = ...,
    n_threads: Optional[int] = ...,
) -> _Real: ...
def log_prob(
    phi: ArrayLike,
    theta: ArrayLike,
    a: Union[int, ArrayLike],
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    out: Optional[_Real] = ...,
    n_threads: Optional[int] = ...,
) -> Union[float, _Real]: ...
@overload
def entropy(
    phi: ArrayLike,
    theta: ArrayLike,
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    grad: Literal[False] = ...,
    out: Optional[_Real] = ...,
    n_threads: Optional[int] = ...,
) -> Union[float, _Real]: ...
@overload
def entropy(
    phi: ArrayLike,
    theta: ArrayLike,
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    grad: Literal[True],
    out: Optional[tuple[Optional[_Real], Optional[_Real]]] = ...,
    n_threads: Optional[int] = ...,
) -> tuple[Union[float, _Real], _Real]: ...
@overload
def kl(
    phi: ArrayLike,
    theta_ref: ArrayLike,
    theta: ArrayLike,
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    grad: Literal[False] = ...,
    out: Optional[_Real] = ...,
    n_threads: Optional[int] = ...,
) -> Union[float, _Real]: ...
@overload
def kl(
    phi: ArrayLike,
    theta_ref: ArrayLike,
    theta: ArrayLike,
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    grad: Literal[True],
    out: Optional[tuple[Optional[_Real], Optional[_Real]]] = ...,
    n_threads: Optional[int] = ...,
) -> tuple[Union[float, _Real], _Real]: ...
def probs(
    phi: ArrayLike,
    theta: ArrayLike,
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    out: Optional[_Real] = ...,
    n_threads: Optional[int] = ...,
) -> _Real: ...
@overload
def sample(
    phi: ArrayLike,
    theta: ArrayLike,
    *,
    seed: _Seed = ...,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    state_offset: int = ...,
    score: Literal[False] = ...,
    n_threads: Optional[int] = ...,
) -> Union[tuple[int, float], tuple[NDArray[np.intp], _Real]]: ...
@overload
def sample(
    phi: ArrayLike,
    theta: ArrayLike,
    *,
    seed: _Seed = ...,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    offsets: Optional[ArrayLike] = ...,
    state_offset: int = ...,
    score: Literal[True],
    n_threads: Optional[int] = ...,
) -> Union[tuple[int, float, _Real], tuple[NDArray[np.intp], _Real, _Real]]: ...
@overload
def loglik(
    phi: ArrayLike, theta: ArrayLike, a: ArrayLike, *, weights: Optional[ArrayLike] = ...,
    grad: Literal[False] = ..., hess: Literal[False] = ..., mask: Optional[ArrayLike] = ...,
    temperature: float = ..., offsets: Optional[ArrayLike] = ..., entropy_weight: float = ...,
    n_threads: Optional[int] = ...,
) -> float: ...
@overload
def loglik(
    phi: ArrayLike, theta: ArrayLike, a: ArrayLike, *, weights: Optional[ArrayLike] = ...,
    grad: Literal[True], hess: Literal[False] = ..., mask: Optional[ArrayLike] = ...,
    temperature: float = ..., offsets: Optional[ArrayLike] = ..., entropy_weight: float = ...,
    n_threads: Optional[int] = ...,
) -> tuple[float, NDArray[np.float64]]: ...
@overload
def loglik(
    phi: ArrayLike, theta: ArrayLike, a: ArrayLike, *, weights: Optional[ArrayLike] = ...,
    grad: Literal[False] = ..., hess: Literal[True], mask: Optional[ArrayLike] = ...,
    temperature: float = ..., offsets: Optional[ArrayLike] = ..., entropy_weight: float = ...,
    n_threads: Optional[int] = ...,
) -> tuple[float, NDArray[np.float64]]: ...
@overload
def loglik(
    phi: ArrayLike, theta: ArrayLike, a: ArrayLike, *, weights: Optional[ArrayLike] = ...,
    grad: Literal[True], hess: Literal[True], mask: Optional[ArrayLike] = ...,
    temperature: float = ..., offsets: Optional[ArrayLike] = ..., entropy_weight: float = ...,
    n_threads: Optional[int] = ...,
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]: ...
def build_info() -> dict[str, object]: ...
def _seed_key(seed: _Seed) -> int: ...
def read_pass(x: NDArray[np.float64], n_threads: int) -> float: ...
def _vexp(x: NDArray[np.float64]) -> NDArray[np.float64]: ...
