"""Execute (or resume) a recipe: read it with the user's overrides, preflight everything, write
the plan, run one isolated worker per variant, then `finish`.

Nothing is written before the preflight passed: a recipe that cannot run leaves no half-made run
folder. Finished variants (those with a result) are never recomputed on `--resume`; a failed one
stays recorded as failed unless `retry_failed` asks to run it again (its old result is kept
beside the new one). After the sweep, results are aggregated, stored in the history database and
rendered to HTML; the gate reads the same summary.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results import rundir
from harness.run.plan import added_suites, limit_suites, plan_run, resolve_suites, select_variants, variant_job
from harness.spec.recipe import Recipe, find_recipe, load_recipe

WORKER = "harness.run.worker:run_variant"


@dataclass(frozen=True)
class RunOptions:
    """How to run a recipe (the `harness run` flags)."""

    output: Path | None = None
    progress: bool = True
    use_cache: bool = True
    #: --variant: run these (the baseline is added: retention needs it).
    variants: tuple[str, ...] = ()
    #: --limit: at most this many items per scored suite; recorded, so the run never passes for a full one.
    limit: int | None = None
    #: --set dotted.key=value overrides of the recipe, validated like the file.
    overrides: tuple[str, ...] = ()
    #: --resume --retry-failed: run failed variants again.
    retry_failed: bool = False
    #: --executor: where the variant workers run (`local`, `ray`); the rounds always run here, alone.
    executor: str = "local"
    #: --jobs: variant workers at once.
    jobs: int = 1
    #: --ray-address: an existing Ray cluster.
    ray_address: str | None = None

    def make_executor(self) -> Any:
        """The executor, checked (an unreachable cluster is one line before anything is written)."""
        from harness.executors._base import ExecutorOptions
        from harness.registries import EXECUTORS

        executor = EXECUTORS.get(self.executor)(ExecutorOptions(jobs=self.jobs, address=self.ray_address))
        executor.check()
        return executor


def output_of(recipe: Recipe, recipe_path: Path, output: Path | None) -> Path:
    """--output, else the recipe's `output:` (next to recipes/ when the recipe lives in a recipes/ folder)."""
    if output is not None:
        return output
    if recipe_path.parent.name == "recipes":
        return recipe_path.parent.parent / recipe.spec.output
    return Path(recipe.spec.output)


def prepare(recipe_path: Path, options: RunOptions) -> tuple[Recipe, dict[str, Any], Path]:
    """The recipe (overrides applied, variants selected), the plan without a run id, and where the
    run folder will go — after the preflight passed. Writes nothing."""
    from harness.run.preflight import families_of, preflight

    recipe_path = find_recipe(recipe_path)
    recipe = select_variants(load_recipe(recipe_path, list(options.overrides)), options.variants)
    use_data_dirs(recipe)
    suites = limit_suites(resolve_suites(recipe), options.limit)
    added = added_suites(recipe, suites)
    output = output_of(recipe, recipe_path, options.output)
    notices = preflight(recipe, [*suites, *added], output)
    plan = {"recipe": recipe.spec.name, "recipe_path": str(recipe_path.resolve()),
            "variants": [v.name for v in recipe.variants], "baseline": recipe.baseline, "suites": suites,
            **({"baselines": recipe.baselines} if recipe.baselines else {}),
            rundir.FORMAT_KEY: rundir.RUN_FORMAT_VERSION, "added_suites": added, "limit": options.limit,
            "overrides": list(options.overrides), "plan": plan_run(recipe, suites, added, families_of(recipe)),
            "runtime_options": recipe.spec.runtime_options, "notices": notices,
            "executor": {"executor": options.executor, "jobs": options.jobs, "address": options.ray_address}}
    return recipe, plan, output


def start(recipe_path: Path, options: RunOptions) -> tuple[rundir.RunDir, dict[str, Any], Recipe]:
    """A new run folder with the recipe, its resolution, the environment and the plan written."""
    from harness.environment import describe

    recipe, plan, output = prepare(recipe_path, options)
    recipe_path = Path(plan["recipe_path"])
    run = rundir.create(output, recipe.spec.name)
    shutil.copyfile(recipe_path, run.recipe_copy())
    plan = {"run_id": run.run_id, "started": time.time(), **plan}
    run.write_plan(plan)
    run.write_environment(describe())
    run.write_resolved_recipe({"spec": recipe.spec.model_dump(mode="json"),
                               "variants": [{"name": v.name, "steps": v.steps_as_data(), "gate": v.gate}
                                            for v in recipe.variants]})
    return run, plan, recipe


def recipe_of_run(run: rundir.RunDir, plan: dict[str, Any]) -> Recipe:
    """The run's recipe copy with its overrides, read as if it stood where the recipe did when the
    run began: its `suites/` folder, data dirs and relative paths resolve as they did then (the copy
    sits in the run folder, next to none of them)."""
    from harness.spec.recipe import apply_overrides, parse_recipe
    from harness.spec.yamlio import load_yaml

    data, lines = load_yaml(run.recipe_copy())
    overridden = {}
    if plan.get("overrides"):
        data, overridden = apply_overrides(data, list(plan["overrides"]))
    return parse_recipe(data, Path(plan["recipe_path"]), lines, overridden)


