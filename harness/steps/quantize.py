"""INT8 quantization of Linear layers per component, through torchao.

`dynamic-int8`: int8 weights and per-token dynamically quantized int8 activations
(`Int8DynamicActivationInt8WeightConfig`); `int8-weight-only`: int8 weights, float compute
(`Int8WeightOnlyConfig`). Weights are stored packed (int8 `qdata` + scales) by `artifacts`.
Convolutions are untouched: a conv-only target is reported as unchanged, not pretended.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext
from harness.steps._layers import check_ignore, linear_layers


class QuantizeConfig(StepConfig):
    kind: Literal["quantize"] = "quantize"
    method: Literal["dynamic-int8", "int8-weight-only"] = "dynamic-int8"
    ignore: list[str] = []


def _torchao_config(method: str) -> Any:
    from torchao import quantization  # a core dependency of the harness

    if method == "dynamic-int8":
        return quantization.Int8DynamicActivationInt8WeightConfig()
    return quantization.Int8WeightOnlyConfig()


@STEPS.register("quantize", "torchao INT8 (dynamic activations or weight-only) on Linear layers")
class Quantize(Step):
    Config = QuantizeConfig
    shrinks_storage: ClassVar[bool] = True
    default_targets: ClassVar[tuple[str, ...]] = ("llm",)
    examples: ClassVar[list[dict]] = [
        {"kind": "quantize", "method": "dynamic-int8"},
        {"kind": "quantize", "method": "int8-weight-only", "targets": ["vision", "projector", "llm"],
         "ignore": ["lm_head"]}]

    def apply(self, config: QuantizeConfig, model: Any, ctx: StepContext) -> None:
        from torchao.quantization import quantize_

        layers = linear_layers(model, self.targets(config), config.ignore)
        chosen = {name for names in layers.values() for name in names}
        if not chosen:
            raise StepError(f"step 'quantize': no Linear layer in {list(layers)} after ignore "
                            f"{config.ignore}; change targets or ignore")
        check_ignore("quantize", model, config.ignore)
        quantize_(model.model, _torchao_config(config.method),
                  filter_fn=lambda module, fqn: fqn in chosen)
        for component, names in layers.items():
            ctx.note(f"{component}: {len(names)} Linear layers -> {config.method}"
                     if names else f"{component}: no Linear layers, unchanged")
