"""`harness deploy-guide`: a Markdown integration guide written from one artifact's export."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.app import app, user_errors


@app.command("deploy-guide")
@user_errors
def deploy_guide_command(
        target: Path = typer.Argument(..., help="A built variant's folder, or a run directory (with --variant)."),
        platform: str = typer.Option("android", "--platform", help="android (LiteRT export) or ios (Core ML export)."),
        variant: str | None = typer.Option(None, "--variant", help="The variant of a run directory; default: the "
                                                                   "only one with the platform's export."),
        output: Path | None = typer.Option(None, "--output", "-o", help="Where to write the guide "
                                                                      "(default: <variant>-<platform>.md)."),
) -> None:
    """Write the app-side facts of an exported variant — graph files and sizes, every input and output
    (name, shape, dtype), image preprocessing, the prompt and its image-token expansion, stop tokens,
    the decode loop — with Kotlin (LiteRT) or Swift (Core ML) snippets using exactly those names."""
    from harness.deploy.guide import write_guide

    path = write_guide(target, platform, variant, output)
    typer.echo(f"wrote {path}")
