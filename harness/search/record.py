"""The end of a search: the found frontier (noise-aware, among the trials that meet every target)
is gated, and the search record — every trial with its parameters, state, values, constraint
values and lite evidence, the frontier and Optuna's parameter importances — is written to
`search.json`, which the report reads.

Gating: the gate answers "did the search find a variant that meets the targets?". The trials on
the feasible frontier are gated; when no trial meets every target, every completed trial is gated
so the gate fails and names what each one missed. Trials stopped early are in the record (and the
report's trial table), not variants: they were never fully measured.
"""

from __future__ import annotations

from typing import Any

from harness.search.study import feasible, trial_seconds
from harness.search.trials import Search


def _trial_rows(search: Search) -> list[dict[str, Any]]:
    interrupted = set(search.plan["search"]["interrupted"])
    rows = []
    for trial in search.study.get_trials(deepcopy=False):
        constraints = dict(trial.constraints)
        rows.append({"number": trial.number, "state": "INTERRUPTED" if trial.number in interrupted
                     else trial.state.name, "variant": trial.user_attrs.get("variant"), "params": trial.params,
                     "values": dict(zip(search.objectives, trial.values)) if trial.values else None,
                     "intervals": trial.user_attrs.get("intervals"), "constraints": constraints,
                     "feasible": trial.state.name == "COMPLETE" and feasible(constraints),
                     "targets": trial.user_attrs.get("targets"), "lite": trial.user_attrs.get("lite"),
                     "reason": trial.user_attrs.get("reason"), "repeat_of": trial.user_attrs.get("repeat_of"),
                     "seconds": trial_seconds(trial)})
    return rows


def _frontier(search: Search, rows: list[dict[str, Any]]) -> list[str]:
    """The feasible trials no other feasible trial beats beyond noise (results.pareto)."""
    from harness.results.pareto import Value, standings
    from harness.results.recommend import objectives

    chosen = [o for o in objectives() if o.name in search.objectives]
    points = {r["variant"]: {o: Value.of(v, (r.get("intervals") or {}).get(o)) for o, v in r["values"].items()}
              for r in rows if r["feasible"] and r.get("repeat_of") is None}
    return [name for name, standing in standings(points, chosen).items() if standing.on_frontier]


def _importances(search: Search) -> tuple[dict[str, dict[str, float]], str | None]:
    """Per objective, Optuna's fANOVA importance of each parameter every completed trial has
    (conditional parameters are left out by Optuna: they are not in every trial)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    done = [t for t in search.study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        return {}, f"importances need at least 2 completed trials ({len(done)} completed)"
    out: dict[str, dict[str, float]] = {}
    try:
        for index, objective in enumerate(search.objectives):
            out[objective] = get_param_importances(
                search.study, evaluator=FanovaImportanceEvaluator(seed=search.spec.seed),
                target=lambda t, i=index: t.values[i], normalize=True)
    except (ValueError, RuntimeError) as exc:  # e.g. no parameter took two values
        return out, f"Optuna could not compute importances: {exc}"
    return out, None


def close_search(search: Search) -> dict[str, Any]:
    """Gate the frontier, write `search.json`; returns the record."""
    rows = _trial_rows(search)
    frontier = _frontier(search, rows)
    gated = set(frontier) or {r["variant"] for r in rows if r["state"] == "COMPLETE"}
    resolved = search.run.read_resolved_recipe()
    for entry in resolved["variants"]:
        if "trial" in entry:
            entry["gate"] = entry["name"] in gated
    search.run.write_resolved_recipe(resolved)
    importances, note = _importances(search)
    higher = {o: d.name == "MAXIMIZE" for o, d in zip(search.objectives, search.study.directions)}
    record = {"sampler": search.spec.sampler, "seed": search.spec.seed, "objectives": search.objectives,
              "higher_is_better": higher, "budget": search.plan["search"].get("budget"),
              "space": search.plan["search"]["space"],
              "early_stop": search.spec.early_stop.model_dump() if search.spec.early_stop else None,
              "early_stop_off": search.plan["search"].get("early_stop_off"),
              "stopped": search.plan["search"].get("stopped"), "trials": rows, "frontier": frontier,
              "gated": sorted(gated), "importances": importances, "importances_note": note}
    search.run.write_search(record)
    return record
