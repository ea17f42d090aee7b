"""Visual-token merging after the encoder and KV-cache compression (quantized cache, sliding window)."""

from __future__ import annotations

import pytest

from harness.build.artifact import load_variant
from harness.errors import StepError
from harness.steps._base import StepContext, apply_step

from .conftest import build_tiny
from .test_steps import build_and_save


def apply(loaded, raw):
    ctx = StepContext()
    apply_step(raw, loaded, ctx)
    return ctx


def _image_features(loaded, images):
    import torch

    inputs = loaded.prepare(images["image"], images["question"])
    with torch.inference_mode():
        grid = loaded.model.model.vision_tower(inputs["pixel_values"]).last_hidden_state
        features = loaded.model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
    return inputs, grid, features


@pytest.mark.parametrize(("method", "factor"), [("avg-pool", 2), ("max-pool", 3)])
def test_pooling_reduces_tokens_and_equals_pooled_features(tiny, images, method, factor):
    import torch
    import torch.nn.functional as F  # noqa: N812

    before, grid, _ = _image_features(tiny, images)
    assert grid.shape[-2:] == (4, 4) and tiny.visual_tokens == 16
    ctx = apply(tiny, {"kind": "token-merge", "method": method, "factor": factor})
    assert tiny.visual_tokens == 4 and tiny.model.config.image_seq_length == 4
    assert "visual tokens 16 -> 4" in ctx.notes[0]
    after, _, features = _image_features(tiny, images)
    image_token = tiny.model.config.image_token_id
    assert int((after["input_ids"] == image_token).sum(-1)[0]) == 4
    assert after["input_ids"].shape[1] == before["input_ids"].shape[1] - 12  # the prompt is 12 tokens shorter
    pool = F.avg_pool2d if method == "avg-pool" else F.max_pool2d
    pooled = pool(grid, factor, factor, ceil_mode=True)  # 4x4 -> 2x2 (factor 3: the last row/column a partial window)
    with torch.inference_mode():
        expected = tiny.model.model.multi_modal_projector(pooled.flatten(2).transpose(1, 2))
    assert torch.allclose(features, expected, atol=1e-6)
    assert len(tiny.generate(images["image"], images["question"], max_new_tokens=3).token_ids) == len(images)


def test_tome_merges_r_tokens_keeping_order(tiny, images):
    import torch

    from harness.steps._token_merge import tome

    apply(tiny, {"kind": "token-merge", "method": "tome", "r": 4})
    assert tiny.visual_tokens == 12
    _, _, features = _image_features(tiny, images)
    assert features.shape[1] == 12
    # r identical pairs are merged first; merging keeps the mean and the survivors' order
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [5.0, 5.0], [0.0, 2.0]]])
    merged = tome(x, 1)
    assert merged.shape == (1, 4, 2)
    assert torch.allclose(merged[0, 0], torch.tensor([1.0, 0.05]))  # tokens 0 and 1 averaged, in place of 1


def test_token_merge_survives_save_and_load(tmp_path, images):
    loaded, _ = build_and_save(tmp_path, [{"kind": "token-merge", "method": "avg-pool"},
                                          {"kind": "kv-cache", "quantize": "int8", "residual_length": 4}])
    reloaded = load_variant(tmp_path)
    assert reloaded.visual_tokens == 4 and reloaded.model.config.image_seq_length == 4
    assert reloaded.cache_factory is not None
    first = loaded.generate(images["image"], images["question"], max_new_tokens=6, min_new_tokens=6)
    again = reloaded.generate(images["image"], images["question"], max_new_tokens=6, min_new_tokens=6)
    assert first.token_ids == again.token_ids
    assert first.times.kv_cache_bytes == again.times.kv_cache_bytes


