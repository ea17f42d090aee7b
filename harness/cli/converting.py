"""`harness convert SRC DST`: an Apple `llava_qwen2` FastVLM checkpoint as a `fast_vlm` directory."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.app import app, user_errors

SOURCE_HELP = ("Apple's checkpoint: a directory (apple/FastVLM-* download, ml-fastvlm stage-2/3 folder) or a hub id "
               "in the offline cache.")


@app.command("convert")
@user_errors
def convert_command(source: str = typer.Argument(..., metavar="SRC", help=SOURCE_HELP),
                    destination: Path = typer.Argument(..., metavar="DST", help="A new (or empty) output directory."),
                    revision: str | None = typer.Option(None, help="Hub revision, for a hub id.")) -> None:
    """Write SRC as a transformers `fast_vlm` directory (config, safetensors, tokenizer, processor,
    chat template) at DST, offline, without running the checkpoint's code. `base:` accepts SRC as
    it is; this is for using the converted copy elsewhere."""
    from harness.models.loading import convert_checkpoint

    written = convert_checkpoint(source, destination, revision)
    typer.echo(f"converted {source} -> {written} (fast_vlm)")
