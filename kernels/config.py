"""The Numba flags and the compiled-code cache (``kernels.cache``), set once for every kernel."""

from collections.abc import Callable
from typing import Any, TypeVar

import numba

from .cache import cache_dir

F = TypeVar("F", bound=Callable[..., Any])


# Read by numba when each decorator below creates its cache, so it must be set before them.
numba.config.CACHE_DIR = str(cache_dir())  # type: ignore[attr-defined]  # set at run time

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


def set_threads(count: int) -> None:
    """Run the ``prange`` kernels on ``count`` threads (at most the cores Numba found). One
    thread spends the least CPU per window: the parallel loop's workers spin between batches."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
