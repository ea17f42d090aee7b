"""The FastVLM adapter on a tiny config-built model: components, generation, staged timing."""

from __future__ import annotations

import pytest


def test_components_are_exposed_by_name(tiny):
    assert set(tiny.component_modules("vision")) == {"model.vision_tower"}
    assert set(tiny.component_modules("projector")) == {"model.multi_modal_projector"}
    assert set(tiny.component_modules("llm")) == {"model.language_model", "lm_head"}
    total = sum(tiny.parameter_count(c) for c in ("vision", "projector", "llm"))
    assert total == tiny.parameter_count()
    assert tiny.component_of("model.language_model.layers.0.mlp.up_proj") == "llm"


def test_greedy_loop_matches_transformers_generate(tiny, images):
    import torch

    questions = list(images["question"])
    ours = tiny.generate(images["image"], questions, max_new_tokens=5, min_new_tokens=5)
    inputs = tiny.prepare(images["image"], questions)
    with torch.inference_mode():
        reference = tiny.model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    new = reference[:, inputs["input_ids"].shape[1]:].tolist()
    eos = tiny.model.generation_config.eos_token_id
    expected = [row[: row.index(eos)] if eos in row else row for row in new]
    assert ours.token_ids == expected


def test_generation_is_deterministic(tiny, images):
    a = tiny.generate(images["image"], images["question"], max_new_tokens=4)
    b = tiny.generate(images["image"], images["question"], max_new_tokens=4)
    assert a.token_ids == b.token_ids


def test_stage_times_account_for_the_total(tiny, images):
    result = tiny.generate(images["image"][:1], images["question"][:1], max_new_tokens=6, min_new_tokens=6)
    t = result.times
    stages = t.preprocess_ms + t.vision_ms + t.prefill_ms + sum(t.decode_ms)
    assert len(t.decode_ms) == 5
    assert all(x > 0 for x in (t.preprocess_ms, t.vision_ms, t.prefill_ms))
    assert stages <= t.total_ms
    assert stages >= 0.9 * t.total_ms  # what is not in a stage is bookkeeping only
    assert t.ttft_ms == pytest.approx(t.preprocess_ms + t.vision_ms + t.prefill_ms)


def test_visual_tokens_follow_image_size(tiny):
    assert tiny.image_size == (64, 64)
    assert tiny.visual_tokens == 16


@pytest.mark.slow
def test_random_model_of_real_dimensions():
    from harness.models.shapes import random_model

    loaded = random_model("fastvlm-0.5b")
    assert loaded.random_weights
    assert loaded.visual_tokens == 256
    llm = loaded.parameter_count("llm")
    vision = loaded.parameter_count("vision")
    assert 620e6 < llm < 640e6, llm  # Qwen2-0.5B with an untied LM head (151936 x 896 twice)
    assert 120e6 < vision < 126e6, vision  # FastViTHD, ~122.7 M as used by the VLM
    assert abs(loaded.parameter_count() - 758.8e6) / 758.8e6 < 0.01  # the model card's 758.8 M total
