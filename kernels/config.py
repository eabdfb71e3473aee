"""The Numba flags, defined once for every kernel.

The cache lives where numba puts it: ``NUMBA_CACHE_DIR`` when set (the systemd unit points it at
``CacheDirectory=``), else beside the sources. Numba keys cached code by CPU name and features, so
a cache copied from another machine is recompiled rather than trusted; ``edgewatch warmup``
builds the gateway's own.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])

# Not nnan or ninf: NaN and inf must survive arithmetic so that bad samples show in the output.
# Not afn: approximate sqrt/cos would cost precision the reference tests hold us to.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

_FLAGS: dict[str, Any] = {
    "cache": True,
    "nogil": True,
    "fastmath": FASTMATH,
    "error_model": "numpy",
}


def jit(fn: F) -> F:
    """Compile a serial kernel."""
    compiled: F = numba.njit(**_FLAGS)(fn)
    return compiled


def jit_ordered(fn: F) -> F:
    """Compile a serial kernel with strict IEEE arithmetic: for algorithms whose order of
    operations is the point (shifted moments), which reassociation would undo."""
    compiled: F = numba.njit(**{**_FLAGS, "fastmath": False})(fn)
    return compiled


def jit_parallel(fn: F) -> F:
    """Compile a kernel whose outer loop is a ``prange`` over windows or rows."""
    compiled: F = numba.njit(parallel=True, **_FLAGS)(fn)
    return compiled
