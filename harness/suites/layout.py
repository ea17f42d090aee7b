"""Layout suite: score SpatialLM-format layout files — predictions against references — with a layout
metric (``spatiallm_layout``: 3D IoU matching at 0.25 and 0.5, per-class P/R/F1, malformed lines counted).

Why a kind of its own rather than an accuracy data source: no model runs here. SpatialLM predicts
layouts from point clouds, which this harness does not load; its predictions arrive as files
(one ``<scene>.txt`` per scene, SpatialLM's layout language: ``wall_0=Wall(...)``,
``door_0=Door(wall_0, ...)``, ``window_0=Window(...)``, ``bbox_0=Bbox(class,x,y,z,angle_z,sx,sy,sz)``),
so the kind reads files only (``needs_session = False``: it is scored even on a runtime that cannot
load the artifact). Results have the scored shape (``metric``, ``score``, ``ci``, ``n``, ``items``)
so they reach results.json, the report, ``harness compare`` and the gate like accuracy results.

Items are scenes (the reference files), scored by the metric; ``groups`` are per object/layout class:
the class's F1@0.25 over the scenes where it occurs (the metric's ``class_scores``). A reference
without a prediction file is a failed item: scored 0, counted in ``failed_items``, left out of the
corpus numbers. Prediction files without a reference are counted in ``unmatched_predictions``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from harness.errors import DataError
from harness.registries import METRICS, SUITE_KINDS
from harness.registry import did_you_mean
from harness.results.stats import bootstrap_ci
from harness.spec.suite_files import SuiteConfig
from harness.suites._context import SuiteContext
from harness.suites._scored import ScoredKind, score_with_failures


class LayoutConfig(SuiteConfig):
    kind: Literal["layout"] = "layout"
    # folders (absolute, or relative to a data dir, the recipe's folder or the working directory)
    references: str
    predictions: str
    pattern: str = Field("*.txt", min_length=1)  # the scene files in `references`; a prediction has the same name
    metric: str = "spatiallm_layout"

    @field_validator("metric")
    @classmethod
    def _layout_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric '{metric}'{did_you_mean(metric, METRICS.names())}")
        return metric


def find_folder(path: str, recipe_dir: Path | None) -> Path | None:
    """The first existing folder `path` names (data dirs, then the recipe folder, then the cwd)."""
    from harness.data.sources import data_dirs

    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else \
        [d / given for d in data_dirs()] + ([recipe_dir / given] if recipe_dir else []) + [Path.cwd() / given]
    return next((c for c in candidates if c.is_dir()), None)


def _folder(config: LayoutConfig, field: str, recipe_dir: Path | None) -> Path:
    folder = find_folder(getattr(config, field), recipe_dir)
    if folder is None:
        raise DataError(f"suite '{config.name}': {field} folder '{getattr(config, field)}' not found (looked in the "
                        "data dirs, the recipe's folder and the working directory)")
    return folder


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None


def scene_items(config: LayoutConfig, references: Path, predictions: Path) -> list[dict[str, Any]]:
    """One item per reference scene file; a missing or unreadable prediction marks the item failed."""
    files = sorted(p for p in references.glob(config.pattern) if p.is_file())
    if not files:
        raise DataError(f"suite '{config.name}': no reference layouts '{config.pattern}' in {references}")
    items = []
    for ref in files:
        try:
            reference = _read(ref)
        except ValueError as exc:
            raise DataError(f"suite '{config.name}': reference {ref}: {exc}") from None
        item: dict[str, Any] = {"id": ref.stem, "group": None, "question": "", "references": [reference],
                                "prediction": None}
        pred = predictions / ref.relative_to(references)
        try:
            if not pred.is_file():
                raise ValueError(f"no file {pred}")
            item["prediction"] = _read(pred)
        except ValueError as exc:
            item["failed"] = f"prediction: {exc}"
        items.append(item)
    return items


def _aggregate(scores: list[float]) -> dict[str, Any]:
    return {"score": sum(scores) / len(scores), "n": len(scores), "ci": list(bootstrap_ci(scores))}


def class_groups(metric: Any, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per class: its F1 over the scenes where it occurs (a metric without `class_scores` has none)."""
    per_class: dict[str, list[float]] = {}
    if not callable(getattr(metric, "class_scores", None)):
        return {}
    for item in items:
        for cls, f1 in metric.class_scores(item["prediction"], item["references"]).items():
            per_class.setdefault(cls, []).append(f1)
    return {cls: _aggregate(values) for cls, values in sorted(per_class.items())}


def score_scenes(config: LayoutConfig, items: list[dict[str, Any]], unmatched: int = 0) -> dict[str, Any]:
    """The scored result: valid scenes by the metric, failed ones 0; per-class groups; corpus numbers."""
    metric = METRICS.get(config.metric)()
    corpus, failed = score_with_failures(metric, items)
    valid = [it for it in items if "failed" not in it]
    return {"metric": config.metric, "higher_is_better": metric.higher_is_better, "binary": metric.binary,
            **_aggregate([it["score"] for it in items]), "groups": class_groups(metric, valid),
            **({"corpus": corpus} if corpus else {}), "failed_items": failed,
            "unmatched_predictions": unmatched, "items": items}


@SUITE_KINDS.register("layout", "score SpatialLM layout files (predictions vs references); per-class F1 groups")
class Layout(ScoredKind):
    Config = LayoutConfig
    needs_session: ClassVar[bool] = False

    def run(self, config: LayoutConfig, ctx: SuiteContext) -> dict[str, Any]:
        start = time.perf_counter()
        references = _folder(config, "references", ctx.recipe_dir)
        predictions = _folder(config, "predictions", ctx.recipe_dir)
        items = scene_items(config, references, predictions)
        wanted = {p.relative_to(references) for p in references.glob(config.pattern) if p.is_file()}
        unmatched = sum(1 for p in predictions.glob(config.pattern)
                        if p.is_file() and p.relative_to(predictions) not in wanted)
        result = score_scenes(config, items, unmatched)
        result["seconds"] = time.perf_counter() - start
        result["meaningful"] = True  # read from files: the variant's weights do not enter
        return result

    def preflight(self, config: LayoutConfig, recipe_dir: Path | None) -> list[str]:
        """Both folders exist (before any worker starts)."""
        return [f"suite '{config.name}': {field} folder '{getattr(config, field)}' not found (looked in the data "
                "dirs, the recipe's folder and the working directory)"
                for field in ("references", "predictions") if find_folder(getattr(config, field), recipe_dir) is None]
