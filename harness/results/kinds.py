"""The registered suite kinds as the results layer uses them: through the registry only, so
aggregation, comparison, history and the gate never import a suite module by name (the kind
contract itself is `harness.suites._kind.SuiteKind`)."""

from __future__ import annotations

from typing import Any

from harness.registries import SUITE_KINDS


def kinds() -> tuple[tuple[str, Any], ...]:
    """Every registered kind (instantiated: kinds hold no state), in name order; read afresh on each
    call so a kind registered later (a plugin, a test module) is seen."""
    return tuple((entry.name, entry.obj()) for entry in SUITE_KINDS.entries())


def kind_of(name: str | None) -> Any | None:
    """The registered kind called `name`, or None (a result written by a kind not installed now)."""
    return dict(kinds()).get(name) if name else None


def sections() -> dict[str, Any]:
    """Summary section name → the (first) kind that declares it."""
    out: dict[str, Any] = {}
    for _, kind in kinds():
        if kind.section:
            out.setdefault(kind.section, kind)
    return out


def headlines() -> dict[str, Any]:
    """Headline key → the kind that declares it."""
    return {kind.headline: kind for _, kind in kinds() if kind.headline}


def measuring(target: str) -> Any | None:
    """The kind that measures a recipe target, if any."""
    return next((kind for _, kind in kinds() if target in kind.targets), None)
