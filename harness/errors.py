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
    """An optional dependency group is not installed, or is installed but does not import.

    `detail` is None when the module itself is not installed; otherwise it is the import's own
    failure, "ExceptionType: first line" (e.g. a dependency of the module is missing), which the
    message names so that the user is not told to install what is already there.
    """

    def __init__(self, extra: str, feature: str, module: str, detail: str | None = None) -> None:
        self.extra, self.feature, self.module, self.detail = extra, feature, module, detail
        install = f"pip install 'fastvlm-harness[{extra}]'"
        if detail is None:
            message = f"{feature} needs the Python module '{module}', which is not installed: {install}"
        else:
            message = (f"{feature} needs the Python module '{module}', which is installed but fails to import: "
                       f"{detail} (a dependency of it is missing or broken); reinstall with {install}")
        super().__init__(message)

    def __reduce__(self):  # noqa: ANN204 - the arguments, not the message, rebuild it (e.g. from a worker)
        return type(self), (self.extra, self.feature, self.module, self.detail)


class RunDirError(HarnessError):
    """A path given as a run directory is not a usable run."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of a third-party error (converters and runtimes raise pages), for one-line messages."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def _not_installed(module: str, exc: BaseException) -> bool:
    """Whether `exc`, raised importing `module`, means the module itself (or a package above it) is
    absent, rather than something the module imports."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return module == exc.name or module.startswith(exc.name + ".")
    import importlib.util

    try:
        return importlib.util.find_spec(module.partition(".")[0]) is None
    except (ImportError, ValueError):
        return True


def require(module: str, extra: str, feature: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise a one-line `MissingExtraError` that says whether the
    module is not installed or is installed but fails to import (and why)."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:  # an installed module's import can fail with anything, not only ImportError
        if isinstance(exc, ImportError) and _not_installed(module, exc):
            raise MissingExtraError(extra, feature, module) from exc
        raise MissingExtraError(extra, feature, module, f"{type(exc).__name__}: {first_line(exc)}") from exc
