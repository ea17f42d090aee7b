"""SmolVLM (`smolvlm`, the Idefics3 architecture): SigLIP tower, pixel-shuffle connector, Llama decoder.

An image is resized to a longest edge, split into square tiles of the encoder's size (row/column
tokens between them) plus one global image; each tile's patch grid is shuffled by `scale_factor`
(4 for SmolVLM-256M/500M: 32x32 patches → 64 tokens). The tiny and `random:` models use
`Idefics3Processor` (the same image-token layout, no video prompts); a real SmolVLM checkpoint
loads with its own `SmolVLMProcessor`, whose `num2words` import is a declared dependency (a
missing one is still refused in one line).
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.models.families._base import ConfigBuiltFamily
from harness.registries import MODEL_FAMILIES

_DECODER = "model.text_model"
#: Idefics3's placeholders: the tile grid markers up to 6 x 6 and the global image.
GRID = tuple(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7))
EXTRA = ("<fake_token_around_image>", "<global-img>", "<end_of_utterance>", *GRID)
TINY = {"text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "max_position_embeddings": 512, "tie_word_embeddings": False},
        "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                   "image_size": 32, "patch_size": 8},
        "scale_factor": 2, "longest_edge": 64}
#: The nano sibling's tower: 64 px, no image splitting (one global image), 8 px patches → 8x8, pixel shuffle x2 → 16
#: tokens; the decoder is nano's (as a Llama, SmolVLM's text model).
NANO = {"vision": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "image_size": 64, "patch_size": 8},
        "scale_factor": 2, "longest_edge": 64, "split": False}


@MODEL_FAMILIES.register("smolvlm", "SmolVLM (Idefics3): SigLIP + pixel-shuffle connector + Llama, tiled")
class SmolVLM(ConfigBuiltFamily):
    name = "smolvlm"
    tiny_dims: ClassVar[dict[str, Any]] = TINY
    nano_own_dims: ClassVar[dict[str, Any]] = NANO
    nano_tokens: ClassVar[tuple[Any, ...]] = ({"image_token": "<image>"}, EXTRA)
    model_types: ClassVar[tuple[str, ...]] = ("smolvlm",)
    module_paths: ClassVar[dict[str, str]] = {
        "vision": "model.vision_model", "projector": "model.connector", "llm": _DECODER,
        "lm_head": "lm_head", "embed_tokens": f"{_DECODER}.embed_tokens"}
    vision_tower = "SigLIP (ViT, 16 px patches), pixel shuffle x4"
    sibling = "nano-smolvlm"
    #: SmolVLM-500M-Instruct: SigLIP base patch16-512 + SmolLM2-360M (untied head), 512 px tiles, up to 4x4.
    shapes: ClassVar[dict[str, dict[str, Any]]] = {
        "smolvlm-500m": {
            "text": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
                     "num_key_value_heads": 5, "vocab_size": 49280, "max_position_embeddings": 8192,
                     "rope_theta": 100000.0, "tie_word_embeddings": False},
            "vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "image_size": 512, "patch_size": 16},
            "scale_factor": 4, "longest_edge": 2048}}

    def model_class(self) -> Any:
        from transformers import SmolVLMForConditionalGeneration

        return SmolVLMForConditionalGeneration

    def _config(self, dims: dict[str, Any], tokenizer: Any = None) -> tuple[Any, Any]:
        from transformers import Idefics3Processor, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMVisionConfig

        from harness.models.families._text import chat_template, qwen2_config, word_tokenizer

        tokenizer = tokenizer or word_tokenizer({"image_token": "<image>"}, EXTRA)
        tile = dims["vision"]["image_size"]
        image_processor = SmolVLMImageProcessor(size={"longest_edge": dims["longest_edge"]},
                                                max_image_size={"longest_edge": tile},
                                                do_image_splitting=dims.get("split", True))
        processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                      image_seq_len=self._tokens(dims), chat_template=chat_template("<image>"))
        text = qwen2_config(tokenizer, dims["text"], "llama")
        config = SmolVLMConfig(vision_config=SmolVLMVisionConfig(**dims["vision"]).to_dict(),
                               text_config=text.to_dict(), image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                               scale_factor=dims["scale_factor"],
                               tie_word_embeddings=dims["text"]["tie_word_embeddings"])
        return config, processor

    @staticmethod
    def _tokens(dims: dict[str, Any]) -> int:
        grid = dims["vision"]["image_size"] // dims["vision"]["patch_size"]
        return grid * grid // dims["scale_factor"] ** 2

    def tile_tokens(self, shape: str) -> int:
        return self._tokens(self.shapes[shape])

    def image_size(self, processor: Any) -> tuple[int, int]:
        edge = int(processor.image_processor.size["longest_edge"])
        return edge, edge

    def image_features(self, model: Any, inputs: Any) -> Any:
        import torch

        pixel_values = inputs["pixel_values"].to(next(model.parameters()).dtype)
        out = model.model.get_image_features(pixel_values, inputs.get("pixel_attention_mask"), return_dict=True)
        return torch.cat(list(out.pooler_output), dim=0)
