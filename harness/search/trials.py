"""One batch of trials: ask Optuna for them, stop the hopeless ones on a lite subset, build and
score the rest as variants of the run (through the run's executor, `--jobs` at a time), measure
their deferred suites in their own rounds, and tell Optuna what each one scored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.results import rundir
from harness.run.plan import plan_variant, variant_job
from harness.run.runner import WORKER, execute, measure
from harness.search import lite
from harness.search.space import suggest_steps, trial_name
from harness.search.study import UNDECIDED_VIOLATION, constraint_values
from harness.spec.messages import Problems
from harness.spec.recipe import Recipe, ResolvedVariant, VariantSpec
from harness.spec.resolve import resolve_variant
from harness.spec.search import SearchSpec


@dataclass
class Search:
    """What a batch works with: the run, its plan and recipe (both grow by a variant per trial)."""

    run: rundir.RunDir
    plan: dict[str, Any]
    recipe: Recipe
    spec: SearchSpec
    study: Any
    executor: Any
    bar: Any
    use_cache: bool = True
    objectives: list[str] = field(default_factory=list)


@dataclass
class Asked:
    trial: Any
    variant: ResolvedVariant


def _fail(search: Search, trial: Any, reason: str) -> None:
    import optuna

    trial.set_user_attr("reason", reason)
    search.study.tell(trial, state=optuna.trial.TrialState.FAIL)
    search.bar.advance(trial.user_attrs.get("variant", f"trial {trial.number}"), f"FAILED: {reason}")


def _earlier(search: Search, steps: list[dict[str, Any]]) -> Any | None:
    """The first finished trial (not interrupted, not itself a repeat) that had these steps."""
    import optuna

    interrupted = set(search.plan["search"]["interrupted"])
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return next((t for t in search.study.get_trials(deepcopy=False, states=done)
                 if t.user_attrs.get("steps") == steps and t.number not in interrupted
                 and "repeat_of" not in t.user_attrs), None)


def _repeat(search: Search, trial: Any, earlier: Any) -> None:
    """A point measured before (TPE and NSGA-II do propose points again): Optuna is told what the
    earlier trial found — values, constraints, state — and nothing is built or measured again.
    Repeats do not count against the budget (`loop.counted`)."""
    import optuna

    for key in ("variant", "lite", "reason", "runtime", "targets", "intervals"):
        if key in earlier.user_attrs:
            trial.set_user_attr(key, earlier.user_attrs[key])
    trial.set_user_attr("repeat_of", earlier.number)
    for name, value in earlier.constraints.items():
        trial.set_constraint(name, value)
    if earlier.state == optuna.trial.TrialState.COMPLETE:
        search.study.tell(trial, earlier.values)
    else:
        search.study.tell(trial, state=earlier.state)
    search.bar.advance(earlier.user_attrs.get("variant", ""), f"trial {trial.number}: the point of trial "
                       f"{earlier.number} again; its results reused")


def ask(search: Search) -> Asked | None:
    """A new trial and its variant; a sampled combination that is no valid pipeline (e.g. a torch
    step after an export) is told failed at once, with the recipe check's own words, and a point
    measured before is answered from that trial."""
    trial = search.study.ask()
    steps = suggest_steps(trial, search.spec.space)
    earlier = _earlier(search, steps)
    if earlier is not None:
        trial.set_user_attr("steps", steps)
        _repeat(search, trial, earlier)
        return None
    name = trial_name(trial.number, trial.params, search.spec.space)
    trial.set_user_attr("variant", name)
    trial.set_user_attr("steps", steps)
    problems = Problems(f"trial {trial.number}")
    variant = resolve_variant(VariantSpec(name=name, steps=steps, gate=False), ("trial",),
                              list(search.recipe.spec.runtimes), problems)
    if variant is None:
        _fail(search, trial, "; ".join(problems.lines_found()))
        return None
    return Asked(trial, variant)


def _planned(search: Search, variant: ResolvedVariant) -> dict[str, Any]:
    return plan_variant(variant, list(search.recipe.spec.runtimes), search.plan["suites"],
                        search.plan.get("added_suites", []))


def _primary_runtime(planned: dict[str, Any]) -> str | None:
    return next((r["runtime"] for r in planned["runtimes"] if r["reason"] is None), None)


def _baseline_accuracy(search: Search, suite: str) -> float | None:
    result = search.run.read_variant_result(search.plan["baseline"])
    runtime = next(iter(result.get("measurements", {})), None)
    found = lite.accuracy_of(result, runtime, suite) if runtime else None
    return found[0] / found[1] if found else None


def stop_early(search: Search, batch: list[Asked]) -> list[Asked]:
    """Score each trial's lite subset (one isolated worker each, through the executor); trials that
    cannot meet the retention target are told PRUNED. Returns the trials that go on."""
    rule, targets = search.spec.early_stop, search.recipe.spec.targets
    suite = lite.lite_suite(search.plan["suites"], rule.items, search.recipe.spec.seed) if rule else None
    base = _baseline_accuracy(search, suite["name"].removesuffix("-lite")) if suite else None
    if rule is None or suite is None or base is None or targets.min_retention is None:
        if rule is not None:  # asked for, not possible: said in the record, never silently skipped
            search.plan["search"]["early_stop_off"] = (
                "no accuracy suite" if suite is None else "no min_retention target" if targets.min_retention is None
                else "the baseline's accuracy was not measured")
        return batch
    from harness.executors._base import Task

    by_name = {a.variant.name: a for a in batch}
    tasks = []
    for asked in batch:
        runtime = _primary_runtime(_planned(search, asked.variant))
        folder = search.run.lite_dir(asked.variant.name)
        folder.mkdir(parents=True, exist_ok=True)
        planned = {"runtimes": [{"runtime": runtime, "reason": None, "suites": [suite["name"]]}]}
        job = variant_job(search.recipe, asked.variant, planned, [suite], folder, search.use_cache)
        tasks.append(Task(asked.variant.name, WORKER, job, rundir.worker_files(folder),
                          search.recipe.spec.variant_timeout_s))
    search.bar.start(f"lite subset ({rule.items} items) of {', '.join(by_name)}")
    going, crashed = [], []
    for task, outcome in search.executor.run(tasks):
        asked = by_name[task.name]
        if not outcome.ok:
            _fail(search, asked.trial, f"lite subset: {outcome.error}")
            crashed.append((asked, outcome))
            continue
        found = lite.accuracy_of(outcome.result or {}, task.payload.runtimes[0].runtime, suite["name"])
        if found is None:
            going.append(asked)  # the lite suite itself failed: the full run records why
            continue
        verdict = lite.judge(*found, base, targets.min_retention, rule.confidence)
        asked.trial.set_user_attr("lite", {"correct": verdict.correct, "items": verdict.items,
                                           "upper": verdict.upper, "needed": verdict.needed,
                                           "why": verdict.describe()})
        if verdict.stop:
            _prune(search, asked.trial, verdict)
        else:
            going.append(asked)
    _record_crashed(search, crashed)
    return going


def _record_crashed(search: Search, crashed: list[tuple[Asked, Any]]) -> None:
    """A trial whose worker crashed on its lite subset is a failed variant of the run, as in `harness run`:
    the exit code, the terminal summary and the report say so (a stopped trial is no failure)."""
    from harness.run.runner import write_outcome

    if crashed:
        add_variants(search, [asked for asked, _ in crashed])
        for asked, outcome in crashed:
            write_outcome(search.run, asked.variant, outcome)


def _prune(search: Search, trial: Any, verdict: lite.LiteVerdict) -> None:
    import optuna

    for name in (n for n, v in search.recipe.spec.targets.model_dump().items() if v is not None):
        trial.set_constraint(name, (verdict.needed - verdict.upper) / verdict.needed if name == "min_retention"
                             else UNDECIDED_VIOLATION)
    search.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    search.bar.advance(trial.user_attrs["variant"], verdict.describe())


def add_variants(search: Search, batch: list[Asked]) -> None:
    """The batch's trials become variants of the run: in the plan, the resolved recipe and the
    recipe the runner reads (gated at the end, when the frontier is known)."""
    resolved = search.run.read_resolved_recipe()
    for asked in batch:
        variant = asked.variant
        search.recipe.variants.append(variant)
        search.plan["variants"].append(variant.name)
        search.plan["plan"].append(_planned(search, variant))
        resolved["variants"].append({"name": variant.name, "steps": variant.steps_as_data(), "gate": False,
                                     "trial": asked.trial.number})
    search.run.write_plan(search.plan)
    search.run.write_resolved_recipe(resolved)


def run_batch(search: Search, batch: list[Asked]) -> None:
    """Build and score the batch, measure its deferred suites, tell Optuna each trial's values."""
    from harness.results.aggregate import aggregate

    add_variants(search, batch)
    execute(search.run, search.plan, search.recipe, search.bar, search.use_cache, search.executor)
    measure(search.run, search.plan, search.recipe, search.bar, prefix=f"t{batch[0].trial.number}-")
    results = search.run.read_variant_results(search.plan["variants"])
    summary = aggregate(search.run, search.plan, results)
    entries = {v["name"]: v for v in summary["variants"]}
    for asked in batch:
        tell(search, asked.trial, entries[asked.variant.name])


