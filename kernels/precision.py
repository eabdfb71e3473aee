"""Helpers that give jitted code arrays and scalars in the precision of its input."""

import numpy as np
from numba.extending import overload


def complex_empty(x: np.ndarray, n: int) -> np.ndarray:
    """An empty complex array of the precision of ``x`` (complex64 for float32)."""
    return np.empty(n, dtype=np.result_type(x.dtype, np.complex64))


def cast_like(x: np.ndarray, value: float) -> np.floating:
    """``value`` in the floating type of ``x``."""
    return x.dtype.type(value)  # type: ignore[no-any-return]


@overload(complex_empty)
def _complex_empty(x, n):  # type: ignore[no-untyped-def]
    dtype = np.complex64 if x.dtype.bitwidth == 32 else np.complex128
    return lambda x, n: np.empty(n, dtype=dtype)


@overload(cast_like)
def _cast_like(x, value):  # type: ignore[no-untyped-def]
    if x.dtype.bitwidth == 32:
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)
