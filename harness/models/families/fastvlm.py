"""FastVLM (`fast_vlm`): timm FastViTHD tower, Linear-GELU-Linear projector, Qwen2 decoder.

Its paths, shapes, random init and generation are the ones `harness.models.fastvlm` and
`harness.models.shapes` always had; this module declares them as a family. The steps written
for FastViT or FastVLM's graph layout are declared here, so a recipe that uses one on another
family is refused before anything is built.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.models.families._base import ONNX_GRAPHS, ModelFamily
from harness.models.fastvlm import MODULE_PATHS
from harness.registries import MODEL_FAMILIES

_FASTVIT = "a FastViT vision tower (FastVLM)"
_GRAPHS = "FastVLM's export graphs (FastViT grid features, LLaVA-style prompt)"
_TRAINING = "FastVLM's training batches (harness.training)"
#: A tiny tower and decoder (the DDP check's dimensions): the contract tests' model.
TINY_VISION = {"layers": [1, 1, 1], "embed_dims": [8, 16, 32], "layer_scale_init_value": 1.0}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1}


@MODEL_FAMILIES.register("fastvlm", "Apple FastVLM: FastViTHD (timm) + Qwen2")
class FastVLM(ModelFamily):
    name = "fastvlm"
    model_types: ClassVar[tuple[str, ...]] = ("fast_vlm",)
    module_paths: ClassVar[dict[str, str]] = MODULE_PATHS
    vision_tower = "FastViTHD (timm fastvit_mci3), 64x downsampling"
    specific_steps: ClassVar[dict[str, str]] = {
        "reparameterize": _FASTVIT, "token-merge": _FASTVIT, "resolution": _FASTVIT, "structured-prune": _FASTVIT,
        "static-int8": _FASTVIT, "export-onnx": ONNX_GRAPHS, "export-tflite": _GRAPHS, "export-executorch": _GRAPHS,
        "export-coreml": _GRAPHS, "export-mlx": _GRAPHS, "distill": _TRAINING, "finetune": _TRAINING,
        "qat": _TRAINING}

    @property
    def shapes(self) -> dict[str, dict[str, Any]]:  # type: ignore[override]
        from harness.models.shapes import QWEN2_SHAPES

        return {name: {"text": dims, "image_size": 1024, "patch": 64} for name, dims in QWEN2_SHAPES.items()}

    def model_class(self) -> Any:
        from transformers import FastVlmForConditionalGeneration

        return FastVlmForConditionalGeneration

    def tiny(self, seed: int = 0) -> Any:
        from harness.models import nano

        processor = nano.build_processor()
        config = nano.build_config(processor.tokenizer, vision_args=TINY_VISION, text_args=TINY_TEXT)
        return self.build(config, processor, "tiny-fastvlm", seed)

    def random_config(self, shape: str) -> tuple[Any, Any]:
        from harness.models.shapes import random_config

        return random_config(shape)

    def random_model(self, shape: str, seed: int = 0) -> Any:
        from harness.models.shapes import random_model

        return random_model(shape, seed=seed)

    def tile_tokens(self, shape: str) -> int:
        dims = self.shapes[shape]
        return (dims["image_size"] // dims["patch"]) ** 2

    def image_features(self, model: Any, inputs: Any) -> Any:
        pixel_values = inputs["pixel_values"].to(next(model.parameters()).dtype)
        return model.model.get_image_features(pixel_values=pixel_values).pooler_output

    def visual_tokens(self, loaded: Any, height: int | None = None, width: int | None = None) -> int:
        """As the LLaVA processor computes it (token merging offsets `patch_size`). Every image is resized
        and centre-cropped to `image_size` first, so its own size does not change the count."""
        image_h, image_w = self.image_size(loaded.processor)
        processor = loaded.processor
        patch = processor.patch_size
        extra = getattr(processor, "num_additional_image_tokens", 0) or 0
        default = getattr(processor, "vision_feature_select_strategy", None) == "default"
        return (image_h // patch) * (image_w // patch) + extra - int(default)
