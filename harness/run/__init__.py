"""Executing a recipe: the plan, one isolated worker per variant, progress, resume."""
