"""Random-weight FastVLM models of real dimensions, to study latency, memory and size offline.

Accuracy of such a model means nothing, and suites say so; its speed, memory and bytes are
those of the real architecture. The tokenizer is the nano word-level one (token ids fit the
real vocabulary), the image processor the real 1024 px / patch 64 setting unless overridden.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.registry import did_you_mean

QWEN2_SHAPES: dict[str, dict[str, Any]] = {
    "fastvlm-0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936},
    "fastvlm-1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936},
    "fastvlm-7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152128},
}


def random_model(shape: str, image_size: int = 1024, seed: int = 0) -> Any:
    """Build `random:<shape>` (e.g. `fastvlm-0.5b`) with random weights."""
    import torch
    from transformers import FastVlmConfig, FastVlmForConditionalGeneration, Qwen2Config

    from harness.models.fastvlm import LoadedModel
    from harness.models.nano import build_processor

    if shape not in QWEN2_SHAPES:
        raise ConfigError(f"unknown random shape '{shape}'{did_you_mean(shape, list(QWEN2_SHAPES))}")
    processor = build_processor(image_size=image_size, patch_size=64)
    text = Qwen2Config(tie_word_embeddings=False, eos_token_id=processor.tokenizer.eos_token_id,
                       pad_token_id=processor.tokenizer.pad_token_id, **QWEN2_SHAPES[shape])
    config = FastVlmConfig(text_config=text,
                           image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"),
                           image_seq_length=(image_size // 64) ** 2)
    torch.manual_seed(seed)
    model = FastVlmForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = text.eos_token_id
    return LoadedModel(model=model, processor=processor, source=f"random:{shape}",
                       random_weights=True)