@pytest.mark.parametrize("raw,message", [
    ({"kind": "token-merge", "factor": 5}, "too small for factor 5"),
    ({"kind": "token-merge", "factor": 3, "ceil_mode": False}, "does not divide the 4x4"),
    ({"kind": "token-merge", "method": "tome", "r": 9}, "tome needs 0 < r <= 8"),
    ({"kind": "token-merge", "targets": ["llm"]}, "vision output only"),
    ({"kind": "kv-cache"}, "nothing to do"),
    ({"kind": "kv-cache", "quantize": "int8", "targets": ["vision"]}, "LLM's decoding cache only"),
    ({"kind": "kv-cache", "sliding_window": 4, "full_attention_layers": 2}, "leaves no sliding layer"),
])
def test_bad_settings_are_one_line_step_errors(tiny, raw, message):
    with pytest.raises(StepError, match=message) as info:
        apply(tiny, raw)
    assert "\n" not in str(info.value) and f"step '{raw['kind']}'" in str(info.value)


def test_pooling_after_tome_is_refused(tiny):
    apply(tiny, {"kind": "token-merge", "method": "tome", "r": 2})
    with pytest.raises(StepError, match="pooling after tome"):
        apply(tiny, {"kind": "token-merge"})


def test_kv_cache_without_an_llm_is_refused(tiny):
    tiny.model.model.language_model = None
    with pytest.raises(StepError, match="no torch LLM decoder"):
        apply(tiny, {"kind": "kv-cache", "quantize": "int8"})


@pytest.mark.parametrize("raw", [{"kind": "kv-cache", "quantize": "int3"}, {"kind": "kv-cache", "sliding_window": 0}])
def test_unsupported_bits_and_window_fail_validation(raw):
    from pydantic import ValidationError

    from harness.registries import STEPS

    with pytest.raises(ValidationError):
        STEPS.get("kv-cache").Config.model_validate(raw)


def _forced_logits(loaded, images, cache, steps=96):
    """Teacher-forced logits over the prompt's answer and `steps` fixed random tokens."""
    import torch

    model = loaded.model
    inputs = loaded.prepare(images["image"], images["question"])
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.config.text_config.vocab_size, (len(images), steps), generator=generator)
    with torch.inference_mode():
        features = model.model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        embeds = model.get_input_embeddings()(ids)
        embeds = embeds.masked_scatter((ids == model.config.image_token_id).unsqueeze(-1), features)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model.model.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                         cache=cache, use_cache=True)
        logits, last = [model.lm_head(out.last_hidden_state[:, -1])], positions[:, -1]
        for step in range(steps):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            last = last + 1
            out = model.model.language_model(inputs_embeds=model.get_input_embeddings()(tokens[:, step:step + 1]),
                                              attention_mask=mask, position_ids=last[:, None], cache=out.cache,
                                              use_cache=True)
            logits.append(model.lm_head(out.last_hidden_state[:, -1]))
    return torch.stack(logits, dim=1), out.cache


@pytest.fixture(scope="module")
def nano(nano_dir):
    from harness.models.loading import load_model

    return load_model(str(nano_dir))


@pytest.fixture(scope="module")
def float_run(nano, test_items):
    from transformers import DynamicCache

    items = test_items.select(range(4))
    return items, *_forced_logits(nano, items, DynamicCache(config=nano.model.config.text_config))


@pytest.mark.parametrize("bits,min_agreement,max_ratio", [(8, 0.99, 0.29), (4, 0.95, 0.16)])
def test_quantized_cache_tracks_the_float_cache_on_nano(nano, float_run, bits, min_agreement, max_ratio):
    from harness.models.fastvlm import cache_nbytes
    from harness.steps.kv_cache import build_cache

    items, reference, fp_cache = float_run
    text_config = nano.model.config.text_config
    quantized, q_cache = _forced_logits(nano, items, build_cache(text_config, bits=bits, residual_length=32))
    agreement = (quantized.argmax(-1) == reference.argmax(-1)).float().mean().item()
    assert agreement >= min_agreement, agreement
    layer = q_cache.layers[0]
    stored = sum(t.nbytes for t in (*layer._quantized_keys, *layer._quantized_values))
    codes = layer._quantized_keys[0]
    float_bytes = 2 * codes.shape[0] * codes.shape[1] * codes.shape[2] * layer._quantized_keys[1].shape[-1] * 4
    assert stored <= max_ratio * float_bytes  # 1/4 (1/8) of fp32 plus float16 scale/min per group
    assert layer.keys.shape[-2] < 32 and layer.get_seq_length() == fp_cache.layers[0].get_seq_length()
    # + the fp residual of up to 32 tokens, a large share of nano's ~50-token sequences
    assert cache_nbytes(q_cache) < (0.5 if bits == 8 else 0.4) * cache_nbytes(fp_cache)


