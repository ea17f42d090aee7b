"""InternVL (`internvl`): InternViT tower, pixel shuffle 0.5, LayerNorm-MLP projector, Qwen2 decoder.

An image is cut into 448 px tiles (dynamic tiling: the grid of the closest aspect ratio within
`max_patches`, plus a thumbnail when there is more than one tile); each tile's 32x32 patch grid
is pixel-shuffled to 16x16 = 256 tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.models.families._base import ONNX_GRAPHS, ConfigBuiltFamily
from harness.registries import MODEL_FAMILIES

_DECODER = "model.language_model"
TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
          "video_token": "<video>"}
TINY = {"text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "max_position_embeddings": 512, "tie_word_embeddings": False},
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "image_size": [56, 56], "patch_size": [14, 14]},
        "max_patches": 4}
#: The nano sibling's tower: 64 px, one tile (no tiling, no thumbnail), 8 px patches → 8x8, pixel shuffle 0.5 → 16
#: tokens; the decoder is nano's.
NANO = {"vision": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "image_size": [64, 64], "patch_size": [8, 8]},
        "max_patches": 1}


@MODEL_FAMILIES.register("internvl", "InternVL: InternViT + pixel shuffle + Qwen2, dynamic 448 px tiles")
class InternVL(ConfigBuiltFamily):
    name = "internvl"
    tiny_dims: ClassVar[dict[str, Any]] = TINY
    nano_own_dims: ClassVar[dict[str, Any]] = NANO
    nano_tokens: ClassVar[tuple[Any, ...]] = (TOKENS,)
    model_types: ClassVar[tuple[str, ...]] = ("internvl",)
    module_paths: ClassVar[dict[str, str]] = {
        "vision": "model.vision_tower", "projector": "model.multi_modal_projector", "llm": _DECODER,
        "lm_head": "lm_head", "embed_tokens": f"{_DECODER}.embed_tokens"}
    vision_tower = "InternViT (ViT, 14 px patches), pixel shuffle 0.5"
    sibling = "nano-internvl"
    #: Its tiles are a plain (tiles, 3, 448, 448) tensor, so FastVLM's ONNX graphs and loop fit it as they are.
    specific_steps: ClassVar[dict[str, str]] = {"export-onnx": ONNX_GRAPHS}
    #: InternVL3-1B-hf: InternViT-300M-448px-V2.5 + Qwen2.5-0.5B (untied head), up to 12 tiles.
    shapes: ClassVar[dict[str, dict[str, Any]]] = {
        "internvl3-1b": {
            "text": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2, "vocab_size": 151674, "max_position_embeddings": 32768,
                     "rope_theta": 1000000.0, "tie_word_embeddings": False},
            "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                       "num_attention_heads": 16, "image_size": [448, 448], "patch_size": [14, 14]},
            "max_patches": 12}}

    def model_class(self) -> Any:
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def _config(self, dims: dict[str, Any], tokenizer: Any = None) -> tuple[Any, Any]:
        from transformers import (
            GotOcr2ImageProcessor,
            InternVLConfig,
            InternVLProcessor,
            InternVLVideoProcessor,
            InternVLVisionConfig,
        )

        from harness.models.families._text import chat_template, qwen2_config, word_tokenizer

        tokenizer = tokenizer or word_tokenizer(TOKENS)
        side = dims["vision"]["image_size"][0]
        seq = self._tokens(dims)
        image_processor = GotOcr2ImageProcessor(size={"height": side, "width": side},
                                                crop_to_patches=dims["max_patches"] > 1, min_patches=1,
                                                max_patches=dims["max_patches"])
        processor = InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=seq,
                                      video_processor=InternVLVideoProcessor(),
                                      chat_template=chat_template(TOKENS["context_image_token"]))
        text = qwen2_config(tokenizer, dims["text"])
        config = InternVLConfig(vision_config=InternVLVisionConfig(**dims["vision"]), text_config=text,
                                image_token_id=tokenizer.context_image_token_id, image_seq_length=seq,
                                downsample_ratio=0.5, tie_word_embeddings=dims["text"]["tie_word_embeddings"])
        return config, processor

    @staticmethod
    def _tokens(dims: dict[str, Any]) -> int:
        grid = dims["vision"]["image_size"][0] // dims["vision"]["patch_size"][0]
        return (grid // 2) ** 2  # pixel shuffle 0.5 halves each side

    def tile_tokens(self, shape: str) -> int:
        return self._tokens(self.shapes[shape])

    def image_features(self, model: Any, inputs: Any) -> Any:
        pixel_values = inputs["pixel_values"].to(next(model.parameters()).dtype)
        return model.model.get_image_features(pixel_values=pixel_values, return_dict=True).pooler_output
