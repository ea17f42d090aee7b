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
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from harness.spec.vocabulary import COMPONENTS, FORMATS, Component

__all__ = ["COMPONENTS", "FORMATS", "Component", "Step", "StepConfig", "StepContext", "apply_step"]


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
    #: Build-time staging root for exports (`<tmp artifact>/exports`); None when replaying.
    staging: Path | None = None
    #: Where training steps keep checkpoints across build attempts (`<cache>/training/<key>`).
    work_dir: Path | None = None
    #: The recipe's base model (`{"model", "revision", "trust_remote_code"}`): the distill teacher.
    base_model: dict[str, Any] | None = None

    def export_dir(self, fmt: str) -> Path:
        """The folder an export step writes format `fmt` into (created on demand).

        It lives inside the artifact being built, so the atomic rename of the build moves it to
        `<artifact>/exports/<fmt>/`. Exports are never re-made on replay (load_variant).
        """
        from harness.errors import StepError

        if fmt not in FORMATS or fmt == "torch":
            raise StepError(f"'{fmt}' is not an export format (formats: {', '.join(FORMATS[1:])})")
        if self.replay:
            raise StepError(f"no {fmt} export folder here: exports are written only while building a variant")
        if self.staging is None:  # a build outside the worker (tests, notebooks): stage in a temp folder
            import tempfile

            self.staging = Path(tempfile.mkdtemp(prefix="harness-exports-"))
        folder = self.staging / fmt
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def record(self) -> dict[str, Any]:
        """The running step's record: fill it when building, read it when replaying."""
        return self.records[self.applied - 1]


class Step:
    """Base class; subclasses set `Config`, may narrow `consumes`/`produces`, implement `apply`.

    `consumes` is the format the step needs present; `produces` the format it leaves (added to
    the artifact's formats when new). torch → torch steps change the torch weights and are
    therefore rejected after an export (the export would no longer match its reference).
    """

    Config: ClassVar[type[StepConfig]] = StepConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "torch"
    default_targets: ClassVar[tuple[str, ...]] = COMPONENTS
    #: Configs the registry-wide contract tests run this step with (at least one).
    examples: ClassVar[list[dict[str, Any]]] = []
    #: Steps the examples need before them (e.g. an export for a step that consumes onnx).
    example_requires: ClassVar[list[dict[str, Any]]] = []
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
