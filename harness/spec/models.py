"""The recipe's data model: pure, validated data (pydantic, `extra="forbid"`), no torch.

`RecipeSpec` is what the YAML says; `Recipe` is the validated result with every variant expanded
(grids) and resolved (each step's config parsed by its own class, its formats known). Parsing
and the cross-field checks live in `harness.spec.recipe`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.errors import ConfigError
from harness.registry import did_you_mean
from harness.spec.base import NAME_PATTERN, Strict
from harness.spec.search import SearchSpec


class BaseModelSpec(Strict):
    """`nano`, a local checkpoint dir, a hub id, or `random:<shape>` (real dimensions, random weights)."""

    model: str = "nano"
    revision: str | None = None
    trust_remote_code: bool = False


class ModelEntry(BaseModelSpec):
    """One base model of a cross-model recipe (`models: {name: ...}`): the base, and the variant of
    this model that its variants' retention is measured against."""

    baseline: str | None = Field(None, description="this model's variant that retention is measured against "
                                 "(default: the model's first variant when it has no steps, else an uncompressed "
                                 "variant named after the model, added)")


MODEL_DESCRIPTION = ("the `models:` entry this variant is built from (cross-model recipes only); omitted: the "
                     "variant is built from every model, once each, named '<model>-<variant>'")


class Targets(Strict):
    """Mobile budgets from the product brief; a recipe may override any of them."""

    max_size_mb: float | None = Field(100.0, gt=0, description="bytes on disk of what would ship, in MB (1e6)")
    max_peak_memory_mb: float | None = Field(500.0, gt=0, description="model-attributable peak RSS, MiB")
    max_ttft_ms: float | None = Field(20.0, gt=0, description="time to first token p50, batch 1, ms")
    min_retention: float | None = Field(0.95, ge=0, le=2, description="variant accuracy / baseline accuracy, a "
                                        "fraction (0.95 keeps 95 %)")


class RegressionPolicy(Strict):
    """When `harness compare` / `harness gate --baseline` call a change a regression.

    A change must be both large (beyond the ratio or drop) and significant (p < alpha), so
    noise alone never fails a build and a tiny, real slow-down does not either.
    """

    alpha: float = Field(0.01, gt=0, lt=1, description="significance level of the tests")
    latency_ratio: float = Field(1.10, ge=1, description="median time ratio (new/old) above which a slow-down counts")
    unpaired_latency_ratio: float = Field(
        1.5, ge=1, description="the same for a latency compared on raw medians across runs (the baseline variant "
                               "itself, or runs without rounds), where the machine's drift between the runs is not "
                               "cancelled: calibrated on A/A runs (benchmarks/calibrate_noise.py)")
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
    model: str | None = Field(None, description=MODEL_DESCRIPTION)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    gate: bool = True
    runtimes: list[str] | None = Field(None, description=RUNTIMES_DESCRIPTION)


class GridSpec(Strict):
    """Cartesian expansion: every "{axis}" in `name` and in step values is substituted."""

    name: str
    model: str | None = Field(None, description=MODEL_DESCRIPTION)
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
    models: dict[str, ModelEntry] = Field(
        default_factory=dict, description="several base models in one run (instead of `base:`), by name: each "
                                          "variant names its model, retention is measured against that model's "
                                          "own baseline (docs/recipes.md, Cross-model recipes)")
    variants: list[VariantSpec] = Field(default_factory=list)
    grid: list[GridSpec] = Field(default_factory=list)
    runtimes: list[str] = Field(default_factory=lambda: ["torch-eager"])
    runtime_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings of the runtimes that take them, by runtime name, each validated "
                                          "by that runtime's own Config (e.g. android-litert: {serial, "
                                          "benchmark_model, threads, delegate, runs}; docs/devices.md)")
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
    search: SearchSpec | None = Field(None, description="what `harness search` explores (docs/search.md); "
                                      "`harness run` ignores it")
    select: str = Field("ttft_ms", description="the objective the report's recommendation optimises among the "
                        "variants that meet every target: one of the suite kinds' objectives (ttft_ms, size_mb, "
                        "memory_mb, accuracy, decode_tps)")

    @field_validator("base", mode="before")
    @classmethod
    def _base_shorthand(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @field_validator("models", mode="before")
    @classmethod
    def _models_shorthand(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name in value:
            if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
                raise ValueError(f"model name '{name}' is not a valid name (letters, digits and _.+- ; starting "
                                 "with a letter or digit)")
        return {name: {"model": entry} if isinstance(entry, str) else entry for name, entry in value.items()}


class Recipe(BaseModel):
    """A validated recipe with its variants expanded and each step's config parsed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    spec: RecipeSpec
    path: Path | None
    variants: list[ResolvedVariant]
    #: Cross-model recipes: each model's baseline variant, by model name (empty for a `base:` recipe).
    model_baselines: dict[str, str] = {}

    def variant(self, name: str) -> ResolvedVariant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        names = [v.name for v in self.variants]
        raise ConfigError(f"no variant '{name}' in recipe{did_you_mean(name, names)}")

    @property
    def baseline(self) -> str:
        """The run's baseline: the recipe's `baseline:`, else its first variant (a cross-model recipe:
        the first model's baseline); `baseline_of` gives each variant's own."""
        if self.model_baselines:
            return next(iter(self.model_baselines.values()))
        return self.spec.baseline or self.variants[0].name

    def baseline_of(self, name: str) -> str:
        """The variant that `name`'s retention is measured against: its own model's baseline."""
        model = self.variant(name).model
        return self.model_baselines[model] if model is not None else self.baseline

    @property
    def baselines(self) -> dict[str, str]:
        """Variant → its baseline variant, for a cross-model recipe (empty for a `base:` recipe)."""
        return {v.name: self.model_baselines[v.model] for v in self.variants if v.model is not None}

    def base_of(self, variant: ResolvedVariant) -> BaseModelSpec:
        """The base model `variant` is built from."""
        return self.model_base(variant.model)

    def model_base(self, model: str | None) -> BaseModelSpec:
        """The base model of a `models:` entry (None: the recipe's `base:`)."""
        if model is None:
            return self.spec.base
        entry = self.spec.models[model]
        return BaseModelSpec(model=entry.model, revision=entry.revision, trust_remote_code=entry.trust_remote_code)


class ResolvedVariant(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    steps: list[Any]  # StepConfig instances
    gate: bool = True
    #: The `models:` entry it is built from (None: the recipe's `base:`).
    model: str | None = None
    #: Formats the artifact holds, in the order they were added ("torch" first).
    formats: list[str] = ["torch"]
    #: The variant's own `runtimes:` (None: chosen by format, see `runtime_plan`).
    runtimes: list[str] | None = None

    def steps_as_data(self) -> list[dict[str, Any]]:
        return [s.model_dump(mode="json") for s in self.steps]


Recipe.model_rebuild()
