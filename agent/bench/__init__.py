"""Benchmarks behind ``edgewatch bench``: speed and capacity measured on this machine."""
