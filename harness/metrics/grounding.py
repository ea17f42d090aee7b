"""Referring-expression grounding (RefCOCO, RefCOCO+, RefCOCOg): the predicted box against the reference.

Convention: RefCOCO "Acc@0.5" as the reference scripts compute it (InternVL
``internvl_chat/eval/refcoco/evaluate_grounding.py``, Qwen-VL ``eval_mm/evaluate_grounding.py``: a
prediction is correct when its IoU with the reference box is ≥ 0.5). Per item the score is 1 when
the best IoU over the references is ≥ 0.5, so it is binary and Wilson CIs and McNemar apply. ``corpus`` adds
``mean_iou``, ``acc@0.5``, ``acc@0.75`` and ``unparseable``: predictions no parser could read score
0 and are counted (with the reasons in ``notes``), never raised.

Which format a model writes is chosen by the metric's name, because metrics are built by name with
no arguments: ``box_iou`` detects the format by syntax (Qwen2-VL tuples, InternVL ``[[…]]``, a plain
``[…]``), and ``box_iou_<format>`` forces one (``normalized``, ``pixels``, ``qwen2vl``,
``internvl``); see ``harness.metrics._boxes``. Pixel boxes need the image size, read from the item
fields ``image_width`` / ``image_height`` (same-named columns, or ``item_columns``).

References are box strings, normalised ``"[x1, y1, x2, y2]"`` (pixels too when the item has the image
size); a reference that cannot be read is a data error.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, ClassVar

from harness.errors import DataError
from harness.metrics._base import Metric
from harness.metrics._boxes import Box, Parsed, iou, parse_box
from harness.registries import METRICS

THRESHOLD = 0.5


def image_size(item: dict[str, Any] | None) -> tuple[float, float] | None:
    """(width, height) from the item, None when absent or not positive numbers."""
    if not item:
        return None
    try:
        width, height = float(item["image_width"]), float(item["image_height"])
    except (KeyError, TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 and math.isfinite(width + height) else None


def reference_boxes(references: list[str], size: tuple[float, float] | None) -> list[Box]:
    """The reference boxes (normalised, or pixels with the image size); DataError if one is unreadable."""
    boxes = []
    for ref in references:
        parsed = parse_box(str(ref), "plain", size)
        if parsed.box is None:
            raise DataError(f"box_iou: cannot read reference box {str(ref)[:60]!r} ({parsed.reason}); "
                            "want '[x1, y1, x2, y2]' normalised 0-1, or pixels with image_width/image_height")
        boxes.append(parsed.box)
    return boxes


def best_iou(parsed: Parsed, references: list[str], item: dict[str, Any] | None) -> float:
    """The prediction's best IoU over the references; 0 for an unparseable prediction."""
    refs = reference_boxes(references, image_size(item))
    if parsed.box is None:
        return 0.0
    return max(iou(parsed.box, ref) for ref in refs)


class BoxIoU(Metric):
    """Acc@0.5 of the predicted box; subclasses fix the box format."""

    box_format: ClassVar[str] = "auto"
    item_fields = ("image_width", "image_height")

    def parse(self, prediction: str, item: dict[str, Any] | None) -> Parsed:
        return parse_box(str(prediction), self.box_format, image_size(item))

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        return float(best_iou(self.parse(prediction, item), references, item) >= THRESHOLD)

    def boxes(self, prediction: str, references: list[str],
              item: dict[str, Any] | None = None) -> tuple[Box | None, list[Box]] | None:
        try:
            refs = reference_boxes(references, image_size(item))
        except DataError:
            return None
        return self.parse(str(prediction), item).box, refs

    def corpus(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            return {}
        parsed = [self.parse(it["prediction"], it) for it in items]
        ious = [best_iou(p, it["references"], it) for p, it in zip(parsed, items, strict=True)]
        reasons = Counter(p.reason for p in parsed if p.box is None)
        out: dict[str, Any] = {"mean_iou": sum(ious) / len(ious),
                               "acc@0.5": sum(v >= 0.5 for v in ious) / len(ious),
                               "acc@0.75": sum(v >= 0.75 for v in ious) / len(ious),
                               "unparseable": float(sum(reasons.values()))}
        if reasons:
            out["notes"] = [f"{n} unparseable prediction(s): {reason}" for reason, n in sorted(reasons.items())]
        return out


@METRICS.register("box_iou", "Grounding Acc@0.5 (IoU >= 0.5), box format detected by syntax; mean IoU per corpus")
class BoxIoUAuto(BoxIoU):
    box_format = "auto"


@METRICS.register("box_iou_normalized", "Grounding Acc@0.5, boxes [x1, y1, x2, y2] normalised 0-1")
class BoxIoUNormalized(BoxIoU):
    box_format = "normalized"


@METRICS.register("box_iou_pixels", "Grounding Acc@0.5, boxes [x1, y1, x2, y2] in pixels (needs image size)")
class BoxIoUPixels(BoxIoU):
    box_format = "pixels"


@METRICS.register("box_iou_qwen2vl", "Grounding Acc@0.5, Qwen2-VL <|box_start|>(x1,y1),(x2,y2)<|box_end|> on 0-1000")
class BoxIoUQwen2VL(BoxIoU):
    box_format = "qwen2vl"


@METRICS.register("box_iou_internvl", "Grounding Acc@0.5, InternVL <box>[[x1, y1, x2, y2]]</box> on 0-1000")
class BoxIoUInternVL(BoxIoU):
    box_format = "internvl"
