from typing import Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

def score(
    phi: ArrayLike,
    theta: ArrayLike,
    a: Union[int, ArrayLike],
    *,
    mask: Optional[ArrayLike] = ...,
    temperature: float = ...,
    out: Optional[NDArray[np.floating]] = ...,
    n_threads: Optional[int] = ...,
) -> NDArray[np.floating]: ...
def build_info() -> dict[str, object]: ...
def read_pass(x: NDArray[np.float64], n_threads: int) -> float: ...
