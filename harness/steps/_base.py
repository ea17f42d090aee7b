"""The step contract.

A step is a class registered with ``@STEPS.register(name)``. Its nested pydantic ``Config`` is
pure data (validated when a recipe is read, before torch is imported); ``apply`` does the work
on a loaded model. ``consumes``/``produces`` name artifact formats so the planner can reject an
impossible recipe before anything runs. When a saved variant is loaded again, its steps are
*replayed* on a skeleton (``ctx.replay``): a step must then rebuild the structure only, since
the saved weights are loaded afterwards. A decision that replay cannot re-derive without data
(which heads a pruner removed, the bits a sensitivity search chose) goes into ``ctx.record``:
a per-step dict saved in the variant manifest and handed back, unchanged, on replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
    #: Where relative dataset paths in step configs are resolved (the recipe's folder).
    data_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: One JSON-able dict per applied step, in order; saved with the variant (see module doc).
    records: list[dict[str, Any]] = field(default_factory=list)
    applied: int = 0

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def record(self) -> dict[str, Any]:
        """The running step's record: fill it when building, read it when replaying."""
        return self.records[self.applied - 1]


class Step:
    """Base class; subclasses set `Config`, may narrow `consumes`/`produces`, implement `apply`."""

    Config: ClassVar[type[StepConfig]] = StepConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "torch"
    default_targets: ClassVar[tuple[str, ...]] = COMPONENTS
    #: Configs the registry-wide contract tests run this step with (at least one).
    examples: ClassVar[list[dict[str, Any]]] = []
    #: True when the step's examples must make `model.safetensors` smaller (the contract tests
    #: check it); False when stored weights keep their size (zeros, hooks, caches, structure).
    shrinks_storage: ClassVar[bool] = False

    def targets(self, config: StepConfig) -> tuple[str, ...]:
        return tuple(config.targets) if config.targets else self.default_targets

    def apply(self, config: StepConfig, model: Any, ctx: StepContext) -> None:
        raise NotImplementedError


def apply_step(raw: dict[str, Any], model: Any, ctx: StepContext) -> None:
    """Validate one step's data and apply it (the one way every caller runs a step)."""
    from harness.registries import STEPS

    step_cls = STEPS.get(raw["kind"])
    config = step_cls.Config.model_validate(raw)
    ctx.applied += 1
    if ctx.replay:
        while len(ctx.records) < ctx.applied:  # variants saved before records existed
            ctx.records.append({})
    else:
        ctx.records.append({})
    step_cls().apply(config, model, ctx)
