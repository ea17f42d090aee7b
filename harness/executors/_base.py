"""The executor contract: carry out isolated worker tasks and hand back each one's outcome as it
finishes, never raising for a task's own failure (a crash, an abort or a hang is an `Outcome`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.isolation import Outcome, WorkerFiles


@dataclass(frozen=True)
class Task:
    """One isolated worker call (what `run_isolated` takes), named for the progress display."""

    name: str
    target: str
    payload: Any
    files: WorkerFiles
    timeout_s: float


@dataclass(frozen=True)
class ExecutorOptions:
    """The `harness run` flags an executor reads."""

    #: How many tasks run at once (local processes; Ray: tasks in flight).
    jobs: int = 1
    #: An existing Ray cluster (`host:port`); None starts a local Ray.
    address: str | None = None


class Executor:
    """Base class of every executor: `check` before anything is written, then `run`."""

    name: ClassVar[str] = ""

    def __init__(self, options: ExecutorOptions) -> None:
        self.options = options

    def check(self) -> None:
        """Raise a `ConfigError` (one line, exit 2) when this executor cannot run here."""

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, Outcome]]:
        """Each task's outcome, in the order they finish."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What run.json records about where the workers ran."""
        return {"executor": self.name, "jobs": self.options.jobs}
