"""Noise-aware N-objective Pareto analysis.

Each objective value carries an interval (its CI; a point when exact, like bytes on disk).
A *beats* B on an objective when A is better and their intervals do not overlap; they *tie*
when the intervals overlap (or the values are equal). Two levels of dominance, so that the
report never calls a variant dominated because of noise:

- **dominated**: another variant beats it on *every* shared objective, beyond noise;
- **weakly dominated**: another variant beats it on at least one objective and ties on the
  rest (never loses) — shown with the objectives that are ties, since more samples could
  turn a tie either way.

A variant and its own re-measurement tie on everything, so neither level applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Objective:
    name: str
    higher_is_better: bool
    #: Smallest relative difference that counts at all, for exact values (a few bytes of
    #: config make two sizes unequal, not different).
    min_relative_effect: float = 0.0
    #: Where it sorts among the objectives suite kinds contribute (charts and tables follow it).
    rank: int = 100
    #: What a person reads in the report ("TTFT p50 (ms)"); defaults to the name.
    label: str = ""
    #: The recipe target that bounds it (drawn as the target zone); `relative`: the limit is the
    #: target times the baseline's value (min_retention bounds accuracy).
    target: str = ""
    relative: bool = False

    @property
    def title(self) -> str:
        return self.label or self.name


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


def beats(a: Value, b: Value, higher_is_better: bool, min_relative_effect: float = 0.0) -> bool:
    if abs(a.point - b.point) <= min_relative_effect * max(abs(a.point), abs(b.point)):
        return False
    if higher_is_better:
        return a.point > b.point and a.low > b.high
    return a.point < b.point and a.high < b.low


@dataclass
class Comparison:
    """How variant A stands against B, objective by objective."""

    better: list[str] = field(default_factory=list)
    worse: list[str] = field(default_factory=list)
    ties: list[str] = field(default_factory=list)

    @property
    def dominates(self) -> bool:
        return bool(self.better) and not self.worse and not self.ties

    @property
    def weakly_dominates(self) -> bool:
        return bool(self.better) and not self.worse


def compare(a: dict[str, Value], b: dict[str, Value], objectives: list[Objective]) -> Comparison:
    result = Comparison()
    for o in objectives:
        if o.name not in a or o.name not in b:
            continue
        if beats(a[o.name], b[o.name], o.higher_is_better, o.min_relative_effect):
            result.better.append(o.name)
        elif beats(b[o.name], a[o.name], o.higher_is_better, o.min_relative_effect):
            result.worse.append(o.name)
        else:
            result.ties.append(o.name)
    return result


def dominates(a: dict[str, Value], b: dict[str, Value], objectives: list[Objective]) -> bool:
    """A beats B on every shared objective beyond noise."""
    return compare(a, b, objectives).dominates


@dataclass
class Standing:
    """One variant's place: who dominates it, who weakly does (and on what), who it ties with."""

    dominated_by: list[str] = field(default_factory=list)
    weakly_dominated_by: dict[str, Comparison] = field(default_factory=dict)
    ties_with: list[str] = field(default_factory=list)

    @property
    def on_frontier(self) -> bool:
        return not self.dominated_by and not self.weakly_dominated_by


def standings(points: dict[str, dict[str, Value]], objectives: list[Objective]) -> dict[str, Standing]:
    out: dict[str, Standing] = {}
    for name in points:
        standing = Standing()
        for other in points:
            if other == name:
                continue
            c = compare(points[other], points[name], objectives)
            if c.dominates:
                standing.dominated_by.append(other)
            elif c.weakly_dominates:
                standing.weakly_dominated_by[other] = c
            elif c.ties and not c.better and not c.worse:
                standing.ties_with.append(other)
        out[name] = standing
    return out

