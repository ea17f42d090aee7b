"""The recipe's JSON Schema (`harness schema`), generated from the real models so it cannot drift:
a recipe model whose variant steps are the discriminated union (on `kind`) of every registered
step's config, `base` (and each `models:` entry) as a model id string or the full object, and
every `$defs` entry the step configs refer to (calibration, LoRA...) kept. Grid steps are objects
with a known `kind`: their values may be "{axis}" placeholders, which no step's schema would accept."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, create_model

from harness.registries import STEPS
from harness.spec.models import BaseModelSpec, GridSpec, ModelEntry, RecipeSpec, VariantSpec


def _step_union() -> Any:
    configs = tuple(STEPS.get(name).Config for name in STEPS.names())
    return Annotated[Union[configs], Field(discriminator="kind")]  # noqa: UP007 - a runtime-built union


def _runtime_options() -> type:
    """`runtime_options`: one optional entry per runtime that declares a `Config`, that Config's schema."""
    from harness.registries import RUNTIMES
    from harness.spec.base import Strict

    fields = {name.replace("-", "_"): (RUNTIMES.get(name).Config | None, Field(None, alias=name))
              for name in RUNTIMES.names() if getattr(RUNTIMES.get(name), "Config", None) is not None}
    return create_model("RuntimeOptions", __base__=Strict, **fields)


def _models() -> type:
    step = _step_union()
    variant = create_model("VariantSpec", __base__=VariantSpec, steps=(list[step], Field(default_factory=list)))
    return create_model("RecipeSpec", __base__=RecipeSpec,
                        base=(str | BaseModelSpec, Field(default_factory=BaseModelSpec,
                                                         description="a model id (nano, random:<shape>, a local "
                                                                     "checkpoint dir, a hub id) or the full object")),
                        models=(dict[str, str | ModelEntry], Field(
                            default_factory=dict, description=RecipeSpec.model_fields["models"].description)),
                        variants=(list[variant], Field(default_factory=list)),
                        runtime_options=(_runtime_options(), Field(
                            default_factory=dict, description=RecipeSpec.model_fields["runtime_options"].description)))


def json_schema() -> dict[str, Any]:
    schema = _models().model_json_schema()
    grid = schema["$defs"][GridSpec.__name__]["properties"]["steps"]
    grid["items"] = {"type": "object", "required": ["kind"], "properties": {"kind": {"enum": STEPS.names()}}}
    schema["title"] = "fastvlm-harness recipe"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
