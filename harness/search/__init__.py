"""`harness search`: a multi-objective search over a recipe's `search:` space with Optuna, every
trial a variant of one run folder (see docs/search.md)."""
