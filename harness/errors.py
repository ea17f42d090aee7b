"""Typed errors.

A `HarnessError` is a *user* error: the CLI prints its one-line message and exits with code 2,
without a traceback. Anything else escaping a variant's worker is a bug or a crash of that
variant and is recorded, with its traceback, as a failed variant.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the user can fix; `str(err)` is the whole message."""

    exit_code = 2


class ConfigError(HarnessError):
    """A recipe or suite file is malformed or names something that does not exist."""


class ModelLoadError(HarnessError):
    """A model path, checkpoint or weights file cannot be used."""


class DataError(HarnessError):
    """A dataset, an image or an item cannot be used."""


class StepError(HarnessError):
    """A compression step cannot be applied as configured."""


class RuntimeBackendError(HarnessError):
    """A runtime cannot execute an artifact here."""


class RuntimeUnavailable(HarnessError):
    """A runtime cannot measure here at all (e.g. Core ML prediction needs macOS).

    Raised by a runtime's ``load()``; the worker records every suite that needs a session on
    that runtime as "unavailable" with this message, while file-only suites (size) still run.
    """


class MissingExtraError(HarnessError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, feature: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the Python module '{module}': "
            f"install it with  pip install 'fastvlm-harness[{extra}]'"
        )


class RunDirError(HarnessError):
    """A path given as a run directory is not a usable run."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a third-party error (converters and runtimes raise pages), for one-line messages."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def require(module: str, extra: str, feature: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise a one-line `MissingExtraError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, feature, module) from exc
