"""The decision a run's report opens with: which variant to ship, why, at what cost, and where
its files are — plus a banner for everything that makes a number untrustworthy or missing.

Pure data from `results.json` (the summary) and the resolved recipe's spec (`targets`, `select`).
A *candidate* is a variant × runtime pair of an ok, gated variant whose every target verdict is
"pass" and which has no failed or unavailable suite. The recommendation is the candidate best on
the recipe's `select:` objective (default TTFT); candidates whose interval on that objective
overlaps the winner's are named as ties (the pick among them is not beyond noise). With no
candidate, the closest variant is named instead: fewest targets not passed, then best objective.

Objectives and their values come from the suite kinds (through the registry), so a new kind's
objective can be selected without an edit here.
"""

from __future__ import annotations

from typing import Any

from harness.results.kinds import kinds, measuring
from harness.results.outcome import unmeasured
from harness.results.pareto import Objective, Value, beats

DEFAULT_SELECT = "ttft_ms"
PASS, FAIL, NOT_MEASURED, UNDECIDED = "pass", "fail", "not measured", "undecided"
#: What to do about a verdict that decides nothing (used by the report's target cells and banners).
REMEASURE = ("re-measure: its interval straddles the limit — add samples (more latency rounds or "
             "processes, more accuracy items) or run on a quiet machine")
ADD_SUITE = "measure it: add a suite that does to the recipe"
FIX_SUITE = "measure it: fix the suite that failed (its error is listed above) and run again"
ELSEWHERE = "measure it where its runtime is available"
#: The same, short enough for a table cell.
SHORT = {REMEASURE: "re-measure: more samples or a quiet machine", ADD_SUITE: "add a suite that measures it",
         FIX_SUITE: "fix the failed suite, run again", ELSEWHERE: "measure where the runtime runs"}


def objectives() -> list[Objective]:
    """Every objective the registered kinds contribute, in rank order."""
    found = {o.name: o for _, kind in kinds() for o in kind.objectives}
    return sorted(found.values(), key=lambda o: (o.rank, o.name))


def objective_values(runtime_summary: dict[str, Any]) -> dict[str, Value]:
    """Objective name → Value(point, low, high) from one runtime summary, as the kinds read it."""
    values: dict[str, Value] = {}
    for _, kind in kinds():
        for name, (value, interval) in kind.objective_values(runtime_summary).items():
            values.setdefault(name, Value.of(value, interval))
    return values


def advice(verdict: dict[str, Any] | None, short: bool = False) -> str:
    """What to do about a target verdict that is neither a pass nor a clear fail ("" otherwise);
    `short`: the table-cell wording."""
    if not verdict:
        return ""
    status = verdict.get("status")
    if status == NOT_MEASURED:
        why = str(verdict.get("why", ""))
        text = FIX_SUITE if "failed" in why else ELSEWHERE if "not measurable" in why else ADD_SUITE
    elif status == UNDECIDED or verdict.get("within_noise") or verdict.get("noisy"):
        text = getattr(_rule(verdict.get("target", "")), "remeasure", None) or REMEASURE
    else:
        return ""
    return SHORT.get(text, text) if short else text


def _rule(target: str) -> Any | None:
    kind = measuring(target) if target else None
    return kind.targets.get(target) if kind is not None else None


def target_label(name: str, limit: Any = None) -> str:
    """A target as a person reads it: "TTFT p50 (ms) ≤ 20", "accuracy ≥ 0.95× baseline"."""
    objective = next((o for o in objectives() if o.target == name), None)
    rule = _rule(name)
    if objective is None or rule is None:
        return name if limit is None else f"{name} {limit:g}" if isinstance(limit, (int, float)) else name
    sign = "≤" if rule.upper else "≥"
    if limit is None:  # the target is off
        return objective.title
    shown = f"{limit:g}" if isinstance(limit, (int, float)) else str(limit)
    if objective.relative:
        return f"{objective.title} {sign} {shown}× baseline"
    return f"{objective.title} {sign} {shown}"


def _value_dict(value: Value | None) -> dict[str, float] | None:
    return None if value is None else {"point": value.point, "low": value.low, "high": value.high}


