"""A testing aid: make a variant fail or slow down on purpose.

`raise` and `abort` prove that one broken variant is recorded while the rest of the run goes on;
`hang` proves the per-variant timeout; `slow` sleeps before every vision forward, an injected
latency regression for checking that the gate catches it; `stall-once` does the same in only the
first latency-measuring process that loads the built variant (a marker file in the artifact's
folder remembers it), an injected outlier process for checking that the measurement rounds flag
and exclude it.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext


class FaultConfig(StepConfig):
    kind: Literal["fault"] = "fault"
    mode: Literal["raise", "abort", "hang", "slow", "stall-once"] = "raise"
    milliseconds: float = Field(5.0, ge=0, description="sleep per vision forward in modes 'slow' and 'stall-once'")

    @model_validator(mode="after")
    def _one_target(self) -> FaultConfig:
        if self.targets and len(self.targets) > 1:
            raise ValueError(f"fault slows one component, got targets {list(self.targets)}; name one")
        return self


def _sleep_hook(seconds: float):  # noqa: ANN202 - returns a hook
    def hook(module: Any, args: tuple) -> None:
        time.sleep(seconds)

    return hook


@STEPS.register("fault", "testing aid: raise, abort, hang, or slow the vision encoder on purpose")
class Fault(Step):
    Config = FaultConfig
    default_targets: ClassVar[tuple[str, ...]] = ("vision",)
    examples: ClassVar[list[dict]] = [{"kind": "fault", "mode": "slow", "milliseconds": 0.0}]

    def apply(self, config: FaultConfig, model: Any, ctx: StepContext) -> None:
        if config.mode == "stall-once":
            if ctx.replay and _first_load(model):
                self._slow(config, model, ctx)
            return
        if config.mode == "slow":
            self._slow(config, model, ctx)
            return
        if ctx.replay:
            return
        if config.mode == "raise":
            raise RuntimeError("fault step: failing on purpose")
        if config.mode == "abort":
            os.abort()
        time.sleep(10**6)

    def _slow(self, config: FaultConfig, model: Any, ctx: StepContext) -> None:
        for module in model.component_modules(self.targets(config)[0]).values():
            module.register_forward_pre_hook(_sleep_hook(config.milliseconds / 1e3))
        ctx.note(f"injected {config.milliseconds} ms sleep per {self.targets(config)[0]} forward")


STALL_MARKER = ".fault-stalled-once"


MEASURING = "HARNESS_MEASURING"  # set by the latency-measuring process before it loads the variant


def _first_load(model: Any) -> bool:
    """True for the first latency-measuring process that loads this built variant (it leaves a
    marker beside it)."""
    from pathlib import Path

    folder = model.meta.get("path")
    if not folder or os.environ.get(MEASURING) != "latency":
        return False
    try:
        (Path(folder) / STALL_MARKER).open("x").close()
    except FileExistsError:
        return False
    return True
