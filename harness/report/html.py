"""Render a run's `report.html`: one self-contained, offline file (plotly's JS is inlined once).

The page decides first: the recommended variant (`harness.results.recommend`: meets every target,
best on the recipe's `select:` objective) with why, what it costs against the baseline and where
its files are, then a banner for every failure, noisy number and unmeasured target. Then per
runtime the variants table (grouped by model family in a cross-model run), one primary frontier chart
(accuracy against the select objective; one frontier across the families, each family its colour;
the other pairs folded away) and each kind's own section.

The page is generic: the variants table, the Pareto standing and the frontier charts are built
from what the suite kinds declare (objectives, targets, overview columns), and every kind renders
its own section from its template (`SuiteKind.report_template`), so a new kind reaches the report
without an edit here. Every string that came from a model, a dataset or a recipe reaches the
page through Jinja2's autoescaping; chart data is passed as JSON, never as markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.report import charts
from harness.results.baselines import all_baselines
from harness.results.kinds import kinds
from harness.results.pareto import Standing, Value, standings
from harness.results.recommend import advice, banners, objective_values, objectives, recommend, target_label
from harness.results.rundir import RunDir

__all__ = ["objective_values", "objectives", "points_of", "render_report", "standing_text"]

TREND_METRICS = {"ttft_p50_ms": "TTFT p50 (ms)", "decode_tokens_per_s_p50": "decode tok/s",
                 "size_mb": "size (MB)", "peak_memory_delta_mb": "peak memory delta (MiB)"}
TEMPLATES = Path(__file__).parent / "templates"


def points_of(variants: list[dict[str, Any]], runtime: str) -> dict[str, dict[str, Value]]:
    return {v["name"]: objective_values(v["runtimes"][runtime]) for v in variants
            if v["status"] == "ok" and runtime in v["runtimes"]}


def standing_text(standing: Standing | None, titles: dict[str, str] | None = None) -> str:
    """The Pareto column: frontier, dominated, or weakly dominated with the tied objectives named
    (by their human titles: "TTFT p50 (ms)", not `ttft_ms`)."""
    if standing is None:
        return "–"
    titles = titles if titles is not None else {o.name: o.title for o in objectives()}

    def named(names: list[str]) -> str:
        return ", ".join(titles.get(n, n) for n in names)

    if standing.dominated_by:
        return "dominated by " + ", ".join(standing.dominated_by)
    parts = [f"weakly dominated by {other} (better on {named(c.better)}; within noise on {named(c.ties)})"
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


def _history(run: RunDir, recipe: str) -> tuple[list[str], str]:
    """Trend charts from the history database; a note instead when it is unusable or too short."""
    import sqlite3

    from harness.results.history import trend

    path = run.history_file
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


def _kind_sections(summary: dict[str, Any], results: dict[str, dict[str, Any]], plan: dict[str, Any],
                   runtime: str | None) -> list[dict[str, Any]]:
    """Each kind that has results here, with its suites, the rows it renders and its own context.
    `runtime` None: the run-scoped kinds across every runtime."""
    out = []
    for name, kind in kinds():
        if (kind.report_scope == "run") != (runtime is None):
            continue
        rows = [{"variant": v, "runtime": rt, "summary": s, "result": results.get(v["name"], {})}
                for v in summary["variants"] if v["status"] == "ok"
                for rt, s in v["runtimes"].items() if runtime in (None, rt)]
        suites = _suites_of_kind(rows, name, kind.headline)
        if suites:
            out.append({"kind": name, "template": kind.report_template, "suites": suites, "rows": rows,
                        "section": kind.section, "headline": kind.headline, "context": kind.report_context(rows, plan)})
    return out


def _suites_of_kind(rows: list[dict[str, Any]], kind: str, headline: str | None = None) -> list[str]:
    """The suites of `kind` with something to show in these rows, in the recipe's order: measured,
    or not measured but with a headline entry saying why (a section of nothing is not rendered;
    banners name what was not measured)."""
    found = (suite for row in rows
             for suite, data in row["result"].get("measurements", {}).get(row["runtime"], {}).get("suites", {}).items()
             if data.get("kind") == kind and (data.get("status") == "ok" or (headline and headline in row["summary"])))
    return list(dict.fromkeys(found))


def _overview_templates(plan: dict[str, Any] | None = None) -> list[str]:
    """The kinds' templates in objective-rank order, each once (kinds sharing one share its columns);
    with a plan, only the kinds the run has suites of (no column of dashes for a kind that never ran)."""
    ran = {s.get("kind") for s in (plan or {}).get("suites", [])}
    ranked = sorted(((name, kind) for name, kind in kinds() if not ran or name in ran),
                    key=lambda item: min((o.rank for o in item[1].objectives), default=1000))
    return list(dict.fromkeys(kind.report_template for _, kind in ranked))


def _section(summary: dict[str, Any], results: dict[str, dict[str, Any]], plan: dict[str, Any],
             runtime: str, decision: dict[str, Any]) -> dict[str, Any]:
    variants, targets = summary["variants"], summary["targets"]
    points = points_of(variants, runtime)
    found = objectives()
    titles = {o.name: o.title for o in found}
    standing = standings(points, found)  # one frontier across every model and family of the run
    bases = all_baselines(summary)
    base = next((v for v in variants if v["name"] == bases[0]), None) if len(bases) == 1 else None
    # a relative target (min_retention) is drawn against the one baseline; several models, several lines: none
    baseline = ({n: value.point for n, value in objective_values(base["runtimes"][runtime]).items()}
                if base and base["status"] == "ok" and runtime in base["runtimes"] else {})
    meets_all = _meets_all(variants, runtime)
    recommended = decision["variant"] if decision.get("runtime") == runtime else None
    groups = {v["name"]: v.get("family") for v in variants}
    # a frontier needs two variants to compare; one point alone is not a chart worth a screen
    pair = charts.primary_pair(points, found, decision["select"]) if len(points) > 1 else None
    primary = charts.primary_frontier(points, standing, found, targets, baseline, meets_all, decision["select"],
                                      recommended, groups) if pair else None
    others = charts.all_pairs(points, standing, found, targets, baseline, meets_all, exclude=pair,
                              recommended=recommended, groups=groups) if pair else []
    return {"runtime": runtime, "standing": {n: standing_text(standing.get(n), titles) for n in points},
            "primary_chart": primary, "primary_pair": [pair[0].title, pair[1].title] if pair else None,
            "frontier_charts": others,
            "meets_all": sorted(meets_all), "kinds": _kind_sections(summary, results, plan, runtime),
            "objectives": [o.title for o in found if any(o.name in v for v in points.values())]}


def family_groups(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The variants table's groups: one per model family, in order of first appearance, each with its
    models and variants — one group holding every variant when the run is not cross-model (a
    `base:` recipe of one family: the table as it always was, without a group row)."""
    cross = any(v.get("model") for v in variants) or len({v.get("family") for v in variants}) > 1
    if not cross:
        return [{"family": None, "models": [], "variants": variants}]
    groups: dict[str, dict[str, Any]] = {}
    for v in variants:
        group = groups.setdefault(v.get("family") or "unknown", {"family": v.get("family") or "unknown",
                                                                  "models": [], "variants": []})
        group["variants"].append(v)
        if v.get("model") and v["model"] not in group["models"]:
            group["models"].append(v["model"])
    return list(groups.values())