def _target_rows(runtime_summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target verdict with its margin: how far inside (positive) or outside (negative) the limit."""
    rows = []
    for name, verdict in (runtime_summary.get("targets") or {}).items():
        rule = _rule(name)
        value, limit = verdict.get("value"), verdict.get("limit")
        margin = relative = None
        if isinstance(value, (int, float)) and isinstance(limit, (int, float)) and rule is not None:
            margin = (limit - value) if rule.upper else (value - limit)
            relative = margin / abs(limit) if limit else None
        rows.append({"name": name, "label": target_label(name, limit), "status": verdict.get("status"),
                     "value": value, "limit": limit, "ci": verdict.get("ci"), "unit": verdict.get("unit", ""),
                     "margin": margin, "margin_relative": relative, "within_noise": bool(verdict.get("within_noise")),
                     "why": verdict.get("why", ""), "advice": advice({**verdict, "target": name})})
    return rows


def _scored_section() -> str:
    return next((kind.section for _, kind in kinds() if kind.scored and kind.section), "accuracy")


def _size_headline() -> str:
    """The headline of the kind that contributes the size objective (the files and bytes shipped)."""
    return next((kind.headline for _, kind in kinds() if kind.headline
                 and any(o.name == "size_mb" for o in kind.objectives)), "size")


def _baseline_summary(summary: dict[str, Any], variant: str, runtime: str) -> dict[str, Any] | None:
    """The runtime summary of `variant`'s baseline (its own model's, in a cross-model run)."""
    from harness.results.baselines import baseline_of

    base = next((v for v in summary["variants"] if v["name"] == baseline_of(summary, variant)), None)
    if base is None or base.get("status") != "ok":
        return None
    return base["runtimes"].get(runtime) or base["runtimes"].get("torch-eager")


def accuracy_cost(summary: dict[str, Any], variant: str, runtime: str) -> dict[str, Any] | None:
    """The first scored suite's score against the baseline's, with retention and its paired test."""
    from harness.results.baselines import baseline_of

    entry = next(v for v in summary["variants"] if v["name"] == variant)["runtimes"][runtime]
    section = _scored_section()
    suite, first = next(iter((entry.get(section) or {}).items()), (None, None))
    if first is None:
        return None
    base = (_baseline_summary(summary, variant, runtime) or {}).get(section, {}).get(suite)
    out = {"suite": suite, "metric": first.get("metric"), "score": first.get("score"), "ci": first.get("ci"),
           "n": first.get("n"), "meaningful": first.get("meaningful", True),
           "baseline": baseline_of(summary, variant), "baseline_score": base.get("score") if base else None,
           "retention": first.get("retention"), "retention_ci": first.get("retention_ci"),
           "agreement": first.get("agreement"), "n_paired": first.get("n_paired")}
    if isinstance(out["score"], (int, float)) and isinstance(out["baseline_score"], (int, float)):
        out["change"] = out["score"] - out["baseline_score"]
    if first.get("mcnemar"):
        m = first["mcnemar"]
        out["test"] = {"name": "McNemar exact", "p_value": m.get("p_value"), "lost": m.get("lost"),
                       "gained": m.get("gained")}
    elif first.get("wilcoxon"):
        w = first["wilcoxon"]
        out["test"] = {"name": "Wilcoxon signed-rank", "p_value": w.get("p_value"), "lower": w.get("lower"),
                       "higher": w.get("higher"), "mean_diff": first.get("mean_diff"),
                       "mean_diff_ci": first.get("mean_diff_ci")}
    return out


def files_of(summary: dict[str, Any], variant: str, runtime: str, results: dict[str, Any] | None = None,
             plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where the variant's files are: artifact folder (from its result.json), formats (from the plan), size."""
    entry = next(v for v in summary["variants"] if v["name"] == variant)["runtimes"][runtime]
    size = entry.get(_size_headline()) or {}
    planned = next((p for p in (plan or {}).get("plan", []) if p.get("name") == variant), {})
    return {"artifact": ((results or {}).get(variant) or {}).get("artifact"),
            "formats": list(planned.get("formats") or []),
            "size_mb": size.get("total_mb"), "files": len(size.get("files") or []),
            "storage_format": size.get("storage_format")}


def _pairs(summary: dict[str, Any]) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    return [(v, runtime, data) for v in summary["variants"] if v.get("status") == "ok"
            for runtime, data in v.get("runtimes", {}).items()]


def _not_passed(data: dict[str, Any]) -> list[str]:
    """Targets not passed and suites not measured (each one reason the pair is not a candidate)."""
    out = [f"{target_label(name, t.get('limit'))}: {t.get('status')}" for name, t in (data.get("targets") or {}).items()
           if t.get("status") != PASS]
    out += [f"suite '{suite}' {how}" for key, how in (("errors", "failed"), ("unavailable", "not measurable here"))
            for suite in (data.get(key) or {})]
    return out


def _order(value: Value | None, objective: Objective | None) -> tuple[int, float]:
    """Sort key: measured first, then best first."""
    if value is None or objective is None:
        return (1, 0.0)
    return (0, -value.point if objective.higher_is_better else value.point)


