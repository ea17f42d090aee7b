"""Plotly figures for the report, each returned as an HTML fragment (plotly.js is inlined once
by the page). Sizes are fixed so a chart never collapses or overflows in a grid cell; data goes
in as numbers and labels only, which plotly serialises as JSON (never as markup)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from harness.results.pareto import Objective, Standing, Value

WIDTH, HEIGHT = 460, 360
MARGIN = {"t": 45, "l": 55, "r": 15, "b": 45}


def _html(fig: Any) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _limits(objectives: list[Objective], targets: dict[str, Any],
            baseline: dict[str, float]) -> dict[str, tuple[str, float]]:
    """Objective → (side, limit) for the objectives a recipe target bounds; a relative target
    (min_retention on accuracy) is scaled by the baseline's value."""
    out: dict[str, tuple[str, float]] = {}
    for objective in objectives:
        limit = targets.get(objective.target) if objective.target else None
        if limit is None:
            continue
        if objective.relative:
            if baseline.get(objective.name):
                out[objective.name] = ("min" if objective.higher_is_better else "max",
                                       float(limit) * baseline[objective.name])
        else:
            out[objective.name] = ("min" if objective.higher_is_better else "max", float(limit))
    return out


def _span(objective: str, limits: dict[str, tuple[str, float]], top: float) -> tuple[float, float]:
    if objective not in limits:
        return (0.0, top)
    side, limit = limits[objective]
    return (0.0, limit) if side == "max" else (limit, top)


def _category(standing: Standing | None) -> str:
    if standing is None or standing.on_frontier:
        return "frontier"
    return "dominated" if standing.dominated_by else "weakly dominated"


SYMBOLS = {"frontier": "circle", "weakly dominated": "diamond-open", "dominated": "x"}


def pair_frontier(points: dict[str, dict[str, Value]], standings: dict[str, Standing], x: Objective,
                  y: Objective, limits: dict[str, tuple[str, float]], meets_all: set[str]) -> str:
    """One pair of objectives: points with CI whiskers, target lines and the zone meeting both."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shown = {n: v for n, v in points.items() if x.name in v and y.name in v}
    xs_all = [v[x.name].high for v in shown.values()] + ([limits[x.name][1]] if x.name in limits else [])
    ys_all = [v[y.name].high for v in shown.values()] + ([limits[y.name][1]] if y.name in limits else [])
    x_max, y_max = (max(xs_all, default=1.0) * 1.15 or 1.0), (max(ys_all, default=1.0) * 1.1 or 1.0)
    if x.name in limits or y.name in limits:  # the zone where both shown objectives meet their targets
        (x0, x1), (y0, y1) = _span(x.name, limits, x_max), _span(y.name, limits, y_max)
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, fillcolor="rgba(40,160,60,0.10)",
                      line={"width": 0}, layer="below")
    for category, symbol in SYMBOLS.items():
        names = [n for n in shown if _category(standings.get(n)) == category]
        if not names:
            continue
        fig.add_trace(go.Scatter(
            x=[shown[n][x.name].point for n in names], y=[shown[n][y.name].point for n in names],
            mode="markers+text", text=names, textposition="top center", name=category,
            marker={"symbol": symbol, "size": 11,
                    "line": {"width": [3 if n in meets_all else 0 for n in names], "color": "seagreen"}},
            error_x={"type": "data", "symmetric": False,
                     "array": [shown[n][x.name].high - shown[n][x.name].point for n in names],
                     "arrayminus": [shown[n][x.name].point - shown[n][x.name].low for n in names]},
            error_y={"type": "data", "symmetric": False,
                     "array": [shown[n][y.name].high - shown[n][y.name].point for n in names],
                     "arrayminus": [shown[n][y.name].point - shown[n][y.name].low for n in names]}))
    if x.name in limits:
        fig.add_vline(x=limits[x.name][1], line_dash="dash", line_color="crimson")
    if y.name in limits:
        fig.add_hline(y=limits[y.name][1], line_dash="dot", line_color="crimson")
    fig.update_xaxes(range=[0, x_max], title=x.title)
    fig.update_yaxes(range=[0, y_max], title=y.title)
    fig.update_layout(title=f"{y.title} vs {x.title}", width=WIDTH, height=HEIGHT, margin=MARGIN,
                      legend={"orientation": "h", "y": -0.25}, font={"size": 11})
    return _html(fig)


def all_pairs(points: dict[str, dict[str, Value]], standings: dict[str, Standing], objectives: list[Objective],
              targets: dict[str, Any], baseline: dict[str, float], meets_all: set[str]) -> list[str]:
    """One frontier chart per pair of objectives; the first-ranked objective (accuracy) on y when in a pair.
    `baseline`: the baseline variant's values, for relative targets."""
    present = [o for o in objectives if any(o.name in v for v in points.values())]
    limits = _limits(present, targets, baseline)
    ordered = sorted(present, key=lambda o: o.rank != min(p.rank for p in present))
    return [pair_frontier(points, standings, x, y, limits, meets_all)
            for y, x in combinations(ordered, 2)]


