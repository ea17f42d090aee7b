"""Grid expansion: every combination of a grid's axes becomes a variant, with each "{axis}" in its
name and step values substituted. A placeholder that names no axis, or a grid whose combinations
exceed `MAX_VARIANTS`, is a problem reported before anything is expanded."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from pydantic import ValidationError

from harness.registry import did_you_mean
from harness.spec.messages import Problems
from harness.spec.models import GridSpec, RecipeSpec, VariantSpec
from harness.spec.yamlio import Loc

PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: More variants than a person can read in a report; a larger study is a search (`harness search`).
MAX_VARIANTS = 1000


def substitute(value: Any, axes: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = re.fullmatch(r"\{(\w+)\}", value)
        if whole and whole.group(1) in axes:
            return axes[whole.group(1)]  # keep the axis value's type
        return PLACEHOLDER.sub(lambda m: str(axes.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [substitute(v, axes) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, axes) for k, v in value.items()}
    return value


def _placeholders(value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    """Every `{name}` in a value, with where it is."""
    if isinstance(value, str):
        return [(loc, m.group(1)) for m in PLACEHOLDER.finditer(value)]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _placeholders(v, (*loc, i))]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _placeholders(v, (*loc, k))]
    return []


def _check_grid(grid: GridSpec, loc: Loc, problems: Problems) -> bool:
    """Placeholders name axes, and the grid fits the cap; False when it must not be expanded."""
    ok = True
    axes = list(grid.axes)
    for where, name in _placeholders(grid.name, (*loc, "name")) + _placeholders(grid.steps, (*loc, "steps")):
        if name not in grid.axes:
            hint = did_you_mean(name, axes)
            problems.add(where, f"placeholder '{{{name}}}' names no grid axis (axes: {', '.join(axes)})"
                                + (f"; {hint.removeprefix(' — ')}" if hint.startswith(" — ") else ""))
            ok = False
    count = math.prod(len(values) for values in grid.axes.values())
    if count > MAX_VARIANTS:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in grid.axes.items())
        problems.add((*loc, "axes"), f"the grid expands to {count:,} variants ({sizes}); the limit is "
                                     f"{MAX_VARIANTS} — split it into smaller grids, or search the space instead")
        ok = False
    return ok


def expand(spec: RecipeSpec, problems: Problems) -> list[tuple[VariantSpec, Loc]]:
    """The recipe's variants, then each grid's, with where each came from."""
    out = [(v, ("variants", i)) for i, v in enumerate(spec.variants)]
    for g_index, grid in enumerate(spec.grid):
        loc: Loc = ("grid", g_index)
        if not _check_grid(grid, loc, problems):
            continue
        keys = list(grid.axes)
        for combo in itertools.product(*(grid.axes[k] for k in keys)):
            axes = dict(zip(keys, combo))
            name = str(substitute(grid.name, axes))
            try:
                variant = VariantSpec(name=name, model=grid.model, steps=substitute(grid.steps, axes), gate=grid.gate,
                                      runtimes=grid.runtimes)
            except ValidationError:
                problems.add((*loc, "name"), f"'{name}' is not a valid variant name (letters, digits and _.+- ; "
                                             "starting with a letter or digit)")
                continue
            out.append((variant, loc))
    if len(out) > MAX_VARIANTS:
        problems.add(("grid",), f"the recipe has {len(out):,} variants; the limit is {MAX_VARIANTS}")
        return []
    return out
