"""Quantization-aware training: train through fake-quantized INT8/INT4 weights (and optionally
INT8 activations), then store the real packed variant.

The chosen Linear layers become torchao `FakeQuantizedLinear`s (symmetric per-group weights with
fp16 scales, the storage `weight-quant` uses; dynamic per-token INT8 activations when asked), and
train on cross-entropy over the answer tokens. At the end each layer's codes are computed with
torchao's own quantize primitive from the trained weight and the fake quantizer's scales, and
stored as `PackedLinear` (INT4 two codes per byte), so the variant is as small as RTN's and
computes what training saw. On replay the recorded layers are rebuilt as empty `PackedLinear`s.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepContext
from harness.steps._layers import check_group_size, linear_layers, replace_module
from harness.steps._training import TrainStepConfig, batcher_for, run_training, training_rows

STEP = "qat"


class QatConfig(TrainStepConfig):
    kind: Literal["qat"] = "qat"
    bits: Literal[4, 8] = 4
    group_size: int = Field(32, description="-1 = one group per output channel")
    activations: Literal["int8"] | None = Field(None, description="also fake-quantize Linear inputs (per token)")
    ignore: list[str] = []

    @field_validator("group_size")
    @classmethod
    def _group(cls, value: int) -> int:
        if value != -1 and value < 2:
            raise ValueError(f"group_size {value} is not supported; use -1 or a size >= 2")
        return value


def _fake_configs(config: QatConfig, in_features: int) -> tuple[Any, Any]:
    import torch
    from torchao.quantization.qat import IntxFakeQuantizeConfig

    from harness.steps._packed import activation_fake_config

    group = in_features if config.group_size == -1 else config.group_size
    weight = IntxFakeQuantizeConfig(torch.int4 if config.bits == 4 else torch.int8, group_size=group,
                                    is_symmetric=True, scale_precision=torch.float16)
    activation = activation_fake_config(8) if config.activations else None
    return weight, activation


def _pack(module: Any, config: QatConfig) -> Any:
    """Trained `FakeQuantizedLinear` → `PackedLinear` with the codes the fake quantizer used."""
    import torch
    from torchao.quantization.quant_primitives import quantize_affine

    from harness.steps._packed import from_signed_codes

    quantizer = module.weight_fake_quantizer
    weight = module.weight.detach().float()
    with torch.no_grad():
        quantizer(weight)  # sets quantizer.scale / zero_point for this weight (dynamic qparams)
    group = weight.shape[1] if config.group_size == -1 else config.group_size
    half = 2 ** (config.bits - 1)
    codes = quantize_affine(weight, (1, group), quantizer.scale, quantizer.zero_point, torch.int32,
                            quant_min=-half, quant_max=half - 1)
    if bool((quantizer.zero_point != 0).any()):
        raise StepError(f"step '{STEP}': torchao returned non-zero zero points for symmetric weights")
    bias = module.bias.detach() if module.bias is not None else None
    return from_signed_codes(codes, quantizer.scale, config.bits, group, bias,
                             act_bits=8 if config.activations else None)


@STEPS.register(STEP, "quantization-aware training (torchao fake quant), stored as packed INT4/INT8")
class Qat(Step):
    Config = QatConfig
    shrinks_storage: ClassVar[bool] = True
    default_targets: ClassVar[tuple[str, ...]] = ("llm",)
    examples: ClassVar[list[dict]] = [
        {"kind": STEP, "steps": 2, "items": 24, "batch_size": 4, "bits": 4, "group_size": 16},
        {"kind": STEP, "steps": 2, "items": 24, "batch_size": 4, "bits": 8, "group_size": -1,
         "activations": "int8", "targets": ["projector", "llm"]}]

    def apply(self, config: QatConfig, model: Any, ctx: StepContext) -> None:
        from harness.steps._packed import PackedLinear

        names = [n for names in linear_layers(model, self.targets(config), config.ignore).values() for n in names]
        described = (f"INT{config.bits} {'per-channel' if config.group_size == -1 else f'g{config.group_size}'} sym"
                     + (" + INT8 activations" if config.activations else ""))
        if ctx.replay:
            recorded = ctx.record.get("layers") or {n: {} for n in names}
            for name in recorded:
                linear = model.model.get_submodule(name)
                replace_module(model.model, name, PackedLinear(
                    linear.in_features, linear.out_features, config.bits, config.group_size, True,
                    bias=linear.bias is not None, act_bits=8 if config.activations else None))
            ctx.note(f"{len(recorded)} Linear layers rebuilt as {described} packed (QAT)")
            return
        self._check(config, model, names)
        batcher = batcher_for(model, training_rows(config, STEP, ctx.data_dir), STEP)
        self._train(config, model, names, batcher, ctx)
        ctx.note(f"{STEP}: {len(names)} Linear layers trained fake-quantized and stored as {described} packed")

    def _check(self, config: QatConfig, model: Any, names: list[str]) -> None:
        if not names:
            raise StepError(f"step '{STEP}': no Linear layer in targets {list(self.targets(config))} "
                            f"after ignore {config.ignore}")
        check_group_size(STEP, model, names, config.group_size)

    def _train(self, config: QatConfig, model: Any, names: list[str], batcher: Any, ctx: StepContext) -> None:
        from torchao.quantization.qat import FakeQuantizedLinear

        for name in names:
            linear = model.model.get_submodule(name)
            weight, activation = _fake_configs(config, linear.in_features)
            replace_module(model.model, name, FakeQuantizedLinear.from_linear(linear, activation, weight))
        for parameter in model.model.parameters():  # packed layers of earlier steps stay frozen
            parameter.requires_grad_(parameter.is_floating_point())
        run_training(config, model, batcher, ctx, STEP)
        record: dict[str, Any] = {}
        for name in names:
            packed = _pack(model.model.get_submodule(name), config)
            replace_module(model.model, name, packed)
            record[name] = {"shape": [packed.out_features, packed.in_features]}
        ctx.record.update({"layers": record, "bits": config.bits, "group_size": config.group_size,
                           "activations": config.activations})
