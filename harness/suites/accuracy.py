"""Accuracy suite: answer every item greedily, score it with a registered metric, and report
the score with a 95 % CI overall and per group (e.g. question kind). Per-item results are kept
so retention and agreement against the baseline are computed as paired statistics."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.data.sources import DatasetSpec, load_split
from harness.errors import DataError
from harness.metrics._base import corpus_of, score_all
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
    # extra per-item fields a metric reads → dataset column (or list of columns, gathered into a list),
    # e.g. {options: choices} or {options: [choice_a, choice_b, choice_c, choice_d]}; fields the metric
    # names in `item_fields` are also copied from same-named columns without being listed here
    item_columns: dict[str, str | list[str]] = Field(default_factory=dict)


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
    extras = _item_columns(metric, config, dataset)
    items = []
    for index, (item_id, question, ref, answer, group) in enumerate(
            zip(ids, dataset[config.question_column], refs, answers, groups)):
        references = ref if isinstance(ref, list) else [ref]
        items.append({"id": str(item_id), "group": group, "question": question,
                      "references": [str(r) for r in references], "prediction": answer,
                      **{name: values[index] for name, values in extras.items()}})
    for item, score in zip(items, score_all(metric, items), strict=True):
        item["score"] = score
    corpus = corpus_of(metric, items)
    return {"metric": config.metric, "higher_is_better": metric.higher_is_better,
            **_aggregate([it["score"] for it in items], metric.binary),
            "groups": {g: _aggregate([it["score"] for it in items if it["group"] == g], metric.binary)
                       for g in sorted({str(it["group"]) for it in items if it["group"] is not None})},
            **({"corpus": corpus} if corpus else {}),
            "items": items}


def _item_columns(metric: Any, config: AccuracyConfig, dataset: Any) -> dict[str, list[Any]]:
    """Values of the extra item fields: the suite's item_columns, and the metric's own fields when the
    dataset has same-named columns (a metric that cannot work without one says so itself)."""
    wanted: dict[str, str | list[str]] = {f: f for f in getattr(metric, "item_fields", ())
                                          if f in dataset.column_names}
    wanted |= config.item_columns
    out: dict[str, list[Any]] = {}
    for name, columns in wanted.items():
        for column in [columns] if isinstance(columns, str) else columns:
            if column not in dataset.column_names:
                raise DataError(f"suite '{config.name}': item_columns '{name}' names column '{column}', which dataset "
                                f"{config.dataset.name} lacks")
        out[name] = dataset[columns] if isinstance(columns, str) else \
            [list(row) for row in zip(*(dataset[c] for c in columns))]
    return out


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
