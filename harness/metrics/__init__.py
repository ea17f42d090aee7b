"""Scorers, each registered in METRICS with its direction and unit."""
