"""SpatialLM structured-layout scorer: per-class F1 of walls, doors, windows and object boxes.

Source: SpatialLM's ``eval.py`` (manycore-research/SpatialLM; the copy read is a fork's) and the
SpatialLM paper, which report per-class F1 at IoU 0.25 and 0.5. Both the prediction and the single
reference are layout texts in SpatialLM's language, in metres (its saved layouts, i.e. after
``undiscretize_and_unnormalize``; raw bin tokens must be converted first — the 5°/0.2 m/0.1 m
tolerances are metric). Parsing, geometry, IoU and matching are in ``harness.metrics._layout``:
walls/doors/windows by 2D IoU of their vertical rectangles, objects (``Bbox``) by oriented 3D IoU,
one-to-one Hungarian matching per class.

Per item: F1 at IoU 0.25 pooled over the item's classes (2·TP / (predictions + references), 1 when
both layouts are empty), a graded score in [0, 1], so ``binary = False``. Corpus, as eval.py
aggregates: for each class, precision, recall and F1 at 0.25 and 0.5 averaged over the scenes where
that class occurs in the prediction or the reference (``<class>.scenes`` of them), plus the mean
pooled ``f1@0.25`` / ``f1@0.5`` and counts: ``malformed`` prediction lines (unreadable lines are
skipped, never fatal), ``orphans`` (doors/windows naming a missing wall), ``degenerate`` (walls
without length, and what is on them), ``reference_malformed``. Object classes are compared as
written (lowercased, ``_`` as space): eval.py first maps them to its 20 benchmark categories; a
dataset should store mapped names.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from harness.errors import DataError
from harness.metrics._base import Metric
from harness.metrics._layout import Counts, class_counts, parse_layout, prf, shapes_of
from harness.registries import METRICS

THRESHOLDS = (0.25, 0.5)


@dataclass(frozen=True)
class LayoutEval:
    counts: Counts
    malformed: int
    orphans: int
    degenerate: int
    reference_malformed: int


@lru_cache(maxsize=1024)
def evaluate(prediction: str, reference: str) -> LayoutEval:
    """One scene: per-class counts at each threshold and what could not be scored (cached: score_all
    and corpus see the same pairs)."""
    pred_layout, ref_layout = parse_layout(prediction), parse_layout(reference)
    pred, ref = shapes_of(pred_layout), shapes_of(ref_layout)
    return LayoutEval(class_counts(pred, ref, THRESHOLDS), pred_layout.malformed, pred.orphans, pred.degenerate,
                      ref_layout.malformed)


def pooled_f1(counts: Counts, threshold: float) -> float:
    """2·TP / (predictions + references) over all classes; 1 when both layouts are empty."""
    tp = sum(c[threshold][0] for c in counts.values())
    total = sum(c[threshold][1] + c[threshold][2] for c in counts.values())
    return 2 * tp / total if total else 1.0


def _reference(references: list[str]) -> str:
    if len(references) != 1:
        raise DataError(f"spatiallm_layout wants one reference layout per item, got {len(references)}")
    return str(references[0])


def layout_corpus(evals: list[LayoutEval]) -> dict[str, Any]:
    """Per-class P/R/F1 averaged over the scenes with the class (eval.py's masked mean), and counts."""
    per_class: dict[str, list[dict[float, tuple[int, int, int]]]] = defaultdict(list)
    for ev in evals:
        for cls, by_threshold in ev.counts.items():
            per_class[cls].append(by_threshold)
    out: dict[str, Any] = {f"f1@{t:g}": sum(pooled_f1(ev.counts, t) for ev in evals) / len(evals) for t in THRESHOLDS}
    for cls, scenes in sorted(per_class.items()):
        out[f"{cls}.scenes"] = float(len(scenes))
        for t in THRESHOLDS:
            values = [prf(*scene[t]) for scene in scenes]
            for i, name in enumerate(("precision", "recall", "f1")):
                out[f"{cls}.{name}@{t:g}"] = sum(v[i] for v in values) / len(values)
    for name in ("malformed", "orphans", "degenerate", "reference_malformed"):
        out[name] = float(sum(getattr(ev, name) for ev in evals))
    notes = [f"{int(out[name])} {what}" for name, what in (
        ("malformed", "malformed prediction line(s) skipped"),
        ("orphans", "predicted door/window line(s) naming a missing wall skipped"),
        ("reference_malformed", "malformed reference line(s) skipped")) if out[name]]
    if notes:
        out["notes"] = notes
    return out


@METRICS.register("spatiallm_layout", "SpatialLM layout: F1@0.25 per scene; per-class P/R/F1 at IoU 0.25 and 0.5")
class SpatialLMLayout(Metric):
    binary = False

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        return pooled_f1(evaluate(str(prediction), _reference(references)).counts, THRESHOLDS[0])

    def class_scores(self, prediction: str, references: list[str]) -> dict[str, float]:
        """F1@0.25 of each class present in the prediction or the reference: the `layout` suite kind's
        per-class groups (their means are eval.py's masked per-class F1)."""
        counts = evaluate(str(prediction), _reference(references)).counts
        return {cls: prf(*by_threshold[THRESHOLDS[0]])[2] for cls, by_threshold in sorted(counts.items())}

    def corpus(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            return {}
        return layout_corpus([evaluate(str(it["prediction"]), _reference(it["references"])) for it in items])
