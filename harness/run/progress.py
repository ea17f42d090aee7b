"""Terminal progress for a run: the current stage, how far it is and an ETA (rich), or plain lines
for logs and CI. A run has stages — building and measuring each variant in its worker, then the
measurement rounds, then the report — and each stage is a bar with its own count and ETA."""

from __future__ import annotations

from typing import Any


class RunProgress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self._unit = ""

    def __enter__(self) -> RunProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                      TimeRemainingColumn())
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def stage(self, name: str, total: int, unit: str) -> None:
        """A new stage of `total` units (variants, processes)."""
        self._unit = unit
        if self._progress is not None:
            if self._task is not None:
                self._progress.update(self._task, visible=False)
            self._task = self._progress.add_task(name, total=total)
        else:
            print(f"== {name}: {total} {unit}", flush=True)

    def start(self, label: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=label)

    def advance(self, label: str, status: str = "") -> None:
        if self._progress is not None:
            if status:
                self._progress.console.print(f"  {label}: {status}")
            self._progress.update(self._task, advance=1)
        elif status:  # plain lines for logs and CI
            print(f"{label}: {status}", flush=True)
