"""Which compiled form of the kernels this process runs.

- ``native`` (``kernels.native``): chosen for one thread when it is built for this machine.
  Numba and LLVM are never imported.
- ``jit``: Numba's JIT, whose batch kernel spreads windows over ``threads``. Chosen otherwise,
  and always for more than one thread.

Both compile the same kernel sources with the same flags. ``select`` decides once per process
(the agent at start, from its config); a process that never calls it runs the JIT on every core.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from . import native


class Kernels(NamedTuple):
    """The entry points of one compiled form, each taking arrays of either precision.

    ``windows(windows, window, window_sum, window_sq_sum, sample_rate, plan, out) -> bool``
    and ``rolling(rows, alpha, *RollingState, out)``, as documented in ``kernels.native``.
    """

    form: str
    windows: Callable[..., bool]
    rolling: Callable[..., None]
    why: str


_active: Kernels | None = None


def select(threads: int | None = None) -> Kernels:
    """Choose this process's kernels: native for ``threads == 1`` when built, else the JIT on
    ``threads`` (None: Numba's default)."""
    global _active
    why = f"{threads} feature threads" if threads else "no thread count chosen"
    if threads == 1:
        try:
            _active = _native(native.load())
            return _active
        except native.Unavailable as e:
            why = str(e)
    _active = _jit(threads, why)
    return _active


def active() -> Kernels:
    """The kernels ``select`` chose, or the JIT on every core if it was never called."""
    return _active if _active is not None else select()


def _native(module: Any) -> Kernels:
    windows = {s + o: getattr(module, f"windows_{s}{o}") for s in "fd" for o in "fd"}
    rolling = {s + o: getattr(module, f"rolling_{s}{o}") for s in "fd" for o in "fd"}

    def windows_call(data: Any, *args: Any) -> bool:
        return windows[data.dtype.char + args[-1].dtype.char](data, *args)  # type: ignore[no-any-return]

    def rolling_call(rows: Any, *args: Any) -> None:
        rolling[rows.dtype.char + args[-1].dtype.char](rows, *args)

    return Kernels("native", windows_call, rolling_call, module.__file__ or "")


def _jit(threads: int | None, why: str) -> Kernels:
    from .batch import window_features, windows_features
    from .config import set_threads
    from .rolling import rolling_features

    if threads is not None:
        set_threads(threads)

    def windows_call(data: Any, *args: Any) -> bool:
        if data.shape[0] == 1:
            return window_features(data, 0, *args)
        return windows_features(data, *args)

    return Kernels("jit", windows_call, rolling_features, why)
