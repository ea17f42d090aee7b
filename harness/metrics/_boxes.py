"""2D boxes for grounding: read the box a model wrote (per model family) and compare boxes by IoU.

Every box is brought to one form, ``(x1, y1, x2, y2)`` normalised to the image (0–1), so that boxes
written on different grids compare directly. IoU is invariant to scaling each axis, so IoU in
normalised coordinates equals IoU in pixels.

Formats (``BOX_FORMATS``), chosen per model family as prompt templates are:
- ``normalized``: ``[x1, y1, x2, y2]`` in 0–1 (LLaVA / FastVLM RefCOCO style);
- ``pixels``: ``[x1, y1, x2, y2]`` in pixels of the image (needs its width and height);
- ``qwen2vl``: Qwen2-VL's ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` on a 0–1000 grid; the special
  tokens are optional because decoding with ``skip_special_tokens`` drops them (Qwen-VL's
  ``<box>(x1,y1),(x2,y2)</box>`` reads the same; its ``eval_mm/evaluate_grounding.py`` divides by
  999, not 1000, which moves IoU by about 0.1 %);
- ``internvl``: InternVL's ``<box>[[x1, y1, x2, y2]]</box>`` on a 0–1000 grid, tags optional; as
  InternVL's ``eval/refcoco/evaluate_grounding.py``, a box whose coordinates sum to less than 4 is
  read as already normalised;
- ``plain``: ``[x1, y1, x2, y2]`` read as normalised when every value is in 0–1, else as pixels;
- ``auto``: by syntax — a pair of ``(x,y)`` tuples is Qwen's grid, ``[[…]]`` InternVL's grid, a
  single ``[…]`` is ``plain``.

A forced family format also accepts a single ``[x1, y1, x2, y2]`` on its own grid (a model that
drops the tags). The first box in the text is the answer. Corners are put in order (x2 < x1 is
swapped), clipped to the image, and a zero-area box overlaps nothing (IoU 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

Box = tuple[float, float, float, float]

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_SEP = r"\s*,\s*"
SINGLE = re.compile(r"[\[(]\s*" + _SEP.join([_NUM] * 4) + r"\s*[\])]")
DOUBLE = re.compile(r"\[\s*\[\s*" + _SEP.join([_NUM] * 4) + r"\s*\]")
TUPLES = re.compile(r"\(\s*" + _NUM + _SEP + _NUM + r"\s*\)" + _SEP + r"\(\s*" + _NUM + _SEP + _NUM + r"\s*\)")
GRID = 1000.0  # Qwen2-VL and InternVL write coordinates on a 0–1000 grid


@dataclass(frozen=True)
class Parsed:
    """A normalised box, or None with the reason no box could be read (counted, never raised)."""

    box: Box | None
    reason: str = ""


def _numbers(pattern: re.Pattern[str], text: str) -> list[float] | None:
    match = pattern.search(text)
    if match is None:
        return None
    values = [float(v) for v in match.groups()]
    return values if all(math.isfinite(v) for v in values) else None


def normalise(values: list[float], scale_x: float, scale_y: float) -> Box:
    """Divide by the grid/image size, order the corners and clip to the image."""
    x1, x2 = sorted((values[0] / scale_x, values[2] / scale_x))
    y1, y2 = sorted((values[1] / scale_y, values[3] / scale_y))
    return (min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0), min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0))


def _on_grid(values: list[float] | None, what: str) -> Parsed:
    return Parsed(normalise(values, GRID, GRID)) if values else Parsed(None, f"no {what} box")


def parse_normalized(text: str, size: tuple[float, float] | None = None) -> Parsed:
    values = _numbers(SINGLE, text)
    return Parsed(normalise(values, 1.0, 1.0)) if values else Parsed(None, "no [x1, y1, x2, y2] box")


def parse_pixels(text: str, size: tuple[float, float] | None = None) -> Parsed:
    values = _numbers(SINGLE, text)
    if values is None:
        return Parsed(None, "no [x1, y1, x2, y2] box")
    if size is None:
        return Parsed(None, "pixel box but the item has no image_width/image_height")
    return Parsed(normalise(values, size[0], size[1]))


def parse_plain(text: str, size: tuple[float, float] | None = None) -> Parsed:
    """Normalised when every value is within 0–1, else pixels (which need the image size)."""
    values = _numbers(SINGLE, text)
    if values is None:
        return Parsed(None, "no [x1, y1, x2, y2] box")
    if all(0.0 <= v <= 1.0 for v in values):
        return Parsed(normalise(values, 1.0, 1.0))
    return parse_pixels(text, size)


def parse_qwen2vl(text: str, size: tuple[float, float] | None = None) -> Parsed:
    values = _numbers(TUPLES, text)
    return _on_grid(values if values is not None else _numbers(SINGLE, text), "(x1,y1),(x2,y2)")


def parse_internvl(text: str, size: tuple[float, float] | None = None) -> Parsed:
    values = _numbers(DOUBLE, text)
    values = values if values is not None else _numbers(SINGLE, text)
    if values is not None and sum(values) < 4:  # InternVL's rule: such a box is already normalised
        return Parsed(normalise(values, 1.0, 1.0))
    return _on_grid(values, "[[x1, y1, x2, y2]]")


def parse_auto(text: str, size: tuple[float, float] | None = None) -> Parsed:
    """The format the syntax names: whichever box pattern occurs first in the text."""
    found = [(m.start(), parser) for pattern, parser in ((TUPLES, parse_qwen2vl), (DOUBLE, parse_internvl),
                                                         (SINGLE, parse_plain))
             if (m := pattern.search(text)) is not None]
    if not found:
        return Parsed(None, "no box")
    start, parser = min(found, key=lambda f: f[0])  # ties: tuples, then [[…]], then […] (the list order)
    return parser(text[start:], size)


BOX_FORMATS: dict[str, Callable[[str, tuple[float, float] | None], Parsed]] = {
    "auto": parse_auto, "plain": parse_plain, "normalized": parse_normalized, "pixels": parse_pixels,
    "qwen2vl": parse_qwen2vl, "internvl": parse_internvl,
}


def parse_box(text: str, box_format: str = "auto", size: tuple[float, float] | None = None) -> Parsed:
    """The first box in `text`, read with the named format; a KeyError names an unknown format."""
    return BOX_FORMATS[box_format](str(text), size)


def area(box: Box) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ordered boxes; 0 when the union has no area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0
