"""The sample gallery: for each variant, items where its answer differs from the baseline's
(else its first items), with the image as a small inline thumbnail.

Images are re-read from the suite's dataset through `datasets` at report time (they are not
copied into results); if the dataset is not available here, the gallery says so and shows the
text only. Answers are plain strings — the template escapes them.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

THUMB_PX = 96


def _accuracy_suite(result: dict[str, Any], runtime: str) -> tuple[str, dict[str, Any]] | None:
    suites = result.get("measurements", {}).get(runtime, {}).get("suites", {})
    return next(((n, s) for n, s in suites.items() if s.get("kind") == "accuracy" and s.get("status") == "ok"), None)


def _thumbnails(definition: dict[str, Any], wanted: set[str], recipe_dir: Path | None) -> tuple[dict[str, str], str]:
    """item id → PNG data URI, plus a note when images are unavailable."""
    from harness.data.sources import DatasetSpec, load_split
    from harness.errors import HarnessError

    try:
        data = load_split(DatasetSpec(**definition["dataset"]), recipe_dir)
    except (HarnessError, KeyError, TypeError) as exc:
        return {}, f"images unavailable: {exc}"
    id_column = definition.get("id_column", "id")
    ids = [str(i) for i in data[id_column]] if id_column in data.column_names else \
        [str(i) for i in range(len(data))]
    out = {}
    for index, item_id in enumerate(ids):
        if item_id in wanted:
            image = data[index]["image"].convert("RGB")
            image.thumbnail((THUMB_PX, THUMB_PX))
            if max(image.size) < THUMB_PX:  # upscale tiny images (nano: 48 px) so they are visible
                scale = THUMB_PX // max(image.size)
                image = image.resize((image.width * scale, image.height * scale), resample=0)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            out[item_id] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return out, ""


def gallery(rows: list[dict[str, Any]], plan: dict[str, Any], per_variant: int = 6) -> dict[str, Any]:
    """`rows` as `SuiteKind.report_context` gets them (one runtime); `plan` is the run's run.json."""
    baseline = plan["baseline"]
    results = {row["variant"]["name"]: row["result"] for row in rows}
    runtime = rows[0]["runtime"] if rows else ""
    found = _accuracy_suite(results.get(baseline, {}), runtime)
    if found is None:
        return {"rows": {}, "note": "no accuracy suite result for the baseline"}
    suite_name, base_suite = found
    base = {it["id"]: it for it in base_suite["items"]}
    shown: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        name = row["variant"]["name"]
        mine_suite = _accuracy_suite(row["result"], runtime) if name != baseline else None
        if mine_suite is None:
            continue
        mine = {it["id"]: it for it in mine_suite[1]["items"]}
        differ = [i for i in mine if i in base and mine[i]["prediction"] != base[i]["prediction"]]
        chosen = (differ or list(mine))[:per_variant]
        shown[name] = [{"id": i, "question": mine[i]["question"], "reference": ", ".join(mine[i]["references"]),
                        "base": base.get(i, {}).get("prediction", ""), "variant": mine[i]["prediction"],
                        "correct": mine[i]["score"] >= 1.0, "differs": bool(differ)} for i in chosen]
    definition = next((s for s in plan.get("suites", []) if s.get("name") == suite_name), {})
    recipe_path = plan.get("recipe_path")
    wanted = {r["id"] for items in shown.values() for r in items}
    thumbs, note = _thumbnails(definition, wanted, Path(recipe_path).parent if recipe_path else None) \
        if wanted else ({}, "")
    for items in shown.values():
        for r in items:
            r["thumb"] = thumbs.get(r["id"])
    return {"rows": shown, "note": note, "suite": suite_name}