def test_quantized_cache_leaves_answers_of_the_nano_unchanged(nano, test_items):
    items = test_items.select(range(16))
    base = nano.generate(items["image"], items["question"], max_new_tokens=4)
    apply(nano, {"kind": "kv-cache", "quantize": "int8", "residual_length": 8})
    try:
        quantized = nano.generate(items["image"], items["question"], max_new_tokens=4)
    finally:
        nano.cache_factory = None
    assert quantized.texts == base.texts
    assert quantized.times.kv_cache_bytes < base.times.kv_cache_bytes


def test_sliding_window_limits_attention_and_cache(tiny, images):
    import torch

    window, length = 6, 40
    llm = tiny.model.model.language_model
    generator = torch.Generator().manual_seed(0)
    embeds = torch.randn(1, length, llm.config.hidden_size, generator=generator)
    changed = embeds.clone()
    changed[:, 0] += 5.0  # the first position: outside the window of the last one, even across 2 layers

    def last_hidden(x):
        with torch.inference_mode():
            return llm(inputs_embeds=x, use_cache=False).last_hidden_state[:, -1]

    assert not torch.allclose(last_hidden(embeds), last_hidden(changed))  # full attention sees it
    ctx = apply(tiny, {"kind": "kv-cache", "sliding_window": window})
    assert "sliding-window attention 6 on 2/2 layers" in ctx.notes[0]
    assert torch.equal(last_hidden(embeds), last_hidden(changed))  # 2 layers reach back 2 * (6 - 1) positions
    near = embeds.clone()
    near[:, -3] += 5.0
    assert not torch.allclose(last_hidden(embeds), last_hidden(near))

    full = build_tiny().generate(images["image"], images["question"], max_new_tokens=12, min_new_tokens=12)
    result = tiny.generate(images["image"], images["question"], max_new_tokens=12, min_new_tokens=12)
    assert result.times.kv_cache_bytes < full.times.kv_cache_bytes


def test_sliding_window_cache_holds_window_minus_one(tiny, images):
    from transformers import DynamicCache

    apply(tiny, {"kind": "kv-cache", "sliding_window": 5, "full_attention_layers": 1})
    cache = DynamicCache(config=tiny.model.config.text_config)
    tiny.cache_factory = lambda _config: cache
    tiny.generate(images["image"], images["question"], max_new_tokens=8, min_new_tokens=8)
    assert not cache.layers[0].is_sliding and cache.layers[0].keys.shape[-2] > 20
    assert cache.layers[1].is_sliding and cache.layers[1].keys.shape[-2] == 4


def test_sliding_window_survives_save_and_load(tmp_path, images):
    loaded, _ = build_and_save(tmp_path, [{"kind": "kv-cache", "sliding_window": 4}])
    reloaded = load_variant(tmp_path)
    assert reloaded.model.config.text_config.layer_types == ["sliding_attention"] * 2
    assert reloaded.model.model.language_model.layers[1].self_attn.sliding_window == 4
    first = loaded.generate(images["image"], images["question"], max_new_tokens=8, min_new_tokens=8)
    assert reloaded.generate(images["image"], images["question"], max_new_tokens=8,
                             min_new_tokens=8).token_ids == first.token_ids
