"""Benchmarks against real peers (not tests: they print figures and ratios)."""
