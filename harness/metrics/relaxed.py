"""ChartQA relaxed accuracy: numbers within 5 % relative error, anything else exact (case-insensitive).

Source: google-research/pix2struct ``pix2struct/metrics.py`` ``relaxed_correctness`` (the reference
implementation ChartQA results are computed with; lmms-eval's chartqa task copies it), scored as
the maximum over the references (pix2struct ``aggregate_metrics``). Reproduced exactly:
- a string is a number if Python's ``float()`` accepts it; a trailing "%" is stripped and the value
  divided by 100, so "45%" equals "0.45" but not "45";
- the numeric path needs a non-zero target: a target of "0" is compared as a string ("0.0" ≠ "0");
- relative change = |pred − target| / |target| ≤ 0.05 (inclusive: 105 vs 100 is correct);
- otherwise ``prediction.lower() == target.lower()`` with no stripping (so "Yes." ≠ "yes").
"""

from __future__ import annotations

from typing import Any

from harness.metrics._base import Metric
from harness.registries import METRICS

MAX_RELATIVE_CHANGE = 0.05


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0  # percentages become fractions, as pix2struct
        return float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = MAX_RELATIVE_CHANGE) -> bool:
    """pix2struct's relaxed correctness of one prediction against one target."""
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        return abs(prediction_float - target_float) / abs(target_float) <= max_relative_change
    return prediction.lower() == target.lower()


@METRICS.register("relaxed_accuracy", "ChartQA relaxed accuracy: numbers within 5 % relative, else exact match")
class RelaxedAccuracy(Metric):
    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        return float(any(relaxed_correctness(str(ref), str(prediction)) for ref in references))
