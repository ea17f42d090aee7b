"""Random-weight FastVLM models of real dimensions, to study latency, memory and size offline.

Accuracy of such a model means nothing, and suites say so; its speed, memory and bytes are
those of the real architecture — provided its activations look like a trained model's, which
the default init does not give (see `_random_init`): `realistic_model` builds the tower in train
form, initialises it realistically and reparameterises it into the inference-mode layout of the
released checkpoints, and the per-stage activation statistics are recorded (and checked) on
every build. The tokenizer is the nano word-level one (token ids fit the real vocabulary), the
image processor the real 1024 px / patch 64 setting unless overridden.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError
from harness.registry import did_you_mean

#: Qwen2 dimensions of the released FastVLM LLMs (Qwen2-0.5B / 1.5B / 7B, untied LM head).
QWEN2_SHAPES: dict[str, dict[str, Any]] = {
    "fastvlm-0.5b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936},
    "fastvlm-1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936},
    "fastvlm-7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152128},
}
#: Image size of the BatchNorm calibration pass and of the recorded activation statistics.
STATS_SIZE = 256


def random_config(shape: str, image_size: int = 1024) -> tuple[Any, Any]:
    """(FastVlmConfig, processor) of `random:<shape>`, the vision tower in its released inference-mode form."""
    from transformers import FastVlmConfig, Qwen2Config

    from harness.models.nano import build_processor

    if shape not in QWEN2_SHAPES:
        raise ConfigError(f"unknown random shape '{shape}'{did_you_mean(shape, list(QWEN2_SHAPES))}")
    processor = build_processor(image_size=image_size, patch_size=64)
    text = Qwen2Config(tie_word_embeddings=False, eos_token_id=processor.tokenizer.eos_token_id,
                       pad_token_id=processor.tokenizer.pad_token_id, **QWEN2_SHAPES[shape])
    config = FastVlmConfig(text_config=text,
                           image_token_id=processor.tokenizer.convert_tokens_to_ids("<image>"),
                           image_seq_length=(image_size // 64) ** 2)
    return config, processor


def random_model(shape: str, image_size: int = 1024, seed: int = 0) -> Any:
    """Build `random:<shape>` (e.g. `fastvlm-0.5b`) with realistic random weights."""
    from harness.models.fastvlm import LoadedModel

    config, processor = random_config(shape, image_size)
    model = realistic_model(config, seed=seed, calibration_size=min(STATS_SIZE, image_size))
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    loaded = LoadedModel(model=model, processor=processor, source=f"random:{shape}", random_weights=True)
    record_activations(loaded, min(STATS_SIZE, image_size), seed)
    return loaded


def realistic_model(config: Any, seed: int = 0, calibration_size: int = STATS_SIZE) -> Any:
    """A `FastVlmForConditionalGeneration` for `config` with the realistic init of `_random_init`,
    its tower reparameterised into inference mode (ConvFFN BatchNorms unfolded, as released)."""
    import copy

    import torch
    from transformers import FastVlmForConditionalGeneration

    from harness.models._fastvit import reparameterize_tower
    from harness.models._random_init import init_language, init_vision_tower

    train_form = copy.deepcopy(config)
    train_form.vision_config.model_args = {**(config.vision_config.model_args or {}), "inference_mode": False}
    torch.manual_seed(seed)
    model = FastVlmForConditionalGeneration(train_form).eval()
    generator = torch.Generator().manual_seed(seed)
    tower = model.model.vision_tower.timm_model
    init_vision_tower(tower, generator, calibration_size)
    reparameterize_tower(tower, fold_convffn_bn=False)
    init_language(model, generator)
    model.config.vision_config.model_args["inference_mode"] = True
    return model.eval()


def record_activations(loaded: Any, image_size: int, seed: int = 0) -> None:
    """Per-stage activation statistics into `loaded.meta` (build record) and a build note (result.json)."""
    from harness.models.activations import activation_stats, collapse_problems, summary_line

    stats = activation_stats(loaded, image_size=image_size, seed=seed)
    problems = collapse_problems(stats)
    loaded.meta["activation_stats"] = stats
    loaded.meta.setdefault("notes", []).append(f"random init ({loaded.source}): {summary_line(stats)}"
                                               + (f"; COLLAPSED: {'; '.join(problems)}" if problems else ""))
