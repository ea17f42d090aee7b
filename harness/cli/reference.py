"""`harness reference build|ask`: the embedded nano reference model and its siblings."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from harness.cli.app import app, user_errors

reference_app = typer.Typer(no_args_is_help=True, help="The embedded nano reference model.")
app.add_typer(reference_app, name="reference")


@reference_app.command("build")
@user_errors
def reference_build(force: bool = typer.Option(False, help="Rebuild even if cached."),
                    model: str = typer.Option("nano", help="nano or a nano sibling: nano-internvl, nano-smolvlm, "
                                                           "nano-llava-onevision.")) -> None:
    """Train (or reuse) the nano reference model, or one of its siblings, and print its test accuracy."""
    if model == "nano":
        from harness.training.nano import ensure_nano

        path = ensure_nano(force=force)
    else:
        from harness.models.siblings import family_of
        from harness.training.siblings import ensure_sibling

        family_of(model)  # an unknown name: one line listing the siblings, before anything trains
        path = ensure_sibling(model, force=force)
    info = json.loads((path / "nano_report.json").read_text())
    typer.echo(f"{model} checkpoint: {path}")
    typer.echo(f"trained in {info['train_seconds']} s; test exact match {info['test']['exact_match']:.3f}")
    for kind, score in info["test"]["per_kind"].items():
        typer.echo(f"  {kind:<8} {score:.3f}")


@reference_app.command("ask")
@user_errors
def reference_ask(image: Path = typer.Argument(..., help="An image file."),
                  question: str = typer.Argument(..., help="A question about it."),
                  model: str = typer.Option("nano", help="nano, a nano sibling, a checkpoint dir or a hub id."),
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
