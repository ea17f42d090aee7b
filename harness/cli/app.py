"""The `harness` Typer app and what every command shares: one line and exit code 2 for a user error.

Command modules (`running`, `reading`, `reference`) import this module and register on `app`;
`harness.cli` imports them, so the import runs one way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from harness import __version__
from harness.errors import HarnessError

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="Build compressed FastVLM variants and prove what each one costs.")


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a HarnessError into one line per problem on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HarnessError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                typer.secho(f"error: {line}", err=True, fg="red")
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fastvlm-harness {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """fastvlm-harness."""


