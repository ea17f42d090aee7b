"""Render a run's `report.html`: one self-contained, offline file (plotly's JS is inlined once).

Every string that came from a model, a dataset or a recipe reaches the page through Jinja2's
autoescaping; chart data is passed as JSON, never as markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.pareto import Objective, Standing, Value, standings
from harness.report import charts

OBJECTIVES = [Objective("accuracy", True), Objective("ttft_ms", False),
              Objective("size_mb", False, min_relative_effect=0.01),
              Objective("memory_mb", False, min_relative_effect=0.02),
              Objective("decode_tps", True)]
TREND_METRICS = {"ttft_p50_ms": "TTFT p50 (ms)", "decode_tokens_per_s_p50": "decode tok/s",
                 "size_mb": "size (MB)", "peak_memory_delta_mb": "peak memory delta (MiB)"}


def primary_accuracy(summary: dict[str, Any]) -> dict[str, Any] | None:
    accuracy = summary.get("accuracy", {})
    return next(iter(accuracy.values()), None)


def objective_values(summary: dict[str, Any]) -> dict[str, Value]:
    values: dict[str, Value] = {}
    acc = primary_accuracy(summary)
    if acc and acc.get("meaningful", True):
        values["accuracy"] = Value.of(acc["score"], acc.get("ci"))
    latency = summary.get("latency")
    if latency:
        # intervals include process-to-process spread when measured in several processes
        values["ttft_ms"] = Value.of(latency["ttft_p50_ms"],
                                     latency.get("ttft_p50_interval") or latency.get("ttft_p50_ci"))
        values["decode_tps"] = Value.of(latency["decode_tokens_per_s_p50"], latency.get("decode_tokens_per_s_interval")
                                        or latency.get("decode_tokens_per_s_ci"))
    if summary.get("size"):
        values["size_mb"] = Value.of(summary["size"]["total_mb"])
    if summary.get("memory"):
        values["memory_mb"] = Value.of(summary["memory"]["model_delta_mb"], summary["memory"]["model_delta_range_mb"])
    return values


def points_of(variants: list[dict[str, Any]], runtime: str) -> dict[str, dict[str, Value]]:
    return {v["name"]: objective_values(v["runtimes"][runtime]) for v in variants
            if v["status"] == "ok" and runtime in v["runtimes"]}


def standing_text(standing: Standing | None) -> str:
    """The Pareto column: frontier, dominated, or weakly dominated with the tied objectives named."""
    if standing is None:
        return "–"
    if standing.dominated_by:
        return "dominated by " + ", ".join(standing.dominated_by)
    parts = [f"weakly dominated by {other} (better on {', '.join(c.better)}; within noise on {', '.join(c.ties)})"
             for other, c in standing.weakly_dominated_by.items()]
    if not parts:
        parts = ["frontier"]
    if standing.ties_with:
        parts.append("ties within noise with " + ", ".join(standing.ties_with))
    return "; ".join(parts)


def _meets_all(variants: list[dict[str, Any]], runtime: str) -> set[str]:
    return {v["name"] for v in variants if v["status"] == "ok" and runtime in v["runtimes"]
            and v["runtimes"][runtime].get("targets")
            and all(t["status"] == "pass" for t in v["runtimes"][runtime]["targets"].values())}


def _latency_samples(run_dir: Path, variants: list[dict[str, Any]], runtime: str) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {"ttft_ms": {}, "decode_token_ms": {}}
    for v in variants:
        path = run_dir / "variants" / v["name"] / "result.json"
        if v["status"] != "ok" or not path.exists():
            continue
        suites = json.loads(path.read_text()).get("measurements", {}).get(runtime, {}).get("suites", {})
        for suite in suites.values():
            if suite.get("kind") == "latency" and suite.get("status") == "ok":
                for metric in out:
                    out[metric][v["name"]] = suite["samples"].get(metric, [])
                break
    return out


def _history(run_dir: Path, recipe: str) -> tuple[list[str], str]:
    """Trend charts from the history database; a note instead when it is unusable or too short."""
    import sqlite3

    from harness.store import history_path, trend

    path = history_path(run_dir)
    if not path.exists():
        return [], "no history database yet"
    try:
        rows = trend(path, recipe, [*TREND_METRICS, "%.score"])
    except sqlite3.DatabaseError as exc:
        return [], f"history database unusable ({exc})"
    runs = {r["run_id"] for r in rows}
    if len(runs) < 2:
        return [], f"{len(runs)} recorded run(s) of '{recipe}': trends appear from the second run on"
    metrics = {**TREND_METRICS, **{m: m for m in dict.fromkeys(r["metric"] for r in rows) if m.endswith(".score")}}
    return [charts.trend(rows, m, label) for m, label in metrics.items()
            if any(r["metric"] == m for r in rows)], f"{len(runs)} runs of '{recipe}'"


def _section(run_dir: Path, manifest: dict[str, Any], summary: dict[str, Any], runtime: str) -> dict[str, Any]:
    variants, targets = summary["variants"], summary["targets"]
    points = points_of(variants, runtime)
    standing = standings(points, OBJECTIVES)
    base = next((v for v in variants if v["name"] == summary["baseline"]), None)
    base_acc = primary_accuracy(base["runtimes"].get(runtime, {})) if base and base["status"] == "ok" else None
    meets_all = _meets_all(variants, runtime)
    latency_rows = [(v["name"], v["runtimes"][runtime]["latency"]) for v in variants
                    if v["status"] == "ok" and v["runtimes"].get(runtime, {}).get("latency")]
    samples = _latency_samples(run_dir, variants, runtime)
    group_rows = [(v["name"], group, r["score"], r["ci"]) for v in variants if v["status"] == "ok"
                  for acc in list(v["runtimes"].get(runtime, {}).get("accuracy", {}).values())[:1]
                  for group, r in acc.get("groups", {}).items()]
    frontier_charts = charts.all_pairs(points, standing, OBJECTIVES, targets,
                                       base_acc["score"] if base_acc else None, meets_all)
    other_charts = [charts.ttft_breakdown(latency_rows)] if latency_rows else []
    if samples["ttft_ms"]:
        other_charts += [charts.distributions(samples["ttft_ms"], "TTFT per iteration", "ms"),
                         charts.distributions(samples["decode_token_ms"], "decode time per token", "ms")]
    if group_rows:
        other_charts.append(charts.group_accuracy(group_rows))
    from harness.report.gallery import gallery

    return {"runtime": runtime, "standing": {n: standing_text(standing.get(n)) for n in points},
            "frontier_charts": frontier_charts, "charts": other_charts, "meets_all": sorted(meets_all),
            "gallery": gallery(run_dir, manifest, variants, summary["baseline"], runtime)}


def render_report(run_dir: Path, summary: dict[str, Any]) -> Path:
    import jinja2
    from plotly.offline import get_plotlyjs

    from harness.runner import open_run_dir

    manifest = open_run_dir(run_dir)
    variants = summary["variants"]
    runtimes = sorted({r for v in variants for r in v["runtimes"]}) or ["torch-eager"]
    sections = [_section(run_dir, manifest, summary, runtime) for runtime in runtimes]
    trend_charts, history_note = _history(run_dir, summary["recipe"])
    # training happens once per variant, whatever runtimes measure it: one chart per training step
    training_charts = [charts.training(v["name"], record) for v in variants for record in v.get("training", [])]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"
    env_file = run_dir / "environment.json"
    environment = json.loads(env_file.read_text()) if env_file.exists() else {}
    recipe_text = (run_dir / "recipe.yaml").read_text() if (run_dir / "recipe.yaml").exists() else ""
    html = env.get_template("report.html.j2").render(
        summary=summary, sections=sections, plotly_js=get_plotlyjs(), environment=environment,
        recipe_text=recipe_text, variants=variants, trend_charts=trend_charts, history_note=history_note,
        training_charts=training_charts)
    out = run_dir / "report.html"
    out.write_text(html, encoding="utf-8")
    return out
