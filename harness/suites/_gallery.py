"""The sample gallery: for each variant, items where its answer differs from the baseline's
(else its first items), with the image as a small inline thumbnail.

Images are re-read from the suite's dataset through `datasets` at report time (they are not
copied into results); if the dataset is not available here, the gallery says so and shows the
text only. For a grounding metric (one whose `boxes` hook gives boxes) the reference, baseline and
variant boxes are drawn on the thumbnail. Answers are plain strings — the template escapes them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.metrics._boxes import Box

THUMB_PX = 96
#: (suite definition, item ids, recipe folder) → item id → decoded image.
ImageLoader = Callable[[dict[str, Any], set[str], Path | None], dict[str, Any]]


def _accuracy_suite(result: dict[str, Any], runtime: str) -> tuple[str, dict[str, Any]] | None:
    suites = result.get("measurements", {}).get(runtime, {}).get("suites", {})
    return next(((n, s) for n, s in suites.items() if s.get("kind") == "accuracy" and s.get("status") == "ok"), None)


#: Box colours on a thumbnail: the reference, the baseline's box, the variant's box.
BOX_COLOURS = {"reference": "#1a7f37", "base": "#0969da", "variant": "#d1242f"}


def _thumbnail(image: Any, boxes: dict[str, list[Box]]) -> str:
    """A PNG data URI of the image at thumbnail size with the normalised boxes drawn on it."""
    from PIL import ImageDraw

    image = image.convert("RGB")
    image.thumbnail((THUMB_PX, THUMB_PX))
    if max(image.size) < THUMB_PX:  # upscale tiny images (nano: 48 px) so they are visible
        scale = THUMB_PX // max(image.size)
        image = image.resize((image.width * scale, image.height * scale), resample=0)
    draw = ImageDraw.Draw(image)
    for role, drawn in boxes.items():
        for x1, y1, x2, y2 in drawn:
            draw.rectangle((x1 * (image.width - 1), y1 * (image.height - 1), x2 * (image.width - 1),
                            y2 * (image.height - 1)), outline=BOX_COLOURS[role], width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _thumbnails(definition: dict[str, Any], shown: dict[str, dict[str, Any]], recipe_dir: Path | None,
                images: ImageLoader) -> tuple[dict[str, str], str]:
    """Gallery row key → PNG data URI with the row's boxes drawn, plus a note when images are unavailable."""
    from harness.errors import HarnessError

    try:
        found = images(definition, {row["id"] for row in shown.values()}, recipe_dir)
    except (HarnessError, KeyError, TypeError, ValueError) as exc:
        return {}, f"images unavailable: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return {key: _thumbnail(found[row["id"]], row["boxes"]) for key, row in shown.items() if row["id"] in found}, ""


def _item_boxes(metric: Any, base: dict[str, Any] | None, mine: dict[str, Any]) -> dict[str, list[Box]]:
    """The boxes to draw for one item: reference, baseline's and variant's; {} for a metric without boxes."""
    if metric is None:
        return {}
    drawn = metric.boxes(mine["prediction"] or "", mine["references"], mine)
    if drawn is None:
        return {}
    out = {"reference": drawn[1], "variant": [drawn[0]] if drawn[0] else []}
    if base is not None:
        theirs = metric.boxes(base["prediction"] or "", base["references"], base)
        out["base"] = [theirs[0]] if theirs and theirs[0] else []
    return out


def _metric(definition: dict[str, Any]) -> Any:
    from harness.errors import HarnessError
    from harness.registries import METRICS

    try:
        return METRICS.get(definition.get("metric", ""))()
    except HarnessError:
        return None


def _definition(plan: dict[str, Any], suite: str | None) -> dict[str, Any]:
    return next((s for s in plan.get("suites", []) if s.get("name") == suite), {})


def gallery(rows: list[dict[str, Any]], plan: dict[str, Any], images: ImageLoader,
            per_variant: int = 6) -> dict[str, Any]:
    """`rows` as `SuiteKind.report_context` gets them (one runtime); `plan` is the run's run.json;
    `images(definition, ids, recipe_dir)` reads the shown items' images (the suite kind knows how)."""
    from harness.results.baselines import baseline_of

    results = {row["variant"]["name"]: row["result"] for row in rows}
    runtime = rows[0]["runtime"] if rows else ""
    bases: dict[str, tuple[str, dict[str, Any]] | None] = {}  # per baseline (one per model in a cross-model run)
    shown: dict[str, list[dict[str, Any]]] = {}
    suite_name = None
    for row in rows:
        name = row["variant"]["name"]
        baseline = baseline_of(plan, name) or ""
        if baseline not in bases:
            bases[baseline] = _accuracy_suite(results.get(baseline, {}), runtime)
        mine_suite = _accuracy_suite(row["result"], runtime) if name != baseline else None
        if bases[baseline] is None or mine_suite is None:
            continue
        suite_name, base_suite = bases[baseline]
        base = {it["id"]: it for it in base_suite["items"]}
        metric = _metric(_definition(plan, suite_name))
        mine = {it["id"]: it for it in mine_suite[1]["items"]}
        differ = [i for i in mine if i in base and mine[i]["prediction"] != base[i]["prediction"]]
        chosen = (differ or list(mine))[:per_variant]
        shown[name] = [{"id": i, "question": mine[i]["question"], "reference": ", ".join(mine[i]["references"]),
                        "base": base.get(i, {}).get("prediction", ""), "variant": mine[i]["prediction"],
                        "correct": mine[i]["score"] >= 1.0, "differs": bool(differ)} for i in chosen]
        for r in shown[name]:
            r["boxes"] = _item_boxes(metric, base.get(r["id"]), mine[r["id"]])
    found = next((b for b in bases.values() if b is not None), None)
    if found is None:
        return {"rows": {}, "note": "no accuracy suite result for the baseline"}
    suite_name = suite_name or found[0]
    definition = _definition(plan, suite_name)
    recipe_path = plan.get("recipe_path")
    keyed = {f"{name}/{r['id']}": r for name, items in shown.items() for r in items}
    thumbs, note = _thumbnails(definition, keyed, Path(recipe_path).parent if recipe_path else None,
                               images) if keyed else ({}, "")
    for key, r in keyed.items():
        r["thumb"] = thumbs.get(key)
    drawn = any(any(r["boxes"].values()) for r in keyed.values())
    return {"rows": shown, "note": note, "suite": suite_name, "boxes": BOX_COLOURS if drawn else {}}
