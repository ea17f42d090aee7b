"""Noise-aware N-objective Pareto analysis.

Each objective value carries an interval (its CI; a point when exact, like bytes on disk).
A *beats* B on an objective when A is better and their intervals do not overlap; they *tie* when
the intervals overlap. A dominates B when A beats B on at least one objective and B beats A on
none. So a variant is never marked dominated by its own re-measurement (all ties), nor because
of noise in one objective.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Objective:
    name: str
    higher_is_better: bool


@dataclass(frozen=True)
class Value:
    point: float
    low: float
    high: float

    @classmethod
    def of(cls, point: float, interval: list[float] | tuple[float, float] | None = None) -> Value:
        if not interval:
            return cls(point, point, point)
        return cls(point, min(point, *interval), max(point, *interval))


def beats(a: Value, b: Value, higher_is_better: bool) -> bool:
    if higher_is_better:
        return a.point > b.point and a.low > b.high
    return a.point < b.point and a.high < b.low


def dominates(a: dict[str, Value], b: dict[str, Value], objectives: list[Objective]) -> bool:
    shared = [o for o in objectives if o.name in a and o.name in b]
    if not shared:
        return False
    wins = any(beats(a[o.name], b[o.name], o.higher_is_better) for o in shared)
    losses = any(beats(b[o.name], a[o.name], o.higher_is_better) for o in shared)
    return wins and not losses


def frontier(points: dict[str, dict[str, Value]], objectives: list[Objective]) -> dict[str, list[str]]:
    """For each variant, the variants that dominate it (empty list: on the frontier)."""
    return {name: [other for other in points if other != name
                   and dominates(points[other], points[name], objectives)]
            for name in points}
