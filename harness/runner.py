"""Plan and execute a recipe: one isolated worker per variant, results into a run directory.

Finished variants (those with a `result.json`) are never recomputed on `--resume`; a failed one
stays recorded as failed. After the sweep, results are aggregated, stored in the history
database, rendered to HTML and gated.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.compare import REPORT_VERSION
from harness.errors import ConfigError, RunDirError
from harness.recipe import Recipe, load_recipe

RUN_MANIFEST = "run.json"


def new_run_dir(recipe: Recipe, output: Path) -> Path:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output '{output}' is a file; give a directory for run output")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = output / f"{stamp}-{recipe.spec.name}-{secrets.token_hex(2)}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory under '{output}': {exc.strerror}") from None
    return run_dir


def open_run_dir(path: Path) -> dict[str, Any]:
    manifest = path / RUN_MANIFEST
    if not path.is_dir() or not manifest.exists():
        raise RunDirError(f"'{path}' is not a run directory (no {RUN_MANIFEST}); give a folder under reports/")
    try:
        return json.loads(manifest.read_text())
    except json.JSONDecodeError:
        raise RunDirError(f"'{manifest}' is corrupt; this run cannot be resumed or reported") from None


def _payload(recipe: Recipe, variant: Any, run_dir: Path, suites: list[dict[str, Any]],
             use_cache: bool = True) -> dict[str, Any]:
    from harness.paths import cache_dir

    return {"base": recipe.spec.base.model_dump(), "steps": variant.steps_as_data(),
            "runtimes": recipe.spec.runtimes, "variant_runtimes": variant.runtimes, "formats": variant.formats,
            "suites": suites, "seed": recipe.spec.seed,
            "cache_dir": str(cache_dir()), "work_dir": str(run_dir / "variants" / variant.name),
            "recipe_dir": str(recipe.path.parent.resolve()) if recipe.path else None,
            "threads": int(os.environ.get("HARNESS_THREADS", "0")) or None, "use_cache": use_cache}


def resolve_suites(recipe: Recipe) -> list[dict[str, Any]]:
    from harness.suites._spec import load_suite

    recipe_dir = recipe.path.parent if recipe.path else None
    return [load_suite(name, recipe_dir).model_dump(mode="json") for name in recipe.spec.suites]


def run(recipe_path: Path | None = None, output: Path | None = None, resume: Path | None = None,
        progress: bool = True, use_cache: bool = True) -> Path:
    """Execute (or resume) a run; return its directory. `use_cache=False` bypasses the response cache."""
    from harness.environment import describe
    from harness.executors import run_isolated
    from harness.ui import VariantProgress

    if resume is not None:
        manifest = open_run_dir(resume)
        run_dir = resume
        recipe = load_recipe(run_dir / "recipe.yaml")
        recipe = recipe.model_copy(update={"path": Path(manifest["recipe_path"])})
        suites = manifest["suites"]
    else:
        assert recipe_path is not None
        recipe = load_recipe(recipe_path)
        suites = resolve_suites(recipe)
        out = output or (recipe_path.parent.parent / recipe.spec.output
                         if recipe_path.parent.name == "recipes" else Path(recipe.spec.output))
        run_dir = new_run_dir(recipe, out)
        shutil.copyfile(recipe_path, run_dir / "recipe.yaml")
        manifest = {"run_id": run_dir.name, "recipe": recipe.spec.name,
                    "recipe_path": str(recipe_path.resolve()), "started": time.time(),
                    "variants": [v.name for v in recipe.variants], "baseline": recipe.baseline,
                    "suites": suites, "report_version": REPORT_VERSION}
        (run_dir / RUN_MANIFEST).write_text(json.dumps(manifest, indent=2))
        (run_dir / "environment.json").write_text(json.dumps(describe(), indent=2))
        (run_dir / "recipe.resolved.json").write_text(json.dumps(
            {"spec": recipe.spec.model_dump(mode="json"),
             "variants": [{"name": v.name, "steps": v.steps_as_data(), "gate": v.gate} for v in recipe.variants]},
            indent=2))

    if recipe.spec.data_dirs:  # after --data-dir / FASTVLM_HARNESS_DATA; the spawned workers inherit it
        from harness.data.sources import append_data_dirs

        append_data_dirs(recipe.spec.data_dirs, recipe.path.parent if recipe.path else Path.cwd())
    if recipe.spec.base.model == "nano":
        from harness.models.nano import ensure_nano

        ensure_nano(progress=progress)  # train once, visibly, before the workers need it
    with VariantProgress(len(recipe.variants), enabled=progress) as bar:
        for variant in recipe.variants:
            vdir = run_dir / "variants" / variant.name
            if (vdir / "result.json").exists():
                bar.advance(variant.name, "done earlier")
                continue
            bar.start(variant.name)
            outcome = run_isolated("harness.worker:run_variant", _payload(recipe, variant, run_dir, suites, use_cache),
                                   vdir, recipe.spec.variant_timeout_s)
            record = {"variant": variant.name, "steps": variant.steps_as_data(), "gate": variant.gate,
                      "status": "ok" if outcome.ok else "failed", "seconds": outcome.seconds,
                      **(outcome.result or {}), "error": outcome.error, "traceback": outcome.traceback}
            tmp = vdir / "result.json.tmp"
            tmp.write_text(json.dumps(record, indent=1, default=str))
            tmp.replace(vdir / "result.json")
            bar.advance(variant.name, "ok" if outcome.ok else f"FAILED: {outcome.error}")
    finish(run_dir)
    return run_dir


def finish(run_dir: Path) -> dict[str, Any]:
    """Aggregate, store in history, render the report. Safe to call again (`harness report`)."""
    from harness.aggregate import aggregate
    from harness.report.html import render_report
    from harness.store import record_run

    manifest = open_run_dir(run_dir)
    summary = aggregate(run_dir, manifest)
    warning = record_run(run_dir, manifest, summary)
    summary["warnings"] = [warning] if warning else []
    (run_dir / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    render_report(run_dir, summary)
    return summary