def recommend(summary: dict[str, Any], spec: dict[str, Any], results: dict[str, Any] | None = None,
              plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recommendation (see the module doc). `results` (variant → result.json) and `plan`
    (run.json) add where the chosen variant's files are; without them the files are partly unknown."""
    select = spec.get("select") or DEFAULT_SELECT
    known = {o.name: o for o in objectives()}
    objective = known.get(select)
    out: dict[str, Any] = {"select": select, "select_title": objective.title if objective else select,
                           "higher_is_better": objective.higher_is_better if objective else None,
                           "variant": None, "runtime": None, "value": None, "ties": [], "candidates": [],
                           "targets": [], "accuracy": None, "files": None, "closest": None, "reason": ""}
    pairs = [(v, runtime, data, objective_values(data).get(select)) for v, runtime, data in _pairs(summary)]
    gated = [p for p in pairs if p[0].get("gate", True)]
    candidates = [p for p in gated if not _not_passed(p[2])]
    out["candidates"] = [{"variant": v["name"], "runtime": rt, "value": _value_dict(val)}
                         for v, rt, _, val in candidates]
    if objective is None:
        out["reason"] = f"select: '{select}' is no objective of the installed suite kinds"
    ranked = sorted((p for p in candidates if p[3] is not None), key=lambda p: _order(p[3], objective))
    if objective is not None and ranked:
        best_v, best_rt, best_data, best_val = ranked[0]
        out.update(variant=best_v["name"], runtime=best_rt, value=_value_dict(best_val),
                   targets=_target_rows(best_data), accuracy=accuracy_cost(summary, best_v["name"], best_rt),
                   files=files_of(summary, best_v["name"], best_rt, results, plan))
        out["ties"] = [{"variant": v["name"], "runtime": rt, "value": _value_dict(val)}
                       for v, rt, _, val in ranked[1:]
                       if not beats(best_val, val, objective.higher_is_better, objective.min_relative_effect)]
        n = len(candidates)
        out["reason"] = (f"best {objective.title} of the {n} variant{'s' if n != 1 else ''} that meet every target"
                         if n > 1 else "the only variant that meets every target")
        if out["ties"]:
            out["reason"] += ("; tied within noise with " + ", ".join(t["variant"] for t in out["ties"])
                              + " (more samples could change the pick)")
        return out
    if objective is not None:
        if candidates:
            out["reason"] = f"{len(candidates)} variant(s) meet every target, but none has a measured {objective.title}"
        elif not gated:
            failed = [v["name"] for v in summary["variants"] if v.get("gate", True) and v.get("status") != "ok"]
            out["reason"] = (f"no gated variant was measured ({', '.join(failed)} failed)" if failed
                             else "no variant is gated (every measured variant has gate: false)" if pairs
                             else "no variant was measured")
        else:
            out["reason"] = f"no variant meets every target ({len(gated)} gated variant × runtime pairs measured)"
    pool = candidates or gated or pairs
    if pool:
        closest = min(pool, key=lambda p: (len(_not_passed(p[2])), _order(p[3], objective)))
        v, rt, data, val = closest
        out["closest"] = {"variant": v["name"], "runtime": rt, "value": _value_dict(val),
                          "not_passed": _not_passed(data), "targets": _target_rows(data)}
    return out


def banners(summary: dict[str, Any]) -> list[str]:
    """One line per thing a reader must not miss: every failed variant and failed or unavailable
    suite, every target verdict that is neither pass nor fail (with its why and what to do), every
    pass or fail within noise, and every headline number flagged noisy. Clear fails are in the
    variants table and the recommendation, not here."""
    out = [f"Not measured — {item.line()}" for item in unmeasured(summary)]
    headline_keys = [kind.headline for _, kind in kinds() if kind.headline]
    undecided: dict[tuple[str, str, str, str], list[str]] = {}  # one line per verdict and reason, all its variants
    for v, runtime, data in _pairs(summary):
        where = f"{v['name']} on {runtime}"
        for name, t in (data.get("targets") or {}).items():
            status, label = t.get("status"), target_label(name, t.get("limit"))
            todo = advice({**t, "target": name})
            if status not in (PASS, FAIL):
                undecided.setdefault((str(status), label, str(t.get("why") or ""), todo), []).append(where)
            elif t.get("within_noise"):  # a pass or fail that noise could turn: it decides nothing yet
                out.append(f"{status.capitalize()} within noise — {where}: {label}: {_shown(t)}; {todo}")
        for key in dict.fromkeys(headline_keys):
            entry = data.get(key)
            if isinstance(entry, dict) and entry.get("excluded_processes"):
                out.append(f"Outlier processes excluded — {where}: {entry['excluded_processes']} {key} process(es) "
                           "far from the others were left out of the estimate and measured again (see the table of "
                           "excluded processes)")
            if isinstance(entry, dict) and entry.get("noisy"):
                why = entry.get("noisy_why") or entry.get("noise_why") or (
                    entry["noisy"] if isinstance(entry["noisy"], str) else "")
                out.append(f"Noisy number — {where}: its {key} headline is marked noisy" + (f" ({why})" if why else "")
                           + "; re-measure on a quiet machine or with more rounds")
    for (status, label, why, todo), where in undecided.items():
        says_how = status == UNDECIDED and why  # its why already says how to re-measure
        out.append(f"Target {status} — {', '.join(where)}: {label}" + (f" ({why})" if why else "")
                   + (f"; {todo}" if todo and not says_how else ""))
    return out


def _shown(verdict: dict[str, Any]) -> str:
    value, ci, unit = verdict.get("value"), verdict.get("ci"), verdict.get("unit", "")
    if not isinstance(value, (int, float)):
        return str(verdict.get("status"))
    text = f"{value:.4g} {unit}".strip()
    if ci:
        text += f" [{min(ci):.4g}, {max(ci):.4g}]"
    return text + f" vs limit {verdict.get('limit')}"
