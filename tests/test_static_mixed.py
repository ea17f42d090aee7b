"""Steps `static-int8` (PT2E static INT8 of vision/projector) and `mixed-precision` (bits by sensitivity)."""

from __future__ import annotations

import json

import pytest

from harness.build.artifact import load_variant
from harness.errors import StepError
from harness.steps._base import StepContext, apply_step

from .conftest import build_tiny
from .test_steps import build_and_save

CALIBRATION = {"items": 8, "batch_size": 8, "dataset": {"name": "nano-vqa", "split": "validation"}}
STATIC = {"kind": "static-int8", "calibration": CALIBRATION}


def _features(loaded, images):
    """What generation feeds the LLM: projector(vision(pixels)), and the raw encoder output."""
    import torch

    pixels = loaded.prepare(images["image"], images["question"])["pixel_values"]
    with torch.inference_mode():
        out = loaded.model.model.get_image_features(pixel_values=pixels)
        return out.last_hidden_state.float(), out.pooler_output.float()


def _stored_bytes(path, prefix, int8_only=False):
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        tensors = [f.get_tensor(k) for k in f.keys() if k.startswith(prefix)]  # noqa: SIM118 - not iterable
    return sum(t.nbytes for t in tensors if not int8_only or str(t.dtype) == "torch.int8")


@pytest.fixture(scope="module")
def static_variant(tmp_path_factory, test_items):
    """One tiny model built in float and with static-int8, both saved (the build is the slow part)."""
    images = test_items.select(range(4))
    root = tmp_path_factory.mktemp("static")
    float_model, _ = build_and_save(root / "fp32", [])
    reference = _features(float_model, images)
    loaded, notes = build_and_save(root / "int8", [STATIC])
    return {"root": root, "images": images, "reference": reference, "loaded": loaded, "notes": notes,
            "float": float_model}


def test_static_int8_encoder_stays_close_to_fp32(static_variant):
    import torch

    encoder, projected = _features(static_variant["loaded"], static_variant["images"])
    ref_encoder, ref_projected = static_variant["reference"]
    assert ref_encoder.abs().mean() > 0.01  # not vanishing features, so the comparison means something
    for ref, out in ((ref_encoder, encoder), (ref_projected, projected)):
        assert float(torch.nn.functional.cosine_similarity(ref.flatten(), out.flatten(), dim=0)) > 0.99
    assert not torch.equal(encoder, ref_encoder)  # really different arithmetic
    assert any(n.startswith("vision: static INT8") and "cosine" in n for n in static_variant["notes"])


