"""Cast components to fp16 or bf16 (weights and compute).

Components may end up in different dtypes, so each cast component gets a forward pre-hook that
casts its floating inputs to its own dtype; the generation loop casts at the remaining seams.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


class CastConfig(StepConfig):
    kind: Literal["cast"] = "cast"
    dtype: Literal["fp16", "bf16", "fp32"] = "bf16"


def _cast_inputs(dtype: Any):  # noqa: ANN202 - returns a hook
    def hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        def convert(value: Any) -> Any:
            return value.to(dtype) if hasattr(value, "is_floating_point") and value.is_floating_point() else value

        return tuple(convert(a) for a in args), {k: convert(v) for k, v in kwargs.items()}

    return hook


@STEPS.register("cast", "cast component weights and compute to fp16 / bf16")
class Cast(Step):
    Config = CastConfig
    shrinks_storage: ClassVar[bool] = True
    examples: ClassVar[list[dict]] = [{"kind": "cast", "dtype": "bf16"},
                                      {"kind": "cast", "dtype": "fp16", "targets": ["llm"]}]

    def apply(self, config: CastConfig, model: Any, ctx: StepContext) -> None:
        import torch

        dtype = getattr(torch, DTYPES[config.dtype])
        for component in self.targets(config):
            for module in model.component_modules(component).values():
                module.to(dtype)
                module.register_forward_pre_hook(_cast_inputs(dtype), with_kwargs=True)
        ctx.note(f"{', '.join(self.targets(config))} cast to {config.dtype}")
