"""Cast components to fp16 or bf16 (weights and compute).

Components may end up in different dtypes, so each cast component gets a forward pre-hook that
casts its floating inputs to its own dtype; the generation loop casts at the remaining seams.

A bf16 component with 2-D convolutions (the FastViTHD tower) is also put in channels_last memory
format, its 4-D inputs too: oneDNN's bf16 convolutions (AMX on recent Xeons) run in NHWC, and in
NCHW every conv reorders. Measured on random:fastvlm-0.5b's reparameterised tower, 2 threads:
256 px fp32 222 ms, bf16 134 ms, bf16 channels_last 99 ms (fp32 channels_last 240 ms, so fp32
keeps NCHW). benchmarks/peers_0p5b.py, 5 rounds: 1024 px fp32 2304 ms, bf16 channels_last 720 ms.
That is on a CPU with native bf16 (AMX); on one without AVX512-BF16 or AMX torch emulates bf16 and
the cast tower is many times slower than fp32, which the step's note says.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from harness.environment import native_bf16
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


class CastConfig(StepConfig):
    kind: Literal["cast"] = "cast"
    dtype: Literal["fp16", "bf16", "fp32"] = "bf16"


def _cast_inputs(dtype: Any, channels_last: bool = False):  # noqa: ANN202 - returns a hook
    import torch

    def hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        def convert(value: Any) -> Any:
            if not (hasattr(value, "is_floating_point") and value.is_floating_point()):
                return value
            value = value.to(dtype)
            return value.contiguous(memory_format=torch.channels_last) if channels_last and value.dim() == 4 else value

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
                convs = any(isinstance(m, torch.nn.Conv2d) for m in module.modules())
                channels_last = dtype == torch.bfloat16 and convs
                if channels_last:  # see the module doc
                    module.to(memory_format=torch.channels_last)
                module.register_forward_pre_hook(_cast_inputs(dtype, channels_last), with_kwargs=True)
        ctx.note(f"{', '.join(self.targets(config))} cast to {config.dtype}")
        if config.dtype == "bf16" and native_bf16() is False:
            ctx.note("this CPU has neither AVX512-BF16 nor AMX: torch runs bf16 matmuls and convolutions emulated, "
                     "far slower than fp32 (harness.environment.cpu_features); the size and accuracy still hold")