def test_static_int8_stores_int8_weights_at_a_quarter(static_variant):
    import torch

    root, float_model = static_variant["root"], static_variant["float"]
    tower = float_model.model.model.vision_tower
    weights = sum(m.weight.nbytes for m in tower.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    int8 = _stored_bytes(root / "int8", "model.vision_tower.", int8_only=True)
    assert 0.24 * weights <= int8 <= 0.25 * weights  # every conv/linear weight is int8, nothing else is
    fp32_all = _stored_bytes(root / "fp32", "model.vision_tower.")
    assert _stored_bytes(root / "int8", "model.vision_tower.") < 0.45 * fp32_all  # + scales, biases (tiny channels)
    manifest = json.loads((root / "int8" / "harness_variant.json").read_text())
    record = manifest["step_records"][0]
    assert set(record) == {"vision", "projector"} and record["vision"]["qparams"]


def test_static_int8_replay_is_bit_exact(static_variant):
    import torch

    reloaded = load_variant(static_variant["root"] / "int8")
    for built, loaded in zip(_features(static_variant["loaded"], static_variant["images"]),
                             _features(reloaded, static_variant["images"])):
        assert torch.equal(built, loaded)
    assert type(reloaded.model.model.vision_tower).__name__ == "StaticInt8Graph"


def test_static_int8_refuses_the_llm_and_bad_data(tiny):
    from harness.steps.static_quant import StaticInt8Config

    with pytest.raises(ValueError, match="vision and projector only"):
        StaticInt8Config.model_validate({"kind": "static-int8", "targets": ["llm"]})
    with pytest.raises(StepError, match="calibration data unavailable"):
        apply_step({"kind": "static-int8", "calibration": {"dataset": {"name": "nano-vqa", "split": "nope"}}},
                   tiny, StepContext())


# --- mixed precision ---------------------------------------------------------------------------
def test_choose_bits_spends_bytes_where_sensitivity_is():
    from harness.steps.mixed_precision import choose_bits

    costs = {"a": {4: 10, 8: 20}, "b": {4: 10, 8: 20}, "c": {4: 10, 8: 20, 16: 40}}
    sensitivity = {"a": {4: 5.0, 8: 0.1}, "b": {4: 0.2, 8: 0.0}, "c": {4: 1.0, 8: 0.05, 16: 0.0}}
    assert choose_bits(sensitivity, costs, 30) == {"a": 4, "b": 4, "c": 4}
    assert choose_bits(sensitivity, costs, 40) == {"a": 8, "b": 4, "c": 4}
    assert choose_bits(sensitivity, costs, 50) == {"a": 8, "b": 4, "c": 8}
    assert choose_bits(sensitivity, costs, 1000) == {"a": 8, "b": 8, "c": 16}
    with pytest.raises(ValueError, match="at least 30"):
        choose_bits(sensitivity, costs, 29)


def _mixed(budget_mb, **extra):
    return {"kind": "mixed-precision", "max_size_mb": budget_mb, "calibration": CALIBRATION,
            "targets": ["llm"], **extra}


def _bounds(loaded, ignore=()):
    """Estimated file size with every candidate (llm Linear layers minus `ignore`) at INT4 and at INT8."""
    from harness.steps._layers import linear_layers
    from harness.steps.mixed_precision import model_bytes, option_bytes

    names = [n for per in linear_layers(loaded, ("llm",), list(ignore)).values() for n in per]
    rest = model_bytes(loaded, set(names))
    return [(rest + sum(option_bytes(loaded.model.get_submodule(n), n, b, 32) for n in names)) / 1e6 for b in (4, 8)]


def test_mixed_precision_meets_budget_favours_the_sensitive_layer_and_replays(tmp_path, images):
    """Two same-shape candidates; on this model layer 1's o_proj is naturally the more sensitive. Its
    weights are snapped onto the INT4 grid (4-bit rounding then costs nothing), so the one upgrade the
    budget allows must go to layer 0's o_proj."""
    import torch

    from harness.steps.mixed_precision import fake_quantize

    loaded = build_tiny()
    snapped, sensitive = (f"model.language_model.layers.{i}.self_attn.o_proj" for i in (1, 0))
    with torch.no_grad():
        layer = loaded.model.get_submodule(snapped)
        layer.weight.copy_(fake_quantize(layer.weight, 4, 32))
    ignore = ["*q_proj", "*k_proj", "*v_proj", "*mlp*", "lm_head"]
    low, high = _bounds(loaded, ignore)
    budget = round(low + 0.6 * (high - low), 6)  # room for one INT8 layer, not two
    built, notes = build_and_save(tmp_path, [_mixed(budget, ignore=ignore)], loaded=loaded)
    size = (tmp_path / "model.safetensors").stat().st_size / 1e6
    assert size <= budget
    record = json.loads((tmp_path / "harness_variant.json").read_text())["step_records"][0]
    assert record["assignment"] == {sensitive: 8, snapped: 4}
    assert record["sensitivity"][sensitive]["4"] > 100 * record["sensitivity"][snapped]["4"]
    assert record["predicted_mb"] >= size  # the estimate is conservative
    assert any(n.startswith("mixed-precision assignment:") for n in notes)
    reloaded = load_variant(tmp_path)  # replay from the record: no calibration, same layers, same tokens
    for name, bits in record["assignment"].items():
        assert reloaded.model.get_submodule(name).bits == bits
    first = built.generate(images["image"], images["question"], max_new_tokens=4)
    assert reloaded.generate(images["image"], images["question"], max_new_tokens=4).token_ids == first.token_ids


def test_mixed_precision_unmeetable_budget_names_the_smallest_size(tiny):
    low, _ = _bounds(tiny)
    with pytest.raises(StepError, match=rf"smallest reachable size with bits \[4, 8\] is {low:.4f} MB"):
        apply_step(_mixed(round(low * 0.98, 6)), tiny, StepContext())
    with pytest.raises(ValueError, match="distinct"):
        apply_step(_mixed(1.0, bits=[4, 4]), tiny, StepContext())
