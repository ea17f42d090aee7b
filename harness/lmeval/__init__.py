"""lm-eval integration: the `fastvlm-harness` LM adapter (adapter.py) and `python -m harness.lmeval`
(lm-eval's own CLI with the adapter registered)."""
