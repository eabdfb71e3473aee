"""Benchmarks that need the training stack."""
