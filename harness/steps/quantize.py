"""INT8 quantization of Linear layers per component, through torchao.

`dynamic-int8`: int8 weights and per-token dynamically quantized int8 activations
(`Int8DynamicActivationInt8WeightConfig`); `int8-weight-only`: int8 weights, float compute
(`Int8WeightOnlyConfig`). Weights are stored packed (int8 `qdata` + scales) by `artifacts`.
Convolutions are untouched: a conv-only target is reported as unchanged, not pretended.
"""

from __future__ import annotations

import fnmatch
from typing import Any, ClassVar, Literal

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext


class QuantizeConfig(StepConfig):
    kind: Literal["quantize"] = "quantize"
    method: Literal["dynamic-int8", "int8-weight-only"] = "dynamic-int8"
    ignore: list[str] = []


def _torchao_config(method: str) -> Any:
    from harness.errors import require

    quantization = require("torchao.quantization", "torchao", "step 'quantize'")
    if method == "dynamic-int8":
        return quantization.Int8DynamicActivationInt8WeightConfig()
    return quantization.Int8WeightOnlyConfig()


def linear_layers(model: Any, components: tuple[str, ...], ignore: list[str]) -> dict[str, list[str]]:
    """Qualified names of the Linear layers per target component, minus `ignore` patterns."""
    import torch

    found: dict[str, list[str]] = {c: [] for c in components}
    for component in components:
        for prefix, root in model.component_modules(component).items():
            for name, module in root.named_modules():
                qualified = f"{prefix}.{name}" if name else prefix
                if isinstance(module, torch.nn.Linear) and not any(
                        fnmatch.fnmatch(qualified, p) for p in ignore):
                    found[component].append(qualified)
    return found



def check_group_size(step: str, loaded: Any, names: list[str], group_size: int) -> None:
    """Group-wise weight quantization needs every chosen Linear's in_features split into whole groups."""
    if group_size == -1:  # per channel: one group per row
        return
    for name in names:
        in_features = loaded.model.get_submodule(name).in_features
        if in_features % group_size:
            raise StepError(f"step '{step}': group_size {group_size} does not divide in_features "
                            f"{in_features} of layer '{name}'; use a divisor of it, -1, or ignore that layer")


def replace_module(root: Any, qualified_name: str, module: Any) -> None:
    """Put `module` at `qualified_name` inside `root` (how a step swaps one layer for its quantized form)."""
    parent, _, leaf = qualified_name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)

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
        for pattern in config.ignore:
            if not any(fnmatch.fnmatch(n, pattern) for n, _ in model.model.named_modules()):
                raise StepError(f"step 'quantize': ignore pattern '{pattern}' matches no module")
        quantize_(model.model, _torchao_config(config.method),
                  filter_fn=lambda module, fqn: fqn in chosen)
        for component, names in layers.items():
            ctx.note(f"{component}: {len(names)} Linear layers -> {config.method}"
                     if names else f"{component}: no Linear layers, unchanged")
