"""Numba kernels: pure functions on arrays. No I/O, no configuration parsing, no project imports."""