def render_report(run: RunDir, plan: dict[str, Any], summary: dict[str, Any],
                  results: dict[str, dict[str, Any]]) -> Path:
    """Write `report.html` from the summary and the variants' results `finish` already read."""
    import jinja2
    from plotly.offline import get_plotlyjs

    variants = summary["variants"]
    spec = run.read_resolved_spec()
    decision = recommend(summary, spec, results, plan)
    runtimes = sorted({r for v in variants for r in v["runtimes"]}) or ["torch-eager"]
    sections = [_section(summary, results, plan, runtime, decision) for runtime in runtimes]
    trend_charts, history_note = _history(run, summary["recipe"])
    # training happens once per variant, whatever runtimes measure it: one chart per training step
    training_charts = [charts.training(v["name"], record) for v in variants for record in v.get("training", [])]
    search = run.read_search()
    titles = {o.name: o.title for o in objectives()}
    search_charts = {"history": charts.search_history(search, titles),
                     "importances": charts.importances(search, titles)} if search else {}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([TEMPLATES, *_plugin_template_dirs()]),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"
    env.filters["g"] = lambda x, d=4: "–" if x is None else f"{x:.{d}g}"
    env.filters["sig"] = lambda x, d=4: "–" if x is None else f"{x:#.{d}g}".rstrip(".")
    env.filters["signed"] = lambda x: "–" if x is None else f"{x:+,.0f}" if abs(x) >= 1000 else f"{x:+.3g}"
    env.globals["charts"] = charts
    env.globals["advice"] = advice
    html = env.get_template("report.html.j2").render(
        summary=summary, sections=sections, plotly_js=get_plotlyjs(), environment=run.read_environment(),
        recipe_text=run.recipe_text(), variants=variants, trend_charts=trend_charts, history_note=history_note,
        training_charts=training_charts, overview_templates=_overview_templates(plan), decision=decision,
        banners=banners(summary), description=spec.get("description") or "",
        target_labels={name: target_label(name, limit) for name, limit in summary["targets"].items()},
        suites=plan.get("suites", []), run_sections=_kind_sections(summary, results, plan, None),
        search=search, search_charts=search_charts, objective_titles=titles, groups=family_groups(variants),
        baselines=all_baselines(summary), family_colours=charts.family_colours(
            {v["name"]: v.get("family") for v in variants}))
    run.report_file.write_text(html, encoding="utf-8")
    return run.report_file


def _plugin_template_dirs() -> list[Path]:
    """Folders of kinds defined outside the harness: a plugin kind's template sits next to its module."""
    import inspect

    dirs = []
    for _, kind in kinds():
        folder = Path(inspect.getfile(type(kind))).parent
        if folder != TEMPLATES.parent.parent / "suites":
            dirs.append(folder)
    return list(dict.fromkeys(dirs))
