"""FastViT reparameterisation, plus the ConvFFN BatchNorm fold that Apple's weights never got.

Works on a train-form tower (nano: MobileOne / RepMixer / RepCPE training branches collapse into
single convolutions) and on an inference-mode one (released FastVLM weights, `random:fastvlm-*`:
the branches were fused before release, so only what still has branches is fused — timm's own
`reparameterize_model` crashes there). Each ConvFFN's 7x7 depthwise conv + BatchNorm is then
folded with `torch.nn.utils.fusion.fuse_conv_bn_eval` in both forms. Outputs stay equal (float
rounding only). On replay the same calls rebuild the same structure on the skeleton (the fused
weights are then overwritten by the stored tensors).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext


class ReparameterizeConfig(StepConfig):
    kind: Literal["reparameterize"] = "reparameterize"
    fold_convffn_bn: bool = True

    @model_validator(mode="after")
    def _vision_only(self) -> ReparameterizeConfig:
        if self.targets and list(self.targets) != ["vision"]:
            raise ValueError("reparameterize applies to the vision component only; set targets: [vision] "
                             "or leave targets out")
        return self


@STEPS.register("reparameterize", "fuse FastViT train-time branches and fold ConvFFN BatchNorms (vision)")
class Reparameterize(Step):
    Config = ReparameterizeConfig
    default_targets: ClassVar[tuple[str, ...]] = ("vision",)
    examples: ClassVar[list[dict]] = [{"kind": "reparameterize"}]

    def apply(self, config: ReparameterizeConfig, model: Any, ctx: StepContext) -> None:
        from harness.models._fastvit import reparameterize_tower

        tower = model.vision.timm_model
        before = sum(1 for _ in tower.modules())
        counts = reparameterize_tower(tower, fold_convffn_bn=config.fold_convffn_bn)
        model.model.config.vision_config.model_args["inference_mode"] = True
        after = sum(1 for _ in tower.modules())
        ctx.note(f"vision: {before} -> {after} modules; {counts.reparameterized} blocks reparameterised, "
                 f"{counts.already_fused} already in inference form; {counts.folded_bn} ConvFFN BatchNorms folded")
