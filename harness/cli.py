"""The `harness` command line. Every user error prints one line and exits with code 2."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from harness import __version__
from harness.errors import HarnessError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build compressed FastVLM variants and prove what each one costs.")
reference_app = typer.Typer(no_args_is_help=True, help="The embedded nano reference model.")
app.add_typer(reference_app, name="reference")


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a HarnessError into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HarnessError as exc:
            typer.secho(f"error: {exc}", err=True, fg="red")
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fastvlm-harness {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """fastvlm-harness."""


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
    from harness.gate import checks
    from harness.runner import run as run_recipe

    if (recipe is None) == (resume is None):
        raise ConfigError("give a recipe file, or --resume RUN_DIR (not both)")
    if data_dir:  # the spawned variant workers inherit it (harness.data.sources.data_dirs)
        from harness.data.sources import use_data_dirs

        use_data_dirs(data_dir)
    run_dir = run_recipe(recipe, output=output, resume=resume, progress=not no_progress,
                         use_cache=not no_cache)
    summary = json.loads((run_dir / "results.json").read_text())
    failed = [v["name"] for v in summary["variants"] if v["status"] != "ok"]
    misses = [f"{c.variant}/{c.target}" for c in checks(summary) if not c.ok]
    typer.echo(f"run:    {run_dir}")
    typer.echo(f"report: {run_dir / 'report.html'}")
    if failed:
        typer.echo(f"failed variants: {', '.join(failed)}")
    typer.echo(f"targets missed: {len(misses)} (see the report; `harness gate {run_dir}` for CI)")


@app.command()
@user_errors
def validate(recipes: list[Path] = typer.Argument(..., help="Recipe YAML files.")) -> None:
    """Check recipes without importing torch or building anything."""
    from harness.recipe import load_recipe

    for path in recipes:
        recipe = load_recipe(path)
        typer.echo(f"{path}: ok ({len(recipe.variants)} variants: {', '.join(v.name for v in recipe.variants)})")


@app.command("ls")
@user_errors
def list_registered(
        kind: str | None = typer.Argument(None, help="steps, runtimes, metrics, suite kinds or suites")) -> None:
    """List what is registered, one line each."""
    from harness.registries import ALL
    from harness.suites._spec import available, find_suite, load_suite

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
def report(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Re-aggregate a run and re-render its HTML report."""
    from harness.runner import finish

    finish(run_dir)
    typer.echo(str(run_dir / "report.html"))


@app.command("gate")
@user_errors
def gate_command(run_dir: Path = typer.Argument(..., help="A finished run directory."),
                 baseline: str | None = typer.Option(
                     None, help="A baseline run directory or a name stored with `harness baseline set`: "
                                "significant regressions against it fail the gate."),
                 junit: Path | None = typer.Option(
                     None, help="Where to write JUnit XML (default RUN_DIR/gate.junit.xml)."),
                 markdown: Path | None = typer.Option(
                     None, help="Append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY).")) -> None:
    """Exit 0 if every gated variant met every target (and did not regress), 1 if not, 2 on bad input."""
    from harness.gate import gate

    code, results, warnings = gate(run_dir, junit, baseline, markdown)
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg="yellow")
    for check in results:
        typer.echo(f"{check.mark}  {check.variant:<20} {check.runtime:<12} {check.message}")
    typer.echo("gate: passed" if code == 0 else "gate: FAILED")
    raise typer.Exit(code)


@app.command()
@user_errors
def history(output: Path = typer.Option(Path("reports"), help="The output directory holding history.sqlite."),
            recipe: str | None = typer.Option(None, help="Only runs of this recipe.")) -> None:
    """List recorded runs from the history database."""
    import time

    from harness.store import list_runs

    db = output / "history.sqlite"
    if not db.exists():
        raise HarnessError(f"no history database at '{db}'; run a recipe first or pass --output")
    import sqlite3

    try:
        rows = list_runs(db)
    except sqlite3.DatabaseError as exc:
        raise HarnessError(f"history database '{db}' is unusable ({exc}); move it aside to start a new one") from None
    for row in rows:
        if recipe and row["recipe"] != recipe:
            continue
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["started"] or 0))
        typer.echo(f"{when}  {row['run_id']:<45} {row['recipe']:<16} "
                   f"variants {row['n_variants']} failed {row['n_failed']}")


@app.command()
@user_errors
def schema(output: Path | None = typer.Option(None, "--output", "-o",
                                              help="Write to a file instead of stdout.")) -> None:
    """Print the recipe JSON Schema (for editor completion and validation)."""
    from harness.recipe import json_schema

    text = json.dumps(json_schema(), indent=2)
    if output:
        output.write_text(text)
    else:
        typer.echo(text)


@reference_app.command("build")
@user_errors
def reference_build(force: bool = typer.Option(False, help="Rebuild even if cached.")) -> None:
    """Train (or reuse) the nano reference model and print its test accuracy."""
    from harness.models.nano import ensure_nano

    path = ensure_nano(force=force)
    info = json.loads((path / "nano_report.json").read_text())
    typer.echo(f"nano checkpoint: {path}")
    typer.echo(f"trained in {info['train_seconds']} s; test exact match {info['test']['exact_match']:.3f}")
    for kind, score in info["test"]["per_kind"].items():
        typer.echo(f"  {kind:<8} {score:.3f}")


@reference_app.command("ask")
@user_errors
def reference_ask(image: Path = typer.Argument(..., help="An image file."),
                  question: str = typer.Argument(..., help="A question about it."),
                  model: str = typer.Option("nano", help="nano, a checkpoint dir or a hub id."),
                  max_new_tokens: int = typer.Option(8)) -> None:
    """Answer one question about one image (a smoke test of the whole model path)."""
    from harness.data.images import open_image
    from harness.models.loading import load_model

    picture = open_image(image)
    loaded = load_model(model)
    result = loaded.generate([picture], [question], max_new_tokens=max_new_tokens)
    t = result.times
    typer.echo(result.texts[0])
    typer.echo(f"(TTFT {t.ttft_ms:.1f} ms = preprocess {t.preprocess_ms:.1f} + vision {t.vision_ms:.1f} "
               f"+ prefill {t.prefill_ms:.1f}; {len(t.decode_ms)} decode steps)", err=True)


import harness.cli_results  # noqa: E402,F401 - registers compare, baseline, export

if __name__ == "__main__":  # pragma: no cover - `python -m harness.cli`
    from harness.cli import app as registered  # the importable module is where cli_results registers

    sys.exit(registered())
