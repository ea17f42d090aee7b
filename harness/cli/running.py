"""`harness run`, `validate`, `ls` and `schema`: commands that read recipes and run them."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from harness.cli.app import app, user_errors


@app.command()
@user_errors
def run(recipe: Path | None = typer.Argument(None, help="Recipe YAML to run."),
        output: Path | None = typer.Option(None, "--output", "-o",
                                           help="Directory for runs (default: recipe's output)."),
        resume: Path | None = typer.Option(None, "--resume", help="Finish an interrupted run directory."),
        no_progress: bool = typer.Option(False, "--no-progress", help="Plain output, no progress bar."),
        no_cache: bool = typer.Option(False, "--no-cache",
                                      help="Bypass the response cache (neither read nor write answers)."),
        data_dir: list[Path] = typer.Option([], "--data-dir",
                                            help="Folder with local dataset copies (<dir>/<hub id>/...), searched "
                                                 "before the hub cache; repeatable.")) -> None:
    """Build every variant of RECIPE, measure it, write the report and print its path."""
    from harness.errors import ConfigError
    from harness.results.gate import checks
    from harness.results.rundir import RunDir
    from harness.run.runner import run as run_recipe

    if (recipe is None) == (resume is None):
        raise ConfigError("give a recipe file, or --resume RUN_DIR (not both)")
    if data_dir:  # the spawned variant workers inherit it (harness.data.sources.data_dirs)
        from harness.data.sources import use_data_dirs

        use_data_dirs(data_dir)
    run_dir = run_recipe(recipe, output=output, resume=resume, progress=not no_progress,
                         use_cache=not no_cache)
    finished = RunDir(run_dir)
    summary = finished.read_summary()
    failed = [v["name"] for v in summary["variants"] if v["status"] != "ok"]
    misses = [f"{c.variant}/{c.target}" for c in checks(summary) if not c.ok]
    typer.echo(f"run:    {run_dir}")
    typer.echo(f"report: {finished.report_file}")
    if failed:
        typer.echo(f"failed variants: {', '.join(failed)}")
    typer.echo(f"targets missed: {len(misses)} (see the report; `harness gate {run_dir}` for CI)")


@app.command()
@user_errors
def validate(recipes: list[Path] = typer.Argument(..., help="Recipe YAML files.")) -> None:
    """Check recipes without importing torch or building anything."""
    from harness.spec.recipe import load_recipe

    for path in recipes:
        recipe = load_recipe(path)
        typer.echo(f"{path}: ok ({len(recipe.variants)} variants: {', '.join(v.name for v in recipe.variants)})")


@app.command("ls")
@user_errors
def list_registered(
        kind: str | None = typer.Argument(None, help="steps, runtimes, metrics, suite kinds or suites")) -> None:
    """List what is registered, one line each."""
    from harness.registries import ALL
    from harness.spec.suite_files import available, find_suite, load_suite

    for name, registry in ALL.items():
        if kind and kind not in (name, name.rstrip("s"), name.replace(" ", "-")):
            continue
        typer.secho(name, bold=True)
        for entry in registry.entries():
            typer.echo(f"  {entry.name:<18} {entry.description}")
    if not kind or kind == "suites":
        typer.secho("suites", bold=True)
        for name in available():
            spec = load_suite(name)
            typer.echo(f"  {name:<18} [{spec.kind}] {spec.description}  ({find_suite(name)})")


@app.command()
@user_errors
def schema(output: Path | None = typer.Option(None, "--output", "-o",
                                              help="Write to a file instead of stdout.")) -> None:
    """Print the recipe JSON Schema (for editor completion and validation)."""
    from harness.spec.recipe import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        output.write_text(text)
    else:
        typer.echo(text)
