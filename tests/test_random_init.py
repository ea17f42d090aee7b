"""Realistic random weights: activations keep real magnitudes through every stage, and the check
that says so fails on a collapsed tower (the old default init)."""

from __future__ import annotations

import pytest

from harness.models.activations import activation_stats, collapse_problems


def _tiny_config(**vision):
    from harness.models import nano
    from harness.training.ddp_check import TINY_TEXT, TINY_VISION

    processor = nano.build_processor()
    return nano.build_config(processor.tokenizer, vision_args={**TINY_VISION, "inference_mode": True, **vision},
                             text_args=TINY_TEXT), processor


def _realistic_tiny(seed: int = 0):
    from harness.models.fastvlm import LoadedModel
    from harness.models.shapes import realistic_model

    config, processor = _tiny_config()
    return LoadedModel(model=realistic_model(config, seed=seed, calibration_size=64), processor=processor,
                       source="tiny")


def test_realistic_init_keeps_every_stage_alive():
    loaded = _realistic_tiny()
    stats = activation_stats(loaded, image_size=64)
    assert collapse_problems(stats) == [], collapse_problems(stats)
    assert [e["point"] for e in stats["vision"]] == ["stem", "stage0", "stage1", "stage2", "final_conv"]
    for entry in stats["vision"]:
        assert 0.1 < entry["std"] < 10, entry
        assert entry["subnormal_fraction"] == 0.0 and entry["zero_fraction"] < 0.05, entry
    hidden = stats["llm"]["hidden"]
    assert hidden[-1]["layer"] == loaded.model.config.text_config.num_hidden_layers
    assert all(0.1 < e["std"] < 10 for e in hidden[1:]), hidden  # after the embedding: O(1)
    assert stats["llm"]["logits"]["finite"] and stats["llm"]["logits"]["std"] > 0.1
    assert loaded.model.config.vision_config.model_args["inference_mode"] is True


def test_collapse_check_fails_on_the_default_init():
    """The tiny tower built as `random:` used to build it (inference mode, default init) collapses."""
    from harness.training.ddp_check import tiny_model

    problems = collapse_problems(activation_stats(tiny_model(0, {"inference_mode": True}), image_size=64))
    assert any(p.startswith("stage2: std") for p in problems), problems
    assert any(p.startswith("projector") for p in problems), problems


def test_collapse_check_sees_zeros_subnormals_and_nan():
    import torch

    from harness.models.activations import tensor_stats

    healthy = {"point": "stage0", **tensor_stats(torch.randn(1000))}
    zeros = {"point": "stage1", **tensor_stats(torch.cat([torch.zeros(900), torch.randn(100)]))}
    subnormal = {"point": "stage2", **tensor_stats(torch.cat([torch.full((10,), 1e-40), torch.randn(990)]))}
    stats = {"vision": [healthy, zeros, subnormal],
             "llm": {"hidden": [{"layer": 0, **tensor_stats(torch.tensor([float("nan"), 1.0]))}],
                     "logits": tensor_stats(torch.tensor([float("nan")]))}}
    problems = collapse_problems(stats)
    assert not any(p.startswith("stage0") for p in problems)
    assert "stage1: 90% exact zeros" in problems
    assert "stage2: 1.00% subnormal" in problems
    assert any(p.startswith("llm layer 0") for p in problems) and "llm logits are not finite (NaN/inf)" in problems


def test_realistic_init_is_seeded_and_deterministic():
    import torch

    first, again, other = (_realistic_tiny(s).model.state_dict() for s in (0, 0, 1))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_random_model_activation_stats_reach_the_build_notes(tmp_path, monkeypatch):
    """A random base's load-time note (activation stats) goes into the build info of result.json and
    the stats into the build record."""
    from harness.build import variant
    from harness.build.artifact import read_build_record
    from harness.models import loading
    from harness.models.shapes import record_activations

    def tiny_random(reference, revision=None, trust_remote_code=False):
        loaded = _realistic_tiny()
        loaded.source, loaded.random_weights = reference, True
        record_activations(loaded, 64)
        return loaded

    monkeypatch.setattr(loading, "load_model", tiny_random)
    artifact, info = variant.build({"model": "random:fastvlm-0.5b"}, [{"kind": "reparameterize"}], tmp_path, None)
    assert any(n.startswith("random init (random:fastvlm-0.5b): activations at 64 px: vision std stem")
               for n in info["notes"]), info["notes"]
    assert "COLLAPSED" not in " ".join(info["notes"])
    stats = read_build_record(artifact)["base"]["activation_stats"]
    assert [e["point"] for e in stats["vision"]][-1] == "final_conv"


@pytest.mark.slow
def test_real_size_random_model_does_not_collapse():
    """random:fastvlm-0.5b at 256 px: every FastViTHD stage, the projector and the decoder stay O(1)."""
    from harness.models.shapes import random_model

    loaded = random_model("fastvlm-0.5b")
    stats = loaded.meta["activation_stats"]
    assert collapse_problems(stats) == []
    assert len(stats["vision"]) == 7  # stem, 5 stages, final conv
    assert all(0.1 < e["std"] < 10 and e["subnormal_fraction"] == 0 for e in stats["vision"]), stats["vision"]
    assert all(0.1 < e["std"] < 10 for e in stats["llm"]["hidden"][1:]), stats["llm"]
    assert "COLLAPSED" not in loaded.meta["notes"][0]
