"""`harness compare`, `harness baseline` and `harness export`: commands that read finished runs.

Kept apart from `cli.py` so each module stays small; registered on the same Typer app.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from harness.cli import app, user_errors
from harness.errors import HarnessError

baseline_app = typer.Typer(no_args_is_help=True, help="Named baseline runs for `harness gate --baseline`.")
app.add_typer(baseline_app, name="baseline")

VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "no significant change": "",
                 "not comparable": "yellow", "new": "cyan"}


@app.command()
@user_errors
def compare(old_run: Path = typer.Argument(..., help="The baseline run directory."),
            new_run: Path = typer.Argument(..., help="The run to judge against it."),
            html: Path | None = typer.Option(None, help="Write an HTML comparison here "
                                                        "(default NEW_RUN/compare-<old run id>.html)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Per variant and metric: the change, its significance and the verdict."""
    from rich.console import Console
    from rich.table import Table

    from harness.compare import compare_runs
    from harness.report.compare_html import render_comparison

    result = compare_runs(old_run, new_run)
    out = render_comparison(result, html or new_run / f"compare-{result.old_run}.html")
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=1))
        return
    console = Console(width=160)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)
    table = Table(title=f"{result.old_run}  ->  {result.new_run}")
    for column in ("variant", "runtime", "metric", "old", "new", "change", "p", "verdict", "note"):
        table.add_column(column, overflow="fold")
    for c in result.changes:
        table.add_row(c.variant, c.runtime, c.metric, _num(c.old), _num(c.new), c.change,
                      "" if c.p_value is None else f"{c.p_value:.2g}",
                      f"[{VERDICT_STYLE.get(c.verdict, '')}]{c.verdict}[/]" if VERDICT_STYLE.get(c.verdict)
                      else c.verdict, c.note)
    console.print(table)
    console.print(f"{len(result.regressions)} significant regression(s); HTML: {out}", highlight=False)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


@baseline_app.command("set")
@user_errors
def baseline_set(name: str = typer.Argument(..., help="A name, e.g. main."),
                 run_dir: Path = typer.Argument(..., help="A finished run directory.")) -> None:
    """Remember RUN_DIR as baseline NAME in the history database next to it."""
    from harness.gate import load_summary
    from harness.store import history_path, set_baseline

    summary = load_summary(run_dir)
    set_baseline(history_path(run_dir), name, summary["run_id"], run_dir)
    typer.echo(f"baseline '{name}' -> {run_dir}")


@baseline_app.command("ls")
@user_errors
def baseline_ls(output: Path = typer.Option(Path("reports"), help="The output directory holding history.sqlite.")
                ) -> None:
    """List stored baselines."""
    from harness.store import list_baselines

    db = output / "history.sqlite"
    if not db.exists():
        raise HarnessError(f"no history database at '{db}'; pass --output")
    for row in list_baselines(db):
        typer.echo(f"{row['name']:<16} {row['run_id']:<45} {row['path']}")


@app.command("export")
@user_errors
def export_command(run_dir: Path = typer.Argument(..., help="A finished run directory."),
                   output: Path = typer.Option(..., "--output", "-o", help="File to write (.csv or .parquet)."),
                   fmt: str | None = typer.Option(None, "--format", help="csv or parquet (default: from the suffix).")
                   ) -> None:
    """Write one row per variant × runtime × metric."""
    from harness.export import export
    from harness.gate import load_summary

    count = export(load_summary(run_dir), output, fmt)
    typer.echo(f"{count} rows -> {output}")