def reopen(path: Path, options: RunOptions) -> tuple[rundir.RunDir, dict[str, Any], Recipe]:
    """An interrupted run folder; a run recorded before plans were stored gets its plan recomputed."""
    run = rundir.open_run(path)
    plan = run.read_plan()
    recipe = select_variants(recipe_of_run(run, plan), tuple(plan["variants"]))
    use_data_dirs(recipe)
    if "plan" not in plan:
        plan = {**plan, "added_suites": added_suites(recipe, plan["suites"])}
        plan["plan"] = plan_run(recipe, plan["suites"], plan["added_suites"])
    if options.retry_failed:
        for name in plan["variants"]:
            if run.has_result(name) and run.read_variant_result(name).get("status") != "ok":
                run.keep_failed_result(name)
    return run, plan, recipe


def use_data_dirs(recipe: Recipe) -> None:
    """The recipe's data dirs, after --data-dir / FASTVLM_HARNESS_DATA; the spawned workers inherit them."""
    if recipe.spec.data_dirs:
        from harness.data.sources import append_data_dirs

        append_data_dirs(recipe.spec.data_dirs, recipe.path.parent if recipe.path else Path.cwd())


def build_reference(recipe: Recipe, progress: bool) -> None:
    """nano and every nano sibling the recipe's variants start from, each trained once, visibly,
    before the workers need it."""
    from harness.models.siblings import siblings

    bases = {recipe.base_of(v).model for v in recipe.variants}
    if "nano" in bases:
        from harness.training.nano import ensure_nano

        ensure_nano(progress=progress)
    for name in sorted(bases & set(siblings())):
        from harness.training.siblings import ensure_sibling

        ensure_sibling(name, progress=progress)


def execute(run: rundir.RunDir, plan: dict[str, Any], recipe: Recipe, bar: Any, use_cache: bool,
            executor: Any = None) -> None:
    """One isolated worker per variant without a result yet, through the executor (local processes
    by default); each outcome recorded in result.json as it arrives."""
    from harness.executors._base import Task

    if executor is None:
        executor = RunOptions().make_executor()
    definitions = [*plan["suites"], *plan.get("added_suites", [])]
    planned = {p["name"]: p for p in plan["plan"]}
    variants = {v.name: v for v in recipe.variants}
    bar.stage("build + accuracy/size per variant", len(recipe.variants), "variants")
    tasks = []
    for variant in recipe.variants:
        if run.has_result(variant.name):
            bar.advance(variant.name, "done earlier")
            continue
        folder = run.variant_dir(variant.name)
        job = variant_job(recipe, variant, planned[variant.name], definitions, folder, use_cache)
        tasks.append(Task(variant.name, WORKER, job, rundir.worker_files(folder), recipe.spec.variant_timeout_s))
    waiting = [t.name for t in tasks]
    if waiting:
        bar.start(f"building + measuring {', '.join(waiting[:executor.options.jobs])}")
    for task, outcome in executor.run(tasks):
        waiting.remove(task.name)
        variant = variants[task.name]
        write_outcome(run, variant, outcome)
        bar.advance(variant.name, "ok" if outcome.ok else f"FAILED: {outcome.error}")
        if waiting:  # the label names what is (most likely) running now
            bar.start(f"building + measuring {', '.join(waiting[:executor.options.jobs])}")


def write_outcome(run: rundir.RunDir, variant: Any, outcome: Any) -> None:
    """A variant worker's outcome as the variant's result.json (failed with its error, or its result)."""
    run.write_variant_result(variant.name, {
        "variant": variant.name, "steps": variant.steps_as_data(), "gate": variant.gate,
        "status": "ok" if outcome.ok else "failed", "seconds": outcome.seconds, **(outcome.result or {}),
        "error": outcome.error, "traceback": outcome.traceback,
        **({"worker_node": outcome.where} if outcome.where else {})})


def measure(run: rundir.RunDir, plan: dict[str, Any], recipe: Recipe, bar: Any, prefix: str = "") -> None:
    """The deferred suites (latency, memory) in interleaved rounds, once every variant is built."""
    from harness.run.rounds import measure_rounds

    measure_rounds(run, plan, recipe.spec.seed, recipe.path.parent if recipe.path else None,
                   tick=lambda label: (bar.start(label), bar.advance(label)),
                   begin=lambda planned: bar.stage("measurement rounds (fresh processes, interleaved)", planned,
                                                   "processes"), prefix=prefix)


def run(recipe_path: Path | None = None, output: Path | None = None, resume: Path | None = None,
        progress: bool = True, use_cache: bool = True, options: RunOptions | None = None) -> Path:
    """Execute (or resume) a run; return its directory. `use_cache=False` bypasses the response cache."""
    from harness.run.progress import RunProgress

    options = options or RunOptions(output=output, progress=progress, use_cache=use_cache)
    began = time.perf_counter()
    executor = options.make_executor()
    if resume is not None:
        folder, plan, recipe = reopen(resume, options)
    else:
        assert recipe_path is not None
        folder, plan, recipe = start(recipe_path, options)
        for note in plan.get("notices", []):  # what the run will record as not measured, said before it builds
            print(f"preflight: {note}", file=sys.stderr)
    build_reference(recipe, options.progress)
    timings = {"prepare_s": time.perf_counter() - began}
    with RunProgress(enabled=options.progress) as bar:
        mark = time.perf_counter()
        execute(folder, plan, recipe, bar, options.use_cache, executor)
        timings["workers_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
        measure(folder, plan, recipe, bar)
        timings["rounds_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    finish(folder.path)
    timings["finish_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - began
    folder.write_timings(timings)
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
