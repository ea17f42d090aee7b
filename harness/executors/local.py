"""Variant workers as local isolated processes, `--jobs` at a time.

With more than one job each worker gets an equal share of the cores for torch's thread pool
(`HARNESS_THREADS`, unless the user set it): two 2-thread workers on 2 cores would oversubscribe
them. Threads here only wait on child processes; the work is in the processes. `run_isolated` is
looked up on its module at each call, so a test can run workers in-process."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from harness import isolation
from harness.executors._base import Executor, Task
from harness.isolation import Outcome
from harness.registries import EXECUTORS


def thread_share(jobs: int) -> dict[str, str]:
    """The environment a worker gets when `jobs` run side by side (empty for one job)."""
    if jobs <= 1 or os.environ.get("HARNESS_THREADS"):
        return {}
    return {"HARNESS_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}


@EXECUTORS.register("local", "variant workers as local isolated processes, --jobs at a time (the default)")
class Local(Executor):
    name = "local"

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, Outcome]]:
        environ = thread_share(self.options.jobs)
        if self.options.jobs <= 1:
            for task in tasks:
                yield task, isolation.run_isolated(task.target, task.payload, task.files, task.timeout_s, environ)
            return
        with ThreadPoolExecutor(max_workers=self.options.jobs) as pool:
            futures = {pool.submit(isolation.run_isolated, t.target, t.payload, t.files, t.timeout_s, environ): t
                       for t in tasks}
            for future in as_completed(futures):
                yield futures[future], future.result()

    def describe(self) -> dict[str, object]:
        return {**super().describe(), **thread_share(self.options.jobs)}
