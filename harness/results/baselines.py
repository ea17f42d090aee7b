"""Which variant a variant is measured against, and which model family it is of, read from a run's
plan (`run.json`) or its summary (`results.json`): the one place that rule is written.

A `base:` recipe has one baseline for every variant (`baseline`). A cross-model recipe records,
per variant, its own model's baseline (`baselines`), so retention, paired latency ratios, the
gallery and `harness compare` stay within one model; runs recorded before it have no `baselines`
and read as one baseline.
"""

from __future__ import annotations

from typing import Any


def baseline_of(doc: dict[str, Any], variant: str) -> str | None:
    """The baseline variant of `variant` in a plan or summary."""
    return (doc.get("baselines") or {}).get(variant, doc.get("baseline"))


def all_baselines(doc: dict[str, Any]) -> list[str]:
    """Every baseline variant of a plan or summary, in order (one for a `base:` recipe)."""
    found = list(dict.fromkeys((doc.get("baselines") or {}).values()))
    if found:
        return found
    return [doc["baseline"]] if doc.get("baseline") else []


def families_of(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Variant → its `model` (cross-model recipes) and `family` as the plan recorded them (empty for
    runs recorded before families were)."""
    return {p["name"]: {key: p[key] for key in ("model", "family") if key in p} for p in plan.get("plan", [])}
