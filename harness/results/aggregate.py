"""Turn per-variant results into comparable summaries (`results.json`, shape `RunSummary`).

Every suite kind summarizes its own results (`SuiteKind.summarize`): scored kinds with paired
retention and agreement against the variant's baseline (its own model's, in a cross-model run),
latency with medians and noise intervals, memory, size, parity.
This module only loops over a runtime's suites, puts each entry where its
kind says (its section and headline), records failures, and judges the recipe's targets on the
values the kinds that measure them report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.results import rundir
from harness.results.baselines import baseline_of, families_of
from harness.results.kinds import headlines, kind_of, measuring

NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True)
class NotApplicable:
    """Key of `missing` for a kind this runtime does not measure by design (its suites planned not
    applicable): a target only that kind measures is then *not applicable* here, not missed."""

    kind: type


def _suites_of(result: dict[str, Any], runtime: str) -> dict[str, Any]:
    return result.get("measurements", {}).get(runtime, {}).get("suites", {})


def summarize_runtime(result: dict[str, Any], runtime: str, baseline: dict[str, Any]) -> dict[str, Any]:
    """One variant on one runtime: each suite's entry, plus `errors` and `unavailable` with reasons."""
    return _summarize(result, runtime, baseline)[0]


def _summarize(result: dict[str, Any], runtime: str,
               baseline: dict[str, Any]) -> tuple[dict[str, Any], dict[Any, list[str]]]:
    """The runtime summary, and per kind (class) why its suites were not measured."""
    base_suites = _suites_of(baseline, runtime) or _suites_of(baseline, "torch-eager")
    summary: dict[str, Any] = {"accuracy": {}, "errors": {}}
    missing: dict[Any, list[str]] = {}
    for name, data in _suites_of(result, runtime).items():
        kind = kind_of(data.get("kind"))
        status = data.get("status")
        if status == NOT_APPLICABLE:  # the runtime does not measure this kind (the plan says why): no error
            summary.setdefault("not_applicable", {})[name] = data.get("reason")
            if kind is not None:
                missing.setdefault(NotApplicable(type(kind)), []).append(f"suite '{name}': {data.get('reason')}")
            continue
        if status != "ok":
            where = "unavailable" if status == "unavailable" else "errors"  # unavailable: cannot measure here
            summary.setdefault(where, {})[name] = data.get("error")
            how = "is not measurable here" if status == "unavailable" else "failed"
            missing.setdefault(type(kind), []).append(f"suite '{name}' {how}: {data.get('error')}")
            entry = kind.unmeasured(status, data.get("error")) if kind is not None else None
            if entry is not None and kind.headline:
                summary.setdefault(kind.headline, entry)
            continue
        if kind is None:
            summary["errors"][name] = f"suite kind '{data.get('kind')}' is not installed here; cannot summarize"
            continue
        entry = kind.summarize(data, base_suites.get(name))
        if kind.section:
            summary.setdefault(kind.section, {})[name] = entry
        if kind.headline:
            summary.setdefault(kind.headline, entry)  # the recipe's first suite of a kind is the headline
    return summary, missing


def evaluate_targets(summary: dict[str, Any], targets: dict[str, Any],
                     missing: dict[Any, list[str]] | None = None) -> dict[str, Any]:
    """pass / fail / undecided / not measured per target. *Undecided*: the 95 % interval straddles the
    limit, or the number is noisy and its replicates (processes) lie on both sides of the limit — more
    measurement could turn it either way, so it neither passes nor fails (the gate says so and how to
    re-measure). A noisy number whose every replicate lies on one side still decides, and says it is
    noisy. `missing`: per kind, why its suites were
    not measured (a target's "why" names them)."""
    verdicts: dict[str, Any] = {}
    for name, limit in targets.items():
        if limit is None:
            continue
        kind = measuring(name)
        if kind is None:
            verdicts[name] = {"status": "not measured", "limit": limit, "why": "no suite kind measures it"}
            continue
        rule, measured = kind.targets[name], kind.target_value(summary, name)
        inapplicable = (missing or {}).get(NotApplicable(type(kind)))
        if measured.value is None and inapplicable and not (missing or {}).get(type(kind)):
            verdicts[name] = {"status": NOT_APPLICABLE, "limit": limit,
                              "why": f"not applicable on this runtime: {inapplicable[0]}"}
            continue
        if measured.value is None:
            why = "; ".join((missing or {}).get(type(kind), [])) or measured.why
            verdicts[name] = {"status": "not measured", "limit": limit, "why": why}
            continue
        verdicts[name] = _verdict(measured, limit, rule.upper, rule.unit)
    return verdicts


