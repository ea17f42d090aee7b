"""Building a variant: its content key, steps applied to the base model, the artifact on disk and
loading it back (replaying the steps on a skeleton)."""
