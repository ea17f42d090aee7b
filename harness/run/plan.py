"""The run's plan, decided once before any worker starts and recorded in `run.json`: for every
variant, which runtimes measure it (or why a runtime is not applicable) and with which suites —
the recipe's, plus the automatic `parity` suite on every runtime that does not run torch weights
(each export is checked against the torch weights it came from). Workers get the plan as a
frozen `VariantJob` and carry it out; they decide nothing about what to measure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.registries import RUNTIMES
from harness.spec.recipe import Recipe, ResolvedVariant, runtime_plan

PARITY = "parity"


@dataclass(frozen=True)
class RuntimeJob:
    """One runtime of a variant: measured with `suites` (definitions), or not applicable for `reason`."""

    runtime: str
    reason: str | None
    suites: tuple[dict[str, Any], ...] = ()
    #: Suites of kinds the runtime does not measure (its `suite_kinds`), with why: recorded, never run.
    not_applicable: tuple[tuple[dict[str, Any], str], ...] = ()
    #: The recipe's `runtime_options` for this runtime (validated by its `Config`).
    options: dict[str, Any] | None = None


@dataclass(frozen=True)
class VariantJob:
    """Everything a variant's isolated worker needs; plain data, so it pickles into the spawned process."""

    variant: str
    base: dict[str, Any]
    steps: tuple[dict[str, Any], ...]
    runtimes: tuple[RuntimeJob, ...]
    cache_dir: str
    work_dir: str
    recipe_dir: str | None = None
    seed: int = 0
    threads: int | None = None
    use_cache: bool = True


def runs_torch(runtime: str) -> bool:
    return "torch" in RUNTIMES.get(runtime).accepts


def suite_reason(runtime: str, kind: str) -> str | None:
    """Why `runtime` does not measure suites of `kind` (None: it does), from the runtime's own
    declaration (`suite_kinds`, absent: every kind; `not_measured`: why)."""
    cls = RUNTIMES.get(runtime)
    kinds = getattr(cls, "suite_kinds", None)
    if kinds is None or kind in kinds:
        return None
    return (f"{runtime} measures {'/'.join(kinds)} suites only: "
            f"{getattr(cls, 'not_measured', 'it cannot measure ' + kind)}")


def make_runtime(name: str, options: dict[str, Any] | None = None) -> Any:
    """An instance of runtime `name`, given its recipe options when its class declares a `Config`."""
    cls = RUNTIMES.get(name)
    return cls(options) if getattr(cls, "Config", None) is not None else cls()


def resolve_suites(recipe: Recipe) -> list[dict[str, Any]]:
    """The recipe's suite definitions, as run.json records them."""
    from harness.spec.suite_files import load_suite

    recipe_dir = recipe.path.parent if recipe.path else None
    return [load_suite(name, recipe_dir).model_dump(mode="json") for name in recipe.spec.suites]


def select_variants(recipe: Recipe, names: tuple[str, ...] | list[str]) -> Recipe:
    """The recipe with only the named variants (`--variant`), plus their baselines (each variant's own
    model's, in a cross-model recipe): retention and the paired tests need them. An unknown name is a
    one-line error with a suggestion."""
    if not names:
        return recipe
    chosen = {recipe.variant(name).name for name in names}
    wanted = chosen | {recipe.baseline_of(name) for name in chosen}
    return recipe.model_copy(update={"variants": [v for v in recipe.variants if v.name in wanted]})


