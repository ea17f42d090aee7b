"""Compression steps: one module per family, each registered in `harness.registries.STEPS`."""
