"""Where the harness keeps caches (nano checkpoint, generated data, built variants)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$FASTVLM_HARNESS_CACHE`, else the platform user cache dir."""
    env = os.environ.get("FASTVLM_HARNESS_CACHE")
    if env:
        path = Path(env)
    else:
        from platformdirs import user_cache_dir

        path = Path(user_cache_dir("fastvlm-harness"))
    path.mkdir(parents=True, exist_ok=True)
    return path
