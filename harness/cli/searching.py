"""`harness search`: a multi-objective search over the recipe's `search:` space (Optuna)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli import options
from harness.cli.app import app, user_errors

SEARCH_HELP = """Search RECIPE's `search:` space with Optuna: every trial is a variant of one run
folder (built, scored, measured, reported and gated like a recipe's), the recipe's targets are
the constraints, hopeless trials stop after a lite subset (`early_stop:`). Ends like `harness run`:
the same table, report and exit codes; `harness gate RUN_DIR` gates the found frontier.
`--resume RUN_DIR` continues a killed search without redoing finished trials."""


@app.command(help=SEARCH_HELP)
@user_errors
def search(recipe: Path | None = typer.Argument(None, help="Recipe YAML with a `search:` section."),
           resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted search run directory."),
           n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="Trial budget (replaces the "
                                                                                 "recipe's search.n_trials)."),
           output: Path | None = options.OUTPUT,
           limit: int | None = options.LIMIT,
           overrides: list[str] = options.OVERRIDES,
           no_progress: bool = options.NO_PROGRESS,
           no_cache: bool = options.NO_CACHE,
           data_dir: list[Path] = options.DATA_DIR,
           executor: str = options.EXECUTOR,
           jobs: int = options.JOBS,
           ray_address: str | None = options.RAY_ADDRESS) -> None:
    from harness.errors import ConfigError
    from harness.run.runner import RunOptions
    from harness.search.driver import SearchOptions
    from harness.search.driver import search as run_search

    options.check_common(recipe, resume, data_dir, executor, ray_address)
    if resume is not None and (limit or overrides):
        raise ConfigError("--resume continues a search as it was planned; --limit and --set apply to a new one")
    run_options = RunOptions(output=output, progress=not no_progress, use_cache=not no_cache, limit=limit,
                             overrides=tuple(overrides), executor=executor, jobs=jobs, ray_address=ray_address)
    run_dir = run_search(recipe, SearchOptions(run=run_options, n_trials=n_trials), resume=resume)
    from harness.cli.run_summary import report_run, report_search

    report_search(run_dir)
    raise typer.Exit(report_run(run_dir))
