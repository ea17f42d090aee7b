"""The step contract.

A step is a class registered with ``@STEPS.register(name)``. Its nested pydantic ``Config`` is
pure data (validated when a recipe is read, before torch is imported); ``apply`` does the work
on a loaded model. ``consumes``/``produces`` name artifact formats so the planner can reject an
impossible recipe before anything runs. When a saved variant is loaded again, its steps are
*replayed* on a skeleton (``ctx.replay``): a step must then rebuild the structure only, since
the saved weights are loaded afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

Component = Literal["vision", "projector", "llm"]
COMPONENTS: tuple[str, ...] = ("vision", "projector", "llm")


class StepConfig(BaseModel):
    """Fields every step accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    targets: list[Component] | None = None


@dataclass
class StepContext:
    """What a step may use besides the model."""

    replay: bool = False
    calibration: Any = None  # callable returning a list of processed batches, when a suite offers one
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)


class Step:
    """Base class; subclasses set `Config`, may narrow `consumes`/`produces`, implement `apply`."""

    Config: ClassVar[type[StepConfig]] = StepConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "torch"
    default_targets: ClassVar[tuple[str, ...]] = COMPONENTS
    #: Configs the registry-wide contract tests run this step with (at least one).
    examples: ClassVar[list[dict[str, Any]]] = []

    def targets(self, config: StepConfig) -> tuple[str, ...]:
        return tuple(config.targets) if config.targets else self.default_targets

    def apply(self, config: StepConfig, model: Any, ctx: StepContext) -> None:
        raise NotImplementedError


def apply_step(raw: dict[str, Any], model: Any, ctx: StepContext) -> None:
    """Validate one step's data and apply it (the one way every caller runs a step)."""
    from harness.registries import STEPS

    step_cls = STEPS.get(raw["kind"])
    step_cls().apply(step_cls.Config.model_validate(raw), model, ctx)
