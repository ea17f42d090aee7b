"""Recipe schema: pure, validated data. Reading a recipe imports no torch.

A recipe names a base model, the variants to build (ordered steps, or a grid that expands into
variants), the runtimes and suites to measure with, the targets and gate, and where runs go.
Every error names ``file:line``, the field, and a fix.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError
from harness.registries import RUNTIMES, STEPS
from harness.registry import did_you_mean
from harness.spec.messages import error_message
from harness.spec.vocabulary import COMPONENTS
from harness.spec.yamlio import Loc, line_of, load_yaml

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelSpec(Strict):
    """`nano`, a local checkpoint dir, a hub id, or `random:<shape>` (real dimensions, random weights)."""

    model: str = "nano"
    revision: str | None = None
    trust_remote_code: bool = False


class Targets(Strict):
    """Mobile budgets from the product brief; a recipe may override any of them."""

    max_size_mb: float | None = 100.0
    max_peak_memory_mb: float | None = 500.0
    max_ttft_ms: float | None = 20.0
    min_retention: float | None = Field(0.95, ge=0, le=2)


class RegressionPolicy(Strict):
    """When `harness compare` / `harness gate --baseline` call a change a regression.

    A change must be both large (beyond the ratio or drop) and significant (p < alpha), so
    noise alone never fails a build and a tiny, real slow-down does not either.
    """

    alpha: float = Field(0.01, gt=0, lt=1, description="significance level of the tests")
    latency_ratio: float = Field(1.10, ge=1, description="median time ratio (new/old) above which a slow-down counts")
    accuracy_drop: float = Field(0.0, ge=0, le=1, description="absolute score drop that must be exceeded")
    memory_ratio: float = Field(1.10, ge=1, description="peak-memory ratio above which growth counts")
    size_ratio: float = Field(1.01, ge=1, description="size ratio above which growth counts")


class ParityPolicy(Strict):
    """Thresholds `harness gate` applies to the automatic parity check of every exported artifact
    (runtime vs the torch reference of the same variant); unset fields are reported, not gated."""

    min_agreement: float | None = Field(None, ge=0, le=1, description="share of identical answers")
    min_cosine: float | None = Field(None, ge=-1, le=1,
                                     description="lowest per-item cosine of encoder output and first-token logits")
    max_logit_abs: float | None = Field(None, ge=0, description="largest |logit difference| allowed")


RUNTIMES_DESCRIPTION = ("runtimes this variant is measured on (a subset of the recipe's); default: every recipe "
                        "runtime that accepts the variant's last-added format, the others recorded as not applicable")


class VariantSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    gate: bool = True
    runtimes: list[str] | None = Field(None, description=RUNTIMES_DESCRIPTION)


class GridSpec(Strict):
    """Cartesian expansion: every "{axis}" in `name` and in step values is substituted."""

    name: str
    axes: dict[str, list[Any]]
    steps: list[dict[str, Any]]
    gate: bool = True
    runtimes: list[str] | None = Field(None, description=RUNTIMES_DESCRIPTION)

    @field_validator("axes")
    @classmethod
    def _non_empty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not axes or any(not values for values in axes.values()):
            raise ValueError("every grid axis needs at least one value")
        return axes


class RecipeSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    base: BaseModelSpec = Field(default_factory=BaseModelSpec)
    baseline: str | None = Field(None, description="variant that retention is measured against")
    variants: list[VariantSpec] = Field(default_factory=list)
    grid: list[GridSpec] = Field(default_factory=list)
    runtimes: list[str] = Field(default_factory=lambda: ["torch-eager"])
    suites: list[str] = Field(default_factory=lambda: ["nano-vqa", "latency", "memory", "size"])
    targets: Targets = Field(default_factory=Targets)
    regression: RegressionPolicy = Field(default_factory=RegressionPolicy)
    parity: ParityPolicy = Field(default_factory=ParityPolicy)
    output: str = "reports"
    data_dirs: list[str] = Field(default_factory=list, description="folders with local dataset copies "
                                 "(<dir>/<hub id>/...), relative to the recipe, searched before the hub cache "
                                 "(after --data-dir; docs/suites.md)")
    variant_timeout_s: float = Field(1800, gt=0)
    seed: int = 0

    @field_validator("base", mode="before")
    @classmethod
    def _base_shorthand(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value


class Recipe(BaseModel):
    """A validated recipe with its variants expanded and each step's config parsed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    spec: RecipeSpec
    path: Path | None
    variants: list[ResolvedVariant]

    def variant(self, name: str) -> ResolvedVariant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        names = [v.name for v in self.variants]
        raise ConfigError(f"no variant '{name}' in recipe{did_you_mean(name, names)}")

    @property
    def baseline(self) -> str:
        return self.spec.baseline or self.variants[0].name


