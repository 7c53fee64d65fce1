"""Benchmarks: fer-edge against the `fer` package on the same work, in the same run."""
