"""Input resolution: sets the processor's image size; the visual-token count follows.

FastViTHD downsamples by the processor's `patch_size` (64 for FastVLM, 16 for nano), so an
image of S px gives (S / patch)^2 visual tokens and a shorter prefill.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import StepError
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext


class ResolutionConfig(StepConfig):
    kind: Literal["resolution"] = "resolution"
    size: int = Field(gt=0, description="square input size in pixels (a multiple of the encoder's downsampling)")

    @model_validator(mode="after")
    def _vision_only(self) -> ResolutionConfig:
        if self.targets and list(self.targets) != ["vision"]:
            raise ValueError("resolution changes the vision input only; set targets: [vision] or leave targets out")
        return self


@STEPS.register("resolution", "change the input image size (and so the visual-token count)")
class Resolution(Step):
    Config = ResolutionConfig
    default_targets: ClassVar[tuple[str, ...]] = ("vision",)
    examples: ClassVar[list[dict]] = [{"kind": "resolution", "size": 32}]

    def apply(self, config: ResolutionConfig, model: Any, ctx: StepContext) -> None:
        patch = model.processor.patch_size
        if config.size % patch:
            raise StepError(f"step 'resolution': size {config.size} is not a multiple of the "
                            f"encoder's downsampling ({patch} px); use e.g. {max(patch, config.size // patch * patch)}")
        before = model.visual_tokens
        image_processor = model.processor.image_processor
        image_processor.size = {"shortest_edge": config.size}
        image_processor.crop_size = {"height": config.size, "width": config.size}
        model.model.config.image_seq_length = (config.size // patch) ** 2
        ctx.note(f"input {config.size}px: visual tokens {before} -> {model.visual_tokens}")
