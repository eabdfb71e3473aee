"""The Numba flags and the compiled-code cache, defined once for every kernel.

The cache lives under ``NUMBA_CACHE_DIR`` when set (the systemd unit points it at
``CacheDirectory=``), else under ``~/.cache/edgewatch/numba``, in a folder named after a hash of
these sources. Numba checks a cached function only against its own file, so a kernel that
inlines one from another file would otherwise keep running the old callee after an upgrade.
Numba also keys cached code by CPU name and features, so a cache copied from another machine is
recompiled rather than trusted: each gateway builds its own.
"""

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numba
import rocket_fft

F = TypeVar("F", bound=Callable[..., Any])


def cache_dir(sources: Path = Path(__file__).parent) -> Path:
    """Where this version of the kernels (the ``*.py`` in ``sources``) keeps its compiled code."""
    base = os.environ.get("NUMBA_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "edgewatch", "numba")
    digest = hashlib.sha256(rocket_fft.__version__.encode())
    for source in sorted(sources.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return Path(base) / digest.hexdigest()[:16]


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
