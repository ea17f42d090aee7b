"""`harness run`, `validate`, `ls` and `schema`: commands that read recipes and run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from harness.cli import options
from harness.cli.app import app, user_errors

RUN_HELP = """Build every variant of RECIPE, measure it, write the report and print its path.

Exit code: 0 every variant built and every planned suite measured (targets may still be missed:
the last line says so); 1 a variant or a suite failed or could not be measured here (each is
listed with its reason); 2 a user error (bad recipe, missing data or model, ...), found before
anything ran. `harness gate RUN_DIR` turns the targets into a CI decision."""


@app.command(help=RUN_HELP)
@user_errors
def run(recipe: Path | None = typer.Argument(None, help="Recipe YAML to run."),
        output: Path | None = options.OUTPUT,
        resume: Path | None = typer.Option(None, "--resume", help="Finish an interrupted run directory."),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: run failed variants again."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (variants × runtimes × suites, cache "
                                                              "hits, ETA) after the preflight; run nothing."),
        variant: list[str] = typer.Option([], "--variant", help="Run only this variant (repeatable; the baseline "
                                                                "is added)."),
        limit: int | None = options.LIMIT,
        overrides: list[str] = options.OVERRIDES,
        no_progress: bool = options.NO_PROGRESS,
        no_cache: bool = options.NO_CACHE,
        as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as JSON."),
        data_dir: list[Path] = options.DATA_DIR,
        executor: str = options.EXECUTOR,
        jobs: int = options.JOBS,
        ray_address: str | None = options.RAY_ADDRESS) -> None:
    from harness.errors import ConfigError
    from harness.run import runner

    options.check_common(recipe, resume, data_dir, executor, ray_address)
    if resume is not None and (variant or limit or overrides or dry_run):
        raise ConfigError("--resume finishes a run as it was planned; --variant, --limit, --set and --dry-run "
                          "apply to a new run")
    if retry_failed and resume is None:
        raise ConfigError("--retry-failed goes with --resume RUN_DIR")
    run_options = runner.RunOptions(output=output, progress=not no_progress, use_cache=not no_cache,
                                    variants=tuple(variant), limit=limit, overrides=tuple(overrides),
                                    retry_failed=retry_failed, executor=executor, jobs=jobs,
                                    ray_address=ray_address)
    if dry_run:
        _print_dry_run(recipe, run_options, as_json)
        return
    run_dir = runner.run(recipe, resume=resume, options=run_options)
    from harness.cli.run_summary import report_run

    raise typer.Exit(report_run(run_dir))


def _print_dry_run(recipe: Path | None, options: object, as_json: bool) -> None:
    from harness.run.dry_run import dry_run, lines

    described = dry_run(recipe, options)  # type: ignore[arg-type]
    typer.echo(json.dumps(described, indent=1) if as_json else "\n".join(lines(described)))


@app.command()
@user_errors
def validate(recipes: list[Path] = typer.Argument(..., help="Recipe YAML files."),
             deep: bool = typer.Option(False, "--deep", help="Also the preflight of `harness run`: base model, "
                                                             "suite data and columns, runtime modules, output."),
             overrides: list[str] = typer.Option([], "--set", help="Override a recipe field: dotted.key=value."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check recipes without importing torch or building anything; every problem of a file at once."""
    from harness.errors import HarnessError
    from harness.run.runner import RunOptions, prepare
    from harness.spec.recipe import load_recipe

    report, failed = [], []
    for path in recipes:
        try:
            recipe = prepare(path, RunOptions(overrides=tuple(overrides)))[0] if deep else \
                load_recipe(path, list(overrides))
            report.append({"recipe": str(path), "ok": True, "variants": [v.name for v in recipe.variants]})
        except HarnessError as exc:
            failed.append(exc)
            report.append({"recipe": str(path), "ok": False, "problems": str(exc).splitlines()})
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        for entry in report:
            if entry["ok"]:
                typer.echo(f"{entry['recipe']}: ok ({len(entry['variants'])} variants: {', '.join(entry['variants'])})")
    if failed:
        if as_json:
            raise typer.Exit(failed[0].exit_code)
        raise failed[0] if len(failed) == 1 else _joined(failed)


def _joined(errors: list[Exception]) -> Exception:
    from harness.spec.messages import ConfigProblems

    return ConfigProblems([line for exc in errors for line in str(exc).splitlines()])


LS_CATEGORIES = ("steps", "runtimes", "metrics", "suite kinds", "executors", "suites", "recipes", "models")


@app.command("ls")
@user_errors
def list_registered(kind: str | None = typer.Argument(None, help="steps, runtimes, metrics, suite-kinds, "
                                                                 "executors, suites, recipes or models"),
                    as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List what is registered, one line each."""
    from harness.errors import ConfigError
    from harness.registries import ALL
    from harness.registry import did_you_mean
    from harness.spec.suite_files import available, find_suite, load_suite

    aliases = {alias: name for name in LS_CATEGORIES
               for alias in (name, name.rstrip("s"), name.replace(" ", "-"), name.replace(" ", "-").rstrip("s"))}
    if kind is not None and kind not in aliases:
        raise ConfigError(f"unknown category '{kind}'{did_you_mean(kind, list(aliases))}")
    wanted = [aliases[kind]] if kind else list(LS_CATEGORIES)
    listing: dict[str, list[dict[str, str]]] = {}
    for name in wanted:
        if name == "suites":
            listing[name] = [{"name": s, "kind": (spec := load_suite(s)).kind, "description": spec.description,
                              "path": str(find_suite(s))} for s in available()]
        elif name == "recipes":
            listing[name] = _shipped_recipes()
        elif name == "models":
            listing[name] = _model_families()
        else:
            listing[name] = [{"name": e.name, "description": e.description} for e in ALL[name].entries()]
    if as_json:
        typer.echo(json.dumps(listing, indent=1))
        return
    for name, entries in listing.items():
        typer.secho(name, bold=True)
        for entry in entries:
            extra = f"[{entry['kind']}] " if "kind" in entry else ""
            where = f"  ({entry['path']})" if "path" in entry else ""
            typer.echo(f"  {entry['name']:<18} {extra}{entry['description']}{where}")
            for shape in entry.get("shapes", []):
                typer.echo(f"    {shape['name']:<28} {shape['description']}")


def _model_families() -> list[dict[str, Any]]:
    """Each model family: the model types it reads, its vision tower, its `random:` shapes."""
    from harness.models.families import family
    from harness.registries import MODEL_FAMILIES

    out = []
    for entry in MODEL_FAMILIES.entries():
        fam = family(entry.name)
        types = ", ".join(fam.model_types)
        out.append({"name": entry.name, "description": f"{entry.description} (model_type {types})",
                    "model_types": list(fam.model_types), "vision_tower": fam.vision_tower,
                    "shapes": [{"name": f"random:{shape}", "description": fam.describe_shape(shape)}
                               for shape in fam.shapes]})
    return out


def _shipped_recipes() -> list[dict[str, str]]:
    """The recipes that ship with the harness (`harness run NAME` finds them from any folder)."""
    import yaml

    from harness.shipped import recipes_dir

    out = []
    for path in sorted(recipes_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        out.append({"name": path.stem, "description": str(data.get("description", "")), "path": str(path)})
    return out


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
