"""One scorer for a mixed set whose references are words or boxes (nano-VQA's grounding kind
among its word answers): a reference that reads as a box ``[x1, y1, x2, y2]`` (normalised 0-1)
scores the prediction by IoU >= 0.5, the RefCOCO convention; any other reference by exact match.
Binary per item, so Wilson CIs and McNemar apply across the whole set."""

from __future__ import annotations

import re
from typing import Any

from harness.metrics._base import Metric
from harness.metrics._boxes import Box, parse_box
from harness.metrics.exact_match import normalize
from harness.metrics.grounding import THRESHOLD, best_iou, reference_boxes
from harness.registries import METRICS

BOX_REFERENCE = re.compile(r"^\s*\[[^\]]*\]\s*$")


def is_box(reference: str) -> bool:
    return bool(BOX_REFERENCE.match(str(reference))) and parse_box(str(reference), "normalized").box is not None


@METRICS.register("exact_match_or_box", "box references: IoU >= 0.5 (normalised boxes); other references: exact match")
class ExactMatchOrBox(Metric):
    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        boxes = [r for r in references if is_box(r)]
        if boxes and best_iou(parse_box(str(prediction), "normalized"), boxes, None) >= THRESHOLD:
            return 1.0
        answer = normalize(prediction)
        return float(any(answer == normalize(r) for r in references if not is_box(r)))

    def boxes(self, prediction: str, references: list[str],
              item: dict[str, Any] | None = None) -> tuple[Box | None, list[Box]] | None:
        refs = [r for r in references if is_box(r)]
        return (parse_box(str(prediction), "normalized").box, reference_boxes(refs, None)) if refs else None
