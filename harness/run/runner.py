"""Execute (or resume) a recipe: plan it, run one isolated worker per variant, then `finish`.

Finished variants (those with a result) are never recomputed on `--resume`; a failed one stays
recorded as failed. After the sweep, results are aggregated, stored in the history database and
rendered to HTML; the gate reads the same summary.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from harness.results import rundir
from harness.run.plan import added_suites, plan_run, resolve_suites, variant_job
from harness.spec.recipe import Recipe, load_recipe

WORKER = "harness.run.worker:run_variant"


def _output_of(recipe: Recipe, recipe_path: Path, output: Path | None) -> Path:
    """--output, else the recipe's `output:` (next to recipes/ when the recipe lives in a recipes/ folder)."""
    if output is not None:
        return output
    if recipe_path.parent.name == "recipes":
        return recipe_path.parent.parent / recipe.spec.output
    return Path(recipe.spec.output)


def start(recipe_path: Path, output: Path | None) -> tuple[rundir.RunDir, dict[str, Any], Recipe]:
    """A new run folder with the recipe, its resolution, the environment and the plan written."""
    from harness.environment import describe

    recipe = load_recipe(recipe_path)
    suites = resolve_suites(recipe)
    added = added_suites(recipe, suites)
    run = rundir.create(_output_of(recipe, recipe_path, output), recipe.spec.name)
    shutil.copyfile(recipe_path, run.recipe_copy())
    plan = {"run_id": run.run_id, "recipe": recipe.spec.name, "recipe_path": str(recipe_path.resolve()),
            "started": time.time(), "variants": [v.name for v in recipe.variants], "baseline": recipe.baseline,
            "suites": suites, rundir.FORMAT_KEY: rundir.RUN_FORMAT_VERSION,
            "added_suites": added, "plan": plan_run(recipe, suites, added)}
    run.write_plan(plan)
    run.write_environment(describe())
    run.write_resolved_recipe({"spec": recipe.spec.model_dump(mode="json"),
                               "variants": [{"name": v.name, "steps": v.steps_as_data(), "gate": v.gate}
                                            for v in recipe.variants]})
    return run, plan, recipe


def reopen(path: Path) -> tuple[rundir.RunDir, dict[str, Any], Recipe]:
    """An interrupted run folder; a run recorded before plans were stored gets its plan recomputed."""
    run = rundir.open_run(path)
    plan = run.read_plan()
    recipe = load_recipe(run.recipe_copy()).model_copy(update={"path": Path(plan["recipe_path"])})
    if "plan" not in plan:
        plan = {**plan, "added_suites": added_suites(recipe, plan["suites"])}
        plan["plan"] = plan_run(recipe, plan["suites"], plan["added_suites"])
    return run, plan, recipe


def _prepare(recipe: Recipe, progress: bool) -> None:
    """What every worker inherits: the recipe's data dirs, and a built nano reference."""
    if recipe.spec.data_dirs:  # after --data-dir / FASTVLM_HARNESS_DATA; the spawned workers inherit it
        from harness.data.sources import append_data_dirs

        append_data_dirs(recipe.spec.data_dirs, recipe.path.parent if recipe.path else Path.cwd())
    if recipe.spec.base.model == "nano":
        from harness.training.nano import ensure_nano

        ensure_nano(progress=progress)  # train once, visibly, before the workers need it


def execute(run: rundir.RunDir, plan: dict[str, Any], recipe: Recipe, progress: bool, use_cache: bool) -> None:
    """One isolated worker per variant without a result yet; each outcome recorded in result.json."""
    from harness import isolation
    from harness.run.progress import VariantProgress

    definitions = [*plan["suites"], *plan.get("added_suites", [])]
    planned = {p["name"]: p for p in plan["plan"]}
    with VariantProgress(len(recipe.variants), enabled=progress) as bar:
        for variant in recipe.variants:
            if run.has_result(variant.name):
                bar.advance(variant.name, "done earlier")
                continue
            bar.start(variant.name)
            folder = run.variant_dir(variant.name)
            job = variant_job(recipe, variant, planned[variant.name], definitions, folder, use_cache)
            outcome = isolation.run_isolated(WORKER, job, rundir.worker_files(folder), recipe.spec.variant_timeout_s)
            run.write_variant_result(variant.name, {
                "variant": variant.name, "steps": variant.steps_as_data(), "gate": variant.gate,
                "status": "ok" if outcome.ok else "failed", "seconds": outcome.seconds, **(outcome.result or {}),
                "error": outcome.error, "traceback": outcome.traceback})
            bar.advance(variant.name, "ok" if outcome.ok else f"FAILED: {outcome.error}")


def run(recipe_path: Path | None = None, output: Path | None = None, resume: Path | None = None,
        progress: bool = True, use_cache: bool = True) -> Path:
    """Execute (or resume) a run; return its directory. `use_cache=False` bypasses the response cache."""
    if resume is not None:
        folder, plan, recipe = reopen(resume)
    else:
        assert recipe_path is not None
        folder, plan, recipe = start(recipe_path, output)
    _prepare(recipe, progress)
    execute(folder, plan, recipe, progress, use_cache)
    finish(folder.path)
    return folder.path


def finish(path: Path) -> dict[str, Any]:
    """Aggregate, store in history, render the report. Safe to call again (`harness report`)."""
    from harness.report.html import render_report
    from harness.results.aggregate import aggregate
    from harness.results.history import record_run

    run = rundir.open_run(path)
    plan = run.read_plan()
    results = run.read_variant_results(plan["variants"])
    summary = aggregate(run, plan, results)
    warning = record_run(run, plan, summary)
    summary["warnings"] = [warning] if warning else []
    run.write_summary(summary)
    render_report(run, plan, summary, results)
    return summary
