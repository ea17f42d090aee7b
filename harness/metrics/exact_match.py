"""Exact match after light normalisation (case, surrounding space, a trailing period)."""

from __future__ import annotations

from typing import Any

from harness.metrics._base import Metric
from harness.registries import METRICS


def normalize(text: str) -> str:
    return " ".join(str(text).lower().strip().rstrip(".").split())


@METRICS.register("exact_match", "1 if the normalised answer equals any reference, else 0")
class ExactMatch(Metric):
    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        answer = normalize(prediction)
        return float(any(answer == normalize(ref) for ref in references))
