"""Terminal progress for long work (rich), off when not wanted."""

from __future__ import annotations

from typing import Any


class VariantProgress:
    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> VariantProgress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total} variants"), TimeElapsedColumn())
            self._progress.__enter__()
            self._task = self._progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, name: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"building + measuring {name}")

    def advance(self, name: str, status: str) -> None:
        if self._progress is not None:
            self._progress.console.print(f"  {name}: {status}")
            self._progress.update(self._task, advance=1)
        else:  # plain lines for logs and CI
            print(f"{name}: {status}", flush=True)
