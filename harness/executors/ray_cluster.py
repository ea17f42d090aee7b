"""Variant workers as Ray tasks: a local Ray by default (`ray.init()` with `--jobs` CPUs, or all
of them), an existing cluster with `--ray-address host:port`.

Each task reserves one CPU and calls the same `run_isolated` as the local executor inside the Ray
worker, so a crash, an abort or a hang of a variant is the same recorded outcome on both (and its
time limit the recipe's `variant_timeout_s`); Ray never retries a task. The driver waits with a
deadline of its own (the limit plus a grace period) and cancels a task whose node stopped
answering. Artifacts and logs are written where the payload says — the run folder and the
harness cache — so on a multi-node cluster both must be on storage every node mounts at the same
path (`FASTVLM_HARNESS_CACHE`, `--output`); the driver alone writes result.json and the history
database, and every result names the node its worker ran on.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from harness.errors import ConfigError
from harness.executors._base import Executor, Task
from harness.isolation import Outcome, WorkerFiles, run_isolated
from harness.registries import EXECUTORS

#: Seconds the driver waits past a task's own limit before it cancels it (a lost node).
GRACE_S = 120.0
#: The driver's environment variables a task's worker gets (the harness's, the hub's, thread
#: pools'); the rest (PATH, library paths) stays the node's own.
FORWARDED = ("HARNESS_", "FASTVLM_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_")


def forwarded() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}


def _run_task(target: str, payload: Any, log: str, result: str, timeout_s: float,
              environ: dict[str, str]) -> dict[str, Any]:
    """In the Ray worker: the isolated worker, and the node it ran on."""
    from pathlib import Path

    import ray

    outcome = run_isolated(target, payload, WorkerFiles(Path(log), Path(result)), timeout_s, environ)
    node = {"host": socket.gethostname(), "ray_node_id": ray.get_runtime_context().get_node_id()}
    return {**asdict(outcome), "where": node}


def _reachable(address: str) -> None:
    """One line when nothing answers at a Ray address, before anything is started or written."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address '{address}' is not host:port (e.g. 10.0.0.5:6379, or ray://host:10001)")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: nothing answers at {host}:{port} ({exc.strerror or exc}); "
                          "start the cluster (`ray start --head`) or leave --ray-address out for a local Ray") from None


@EXECUTORS.register("ray", "variant workers as Ray tasks: a local Ray, or a cluster with --ray-address")
class RayExecutor(Executor):
    name = "ray"

    def check(self) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'fastvlm-harness[ray]'") from None
        if self.options.address:
            _reachable(self.options.address)

    def _init(self) -> bool:
        """Connect or start Ray; True when this executor started it (and shuts it down)."""
        import ray

        if ray.is_initialized():
            return False
        if self.options.address:
            ray.init(address=self.options.address, log_to_driver=False)
        else:
            cpus = self.options.jobs if self.options.jobs > 1 else os.cpu_count()
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        return True

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, Outcome]]:
        import ray

        started = self._init()
        environ = {**forwarded(), "HARNESS_THREADS": os.environ.get("HARNESS_THREADS") or "1"}  # one CPU a task
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_task)
        try:
            pending = {remote.remote(t.target, t.payload, str(t.files.log), str(t.files.result), t.timeout_s,
                                     environ): (t, time.monotonic() + t.timeout_s + GRACE_S) for t in tasks}
            while pending:
                yield from self._collect(pending)
        finally:
            if started:
                ray.shutdown()

    def _collect(self, pending: dict[Any, tuple[Task, float]]) -> Iterator[tuple[Task, Outcome]]:
        """The tasks that finished (or passed their deadline) in the next wait."""
        import ray

        soonest = min(deadline for _, deadline in pending.values())
        done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.1, soonest - time.monotonic()))
        for ref in done:
            task, _ = pending.pop(ref)
            yield task, _outcome(ref)
        for ref, (task, deadline) in list(pending.items()):
            if time.monotonic() > deadline:
                ray.cancel(ref, force=True)
                del pending[ref]
                yield task, Outcome(False, None, f"no answer from the Ray node {GRACE_S:.0f} s past the time limit "
                                                 f"({task.timeout_s:.0f} s): the task was cancelled")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "address": self.options.address or "local"}


def _outcome(ref: Any) -> Outcome:
    """The task's outcome, or the Ray failure (a lost worker, a node that died) as one."""
    import ray

    try:
        return Outcome(**ray.get(ref))
    except ray.exceptions.RayError as exc:
        return Outcome(False, None, f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
