"""`harness report`, `gate`, `history`, `compare`, `baseline` and `export`: commands that read finished runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from harness.cli.app import app, user_errors
from harness.errors import HarnessError
from harness.results.rundir import HISTORY, JUNIT, RunDir, history_in

baseline_app = typer.Typer(no_args_is_help=True, help="Named baseline runs for `harness gate --baseline`.")
app.add_typer(baseline_app, name="baseline")

@app.command()
@user_errors
def report(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Re-aggregate a run and re-render its HTML report."""
    from harness.run.runner import finish

    finish(run_dir)
    typer.echo(str(RunDir(run_dir).report_file))


@app.command("gate")
@user_errors
def gate_command(run_dir: Path = typer.Argument(..., help="A finished run directory."),
                 baseline: str | None = typer.Option(
                     None, help="A baseline run directory or a name stored with `harness baseline set`: "
                                "significant regressions against it fail the gate."),
                 junit: Path | None = typer.Option(
                     None, help=f"Where to write JUnit XML (default RUN_DIR/{JUNIT})."),
                 markdown: Path | None = typer.Option(
                     None, help="Append a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Exit 0 if every gated variant was measured and met every target (and did not regress); 1 if a
    target was missed or a regression found; 3 if a gated measurement is missing, failed or cannot
    be made here (not measured never passes); 2 on bad input."""
    from dataclasses import asdict

    from harness.results.gate import gate, verdict

    code, results, warnings = gate(run_dir, junit, baseline, markdown)
    if as_json:
        typer.echo(json.dumps({"exit_code": code, "verdict": verdict(code), "warnings": warnings,
                               "checks": [{**asdict(c), "mark": c.mark} for c in results]}, indent=1))
        raise typer.Exit(code)
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg="yellow")
    for check in results:
        typer.echo(f"{check.mark:<5} {check.variant:<20} {check.runtime:<12} {check.message}")
    typer.echo(f"gate: {verdict(code)}")
    raise typer.Exit(code)


@app.command()
@user_errors
def history(output: Path = typer.Option(Path("reports"), help=f"The output directory holding {HISTORY}."),
            recipe: str | None = typer.Option(None, help="Only runs of this recipe."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List recorded runs from the history database."""
    import time

    from harness.results.history import list_runs

    db = history_in(output)
    if not db.exists():
        raise HarnessError(f"no history database at '{db}'; run a recipe first or pass --output")
    import sqlite3

    try:
        rows = list_runs(db)
    except sqlite3.DatabaseError as exc:
        raise HarnessError(f"history database '{db}' is unusable ({exc}); move it aside to start a new one") from None
    rows = [row for row in rows if not recipe or row["recipe"] == recipe]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["started"] or 0))
        typer.echo(f"{when}  {row['run_id']:<45} {row['recipe']:<16} "
                   f"variants {row['n_variants']} failed {row['n_failed']}")



VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "no significant change": "",
                 "not comparable": "yellow", "new": "cyan", "undecided": "bold yellow"}


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

    from harness.report.compare_html import render_comparison
    from harness.results.compare import compare_runs

    result = compare_runs(old_run, new_run)
    out = render_comparison(result, html or RunDir(new_run).compare_file(result.old_run))
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
    undecided = sum(c.verdict == "undecided" for c in result.changes)
    console.print(f"{len(result.regressions)} significant regression(s)"
                  + (f", {undecided} undecided (noisy: re-measure)" if undecided else "") + f"; HTML: {out}",
                  highlight=False)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


@baseline_app.command("set")
@user_errors
def baseline_set(name: str = typer.Argument(..., help="A name, e.g. main."),
                 run_dir: Path = typer.Argument(..., help="A finished run directory."),
                 allow_limited: bool = typer.Option(False, "--allow-limited",
                                                    help="Accept a run made with --limit as the baseline.")) -> None:
    """Remember RUN_DIR as baseline NAME in the history database next to it."""
    from harness.results.gate import load_summary
    from harness.results.history import set_baseline

    summary = load_summary(run_dir)
    if summary.get("limit") and not allow_limited:
        raise HarnessError(f"'{run_dir}' was run with --limit {summary['limit']} (a subset of every accuracy "
                           "suite); a baseline should be a full run — rerun without --limit, or pass --allow-limited")
    set_baseline(RunDir(run_dir).history_file, name, summary["run_id"], run_dir)
    typer.echo(f"baseline '{name}' -> {run_dir}")


@baseline_app.command("ls")
@user_errors
def baseline_ls(output: Path = typer.Option(Path("reports"), help=f"The output directory holding {HISTORY}.")
                ) -> None:
    """List stored baselines."""
    from harness.results.history import list_baselines

    db = history_in(output)
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
    from harness.results.gate import load_summary
    from harness.results.table import export

    count = export(load_summary(run_dir), output, fmt)
    typer.echo(f"{count} rows -> {output}")