class ResolvedVariant(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    steps: list[Any]  # StepConfig instances
    gate: bool = True
    #: Formats the artifact holds, in the order they were added ("torch" first).
    formats: list[str] = ["torch"]
    #: The variant's own `runtimes:` (None: chosen by format, see `runtime_plan`).
    runtimes: list[str] | None = None

    def steps_as_data(self) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json") for s in self.steps]


def _substitute(value: Any, axes: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = re.fullmatch(r"\{(\w+)\}", value)
        if whole and whole.group(1) in axes:
            return axes[whole.group(1)]  # keep the axis value's type
        return re.sub(r"\{(\w+)\}", lambda m: str(axes.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [_substitute(v, axes) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, axes) for k, v in value.items()}
    return value


def _expand(spec: RecipeSpec) -> list[tuple[VariantSpec, Loc]]:
    out = [(v, ("variants", i)) for i, v in enumerate(spec.variants)]
    for g_index, grid in enumerate(spec.grid):
        keys = list(grid.axes)
        for combo in itertools.product(*(grid.axes[k] for k in keys)):
            axes = dict(zip(keys, combo))
            name = _substitute(grid.name, axes)
            steps = _substitute(grid.steps, axes)
            variant = VariantSpec(name=str(name), steps=steps, gate=grid.gate, runtimes=grid.runtimes)
            out.append((variant, ("grid", g_index)))
    return out


def _resolve_step(raw: Any, loc: Loc, where: Any) -> Any:
    if not isinstance(raw, dict) or "kind" not in raw:
        raise where(loc, "each step needs a 'kind:' (see `harness ls`)")
    kind = raw["kind"]
    if kind not in STEPS:
        raise where((*loc, "kind"), f"unknown step '{kind}'{did_you_mean(str(kind), STEPS.names())}")
    config_cls = STEPS.get(kind).Config
    try:
        return config_cls.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field_loc = (*loc, *err["loc"])
        if err["loc"] and err["loc"][0] == "targets":
            bad = raw.get("targets")
            msg = f"targets {bad!r}: components are {', '.join(COMPONENTS)}"
        else:
            msg = error_message(err, config_cls, f"step '{kind}'")
        raise where(field_loc, msg) from None


def parse_recipe(data: Any, path: Path | None = None, lines: dict[Loc, int] | None = None) -> Recipe:
    """Validate recipe data; every error is a one-line `ConfigError` with file:line and field."""
    lines = lines or {}
    label = str(path) if path else "<recipe>"

    def where(loc: Loc, msg: str) -> ConfigError:
        line = line_of(lines, loc)
        field = ".".join(str(p) for p in loc) or "(top level)"
        return ConfigError(f"{label}{':' + str(line) if line else ''}: {field}: {msg}")

    if not isinstance(data, dict):
        raise where((), "a recipe is a YAML mapping with at least 'name:'")
    try:
        spec = RecipeSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise where(tuple(err["loc"]), error_message(err, RecipeSpec)) from None

    for index, runtime in enumerate(spec.runtimes):
        if runtime not in RUNTIMES:
            raise where(("runtimes", index), f"unknown runtime '{runtime}'{did_you_mean(runtime, RUNTIMES.names())}")
    from harness.spec.suite_files import find_suite

    for index, suite in enumerate(spec.suites):
        try:
            find_suite(suite, path.parent if path else None)
        except ConfigError as exc:
            raise where(("suites", index), str(exc)) from None

    variants: list[ResolvedVariant] = []
    for variant, loc in _expand(spec):
        steps = [_resolve_step(raw, (*loc, "steps", i), where) for i, raw in enumerate(variant.steps)]
        formats = _check_formats(steps, loc, where)
        _check_runtimes(variant, formats, spec.runtimes, loc, where)
        variants.append(ResolvedVariant(name=variant.name, steps=steps, gate=variant.gate, formats=formats,
                                        runtimes=variant.runtimes))
    if not variants:
        variants.insert(0, ResolvedVariant(name="base", steps=[]))
    names = [v.name for v in variants]
    for name in names:
        if names.count(name) > 1:
            raise where(("variants",), f"variant name '{name}' is used twice; names must be unique")
    if spec.baseline and spec.baseline not in names:
        raise where(("baseline",), f"no variant named '{spec.baseline}'{did_you_mean(spec.baseline, names)}")
    if not spec.baseline and variants[0].steps:
        # Retention needs an uncompressed reference: add it rather than guess.
        variants.insert(0, ResolvedVariant(name="base", steps=[], gate=False))
    return Recipe(spec=spec, path=path, variants=variants)


def _check_formats(steps: list[Any], loc: Loc, where: Any) -> list[str]:
    """The artifact's formats after each step; a step whose input format is missing, or a torch
    step after an export (which would leave the export stale), is an error."""
    formats = ["torch"]
    for index, config in enumerate(steps):
        step = STEPS.get(config.kind)
        if step.consumes not in formats:
            raise where((*loc, "steps", index),
                        f"step '{config.kind}' needs a {step.consumes} artifact but the variant has only "
                        f"{'+'.join(formats)}; add an export to {step.consumes} before it")
        if step.consumes == step.produces == "torch" and len(formats) > 1:
            raise where((*loc, "steps", index),
                        f"step '{config.kind}' changes the torch model after it was exported to "
                        f"{'+'.join(formats[1:])}; put export steps after every torch step")
        if step.produces not in formats:
            formats.append(step.produces)
    return formats


def runtime_plan(formats: list[str], runtimes: list[str], chosen: list[str] | None = None) -> dict[str, str | None]:
    """Runtime → None when it measures the variant, else why it is not applicable.

    Without a variant `runtimes:` list, a runtime measures a variant when it accepts the variant's
    last-added format (an export variant is measured as that export; its torch weights serve as
    the parity reference). With the list, exactly the listed runtimes measure it.
    """
    plan: dict[str, str | None] = {}
    primary = formats[-1]
    for runtime in runtimes:
        accepts = RUNTIMES.get(runtime).accepts
        if chosen is not None:
            plan[runtime] = None if runtime in chosen else "not listed in the variant's runtimes"
        elif primary in accepts:
            plan[runtime] = None
        else:
            plan[runtime] = (f"{runtime} runs {'/'.join(accepts)} artifacts; this variant is measured as "
                             f"{primary} (formats {'+'.join(formats)})")
    return plan


def _check_runtimes(variant: VariantSpec, formats: list[str], runtimes: list[str], loc: Loc, where: Any) -> None:
    if variant.runtimes is not None:
        for index, runtime in enumerate(variant.runtimes):
            if runtime not in runtimes:
                raise where((*loc, "runtimes", index),
                            f"runtime '{runtime}' is not in the recipe's runtimes "
                            f"{runtimes}{did_you_mean(runtime, runtimes)}")
            accepts = RUNTIMES.get(runtime).accepts
            if not set(accepts) & set(formats):
                raise where((*loc, "runtimes", index),
                            f"runtime '{runtime}' runs {'/'.join(accepts)}, but variant '{variant.name}' "
                            f"has only {'+'.join(formats)}")
    plan = runtime_plan(formats, runtimes, variant.runtimes)
    if not any(reason is None for reason in plan.values()):
        wanted = [n for n in RUNTIMES.names() if formats[-1] in RUNTIMES.get(n).accepts]
        raise where(loc, f"no runtime of the recipe can run variant '{variant.name}' ({formats[-1]} artifact); "
                         f"add one of {wanted or 'the runtimes for ' + formats[-1]} to runtimes")


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    data, lines = load_yaml(path)
    return parse_recipe(data, path, lines)


def json_schema() -> dict[str, Any]:
    """JSON Schema for editors, with each registered step's own schema under `steps.items`."""
    schema = RecipeSpec.model_json_schema()
    step_schemas = []
    for name in STEPS.names():
        step_schema = STEPS.get(name).Config.model_json_schema()
        step_schema["properties"]["kind"] = {"const": name}
        step_schema["required"] = sorted({"kind", *step_schema.get("required", [])})
        step_schemas.append(step_schema)
    item = {"oneOf": step_schemas}
    schema["$defs"]["VariantSpec"]["properties"]["steps"]["items"] = item
    schema["$defs"]["GridSpec"]["properties"]["steps"]["items"] = item
    return schema


Recipe.model_rebuild()
