"""Reference boxes from a dataset's box column, in the form the grounding metrics read.

Why: RefCOCO / RefCOCO+ / RefCOCOg (lmms-lab) store the COCO annotation box ``bbox`` as
``[x, y, w, h]`` in pixels, while the ``box_iou*`` metrics take references as normalised
``"[x1, y1, x2, y2]"`` strings. lmms-eval's ``refcoco_bbox_rec_preprocess_dataset``
(``lmms_eval/tasks/refcoco/utils_rec.py``) converts with the image's own width and height; this
does the same, per item, so the suite file only declares the column and its format::

    box_reference: {column: bbox, format: xywh}          # COCO pixels (the default units)

The image size comes from the dataset's ``image_width`` / ``image_height`` columns when it has
them, else from the image itself. A box that cannot be read (not 4 finite numbers, no area, outside
the image) is a bad item: the suite's ``on_bad_item`` policy applies, it is never dropped.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

SIZE_COLUMNS = ("image_width", "image_height")
TOLERANCE = 1.0  # pixels (or 1/1000 of the image, normalised) a box may stick out: annotation rounding


class BoxReference(BaseModel):
    """Where the reference box is and how it is written."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: str
    format: Literal["xywh", "xyxy"] = "xywh"  # COCO [x, y, w, h] or corners [x1, y1, x2, y2]
    units: Literal["pixels", "normalized"] = "pixels"


def corners(value: Any, spec: BoxReference) -> tuple[float, float, float, float]:
    """The box as (x1, y1, x2, y2) in its own units; ValueError saying what is wrong."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"expected a box of 4 numbers, got {type(value).__name__} {value!r:.60}")
    try:
        a, b, c, d = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"box {value!r:.60} holds a non-number") from None
    if not all(math.isfinite(v) for v in (a, b, c, d)):
        raise ValueError(f"box {value!r:.60} holds a non-finite number")
    x1, y1, x2, y2 = (a, b, a + c, b + d) if spec.format == "xywh" else (a, b, c, d)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {value!r:.60} ({spec.format}) has no area")
    return x1, y1, x2, y2


def reference(value: Any, spec: BoxReference, size: tuple[float, float] | None) -> str:
    """The normalised "[x1, y1, x2, y2]" reference; ValueError for a box outside the image."""
    x1, y1, x2, y2 = corners(value, spec)
    if spec.units == "pixels":
        if size is None:
            raise ValueError("pixel box but the image size is unknown")
        width, height = size
        x1, x2, y1, y2 = x1 / width, x2 / width, y1 / height, y2 / height
        slack_x, slack_y = TOLERANCE / width, TOLERANCE / height
    else:
        slack_x = slack_y = TOLERANCE / 1000
    if x1 < -slack_x or y1 < -slack_y or x2 > 1 + slack_x or y2 > 1 + slack_y:
        raise ValueError(f"box {value!r:.60} lies outside the image" + (f" ({size[0]:g}x{size[1]:g})" if size else ""))
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    return f"[{x1:.6g}, {y1:.6g}, {x2:.6g}, {y2:.6g}]"
