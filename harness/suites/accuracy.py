"""Accuracy suite: answer every item greedily, score it with a registered metric, and report
the score with a 95 % CI overall and per group (e.g. question kind). Per-item results are kept
so retention and agreement against the baseline are computed as paired statistics."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.data.sources import DatasetSpec, load_split
from harness.errors import DataError
from harness.registries import METRICS, SUITE_KINDS
from harness.stats import proportion_ci
from harness.suites._context import SuiteContext
from harness.suites._spec import SuiteConfig


class AccuracyConfig(SuiteConfig):
    kind: Literal["accuracy"] = "accuracy"
    dataset: DatasetSpec
    limit: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    max_new_tokens: int = Field(8, gt=0)
    metric: str = "exact_match"
    question_column: str = "question"
    answer_column: str = "answer"
    group_by: str | None = None
    id_column: str = "id"


def predict(session: Any, dataset: Any, config: AccuracyConfig) -> list[str]:
    answers: list[str] = []
    for begin in range(0, len(dataset), config.batch_size):
        rows = dataset[begin : begin + config.batch_size]
        answers += session.generate(rows["image"], rows[config.question_column],
                                    max_new_tokens=config.max_new_tokens).texts
    return answers


def score_items(config: AccuracyConfig, dataset: Any, answers: list[str]) -> dict[str, Any]:
    metric = METRICS.get(config.metric)()
    refs = dataset[config.answer_column]
    ids = dataset[config.id_column] if config.id_column in dataset.column_names else \
        [str(i) for i in range(len(dataset))]
    groups = dataset[config.group_by] if config.group_by else [None] * len(dataset)
    items = []
    for item_id, question, ref, answer, group in zip(ids, dataset[config.question_column], refs, answers, groups):
        references = ref if isinstance(ref, list) else [ref]
        items.append({"id": str(item_id), "group": group, "question": question,
                      "references": [str(r) for r in references], "prediction": answer,
                      "score": metric.score(answer, references)})
    return {"metric": config.metric, "higher_is_better": metric.higher_is_better,
            **_aggregate([it["score"] for it in items], metric.binary),
            "groups": {g: _aggregate([it["score"] for it in items if it["group"] == g], metric.binary)
                       for g in sorted({str(it["group"]) for it in items if it["group"] is not None})},
            "items": items}


def _aggregate(scores: list[float], binary: bool) -> dict[str, Any]:
    n = len(scores)
    mean = sum(scores) / n if n else float("nan")
    ci = proportion_ci(int(round(sum(scores))), n) if binary else (float("nan"), float("nan"))
    return {"score": mean, "n": n, "ci": list(ci)}


@SUITE_KINDS.register("accuracy", "score answers on a dataset with a metric, with 95 % CIs and per-group breakdown")
class Accuracy:
    Config = AccuracyConfig

    def run(self, config: AccuracyConfig, ctx: SuiteContext) -> dict[str, Any]:
        dataset = load_split(config.dataset, ctx.recipe_dir)
        for column in ("image", config.question_column, config.answer_column):
            if column not in dataset.column_names:
                raise DataError(f"suite '{config.name}': dataset {config.dataset.name} has no column '{column}'")
        if config.limit:
            dataset = dataset.select(range(min(config.limit, len(dataset))))
        start = time.perf_counter()
        answers = predict(ctx.session(), dataset, config)
        result = score_items(config, dataset, answers)
        result["seconds"] = time.perf_counter() - start
        result["meaningful"] = not ctx.random_weights
        return result


def evaluate_exact_match(session: Any, dataset: Any, batch_size: int = 32) -> dict[str, Any]:
    """Exact match overall and per kind (the nano build's own check)."""
    config = AccuracyConfig(name="nano-vqa", dataset=DatasetSpec(name="nano-vqa"), batch_size=batch_size,
                            max_new_tokens=4, group_by="kind")
    result = score_items(config, dataset, predict(session, dataset, config))
    return {"exact_match": result["score"], "ci": result["ci"], "n": result["n"],
            "per_kind": {k: v["score"] for k, v in result["groups"].items()}}
