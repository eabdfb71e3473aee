"""Helpers that give jitted code arrays and scalars in the precision of its input."""

import numpy as np
from numba.extending import overload


def complex_empty(x: np.ndarray, n: int) -> np.ndarray:
    """An empty complex array of the precision of ``x`` (complex64 for float32)."""
    return np.empty(n, dtype=np.result_type(x.dtype, np.complex64))


def cast_like(x: np.ndarray, value: float) -> np.floating:
    """``value`` in the floating type of ``x``."""
    return x.dtype.type(value)  # type: ignore[no-any-return]


def ordered_bits(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``x``'s bits as signed integers, and the shift and mask of ``ordered_key``."""
    bits = x.view(np.int32 if x.dtype.itemsize == 4 else np.int64)
    width = 8 * x.dtype.itemsize
    return bits, width - 1, (1 << (width - 1)) - 1


def ordered_key(bits: int, shift: int, mask: int) -> int:
    """An integer that orders as the float with these bits does (for all but NaN); applied
    twice it gives the bits back. Integer minima and maxima vectorise where float ones that
    must respect NaN do not.

    >>> bits, shift, mask = ordered_bits(np.array([-2.5, -0.5, 0.0, 1.5]))
    >>> keys = [ordered_key(int(b), shift, mask) for b in bits]
    >>> keys == sorted(keys), [ordered_key(k, shift, mask) for k in keys] == bits.tolist()
    (True, True)
    """
    return bits ^ ((bits >> shift) & mask)


@overload(ordered_bits)
def _ordered_bits(x):  # type: ignore[no-untyped-def]
    if x.dtype.bitwidth == 32:
        return lambda x: (x.view(np.int32), np.int32(31), np.int32(0x7FFFFFFF))
    return lambda x: (x.view(np.int64), np.int64(63), np.int64(0x7FFFFFFFFFFFFFFF))


@overload(ordered_key)
def _ordered_key(bits, shift, mask):  # type: ignore[no-untyped-def]
    return lambda bits, shift, mask: bits ^ ((bits >> shift) & mask)


@overload(complex_empty)
def _complex_empty(x, n):  # type: ignore[no-untyped-def]
    dtype = np.complex64 if x.dtype.bitwidth == 32 else np.complex128
    return lambda x, n: np.empty(n, dtype=dtype)


@overload(cast_like)
def _cast_like(x, value):  # type: ignore[no-untyped-def]
    if x.dtype.bitwidth == 32:
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)
