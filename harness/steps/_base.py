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

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from harness.errors import StepError
from harness.spec.vocabulary import COMPONENTS, FORMATS, Component

__all__ = ["COMPONENTS", "FORMATS", "Component", "Step", "StepConfig", "StepConfigError", "StepContext",
           "apply_step", "distinct", "no_targets",
           "validate_step"]


class StepConfig(BaseModel):
    """Fields every step accepts.

    Every limit a step's own code has on its fields (ranges, closed choices, rules between
    fields) belongs in its Config, so a recipe is refused when it is read (`harness validate`,
    torch-free), not later in the build worker; `apply` keeps only the checks that need the model
    or the data (a group size that must divide a layer's width, an index past the last layer).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    targets: list[Component] | None = None

    @model_validator(mode="after")
    def _targets_listed_once(self) -> StepConfig:
        if self.targets is not None:
            if not self.targets:
                raise ValueError(f"targets is empty: name at least one of {', '.join(COMPONENTS)}, "
                                 "or leave targets out for the step's default")
            distinct(self.targets, "targets")
        return self


def no_targets(config: StepConfig, instead: str) -> None:
    """For steps whose `targets` would be ignored: refuse them rather than pretend (`instead` says what chooses)."""
    if config.targets is not None:
        raise ValueError(f"{config.kind} takes no targets ({instead}); remove targets")


def distinct(values: list[Any], field: str) -> list[Any]:
    """`values` unchanged, or a ValueError naming the first one listed twice in `field`."""
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{field} lists {value!r} twice; name each one once")
        seen.add(value)
    return values


class PartsConfig(StepConfig):
    """A step that picks the parts it acts on with a list field of its own (`components` of an
    export, `graphs` of a rewrite of one) instead of `targets`: each part named once, no `targets`."""

    parts_field: ClassVar[str] = "components"
    parts_chosen: ClassVar[str] = "the parts"

    @model_validator(mode="after")
    def _parts(self) -> PartsConfig:
        value = getattr(self, self.parts_field)
        if value is not None:
            distinct(value, self.parts_field)
        no_targets(self, f"{self.parts_field} picks {self.parts_chosen}")
        return self


class StepConfigError(StepError, ValueError):
    """Step data its Config refuses, met outside a recipe (a direct `apply_step`, a stored manifest).

    Recipes are checked when read, so a build never gets here; the class is also a ValueError,
    like the pydantic error it replaces, for callers that catch that.
    """


def _rule(label: str, metadata: list[Any]) -> str | None:
    """`0 < sparsity < 1` from a field's annotated-types bounds (None when it has none)."""
    low = high = None
    for item in metadata:
        for attr, sign in (("gt", "<"), ("ge", "<=")):
            if getattr(item, attr, None) is not None:
                low = (getattr(item, attr), sign)
        for attr, sign in (("lt", "<"), ("le", "<=")):
            if getattr(item, attr, None) is not None:
                high = (getattr(item, attr), sign)
    if low and high:
        return f"{low[0]!r} {low[1]} {label} {high[1]} {high[0]!r}"
    if low:
        return f"{label} {'>' if low[1] == '<' else '>='} {low[0]!r}"
    if high:
        return f"{label} {high[1]} {high[0]!r}"
    return None


def _field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The FieldInfo at `loc` inside `model` (nested models followed), or None."""
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not isinstance(model, type) or str(part) not in model.model_fields:
            return None
        info = model.model_fields[str(part)]
        args = (info.annotation, *getattr(info.annotation, "__args__", ()))
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        model = nested[0] if nested else None
    return info


RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def config_problem(exc: ValidationError, config_cls: type[BaseModel], kind: str) -> str:
    """One line for the first problem of a failed validation: field, value and what is allowed."""
    from harness.spec.messages import error_message

    err = exc.errors()[0]
    loc = tuple(err["loc"])
    label = ".".join(str(p) for p in loc)
    info = _field_at(config_cls, loc) if err["type"] in RANGE_ERRORS and not isinstance(loc[-1], int) else None
    rule = _rule(label, info.metadata) if info is not None else None
    if rule:
        message = f"{label} {err['input']!r} is outside the allowed range {rule}"
    else:
        message = error_message(err, config_cls).removeprefix("Value error, ")
        message = f"{label}: {message}" if label and not message.startswith("unknown field") else message
    more = len(exc.errors()) - 1
    return f"step '{kind}': {message}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def validate_step(raw: dict[str, Any]) -> StepConfig:
    """Step data validated by its step's Config; a one-line `StepConfigError` when refused."""
    from harness.registries import STEPS

    step_cls = STEPS.get(raw["kind"])
    try:
        return step_cls.Config.model_validate(raw)
    except ValidationError as exc:
        raise StepConfigError(config_problem(exc, step_cls.Config, str(raw["kind"]))) from None


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

    config = validate_step(raw)
    step_cls = STEPS.get(raw["kind"])
    ctx.applied += 1
    if ctx.replay:
        while len(ctx.records) < ctx.applied:  # variants saved before records existed
            ctx.records.append({})
    else:
        ctx.records.append({})
    step_cls().apply(config, model, ctx)
