"""The suite and recipe files that ship with the package.

They live in the project's top-level `suites/` and `recipes/` folders; `pyproject.toml` maps them
onto the packages `harness._shipped_suites` and `harness._shipped_recipes` (package-dir plus
package-data), so a wheel carries them inside `harness/`:

* a regular install (wheel), or a strict editable one: the installed `harness/_shipped_suites`;
* a (default, lenient) editable install, or a checkout run without installing: the checkout's
  own `suites/` (setuptools' editable finder cannot import a namespace package mapped under a
  regular package, so `harness/` is followed back to the checkout instead).

Imports nothing beyond the standard library.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def _shipped(package: str, folder: str) -> Path:
    # `harness` is a regular package, so `files` gives a real filesystem path in an install.
    inside = resources.files("harness") / package
    if isinstance(inside, Path) and inside.is_dir():
        return inside
    return _CHECKOUT / folder


def suites_dir() -> Path:
    """The shipped suite files: `nano-vqa.yaml`, ..., `_shared/`, `lm_eval_tasks/`."""
    return _shipped("_shipped_suites", "suites")


def recipes_dir() -> Path:
    """The shipped recipes: `quickstart.yaml`, ..."""
    return _shipped("_shipped_recipes", "recipes")
