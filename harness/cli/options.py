"""The options `harness run` and `harness search` share, declared once (typer reads each default's
`OptionInfo`), and the checks and set-up they share."""

from __future__ import annotations

from pathlib import Path

import typer

OUTPUT = typer.Option(None, "--output", "-o", help="Directory for runs (default: recipe's output).")
LIMIT = typer.Option(None, "--limit", min=1, help="At most N items per accuracy suite (marked in results: never a "
                                                  "full run's equal).")
OVERRIDES = typer.Option([], "--set", help="Override a recipe field: dotted.key=value (repeatable), validated like "
                                           "the file.")
NO_PROGRESS = typer.Option(False, "--no-progress", help="Plain output, no progress bar.")
NO_CACHE = typer.Option(False, "--no-cache", help="Bypass the response cache (neither read nor write answers).")
DATA_DIR = typer.Option([], "--data-dir", help="Folder with local dataset copies (<dir>/<hub id>/...), searched "
                                               "before the hub cache; repeatable.")
EXECUTOR = typer.Option("local", "--executor", help="Where variant workers run: local or ray (latency and memory "
                                                    "are always measured here, alone, after every build).")
JOBS = typer.Option(1, "--jobs", "-j", min=1, help="Variant workers at once (builds and accuracy).")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="With --executor ray: an existing cluster (host:port); "
                                                       "default a local Ray.")


def check_common(recipe: Path | None, resume: Path | None, data_dir: list[Path], executor: str,
                 ray_address: str | None) -> None:
    """One of recipe / --resume; --ray-address only with ray; --data-dir made visible to workers."""
    from harness.errors import ConfigError

    if (recipe is None) == (resume is None):
        raise ConfigError("give a recipe file, or --resume RUN_DIR (not both)")
    if ray_address and executor != "ray":
        raise ConfigError("--ray-address goes with --executor ray")
    if data_dir:  # the spawned variant workers inherit it (harness.data.sources.data_dirs)
        from harness.data.sources import use_data_dirs

        use_data_dirs(data_dir)
