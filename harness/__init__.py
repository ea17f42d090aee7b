"""fastvlm-harness: build compressed FastVLM variants and prove what each one costs."""

__version__ = "0.1.0"