def ttft_breakdown(rows: list[tuple[str, dict[str, float]]]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    for stage, label in (("preprocess_p50_ms", "preprocess"), ("vision_p50_ms", "vision encode"),
                         ("prefill_p50_ms", "prefill")):
        fig.add_trace(go.Bar(name=label, x=[n for n, _ in rows], y=[lat[stage] for _, lat in rows]))
    fig.update_layout(barmode="stack", title="time to first token (p50, ms)", yaxis_title="ms", width=WIDTH,
                      height=HEIGHT, margin=MARGIN, legend={"orientation": "h", "y": -0.25})
    return _html(fig)


def distributions(samples: dict[str, list[float]], title: str, unit: str) -> str:
    """Box plots of raw per-iteration timings: the spread behind each median."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in samples.items():
        fig.add_trace(go.Box(y=values, name=name, boxpoints="outliers"))
    fig.update_layout(title=title, yaxis_title=unit, width=WIDTH, height=HEIGHT, margin=MARGIN, showlegend=False)
    return _html(fig)


def group_accuracy(rows: list[tuple[str, str, float, list[float]]]) -> str:
    """Grouped bars (variant per colour, group on x) with Wilson CI whiskers."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for variant in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == variant]
        fig.add_trace(go.Bar(name=variant, x=[r[1] for r in mine], y=[r[2] for r in mine],
                             error_y={"type": "data", "symmetric": False,
                                      "array": [r[3][1] - r[2] for r in mine],
                                      "arrayminus": [r[2] - r[3][0] for r in mine]}))
    fig.update_layout(barmode="group", title="accuracy per group (95 % CI)", yaxis={"range": [0, 1.05]},
                      width=2 * WIDTH, height=HEIGHT, margin=MARGIN)
    return _html(fig)


def trend(rows: list[dict[str, Any]], metric: str, label: str) -> str:
    """One line per variant across the recipe's recorded runs (x: run start time)."""
    from datetime import datetime

    import plotly.graph_objects as go

    fig = go.Figure()
    for variant in dict.fromkeys(r["variant"] for r in rows if r["metric"] == metric):
        mine = [r for r in rows if r["metric"] == metric and r["variant"] == variant]
        fig.add_trace(go.Scatter(
            x=[datetime.fromtimestamp(r["started"] or 0).isoformat() for r in mine], y=[r["value"] for r in mine],
            mode="lines+markers", name=variant, text=[r["run_id"] for r in mine],
            error_y={"type": "data", "symmetric": False,
                     "array": [(r["ci_high"] - r["value"]) if r["ci_high"] is not None else 0 for r in mine],
                     "arrayminus": [(r["value"] - r["ci_low"]) if r["ci_low"] is not None else 0 for r in mine]}))
    fig.update_layout(title=f"{label} across runs", yaxis_title=label, width=WIDTH, height=HEIGHT, margin=MARGIN)
    return _html(fig)


def training(variant: str, record: dict[str, Any]) -> str:
    """A training step's curve: loss per step (left axis) and validation exact match (right)."""
    import plotly.graph_objects as go

    curve = record.get("curve", [])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[r["step"] + 1 for r in curve], y=[r["loss"] for r in curve], mode="lines",
                             name="train loss"))
    evals = [r for r in curve if "val_exact_match" in r]
    if evals:
        fig.add_trace(go.Scatter(x=[r["step"] + 1 for r in evals], y=[r["val_exact_match"] for r in evals],
                                 mode="lines+markers", name="val exact match", yaxis="y2"))
    title = (f"training: {variant} ({record.get('step', '?')}, {record.get('steps', len(curve))} steps, "
             f"{record.get('seconds', 0):.0f} s, {record.get('tokens_per_s', 0):.0f} tok/s)")
    fig.update_layout(title={"text": title, "font": {"size": 12}}, xaxis_title="step", yaxis_title="loss",
                      yaxis2={"title": "val exact match", "overlaying": "y", "side": "right", "range": [0, 1.02]},
                      legend={"orientation": "h", "y": -0.25}, width=WIDTH, height=HEIGHT, margin=MARGIN)
    return _html(fig)
