"""The metric contract: a per-item scorer plus direction, unit and aggregation.

Per item, ``score(prediction, references, item=None)``: ``item`` is the per-item dict the accuracy
suite builds (``id``, ``group``, ``question``, ``references``, ``prediction`` and the extra fields
the metric names in ``item_fields``, e.g. ``options``), for scorers that need more than the answer.
A metric written against the older two-argument ``score(prediction, references)`` keeps working:
``call_score`` passes ``item`` only to a ``score`` that accepts it.

Some numbers only exist over the whole set, so there are two optional corpus-level hooks:
``score_all(items)`` returns every per-item score at once (CIDEr's per-image value depends on the
IDF of the whole set) and ``corpus(items)`` returns corpus-only numbers (POPE F1, MME score, BLEU)
that the accuracy suite stores under ``result["corpus"]``. The defaults keep the per-item path and
report nothing, so existing metrics and results are unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from harness.metrics._boxes import Box


class Metric:
    higher_is_better: ClassVar[bool] = True
    unit: ClassVar[str] = "fraction"
    aggregation: ClassVar[str] = "mean"
    binary: ClassVar[bool] = True  # per-item scores are 0/1 → Wilson CI and McNemar apply
    # Item fields (beyond id/group/question/references/prediction) this metric reads; the accuracy
    # suite copies them from same-named dataset columns, or from the columns `item_columns` names.
    item_fields: ClassVar[tuple[str, ...]] = ()

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        raise NotImplementedError

    def score_all(self, items: list[dict[str, Any]]) -> list[float]:
        """Every item's score; override when a per-item value needs the whole set."""
        return [call_score(self, it) for it in items]

    def corpus(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Corpus-level numbers (name → float; an optional "notes" list of strings); {} when none."""
        return {}

    def boxes(self, prediction: str, references: list[str],
              item: dict[str, Any] | None = None) -> tuple[Box | None, list[Box]] | None:
        """For a grounding metric, the predicted box (None if unreadable) and the reference boxes,
        normalised (x1, y1, x2, y2), so the report can draw them; None for a metric without boxes."""
        return None


def accepts_item(score: Callable[..., Any]) -> bool:
    """Whether a `score` method takes the `item` keyword (new contract) or only two arguments (old)."""
    try:
        params = inspect.signature(score).parameters
    except (TypeError, ValueError):
        return False
    return "item" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_score(metric: Any, item: dict[str, Any]) -> float:
    """One item's score through either form of `score`."""
    if accepts_item(metric.score):
        return float(metric.score(item["prediction"], item["references"], item=item))
    return float(metric.score(item["prediction"], item["references"]))


def score_all(metric: Any, items: list[dict[str, Any]]) -> list[float]:
    """Per-item scores from any metric object (one without `score_all` is scored item by item)."""
    method = getattr(metric, "score_all", None)
    scores = method(items) if callable(method) else [call_score(metric, it) for it in items]
    return [float(s) for s in scores]


def corpus_of(metric: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The metric's corpus-level numbers, {} for metrics without the hook."""
    method = getattr(metric, "corpus", None)
    return dict(method(items) or {}) if callable(method) else {}