def limit_suites(suites: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """`--limit N`: every scored suite reads at most N items (its `limit:` field, the smaller one
    wins). The definition changes with it, so `harness compare` never pairs it with a full run."""
    if limit is None:
        return suites
    from harness.registries import SUITE_KINDS

    out = []
    for suite in suites:
        kind = SUITE_KINDS.get(suite["kind"])
        if kind.scored and "limit" in kind.Config.model_fields:
            suite = {**suite, "limit": min(limit, suite.get("limit") or limit)}
        out.append(suite)
    return out


def added_suites(recipe: Recipe, suites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The automatic parity suite, when some runtime runs exports and the recipe names no parity suite."""
    from harness.spec.suite_files import load_suite

    if any(s["kind"] == PARITY for s in suites) or all(runs_torch(r) for r in recipe.spec.runtimes):
        return []
    return [load_suite(PARITY, recipe.path.parent if recipe.path else None).model_dump(mode="json")]


def plan_variant(variant: ResolvedVariant, runtimes: list[str], suites: list[dict[str, Any]],
                 added: list[dict[str, Any]]) -> dict[str, Any]:
    """A `PlannedVariant`: per runtime, the reason it does not apply or the suites it runs."""
    reasons = runtime_plan(variant.formats, runtimes, variant.runtimes)
    planned = []
    for runtime in runtimes:
        wanted = list(suites) + (list(added) if reasons[runtime] is None and not runs_torch(runtime) else [])
        record: dict[str, Any] = {"runtime": runtime, "reason": reasons[runtime], "suites": []}
        if reasons[runtime] is None:
            why = {s["name"]: suite_reason(runtime, s["kind"]) for s in wanted}
            record["suites"] = [s["name"] for s in wanted if why[s["name"]] is None]
            skipped = {name: reason for name, reason in why.items() if reason is not None}
            if skipped:
                record["not_applicable"] = skipped
        planned.append(record)
    return {"name": variant.name, "formats": list(variant.formats), "runtimes": planned}


def plan_run(recipe: Recipe, suites: list[dict[str, Any]], added: list[dict[str, Any]],
             families: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    """Every variant's `PlannedVariant`; with `families` (variant → model family, from the preflight)
    each names its family, and in a cross-model recipe its model and its own baseline variant."""
    planned = [plan_variant(v, recipe.spec.runtimes, suites, added) for v in recipe.variants]
    for variant, entry in zip(recipe.variants, planned, strict=True):
        if families is not None:
            entry["family"] = families.get(variant.name)
        if variant.model is not None:
            entry.update(model=variant.model, baseline=recipe.baseline_of(variant.name))
    return planned


def variant_job(recipe: Recipe, variant: ResolvedVariant, planned: dict[str, Any],
                definitions: list[dict[str, Any]], work_dir: Path, use_cache: bool = True) -> VariantJob:
    """The worker's input for one planned variant."""
    from harness.paths import cache_dir

    by_name = {s["name"]: s for s in definitions}
    options = recipe.spec.runtime_options
    runtimes = tuple(RuntimeJob(r["runtime"], r["reason"], tuple(by_name[n] for n in r["suites"]),
                                tuple((by_name[n], why) for n, why in r.get("not_applicable", {}).items()),
                                options.get(r["runtime"])) for r in planned["runtimes"])
    return VariantJob(variant=variant.name, base=recipe.base_of(variant).model_dump(),
                      steps=tuple(variant.steps_as_data()), runtimes=runtimes, cache_dir=str(cache_dir()),
                      work_dir=str(work_dir),
                      recipe_dir=str(recipe.path.parent.resolve()) if recipe.path else None, seed=recipe.spec.seed,
                      threads=int(os.environ.get("HARNESS_THREADS", "0")) or None, use_cache=use_cache)


def job_for(base: dict[str, Any], steps: list[dict[str, Any]], formats: list[str], runtimes: list[str],
            suites: list[dict[str, Any]], cache: Path, work_dir: Path, chosen: list[str] | None = None,
            recipe_dir: Path | None = None, use_cache: bool = True,
            options: dict[str, dict[str, Any]] | None = None) -> VariantJob:
    """A planned job for one variant outside a recipe run (tests, notebooks), by the same rules as
    `plan_run`: `chosen` is the variant's own `runtimes:` list, `options` the runtime options."""
    from harness.spec.suite_files import load_suite

    reasons = runtime_plan(formats, runtimes, chosen)
    parity = [] if any(s["kind"] == PARITY for s in suites) else \
        [load_suite(PARITY, recipe_dir).model_dump(mode="json")]
    jobs: list[RuntimeJob] = []
    for r in runtimes:
        wanted = [] if reasons[r] is not None else list(suites) + ([] if runs_torch(r) else parity)
        why = [(s, suite_reason(r, s["kind"])) for s in wanted]
        jobs.append(RuntimeJob(r, reasons[r], tuple(s for s, w in why if w is None),
                               tuple((s, w) for s, w in why if w is not None), (options or {}).get(r)))
    return VariantJob(variant="variant", base=base, steps=tuple(steps), runtimes=tuple(jobs), cache_dir=str(cache),
                      work_dir=str(work_dir), recipe_dir=str(recipe_dir) if recipe_dir else None, use_cache=use_cache)
