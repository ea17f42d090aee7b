"""`harness search RECIPE` / `harness search --resume RUN_DIR`: the recipe's own variants (the
baseline at least) are run first, as `harness run` would; then trials are asked from Optuna in
batches of `--jobs`, each one a variant of the same run folder — stored, reported and gated like
any variant — until the trial budget or the timeout is spent. At the end the found frontier is
gated and the search record (`search.json`) written for the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.results import rundir
from harness.run.runner import RunOptions, start
from harness.search.space import space_data, space_difference
from harness.spec.recipe import Recipe, known_objectives, load_recipe
from harness.spec.search import SearchSpec


@dataclass(frozen=True)
class SearchOptions:
    """The `harness search` flags: the run's, plus a trial budget that replaces the recipe's."""

    run: RunOptions = field(default_factory=RunOptions)
    n_trials: int | None = None


def _search_of(recipe: Recipe, where: Path) -> SearchSpec:
    if recipe.spec.search is None:
        raise ConfigError(f"{where}: search: the recipe has no `search:` section; add one (docs/search.md) or "
                          "run it with `harness run`")
    return recipe.spec.search


def _identity(spec: SearchSpec) -> dict[str, Any]:
    """What a resumed search must share with the one it continues (the budget may change)."""
    return {"space": space_data(spec.space), "objectives": list(spec.objectives), "sampler": spec.sampler,
            "seed": spec.seed}


def begin(recipe_path: Path, options: SearchOptions) -> tuple[rundir.RunDir, dict[str, Any], Recipe, SearchSpec]:
    """A new search run folder (the preflight of `harness run`, then the search's identity in run.json)."""
    from harness.spec.recipe import find_recipe

    path = find_recipe(recipe_path)
    spec = _search_of(load_recipe(path, list(options.run.overrides)), path)
    run, plan, recipe = start(path, options.run)
    plan["search"] = {**_identity(spec), "interrupted": []}
    run.write_plan(plan)
    return run, plan, recipe, spec


def _changed(stored: dict[str, Any], spec: SearchSpec, where: Path) -> None:
    now = _identity(spec)
    difference = space_difference(stored["space"], now["space"])
    for key in ("objectives", "sampler", "seed"):
        if difference is None and stored[key] != now[key]:
            difference = f"search.{key} was {stored[key]} and is now {now[key]}"
    if difference:
        raise ConfigError(f"{where}: the search changed since this run began: {difference}; its finished trials "
                          "were sampled from the old one — restore it, or start a new search with "
                          f"`harness search {where}`")


def reopen(path: Path, options: SearchOptions) -> tuple[rundir.RunDir, dict[str, Any], Recipe, SearchSpec]:
    """An interrupted search: its recipe copy and trial variants; the recipe file (when it is still
    there) may raise the budget, but a changed space, objectives, sampler or seed is refused."""
    from harness.run.runner import recipe_of_run, use_data_dirs

    run = rundir.open_run(path)
    if not run.is_search():
        raise ConfigError(f"{path}: not a search run (no {rundir.SEARCH_STORAGE}); resume it with "
                          f"`harness run --resume {path}`")
    plan = run.read_plan()
    overrides = list(plan.get("overrides") or [])
    recipe = recipe_of_run(run, plan)
    spec = _search_of(recipe, run.recipe_copy())
    current = Path(plan["recipe_path"])
    if current.is_file():
        spec = _search_of(load_recipe(current, overrides), current)
        _changed(plan["search"], spec, current)
    use_data_dirs(recipe)
    return run, plan, _with_trials(run, plan, recipe), spec


def _with_trials(run: rundir.RunDir, plan: dict[str, Any], recipe: Recipe) -> Recipe:
    """The recipe's own variants in the plan, then the trial variants the resolved recipe records."""
    from harness.spec.messages import Problems
    from harness.spec.recipe import VariantSpec
    from harness.spec.resolve import resolve_variant

    own = {v.name: v for v in recipe.variants}
    variants = [own[n] for n in plan["variants"] if n in own]
    problems = Problems(str(run.path))
    for entry in run.read_resolved_recipe()["variants"]:
        if entry["name"] in plan["variants"] and entry["name"] not in own:
            spec = VariantSpec(name=entry["name"], steps=entry["steps"], gate=entry["gate"])
            variant = resolve_variant(spec, ("variants", entry["name"]), list(recipe.spec.runtimes), problems)
            if variant is not None:
                variants.append(variant)
    problems.raise_if_any()
    return recipe.model_copy(update={"variants": variants})


def directions(spec: SearchSpec) -> list[str]:
    known = known_objectives()
    return ["maximize" if known[o] else "minimize" for o in spec.objectives]


def search(recipe_path: Path | None, options: SearchOptions, resume: Path | None = None) -> Path:
    """Run (or resume) a search; return its run folder."""
    from harness.run.progress import RunProgress
    from harness.run.runner import build_reference, execute, finish, measure
    from harness.search.loop import run_trials
    from harness.search.record import close_search
    from harness.search.study import open_study
    from harness.search.trials import Search

    began = time.perf_counter()
    executor = options.run.make_executor()
    if resume is not None:
        run, plan, recipe, spec = reopen(resume, options)
    else:
        assert recipe_path is not None
        run, plan, recipe, spec = begin(recipe_path, options)
    study = open_study(run.search_storage, spec, directions(spec), create=resume is None)
    build_reference(recipe, options.run.progress)
    with RunProgress(enabled=options.run.progress) as bar:
        execute(run, plan, recipe, bar, options.run.use_cache, executor)
        measure(run, plan, recipe, bar)
        state = Search(run, plan, recipe, spec, study, executor, bar, options.run.use_cache, list(spec.objectives))
        run_trials(state, options.n_trials or spec.n_trials, began)
    close_search(state)
    finish(run.path)
    return run.path
