"""Benchmarks behind ``edgewatch bench``: speed, capacity and robustness, on this machine."""
