"""Suite kind `lm-eval`: run lm-eval tasks (built-in, or local YAML tasks under `include_path`)
through the `fastvlm-harness` adapter, and return the result in the accuracy suite's shape
(score, n, 95 % CI, per-item scores) so aggregation, retention and the report need no special case.
The raw lm-eval metric table is kept under "lm_eval"."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.errors import ConfigError, DataError
from harness.registries import SUITE_KINDS
from harness.results.stats import bootstrap_ci, proportion_ci
from harness.spec.suite_files import SuiteConfig, search_dirs
from harness.suites._context import SuiteContext
from harness.suites._scored import ScoredKind


class LmEvalConfig(SuiteConfig):
    kind: Literal["lm-eval"] = "lm-eval"
    tasks: list[str] = Field(min_length=1)
    # folder of local task YAMLs, relative to the recipe dir or a suites/ dir (where suite files live)
    include_path: str | None = None
    # index lm-eval's ~14k built-in tasks too (default: only when include_path is not given; ~6 s)
    include_defaults: bool | None = None
    limit: int | None = Field(None, gt=0)
    num_fewshot: int | None = Field(None, ge=0)
    batch_size: int = Field(8, gt=0)
    max_gen_toks: int = Field(32, gt=0)
    gen_kwargs: dict[str, Any] | None = None
    apply_chat_template: bool = False
    # metric reported as the score (first one found per task); default: each task's first metric
    metrics: list[str] = Field(default_factory=list)
    bootstrap_iters: int = Field(1000, ge=0)


def resolve_include(config: LmEvalConfig, recipe_dir: Path | None) -> str | None:
    if config.include_path is None:
        return None
    path = Path(config.include_path).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        bases = ([recipe_dir] if recipe_dir else []) + search_dirs(recipe_dir)
        candidates = [base / path for base in bases]
    for candidate in candidates:
        if candidate.is_dir():
            return str(candidate.resolve())
    raise ConfigError(f"suite '{config.name}': include_path '{config.include_path}' is not a folder "
                      f"(looked in {', '.join(str(c.parent) for c in candidates)})")


def _metric_names(table: dict[str, Any]) -> list[str]:
    return [k.split(",")[0] for k in table if "," in k and "_stderr," not in k]


def _primary(config: LmEvalConfig, task: str, table: dict[str, Any]) -> tuple[str, str]:
    """(metric, "metric,filter" key) reported as the task's score."""
    names = _metric_names(table)
    wanted = [m for m in config.metrics if m in names] or ([] if config.metrics else names)
    if not wanted:
        raise DataError(f"suite '{config.name}': task '{task}' reports {names or 'no metrics'}, "
                        f"none of metrics {config.metrics}")
    key = next(k for k in table if k.split(",")[0] == wanted[0] and "_stderr," not in k)
    return wanted[0], key


def _item(task: str, sample: dict[str, Any], metric: str) -> dict[str, Any]:
    """One per-sample row in the accuracy suite's item shape."""
    arguments, filtered, target = sample["arguments"], sample["filtered_resps"], sample["target"]
    question = arguments[0][0]
    if filtered and isinstance(filtered[0], (list, tuple)):  # multiple choice: (loglik, greedy) per choice
        choices = [str(a[1]).strip() for a in arguments]
        best = max(range(len(filtered)), key=lambda i: filtered[i][0])
        prediction = choices[best]
        refs = [choices[target]] if isinstance(target, int) and 0 <= target < len(choices) else [str(target)]
    else:
        prediction = str(filtered[0]) if filtered else ""
        refs = [str(t) for t in target] if isinstance(target, list) else [str(target)]
    value = sample.get(metric)
    return {"id": f"{task}/{sample['doc_id']}", "group": task, "question": question, "references": refs,
            "prediction": prediction, "score": float(value) if isinstance(value, (int, float)) else None}


def _ci(score: float, stderr: Any, scores: list[float]) -> list[float]:
    """95 % CI: Wilson on binary per-item scores (as the accuracy suite), else lm-eval's stderr,
    else a percentile bootstrap of the per-item mean."""
    if scores and all(s in (0.0, 1.0) for s in scores):
        return list(proportion_ci(int(sum(scores)), len(scores)))
    if isinstance(stderr, (int, float)) and math.isfinite(stderr):
        return [score - 1.96 * stderr, score + 1.96 * stderr]
    if len(scores) >= 2:
        return list(bootstrap_ci(scores))
    return [float("nan"), float("nan")]


