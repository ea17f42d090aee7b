"""What `harness run` prints when it ends: a compact results table, every variant and suite that
was not measured with its reason, the missed targets, and a last line with the exit code's meaning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    from harness.report.html import objective_values, objectives
    from harness.results.kinds import measuring

    shown = objectives()
    retention = measuring("min_retention")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("variant", "runtime", "status", *(o.title for o in shown), "retention", "targets"):
        table.add_column(column, overflow="fold")
    for variant in summary["variants"]:
        if variant["status"] != "ok":
            table.add_row(variant["name"], "-", f"[red]{variant['status']}[/]", *[""] * (len(shown) + 2))
            continue
        for runtime, data in variant["runtimes"].items():
            values = objective_values(data)
            kept = retention.target_value(data, "min_retention").value if retention else None
            verdicts = data.get("targets", {}).values()
            passed = sum(v["status"] == "pass" for v in verdicts)
            status = "ok" if not data.get("errors") and not data.get("unavailable") else "[yellow]incomplete[/]"
            if (data.get("latency") or {}).get("noisy"):
                status += " [yellow](noisy)[/]"
            table.add_row(variant["name"], runtime, status,
                          *[f"{values[o.name].point:.4g}" if o.name in values else "–" for o in shown],
                          "–" if kept is None else f"{kept:.3f}", f"{passed}/{len(verdicts)} pass")
    return table


def report_run(run_dir: Path) -> int:
    """Print the end of a run; return its exit code (harness.exits)."""
    from rich.console import Console

    from harness.results.gate import checks
    from harness.results.outcome import run_exit_code, unmeasured
    from harness.results.rundir import RunDir

    finished = RunDir(run_dir)
    summary = finished.read_summary()
    console = Console(width=160, highlight=False)
    console.print(_table(summary))
    missing = unmeasured(summary)
    for item in missing:
        console.print(f"[red]not measured:[/] {item.line()}", markup=True)
    misses = [c for c in checks(summary) if not c.ok and not c.error]
    typer.echo(f"run:    {run_dir}")
    typer.echo(f"report: {finished.report_file}")
    code = run_exit_code(summary)
    limited = f"; limited to {summary['limit']} items per accuracy suite" if summary.get("limit") else ""
    if missing:
        typer.echo(f"exit 1: {len(missing)} variant(s)/suite(s) not measured (listed above){limited}; "
                   f"targets missed: {len(misses)} — `harness gate {run_dir}` for CI")
    else:
        typer.echo(f"exit 0: everything measured{limited}; targets missed: {len(misses)}"
                   f"{' (' + ', '.join(f'{c.variant}/{c.target}' for c in misses[:6]) + ')' if misses else ''} — "
                   f"`harness gate {run_dir}` for CI")
    return code


def report_search(run_dir: Path) -> None:
    """The search's lines before the run's table: trials by state, the frontier and what is gated."""
    from collections import Counter

    from harness.results.rundir import RunDir

    record = RunDir(run_dir).read_search()
    if record is None:
        return
    states = Counter(t["state"] for t in record["trials"])
    feasible = sum(1 for t in record["trials"] if t["feasible"])
    typer.echo(f"search: {len(record['trials'])} trials ({', '.join(f'{n} {s.lower()}' for s, n in states.items())}); "
               f"{feasible} meet every target" + (f"; {record['stopped']}" if record.get("stopped") else ""))
    if record.get("early_stop") and record.get("early_stop_off"):
        typer.echo(f"early stop was asked for but is off: {record['early_stop_off']}")
    if record["frontier"]:
        typer.echo(f"frontier (gated): {', '.join(record['frontier'])}")
    elif record["gated"]:
        typer.echo("no trial meets every target: every completed trial is gated, so `harness gate` fails and "
                   "names what each missed")
    else:
        typer.echo("no trial completed: nothing is gated, so `harness gate` fails")
