"""LLaVA-OneVision (`llava_onevision`): SigLIP tower, Linear-GELU-Linear projector, Qwen2 decoder.

AnyRes: the image at the base resolution (384 px: 27x27 = 729 tokens) plus the tiles of the grid
of `image_grid_pinpoints` that fits its aspect ratio best, unpadded, with an `image_newline`
token per row, and pooled down when more than `anyres_max_9` tiles' worth of tokens remain.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.models.families._base import ConfigBuiltFamily
from harness.registries import MODEL_FAMILIES

_DECODER = "model.language_model"
TINY = {"text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "max_position_embeddings": 1024, "tie_word_embeddings": False},
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "image_size": 32, "patch_size": 8, "vision_use_head": False},
        "grid": 2}
#: The nano sibling's tower: SigLIP at 64 px with 16 px patches (4x4 = 16 tokens per view) and a single-grid AnyRes
#: (the one pinpoint 64x64): the base view plus one full-image tile with a newline token per row, 36 tokens in all.
NANO = {"vision": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "image_size": 64, "patch_size": 16, "vision_use_head": False},
        "grid": 1}


@MODEL_FAMILIES.register("llava_onevision", "LLaVA-OneVision: SigLIP + MLP + Qwen2, AnyRes tiles + base image")
class LlavaOnevision(ConfigBuiltFamily):
    name = "llava_onevision"
    tiny_dims: ClassVar[dict[str, Any]] = TINY
    nano_own_dims: ClassVar[dict[str, Any]] = NANO
    nano_tokens: ClassVar[tuple[Any, ...]] = ({"image_token": "<image>", "video_token": "<video>"},)
    model_types: ClassVar[tuple[str, ...]] = ("llava_onevision",)
    module_paths: ClassVar[dict[str, str]] = {
        "vision": "model.vision_tower", "projector": "model.multi_modal_projector", "llm": _DECODER,
        "lm_head": "lm_head", "embed_tokens": f"{_DECODER}.embed_tokens"}
    vision_tower = "SigLIP so400m (ViT, 14 px patches), AnyRes"
    sibling = "nano-llava-onevision"
    #: llava-onevision-qwen2-0.5b-ov-hf: SigLIP so400m-patch14-384 (26 layers, no pooling head) + Qwen2-0.5B (tied
#: head): 894 M parameters, as published.
    shapes: ClassVar[dict[str, dict[str, Any]]] = {
        "llava-onevision-0.5b": {
            "text": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2, "vocab_size": 152000, "max_position_embeddings": 32768,
                     "rope_theta": 1000000.0, "tie_word_embeddings": True},
            "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 26,
                       "num_attention_heads": 16, "image_size": 384, "patch_size": 14, "vision_use_head": False},
            "grid": 6}}

    def model_class(self) -> Any:
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration

    def _config(self, dims: dict[str, Any], tokenizer: Any = None) -> tuple[Any, Any]:
        from transformers import (
            LlavaOnevisionConfig,
            LlavaOnevisionImageProcessor,
            LlavaOnevisionProcessor,
            LlavaOnevisionVideoProcessor,
            SiglipVisionConfig,
        )

        from harness.models.families._text import chat_template, qwen2_config, word_tokenizer

        tokenizer = tokenizer or word_tokenizer({"image_token": "<image>", "video_token": "<video>"})
        side = dims["vision"]["image_size"]
        pinpoints = [[side * i, side * j] for i in range(1, dims["grid"] + 1) for j in range(1, dims["grid"] + 1)]
        image_processor = LlavaOnevisionImageProcessor(size={"height": side, "width": side},
                                                       image_grid_pinpoints=pinpoints)
        processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                            video_processor=LlavaOnevisionVideoProcessor(),
                                            num_image_tokens=self._tokens(dims), vision_feature_select_strategy="full",
                                            chat_template=chat_template("<image>"))
        text = qwen2_config(tokenizer, dims["text"])
        config = LlavaOnevisionConfig(vision_config=SiglipVisionConfig(**dims["vision"]).to_dict(),
                                      text_config=text.to_dict(), image_grid_pinpoints=pinpoints,
                                      image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                                      video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
                                      tie_word_embeddings=dims["text"]["tie_word_embeddings"])
        return config, processor

    @staticmethod
    def _tokens(dims: dict[str, Any]) -> int:
        return (dims["vision"]["image_size"] // dims["vision"]["patch_size"]) ** 2

    def tile_tokens(self, shape: str) -> int:
        return self._tokens(self.shapes[shape])

    def image_features(self, model: Any, inputs: Any) -> Any:
        import torch

        pixel_values = inputs["pixel_values"].to(next(model.parameters()).dtype)
        out = model.model.get_image_features(pixel_values, inputs["image_sizes"],
                                             batch_num_images=inputs.get("batch_num_images"), return_dict=True)
        return torch.cat(list(out.pooler_output), dim=0)