def summarize(config: LmEvalConfig, results: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's results → the accuracy suite's result shape (+ the raw table under "lm_eval")."""
    tables = results["results"]
    samples = results.get("samples", {})
    groups: dict[str, Any] = {}
    items: list[dict[str, Any]] = []
    higher: list[bool] = []
    metrics: list[str] = []
    for task in config.tasks:
        if task not in tables:
            raise DataError(f"suite '{config.name}': lm-eval returned no result for task '{task}'")
        metric, key = _primary(config, task, tables[task])
        metrics.append(metric)
        higher.append(bool(results.get("higher_is_better", {}).get(task, {}).get(metric, True)))
        rows = [_item(task, s, metric) for s in samples.get(task, [])]
        task_scores = [r["score"] for r in rows if r["score"] is not None]
        score = float(tables[task][key])
        stderr = tables[task].get(key.replace(",", "_stderr,", 1))
        n = int(results.get("n-samples", {}).get(task, {}).get("effective", len(rows)))
        groups[task] = {"score": score, "n": n, "ci": _ci(score, stderr, task_scores), "metric": metric}
        items += rows
    scored = [it for it in items if it["score"] is not None]
    if len(groups) == 1:
        overall = dict(next(iter(groups.values())))
    else:  # several tasks: the item-weighted mean, as lm-eval's groups aggregate
        values = [it["score"] for it in scored]
        overall = {"score": sum(values) / len(values) if values else float("nan"), "n": len(values),
                   "ci": _ci(float("nan"), None, values)}
    overall.pop("metric", None)
    metric = metrics[0] if len(set(metrics)) == 1 else "/".join(dict.fromkeys(metrics))
    return {"metric": metric, "higher_is_better": all(higher), **overall,
            "binary": bool(scored) and all(it["score"] in (0.0, 1.0) for it in scored),
            "groups": groups if len(groups) > 1 else {}, "items": scored if len(scored) == len(items) else [],
            "lm_eval": {task: {k: v for k, v in tables[task].items() if k != "alias"} for task in config.tasks},
            "lm_eval_versions": results.get("versions", {})}


@SUITE_KINDS.register("lm-eval", "any lm-eval task (built-in or local YAML) through the fastvlm-harness adapter")
class LmEval(ScoredKind):
    Config = LmEvalConfig

    def run(self, config: LmEvalConfig, ctx: SuiteContext) -> dict[str, Any]:
        from harness.errors import require

        require("lm_eval", "eval", "suite kind lm-eval")
        import lm_eval
        from lm_eval.tasks import TaskManager

        from harness.lmeval.adapter import HarnessLM
        from harness.suites._response_cache import for_suite

        include = resolve_include(config, ctx.recipe_dir)
        defaults = config.include_defaults if config.include_defaults is not None else include is None
        manager = TaskManager(include_path=include, include_defaults=defaults, verbosity="ERROR")
        missing = [t for t in config.tasks if t not in manager.all_tasks]
        if missing:
            from harness.registry import did_you_mean

            raise ConfigError(f"suite '{config.name}': unknown lm-eval task '{missing[0]}'"
                              f"{did_you_mean(missing[0], manager.all_tasks)}")
        cache = for_suite(ctx, config.name, config.version)
        lm = HarnessLM(session=ctx.session(), runtime=ctx.runtime_name, batch_size=config.batch_size,
                       max_gen_toks=config.max_gen_toks, cache=cache)
        start = time.perf_counter()
        try:
            results = lm_eval.simple_evaluate(
                model=lm, tasks=list(config.tasks), num_fewshot=config.num_fewshot, limit=config.limit,
                batch_size=config.batch_size, gen_kwargs=config.gen_kwargs, task_manager=manager,
                log_samples=True, apply_chat_template=config.apply_chat_template,
                bootstrap_iters=config.bootstrap_iters, verbosity="ERROR")
        finally:
            cache.close()
        result = summarize(config, results)
        result.update({"cache": cache.summary(),
                       "seconds": time.perf_counter() - start, "meaningful": not ctx.random_weights})
        return result
