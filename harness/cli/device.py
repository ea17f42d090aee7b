"""`harness device import` and `harness device schema`: numbers measured on a device this machine
is not (a phone, a board), brought into a run (docs/devices.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from harness.cli.app import app, user_errors

device_app = typer.Typer(no_args_is_help=True, help="Results measured on a device (a phone, a board): import them "
                                                     "into a run as a runtime of a variant.")
app.add_typer(device_app, name="device")


@device_app.command("import")
@user_errors
def import_command(run_dir: Path = typer.Argument(..., help="A run directory."),
                   file: Path = typer.Argument(..., help="An app's device-results JSON, or a benchmark_model log."),
                   variant: str = typer.Option(..., "--variant", help="The run's variant that was measured."),
                   label: str = typer.Option(..., "--as", help="The runtime it is recorded as, named after the "
                                                               "device and its runtime, e.g. android-pixel8."),
                   fmt: str = typer.Option("auto", "--format", help="auto, benchmark-model or app-json."),
                   device: str | None = typer.Option(None, "--device", help="What a benchmark_model log ran on, "
                                                                            "e.g. 'Pixel 8, Tensor G3' (an app "
                                                                            "JSON names its own device).")) -> None:
    """Record a device's numbers in RUN_DIR as VARIANT measured on runtime LABEL, marked imported, then
    re-render the run. An app JSON's TTFT stages, decode speed and memory count like any runtime's
    (targets, compare, gate); a benchmark_model log times one graph only and becomes a note."""
    from harness.devices import import_file
    from harness.results.rundir import RunDir
    from harness.run.runner import finish

    done = import_file(run_dir, file, variant, label, fmt, device)
    finish(run_dir)
    if done.suites:
        typer.echo(f"imported {done.format} {file} -> variant '{done.variant}' on runtime '{done.runtime}' "
                   f"(suites {', '.join(done.suites)}, marked imported)")
    else:
        typer.echo(f"imported {done.format} {file} -> a note on variant '{done.variant}' for '{done.runtime}' "
                   "(one graph's inference time: not TTFT, not gated)")
    typer.echo(str(RunDir(run_dir).report_file))


@device_app.command("schema")
@user_errors
def schema_command(output: Path | None = typer.Option(None, "--output", "-o",
                                                      help="Write to a file instead of stdout.")) -> None:
    """Print the JSON Schema of the device-results format (docs/device-results.schema.json)."""
    from harness.devices.app_format import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)
