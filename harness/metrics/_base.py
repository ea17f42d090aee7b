"""The metric contract: a per-item scorer plus direction, unit and aggregation."""

from __future__ import annotations

from typing import ClassVar


class Metric:
    higher_is_better: ClassVar[bool] = True
    unit: ClassVar[str] = "fraction"
    aggregation: ClassVar[str] = "mean"
    binary: ClassVar[bool] = True  # per-item scores are 0/1 → Wilson CI and McNemar apply

    def score(self, prediction: str, references: list[str]) -> float:
        raise NotImplementedError
