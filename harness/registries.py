"""The registries. `harness ls` prints them; recipes and suites name their entries."""

from __future__ import annotations

from typing import Any

from harness.registry import Registry

STEPS: Registry[Any] = Registry("step", "harness.steps")
RUNTIMES: Registry[Any] = Registry("runtime", "harness.runtimes")
METRICS: Registry[Any] = Registry("metric", "harness.metrics")
SUITE_KINDS: Registry[Any] = Registry("suite kind", "harness.suites")
EXECUTORS: Registry[Any] = Registry("executor", "harness.executors")
#: Model families (`harness.models.families`): not in `ALL`, `harness ls models` lists them with their shapes.
MODEL_FAMILIES: Registry[Any] = Registry("model family", "harness.models.families")

ALL = {"steps": STEPS, "runtimes": RUNTIMES, "metrics": METRICS, "suite kinds": SUITE_KINDS, "executors": EXECUTORS}