def _verdict(measured: Any, limit: float, upper: bool, unit: str) -> dict[str, Any]:
    ok = measured.value <= limit if upper else measured.value >= limit
    straddles = bool(measured.ci and min(measured.ci) <= limit <= max(measured.ci))
    verdict = {"status": "pass" if ok else "fail", "value": measured.value, "limit": limit, "ci": measured.ci,
               "within_noise": straddles or bool(measured.noisy), "unit": unit}
    if measured.noisy:
        low, high = measured.spread or (None, None)
        if low is None or min(low, high) <= limit <= max(low, high):
            verdict.update(status="undecided", why=f"noisy: {measured.noisy}; re-measure on a quiet machine "
                                                   "(`harness run --resume` after moving the result aside) or add "
                                                   "rounds")
        else:  # every replicate on one side of the limit: the noise cannot turn the decision
            verdict["why"] = (f"noisy ({measured.noisy}), but every process lies on one side of the limit "
                              f"({low:.4g} to {high:.4g})")
    elif straddles:
        low, high = min(measured.ci), max(measured.ci)
        verdict.update(status="undecided", why=f"the 95 % interval [{low:.4g}, {high:.4g}] straddles the limit "
                                               f"{limit:g}: add rounds or items, or measure on a quieter machine")
    return verdict


def _judge(summary: dict[str, Any], spec: dict[str, Any], missing: dict[Any, list[str]]) -> None:
    """Targets, then each headline's recipe-policy verdict (e.g. parity thresholds) stored in it."""
    summary["targets"] = evaluate_targets(summary, spec["targets"], missing)
    for key, kind in headlines().items():
        if key in summary:
            verdict = kind.verdict(summary[key], spec)
            if verdict is not None:
                summary[key]["verdict"] = verdict


def _variant_entry(name: str, result: dict[str, Any], gate: bool) -> dict[str, Any]:
    build = result.get("build", {})
    return {"name": name, "status": result.get("status"), "gate": gate, "steps": result.get("steps", []),
            "error": result.get("error"), "traceback": result.get("traceback"), "notes": build.get("notes", []),
            "key": build.get("key"), "training": build.get("training", []), "runtimes": {}}


def aggregate(run: rundir.RunDir, plan: dict[str, Any], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The run's summary from its plan and its variants' results (as read from the run folder)."""
    resolved = run.read_resolved_recipe()
    spec = resolved["spec"]
    gates = {v["name"]: v["gate"] for v in resolved["variants"]}
    models = families_of(plan)
    variants = []
    for name, result in results.items():
        entry = {**_variant_entry(name, result, gates.get(name, True)), **models.get(name, {})}
        baseline = results.get(baseline_of(plan, name) or "", {})  # its own model's, in a cross-model run
        for runtime, measured in result.get("measurements", {}).items():
            if measured.get("status") == "not applicable":
                entry.setdefault("not_applicable", {})[runtime] = measured.get("reason")
                continue
            summary, missing = _summarize(result, runtime, baseline)
            _judge(summary, spec, missing)
            entry["runtimes"][runtime] = summary
        variants.append(entry)
    summary = {"run_id": plan["run_id"], "recipe": plan["recipe"], "baseline": plan["baseline"],
               "targets": spec["targets"], "variants": variants, rundir.FORMAT_KEY: plan.get(rundir.FORMAT_KEY, 1),
               **({"baselines": plan["baselines"]} if plan.get("baselines") else {})}
    if plan.get("limit"):  # --limit: scored suites read at most this many items; never a full run's equal
        summary["limit"] = plan["limit"]
    return summary
