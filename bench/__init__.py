"""Benchmarks (`make bench`): one module per benchmark, registered in runner.py."""
