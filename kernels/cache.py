"""Where compiled kernels are kept, defined once for both compiled forms.

The cache lives under ``NUMBA_CACHE_DIR`` when set (the systemd unit points it at
``CacheDirectory=``), else under ``~/.cache/edgewatch/numba``, in a folder named after a hash of
the kernel sources, rocket-fft's version and the Python environment. Numba checks a cached
function only against its own file, so a kernel that inlines one from another file would otherwise
keep running the old callee after an upgrade. The native module links the FFT library of the
environment it was built in, by path, so two environments on one machine (a gateway's and a
developer's, or ``make test`` and ``make test-edge``) each build their own. Both forms are also
tied to the CPU they were built on (Numba keys its cache by CPU name and features;
``kernels.native`` records them), so a cache copied from another machine is rebuilt rather than
trusted: each gateway builds its own.
"""

import hashlib
import os
import sys
from importlib.metadata import version
from pathlib import Path


def cache_dir(sources: Path = Path(__file__).parent) -> Path:
    """Where this version of the kernels (the ``*.py`` in ``sources``) keeps its compiled code."""
    base = os.environ.get("NUMBA_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "edgewatch", "numba")
    digest = hashlib.sha256(version("rocket-fft").encode())
    digest.update(sys.prefix.encode())
    for source in sorted(sources.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return Path(base) / digest.hexdigest()[:16]
