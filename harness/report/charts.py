"""Plotly figures for the report, each returned as an HTML fragment (plotly.js is inlined once
by the page). Sizes are fixed so a chart never collapses or overflows in a grid cell; data goes
in as numbers and labels only, which plotly serialises as JSON (never as markup).

Frontier charts fit their axes to the data (with a margin; log scale when the values span more
than 10×), draw the target zone and place each variant's label where it overlaps no other label
and no marker (a small greedy placement in pixel space, so the result does not depend on the
browser)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from harness.results.pareto import Objective, Standing, Value

WIDTH, HEIGHT = 460, 360
MARGIN = {"t": 45, "l": 55, "r": 15, "b": 45}
PRIMARY_WIDTH, PRIMARY_HEIGHT = 980, 540
PAIR_WIDTH = 430  # three to a row in a 1400 px window
PAIR_MARGIN = {"t": 60, "l": 60, "r": 20, "b": 80}
PRIMARY_MARGIN = {"t": 70, "l": 70, "r": 30, "b": 90}
LOG_SPAN = 10.0  # max/min above this: log axis
PAD = 0.08  # share of the data span added on each side
ZONE = "rgba(40,160,60,0.10)"
FONT_PX = 11


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


@dataclass(frozen=True)
class Axis:
    """A fitted axis: `lo`/`hi` in axis units (log10 of the value on a log axis)."""

    log: bool
    lo: float
    hi: float

    def t(self, value: float) -> float:
        return math.log10(value) if self.log else value

    def value(self, t: float) -> float:
        return 10 ** t if self.log else t

    def frac(self, value: float) -> float:
        return (self.t(value) - self.lo) / (self.hi - self.lo)

    def contains(self, value: float) -> bool:
        return (not self.log or value > 0) and self.lo <= self.t(value) <= self.hi

    def layout(self) -> dict[str, Any]:
        return {"type": "log" if self.log else "linear", "range": [self.lo, self.hi]}


def fit_axis(values: list[float], limit: float | None = None) -> Axis:
    """An axis over `values` (points and interval ends) with a margin; the target limit is included
    when it lies near the data (within half the data's span), so a far-off limit does not squash the
    points into a corner. Log when every value is positive and max/min exceeds 10."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Axis(False, 0.0, 1.0)
    lo, hi = min(finite), max(finite)
    if limit is not None and math.isfinite(limit):
        log = lo > 0 and hi / lo > LOG_SPAN
        t = (lambda v: math.log10(v)) if log else (lambda v: v)
        if not log or limit > 0:
            span = (t(hi) - t(lo)) or (abs(t(hi)) * 0.1 if not log else 0.1) or 1.0
            if t(lo) - span / 2 <= t(limit) <= t(hi) + span / 2:
                lo, hi = min(lo, limit), max(hi, limit)
    log = lo > 0 and hi / lo > LOG_SPAN
    a, b = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
    span = (b - a) or ((0.1 if log else abs(a) * 0.1) or 1.0)
    if b == a:
        a, b = a - span / 2, b + span / 2
    return Axis(log, a - PAD * span, b + PAD * span)


def _label_size(text: str) -> tuple[float, float]:
    return len(text) * FONT_PX * 0.62 + 8, FONT_PX + 7


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Overlapping area of two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(points: list[tuple[str, float, float]], width: float, height: float,
                 marker_px: float = 7.0) -> dict[str, tuple[float, float]]:
    """Label name → (dx, dy) offset in pixels (y down) of its centre from its point, greedily chosen
    so that no label box overlaps another label, a marker or the plot's edge. `points`: (name, x px,
    y px) in plot-area pixels."""
    markers = [(x - marker_px, y - marker_px, x + marker_px, y + marker_px) for _, x, y in points]
    placed: list[tuple[float, float, float, float]] = []
    out: dict[str, tuple[float, float]] = {}
    directions = [(0, -1), (0, 1), (1, 0), (-1, 0), (1, -1), (-1, -1), (1, 1), (-1, 1)]
    for name, x, y in sorted(points, key=lambda p: (p[1], p[2])):
        w, h = _label_size(name)
        best, best_cost = (0.0, -(h / 2 + marker_px + 2)), math.inf
        for step in range(6):
            for dx, dy in directions:
                ox = dx * (w / 2 + marker_px + 4 + 12 * step)
                oy = dy * (h / 2 + marker_px + 2 + 14 * step)
                box = (x + ox - w / 2, y + oy - h / 2, x + ox + w / 2, y + oy + h / 2)
                outside = max(0.0, -box[0]) + max(0.0, box[2] - width) + max(0.0, -box[1]) + max(0.0, box[3] - height)
                cost = sum(_overlap(box, other) for other in placed + markers) + outside * h * 4
                if cost < best_cost:
                    best, best_cost = (ox, oy), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        out[name] = best
        placed.append((x + best[0] - w / 2, y + best[1] - h / 2, x + best[0] + w / 2, y + best[1] + h / 2))
    return out


def _category(standing: Standing | None) -> str:
    if standing is None or standing.on_frontier:
        return "frontier"
    return "dominated" if standing.dominated_by else "weakly dominated"


SYMBOLS = {"frontier": "circle", "weakly dominated": "diamond-open", "dominated": "x"}


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _zone(axis: Axis, limit: tuple[str, float] | None) -> tuple[float, float] | None:
    """The stretch of the axis (in axis units) that meets its target; None when none of it shown."""
    if limit is None:
        return axis.lo, axis.hi
    side, value = limit
    if axis.log and value <= 0:
        return (axis.lo, axis.hi) if side == "min" else None
    t = axis.t(value)
    lo, hi = (axis.lo, min(t, axis.hi)) if side == "max" else (max(t, axis.lo), axis.hi)
    return (lo, hi) if hi > lo else None


def _limit_note(objective: Objective, axis: Axis, limit: tuple[str, float] | None,
                values: list[float]) -> str:
    """A line under the title when a target limit lies off the fitted axis."""
    if limit is None or axis.contains(limit[1]):
        return ""
    side, value = limit
    inside = all(v <= value for v in values) if side == "max" else all(v >= value for v in values)
    where = "every point meets it" if inside else "no point meets it"
    return f"{objective.title} {'≤' if side == 'max' else '≥'} {_fmt(value)}: off the axis, {where}"


#: One colour per model family on a frontier across families (plotly's qualitative palette, in order).
FAMILY_COLOURS = ("#1f77b4", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def family_colours(groups: dict[str, str | None] | None) -> dict[str, str]:
    """Family → colour when the variants come from more than one family; {} otherwise (one family:
    the chart stays as it always was)."""
    found = list(dict.fromkeys(g or "unknown" for g in (groups or {}).values()))
    return dict(zip(found, FAMILY_COLOURS * (len(found) // len(FAMILY_COLOURS) + 1))) if len(found) > 1 else {}


def _family_legend(fig: Any, colours: dict[str, str]) -> None:
    """A legend entry per family (the points' colour); the symbols keep saying their Pareto category."""
    import plotly.graph_objects as go

    for family, colour in colours.items():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"family: {family}", hoverinfo="skip",
                                 marker={"symbol": "square", "size": 11, "color": colour}))


def _points_traces(fig: Any, shown: dict[str, dict[str, Value]], standings: dict[str, Standing], x: Objective,
                   y: Objective, meets_all: set[str], recommended: str | None,
                   groups: dict[str, str | None] | None = None) -> None:
    """One trace per Pareto category (CI whiskers, a green ring for variants meeting every target),
    and a star on the recommendation. `groups` (variant → model family): with more than one family,
    each point is coloured by its family — one frontier across families, each family told apart."""
    import plotly.graph_objects as go

    colours = family_colours(groups)
    for category, symbol in SYMBOLS.items():
        names = [n for n in shown if _category(standings.get(n)) == category]
        if not names:
            continue
        family = [(groups or {}).get(n) or "unknown" for n in names]
        fig.add_trace(go.Scatter(
            x=[shown[n][x.name].point for n in names], y=[shown[n][y.name].point for n in names],
            mode="markers", name=category, customdata=[[n, f] for n, f in zip(names, family, strict=True)],
            hovertemplate=("%{customdata[0]}" + ("<br>family: %{customdata[1]}" if colours else "")
                           + f"<br>{x.title}: %{{x:.4g}}<br>{y.title}: %{{y:.4g}}<extra></extra>"),
            marker={"symbol": symbol, "size": 11, **({"color": [colours[f] for f in family]} if colours else {}),
                    "line": {"width": [3 if n in meets_all else 0 for n in names], "color": "seagreen"}},
            error_x={"type": "data", "symmetric": False, "thickness": 1,
                     "array": [shown[n][x.name].high - shown[n][x.name].point for n in names],
                     "arrayminus": [shown[n][x.name].point - shown[n][x.name].low for n in names]},
            error_y={"type": "data", "symmetric": False, "thickness": 1,
                     "array": [shown[n][y.name].high - shown[n][y.name].point for n in names],
                     "arrayminus": [shown[n][y.name].point - shown[n][y.name].low for n in names]}))
    if recommended in shown:
        fig.add_trace(go.Scatter(x=[shown[recommended][x.name].point], y=[shown[recommended][y.name].point],
                                 mode="markers", name="recommended", hoverinfo="skip",
                                 marker={"symbol": "star-open", "size": 24, "color": "darkorange",
                                         "line": {"width": 2, "color": "darkorange"}}))
    _family_legend(fig, colours)


def _targets(fig: Any, axes: tuple[tuple[Objective, Axis, tuple[str, float] | None], ...]) -> None:
    """The zone meeting both shown targets, and each target's line with its caption in the legend
    (where it cannot cover a variant's label)."""
    import plotly.graph_objects as go

    (x, x_axis, x_limit), (y, y_axis, y_limit) = axes
    if x_limit or y_limit:
        zx, zy = _zone(x_axis, x_limit), _zone(y_axis, y_limit)
        if zx and zy:
            fig.add_shape(type="rect", xref="x", yref="y", x0=x_axis.value(zx[0]), x1=x_axis.value(zx[1]),
                          y0=y_axis.value(zy[0]), y1=y_axis.value(zy[1]), fillcolor=ZONE, line={"width": 0},
                          layer="below")
    for (objective, axis, limit), dash, line in zip(axes, ("dash", "dot"), (fig.add_vline, fig.add_hline),
                                                    strict=True):
        if limit and axis.contains(limit[1]):
            line(limit[1], line_dash=dash, line_color="crimson")
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", hoverinfo="skip",
                                     name=f"target: {objective.title} {'≤' if limit[0] == 'max' else '≥'} "
                                          f"{_fmt(limit[1])}",
                                     line={"color": "crimson", "dash": dash, "width": 2}))


def _labels(fig: Any, shown: dict[str, dict[str, Value]], x: Objective, y: Objective, x_axis: Axis, y_axis: Axis,
            plot: tuple[float, float]) -> None:
    """A label per variant, placed where it overlaps no other label or marker."""
    plot_w, plot_h = plot
    pixels = [(n, x_axis.frac(v[x.name].point) * plot_w, (1 - y_axis.frac(v[y.name].point)) * plot_h)
              for n, v in shown.items() if x_axis.contains(v[x.name].point) and y_axis.contains(v[y.name].point)]
    for name, (dx, dy) in place_labels(pixels, plot_w, plot_h).items():
        fig.add_annotation(x=x_axis.t(shown[name][x.name].point), y=y_axis.t(shown[name][y.name].point),
                           xref="x", yref="y", text=name, showarrow=True, arrowhead=0, arrowwidth=1,
                           arrowcolor="#999", standoff=6, ax=dx, ay=dy, axref="pixel", ayref="pixel",
                           xanchor="center", yanchor="middle", font={"size": FONT_PX},
                           bgcolor="rgba(255,255,255,0.85)", borderpad=1)


def pair_frontier(points: dict[str, dict[str, Value]], standings: dict[str, Standing], x: Objective,
                  y: Objective, limits: dict[str, tuple[str, float]], meets_all: set[str],
                  recommended: str | None = None, primary: bool = False,
                  groups: dict[str, str | None] | None = None) -> str:
    """One pair of objectives: points with CI whiskers on fitted axes, the target lines, the zone
    meeting both targets, and a label per variant that overlaps nothing; coloured by model family
    when `groups` holds more than one."""
    import plotly.graph_objects as go

    width, height = (PRIMARY_WIDTH, PRIMARY_HEIGHT) if primary else (PAIR_WIDTH, HEIGHT + 60)
    margin = dict(PRIMARY_MARGIN if primary else PAIR_MARGIN)
    shown = {n: v for n, v in points.items() if x.name in v and y.name in v}
    xs = [w for v in shown.values() for w in (v[x.name].low, v[x.name].point, v[x.name].high)]
    ys = [w for v in shown.values() for w in (v[y.name].low, v[y.name].point, v[y.name].high)]
    x_limit, y_limit = limits.get(x.name), limits.get(y.name)
    x_axis = fit_axis(xs, x_limit[1] if x_limit else None)
    y_axis = fit_axis(ys, y_limit[1] if y_limit else None)
    notes = [n for n in (_limit_note(x, x_axis, x_limit, [v[x.name].point for v in shown.values()]),
                         _limit_note(y, y_axis, y_limit, [v[y.name].point for v in shown.values()])) if n]
    margin["t"] += 14 * len(notes)
    fig = go.Figure()
    _targets(fig, ((x, x_axis, x_limit), (y, y_axis, y_limit)))
    _points_traces(fig, shown, standings, x, y, meets_all, recommended, groups)
    _labels(fig, shown, x, y, x_axis, y_axis, (width - margin["l"] - margin["r"], height - margin["t"] - margin["b"]))
    title = f"{y.title} vs {x.title}" + "".join(f"<br><sub>{note}</sub>" for note in notes)
    fig.update_xaxes(title=x.title + (" — log scale" if x_axis.log else ""), **x_axis.layout())
    fig.update_yaxes(title=y.title + (" — log scale" if y_axis.log else ""), **y_axis.layout())
    fig.update_layout(title={"text": title, "font": {"size": 15 if primary else 12}}, width=width, height=height,
                      margin=margin, legend={"orientation": "h", "y": -0.18 if primary else -0.28},
                      font={"size": FONT_PX}, plot_bgcolor="white",
                      xaxis={"gridcolor": "#eee", "zeroline": False, "linecolor": "#999"},
                      yaxis={"gridcolor": "#eee", "zeroline": False, "linecolor": "#999"})
    return _html(fig)


def _present(points: dict[str, dict[str, Value]], objectives: list[Objective]) -> list[Objective]:
    return [o for o in objectives if any(o.name in v for v in points.values())]


def primary_pair(points: dict[str, dict[str, Value]], objectives: list[Objective],
                 select: str) -> tuple[Objective, Objective] | None:
    """(x, y) of the primary frontier: the first-ranked objective (accuracy) on y against the recipe's
    `select` objective on x (the next-ranked one when `select` is the y objective or not measured)."""
    present = _present(points, objectives)
    if len(present) < 2:
        return None
    y = min(present, key=lambda o: o.rank)
    x = next((o for o in present if o.name == select and o is not y), None)
    x = x or next(o for o in sorted(present, key=lambda o: o.rank) if o is not y)
    return x, y


def primary_frontier(points: dict[str, dict[str, Value]], standings: dict[str, Standing],
                     objectives: list[Objective], targets: dict[str, Any], baseline: dict[str, float],
                     meets_all: set[str], select: str, recommended: str | None = None,
                     groups: dict[str, str | None] | None = None) -> str | None:
    """The one frontier chart the report shows open: accuracy against the recipe's primary objective."""
    pair = primary_pair(points, objectives, select)
    if pair is None:
        return None
    x, y = pair
    limits = _limits(_present(points, objectives), targets, baseline)
    return pair_frontier(points, standings, x, y, limits, meets_all, recommended, primary=True, groups=groups)


def all_pairs(points: dict[str, dict[str, Value]], standings: dict[str, Standing], objectives: list[Objective],
              targets: dict[str, Any], baseline: dict[str, float], meets_all: set[str],
              exclude: tuple[Objective, Objective] | None = None, recommended: str | None = None,
              groups: dict[str, str | None] | None = None) -> list[str]:
    """One frontier chart per pair of objectives; the first-ranked objective (accuracy) on y when in a pair.
    `baseline`: the baseline variant's values, for relative targets; `exclude`: the (x, y) pair already
    shown as the primary frontier."""
    present = _present(points, objectives)
    limits = _limits(present, targets, baseline)
    ordered = sorted(present, key=lambda o: o.rank != min(p.rank for p in present))
    skip = {frozenset((exclude[0].name, exclude[1].name))} if exclude else set()
    return [pair_frontier(points, standings, x, y, limits, meets_all, recommended, groups=groups)
            for y, x in combinations(ordered, 2) if frozenset((x.name, y.name)) not in skip]


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


STATE_COLOURS = {"feasible": "#2a9d3c", "infeasible": "#e08a1e", "PRUNED": "#999999", "FAIL": "#c0392b"}


def _trial_class(trial: dict[str, Any]) -> str:
    if trial["state"] == "COMPLETE":
        return "feasible" if trial["feasible"] else "infeasible"
    return trial["state"] if trial["state"] in STATE_COLOURS else "FAIL"


def search_history(record: dict[str, Any], titles: dict[str, str]) -> str:
    """One panel per objective: each completed trial's value by trial number (feasible or not), the
    running best among feasible trials as a line; stopped and failed trials as ticks at the foot."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    objectives = record["objectives"]
    fig = make_subplots(rows=1, cols=len(objectives), subplot_titles=[titles.get(o, o) for o in objectives])
    trials = record["trials"]
    for col, objective in enumerate(objectives, start=1):
        higher = record["higher_is_better"][objective]
        for cls, colour in STATE_COLOURS.items():
            mine = [t for t in trials if _trial_class(t) == cls and t["values"]]
            if mine:
                fig.add_trace(go.Scatter(x=[t["number"] for t in mine], y=[t["values"][objective] for t in mine],
                                         mode="markers", marker={"color": colour, "size": 8}, name=cls,
                                         text=[t["variant"] for t in mine], legendgroup=cls, showlegend=col == 1),
                              row=1, col=col)
        best, line = None, []
        for t in sorted((t for t in trials if t["feasible"] and t["values"]), key=lambda t: t["number"]):
            value = t["values"][objective]
            best = value if best is None else (max(best, value) if higher else min(best, value))
            line.append((t["number"], best))
        if line:
            fig.add_trace(go.Scatter(x=[n for n, _ in line], y=[b for _, b in line], mode="lines",
                                     line={"color": "#2a9d3c", "shape": "hv"}, name="best feasible",
                                     legendgroup="best", showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title="trial", row=1, col=col)
    fig.update_layout(width=max(2, len(objectives)) * WIDTH, height=HEIGHT, margin=MARGIN, font={"size": FONT_PX},
                      title="trial history", legend={"orientation": "h", "y": -0.25})
    return _html(fig)


def importances(record: dict[str, Any], titles: dict[str, str]) -> str | None:
    """Optuna's parameter importances, one bar group per objective."""
    import plotly.graph_objects as go

    found = record.get("importances") or {}
    if not any(found.values()):
        return None
    fig = go.Figure()
    for objective, values in found.items():
        fig.add_trace(go.Bar(name=titles.get(objective, objective), x=list(values), y=list(values.values())))
    fig.update_layout(barmode="group", title="parameter importance (fANOVA, Optuna)", yaxis_title="share",
                      width=2 * WIDTH, height=HEIGHT, margin=MARGIN, font={"size": FONT_PX})
    return _html(fig)
