"""Timing that survives a shared, noisy machine: interleaved rounds, medians."""

import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_HEAP_KEEP = 32 << 20  # glibc's largest mmap threshold on 64-bit


def steady_heap() -> bool:
    """Have glibc keep freed memory instead of returning it to the kernel.

    A long-running process reaches this state by itself. A fresh one maps every large buffer
    anew and pays a page fault per 4 KiB, which in a virtual machine can cost more than the
    FFT that fills the buffer: NumPy's FFT of 42 windows measured 24 us a window that way and
    6.5 us with the heap kept. Without this, every candidate that allocates looks slower than it
    is. Returns False where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except AttributeError:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_KEEP) and mallopt(_M_TRIM_THRESHOLD, _HEAP_KEEP))


def interleaved_samples(
    candidates: dict[str, Callable[[], object]], rounds: int, per_call: int, calls: int = 1
) -> dict[str, list[float]]:
    """Seconds per unit of work for each candidate, one sample per call.

    Each round runs every candidate in turn, so a burst of load from elsewhere falls on all of
    them alike; ``per_call`` is how many units (windows, rows) one call does. Within a round a
    candidate makes ``calls`` timed calls in a row, as a service that runs steadily does, rather
    than one call into caches the other candidates just filled. Every candidate runs once before
    timing starts, to compile and fill caches.
    """
    for run in candidates.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            for _ in range(calls):
                start = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - start) / per_call)
    return samples


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], rounds: int, per_call: int
) -> dict[str, float]:
    """Median seconds per unit of work for each candidate; see ``interleaved_samples``."""
    samples = interleaved_samples(candidates, rounds, per_call)
    return {name: statistics.median(values) for name, values in samples.items()}
