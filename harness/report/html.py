"""Render a run's `report.html`: one self-contained, offline file (plotly's JS is inlined once).

Every string that came from a model, a dataset or a recipe reaches the page through Jinja2's
autoescaping; chart data is passed as JSON, never as markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.pareto import Objective, Value, frontier

OBJECTIVES = [Objective("accuracy", True), Objective("ttft_ms", False), Objective("size_mb", False),
              Objective("memory_mb", False), Objective("decode_tps", True)]


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
        values["ttft_ms"] = Value.of(latency["ttft_p50_ms"], latency.get("ttft_p50_ci"))
        values["decode_tps"] = Value.of(latency["decode_tokens_per_s_p50"], latency.get("decode_tokens_per_s_ci"))
    if summary.get("size"):
        values["size_mb"] = Value.of(summary["size"]["total_mb"])
    if summary.get("memory"):
        values["memory_mb"] = Value.of(summary["memory"]["model_delta_mb"], summary["memory"]["model_delta_range_mb"])
    return values


def dominance(variants: list[dict[str, Any]], runtime: str) -> dict[str, list[str]]:
    points = {v["name"]: objective_values(v["runtimes"][runtime]) for v in variants
              if v["status"] == "ok" and runtime in v["runtimes"]}
    return frontier(points, OBJECTIVES)


def _scatter(variants: list[dict], runtime: str, x_key: str, x_label: str, limit: float | None,
             dominated: dict[str, list[str]], min_retention: float | None, baseline_score: float | None) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    x_max = limit or 0.0
    for group, symbol in ((False, "circle"), (True, "x")):
        names, xs, ys, errs = [], [], [], []
        for v in variants:
            vals = objective_values(v["runtimes"].get(runtime, {})) if v["status"] == "ok" else {}
            if x_key not in vals or "accuracy" not in vals or bool(dominated.get(v["name"])) != group:
                continue
            names.append(v["name"])
            xs.append(vals[x_key].point)
            ys.append(vals["accuracy"].point)
            errs.append((vals["accuracy"].high - vals["accuracy"].point, vals["accuracy"].point - vals["accuracy"].low))
        x_max = max([x_max, *xs])
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="markers+text", text=names, textposition="top center",
            name="dominated" if group else "Pareto frontier", marker={"symbol": symbol, "size": 11},
            error_y={"type": "data", "array": [e[0] for e in errs], "arrayminus": [e[1] for e in errs]}))
    if limit is not None:
        fig.add_vline(x=limit, line_dash="dash", line_color="crimson", annotation_text=f"target {limit}")
    if min_retention is not None and baseline_score:
        fig.add_hline(y=min_retention * baseline_score, line_dash="dot", line_color="crimson",
                      annotation_text=f"{min_retention:.0%} of baseline")
    # Explicit ranges: every point and the target line stay in view.
    fig.update_xaxes(range=[0, x_max * 1.15 or 1])
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(title=f"accuracy vs {x_label}", xaxis_title=x_label, yaxis_title="accuracy",
                      width=580, height=420, margin={"t": 50, "l": 50, "r": 20, "b": 40})
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _ttft_breakdown(variants: list[dict], runtime: str) -> str:
    import plotly.graph_objects as go

    ok = [v for v in variants if v["status"] == "ok" and v["runtimes"].get(runtime, {}).get("latency")]
    fig = go.Figure()
    for stage, label in (("preprocess_p50_ms", "preprocess"), ("vision_p50_ms", "vision encode"),
                         ("prefill_p50_ms", "prefill")):
        fig.add_trace(go.Bar(name=label, x=[v["name"] for v in ok],
                             y=[v["runtimes"][runtime]["latency"][stage] for v in ok]))
    fig.update_layout(barmode="stack", title="time to first token (p50, ms)", yaxis_title="ms", width=580, height=420,
                      margin={"t": 50, "l": 50, "r": 20, "b": 40})
    return fig.to_html(full_html=False, include_plotlyjs=False)


def samples(run_dir: Path, variants: list[dict], baseline: str, runtime: str, per_variant: int = 6) -> dict:
    """Items where a variant's answer differs from the baseline's (else the first items)."""
    def items(name: str) -> dict[str, dict]:
        path = run_dir / "variants" / name / "result.json"
        if not path.exists():
            return {}
        suites = json.loads(path.read_text()).get("measurements", {}).get(runtime, {}).get("suites", {})
        acc = next((s for s in suites.values() if s.get("kind") == "accuracy" and s.get("status") == "ok"), None)
        return {it["id"]: it for it in acc["items"]} if acc else {}

    base = items(baseline)
    out = {}
    for v in variants:
        if v["name"] == baseline or v["status"] != "ok":
            continue
        mine = items(v["name"])
        differ = [i for i in mine if i in base and mine[i]["prediction"] != base[i]["prediction"]]
        chosen = (differ or list(mine))[:per_variant]
        out[v["name"]] = [{"question": mine[i]["question"], "reference": ", ".join(mine[i]["references"]),
                           "base": base.get(i, {}).get("prediction", ""), "variant": mine[i]["prediction"],
                           "correct": mine[i]["score"] >= 1.0} for i in chosen]
    return out


def render_report(run_dir: Path, summary: dict[str, Any]) -> Path:
    import jinja2
    from plotly.offline import get_plotlyjs

    variants = summary["variants"]
    runtimes = sorted({r for v in variants for r in v["runtimes"]}) or ["torch-eager"]
    targets = summary["targets"]
    sections = []
    for runtime in runtimes:
        dominated = dominance(variants, runtime)
        base = next((v for v in variants if v["name"] == summary["baseline"]), None)
        base_acc = primary_accuracy(base["runtimes"].get(runtime, {})) if base and base["status"] == "ok" else None
        base_score = base_acc["score"] if base_acc else None
        charts = [
            _scatter(variants, runtime, "ttft_ms", "TTFT p50 (ms)", targets.get("max_ttft_ms"), dominated,
                     targets.get("min_retention"), base_score),
            _scatter(variants, runtime, "size_mb", "size (MB)", targets.get("max_size_mb"), dominated,
                     targets.get("min_retention"), base_score),
            _scatter(variants, runtime, "memory_mb", "peak memory, model delta (MiB)",
                     targets.get("max_peak_memory_mb"), dominated, targets.get("min_retention"), base_score),
            _ttft_breakdown(variants, runtime)]
        sections.append({"runtime": runtime, "dominated": dominated, "charts": charts,
                         "samples": samples(run_dir, variants, summary["baseline"], runtime)})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"
    env_file = run_dir / "environment.json"
    environment = json.loads(env_file.read_text()) if env_file.exists() else {}
    recipe_text = (run_dir / "recipe.yaml").read_text() if (run_dir / "recipe.yaml").exists() else ""
    html = env.get_template("report.html.j2").render(
        summary=summary, sections=sections, plotly_js=get_plotlyjs(), environment=environment,
        recipe_text=recipe_text, variants=variants)
    out = run_dir / "report.html"
    out.write_text(html, encoding="utf-8")
    return out