def _problems_of(data: dict[str, Any]) -> str:
    found = [f"suite '{s}' failed: {e}" for s, e in (data.get("errors") or {}).items()]
    found += [f"suite '{s}' not measurable here: {e}" for s, e in (data.get("unavailable") or {}).items()]
    return "; ".join(found)


def tell(search: Search, trial: Any, entry: dict[str, Any]) -> None:
    """Tell Optuna the trial's objective values (its first measured runtime's) and its constraint
    values from the recipe's targets; a failed variant or an objective not measured fails the trial
    (never a made-up value)."""
    from harness.results.recommend import objective_values

    if entry.get("status") != "ok" or not entry.get("runtimes"):
        _fail(search, trial, entry.get("error") or "the variant was not measured")
        return
    runtime, data = next(iter(entry["runtimes"].items()))
    values = objective_values(data)
    missing = [o for o in search.objectives if o not in values]
    if missing:
        _fail(search, trial, f"{', '.join(missing)} not measured on {runtime}"
                             + (f" ({_problems_of(data)})" if _problems_of(data) else ""))
        return
    constraints = constraint_values(data.get("targets") or {})
    for name, value in constraints.items():
        trial.set_constraint(name, value)
    trial.set_user_attr("runtime", runtime)
    trial.set_user_attr("targets", {n: t.get("status") for n, t in (data.get("targets") or {}).items()})
    trial.set_user_attr("intervals", {o: [values[o].low, values[o].high] for o in search.objectives})
    search.study.tell(trial, [values[o].point for o in search.objectives])
    shown = ", ".join(f"{o} {values[o].point:.4g}" for o in search.objectives)
    missed = [n for n, c in constraints.items() if c > 0]
    search.bar.advance(trial.user_attrs["variant"], f"trial {trial.number}: {shown}; "
                       + (f"misses {', '.join(missed)}" if missed else "meets every target"))
