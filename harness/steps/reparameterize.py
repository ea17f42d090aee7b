"""FastViT reparameterisation, plus the ConvFFN BatchNorm fold that Apple's weights never got.

timm's `reparameterize_model` collapses MobileOne / RepMixer / RepCPE training branches into
single convolutions; each ConvFFN's 7x7 depthwise conv + BatchNorm is then folded with
`torch.nn.utils.fusion.fuse_conv_bn_eval`. Outputs stay equal (float rounding only).
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
        import torch
        from timm.models import reparameterize_model
        from timm.models.fastvit import ConvMlp
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        tower = model.vision.timm_model
        tower.eval()
        before = sum(1 for _ in tower.modules())
        reparameterize_model(tower, inplace=True)
        folded = 0
        if config.fold_convffn_bn:
            for module in tower.modules():
                if isinstance(module, ConvMlp) and not isinstance(module.conv.bn, torch.nn.Identity):
                    module.conv.conv = fuse_conv_bn_eval(module.conv.conv, module.conv.bn)
                    module.conv.bn = torch.nn.Identity()
                    folded += 1
        model.model.config.vision_config.model_args["inference_mode"] = True
        after = sum(1 for _ in tower.modules())
        ctx.note(f"vision: {before} -> {after} modules, {folded} ConvFFN BatchNorms folded")
