"""Benchmarks that print figures and write them to bench/results/ (ratios measured side by side)."""
