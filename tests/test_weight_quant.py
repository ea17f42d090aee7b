"""Step `weight-quant` (INC weight-only INT4/INT8): packed bytes on disk, zero points, bad input, replay."""

from __future__ import annotations

import json

import pytest

from harness.build.artifact import load_variant
from harness.errors import StepError
from harness.steps._base import StepContext, apply_step

from .test_steps import build_and_save

CALIBRATION = {"items": 8, "batch_size": 8, "dataset": {"name": "nano-vqa", "split": "validation"}}


def apply(loaded, raw):
    ctx = StepContext()
    apply_step(raw, loaded, ctx)
    return ctx


def _packed_layers(path):
    return json.loads((path / "harness_variant.json").read_text())["step_records"][-1]["layers"]


def test_pack_round_trip_odd_width():
    import torch

    from harness.steps._packed import pack_codes, unpack_codes

    codes = torch.randint(0, 16, (3, 7), generator=torch.Generator().manual_seed(0))
    packed = pack_codes(codes, 4)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 4)  # two codes per byte, odd width padded
    assert torch.equal(unpack_codes(packed, 4, 7), codes.to(torch.int16))
    wide = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(1))
    assert torch.equal(unpack_codes(pack_codes(wide, 8), 8, 5), wide.to(torch.int16))


@pytest.mark.parametrize("bits,symmetric", [(4, True), (4, False), (8, True)])
def test_rtn_codes_reconstruct_the_weights(tiny, bits, symmetric):
    """Dequantized weights sit within half a quantization step of the originals (RTN, no clipping),
    plus the fp16 rounding of the scale, which grows with the code (up to 127 for INT8)."""
    import torch

    name = "model.language_model.layers.0.mlp.down_proj"
    original = tiny.model.get_submodule(name).weight.detach().clone()
    apply(tiny, {"kind": "weight-quant", "bits": bits, "group_size": 16, "symmetric": symmetric})
    layer = tiny.model.get_submodule(name)
    assert type(layer).__name__ == "PackedLinear"
    step = layer.scales.float().repeat_interleave(16, dim=1)
    error = (layer.dequantize() - original).abs()
    assert bool((error <= 0.5 * step * 1.01 + original.abs() * 2**-10 + 1e-6).all())
    assert float(error.max()) > 0  # really quantized
    assert not isinstance(layer, torch.nn.Linear)


def test_int4_llm_bytes_drop_below_a_third_of_fp16(tmp_path):
    from safetensors import safe_open

    from harness.suites.size import weight_summary

    build_and_save(tmp_path / "fp32", [])
    loaded, notes = build_and_save(tmp_path / "int4", [{"kind": "weight-quant", "bits": 4, "group_size": 32}])
    layers = _packed_layers(tmp_path / "int4")
    assert "lm_head" in layers and len(layers) == 15  # 2 decoder layers x 7 + lm_head
    with safe_open(str(tmp_path / "int4" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())  # noqa: SIM118 - safe_open is not iterable
        qweight = f.get_tensor("model.language_model.layers.0.mlp.up_proj.qweight")
        assert qweight.dtype.is_floating_point is False and qweight.element_size() == 1
        assert tuple(qweight.shape) == (64, 16)  # (out, in / 2): two INT4 codes per byte
        packed = sum(f.get_tensor(k).nbytes for k in keys if k.rpartition(".")[0] in layers)
    assert not any(k.rpartition(".")[0] in layers and k.endswith(".qzeros") for k in keys)  # symmetric
    assert not any(k.endswith(".weight") and k[:-len(".weight")] in layers for k in keys)
    with safe_open(str(tmp_path / "fp32" / "model.safetensors"), "pt") as f:
        params = sum(f.get_tensor(f"{name}.{leaf}").numel() for name in layers for leaf in ("weight", "bias")
                     if f"{name}.{leaf}" in set(f.keys()))  # noqa: SIM118
    assert packed <= 0.3 * 2 * params  # INT4 codes + fp16 group scales (+ fp16 biases) vs fp16
    summary = weight_summary(tmp_path / "int4", json.loads((tmp_path / "int4" / "harness_variant.json").read_text()))
    assert summary["packed_ratio_to_fp16"] <= 0.3
    assert "INT4 packed (2 per byte" in summary["storage_format"] and "group 32" in summary["storage_format"]
    sizes = {v: (tmp_path / v / "model.safetensors").stat().st_size for v in ("fp32", "int4")}
    assert sizes["int4"] < sizes["fp32"]
    assert any("llm: 15 Linear layers -> INT4 g32 sym packed (15 via RTN)" in n for n in notes)


def test_asymmetric_stores_zero_points_and_replays(tmp_path, images):
    from safetensors import safe_open

    loaded, _ = build_and_save(tmp_path, [{"kind": "weight-quant", "bits": 4, "group_size": 16, "symmetric": False,
                                           "targets": ["projector", "llm"], "ignore": ["lm_head"]}])
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        zeros = f.get_tensor("model.language_model.layers.1.self_attn.q_proj.qzeros")
        assert "lm_head.weight" in set(f.keys())  # noqa: SIM118 - ignored, stays float
    assert zeros.dtype.is_floating_point is False and zeros.shape[0] == 32
    assert "model.multi_modal_projector.linear_1" in _packed_layers(tmp_path)
    reloaded = load_variant(tmp_path)
    assert type(reloaded.model.get_submodule("model.multi_modal_projector.linear_1")).__name__ == "PackedLinear"
    first = loaded.generate(images["image"], images["question"], max_new_tokens=4)
    assert reloaded.generate(images["image"], images["question"], max_new_tokens=4).token_ids == first.token_ids


def test_conv_only_selection_says_unchanged_and_nothing_left_is_an_error(tiny):
    ctx = apply(tiny, {"kind": "weight-quant", "targets": ["projector", "llm"], "group_size": 16})
    assert any(n.startswith("projector: 2 Linear layers") for n in ctx.notes)
    with pytest.raises(StepError, match="step 'weight-quant': nothing left to quantize"):
        apply(tiny, {"kind": "weight-quant", "targets": ["llm"], "group_size": 16})  # all already packed


@pytest.mark.parametrize("raw,message", [
    ({"group_size": 128}, "group_size 128 does not divide in_features 32 of layer 'model.language_model"),
    ({"ignore": ["nothing.*"]}, "ignore pattern 'nothing.*' matches no module"),
    ({"targets": ["projector"], "ignore": ["model.multi_modal_projector.*"]}, "nothing left to quantize"),
    ({"algorithm": "gptq"}, "algorithm 'gptq' needs calibration data"),
    ({"algorithm": "awq"}, "algorithm 'awq' needs calibration data"),
    ({"algorithm": "gptq", "calibration": {"dataset": {"name": "nano-vqa", "split": "nope"}}},
     "step 'weight-quant': calibration data unavailable"),
])
def test_bad_input_is_a_one_line_step_error(tiny, raw, message):
    with pytest.raises(StepError, match=message.replace("(", r"\(").replace("*", r"\*").replace(".", r"\.")) as info:
        apply(tiny, {"kind": "weight-quant", **raw})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("raw", [{"bits": 3}, {"bits": 2}, {"group_size": 48}, {"algorithm": "hqq"}])
def test_unsupported_settings_fail_validation(raw):
    from pydantic import ValidationError

    from harness.steps.weight_quant import WeightQuantConfig

    with pytest.raises(ValidationError):
        WeightQuantConfig.model_validate({"kind": "weight-quant", **raw})


@pytest.mark.slow
def test_awq_keeps_input_scales_through_replay(tmp_path, images):
    import torch

    loaded, notes = build_and_save(tmp_path, [{"kind": "weight-quant", "algorithm": "awq", "group_size": 16,
                                               "calibration": CALIBRATION}])
    layers = _packed_layers(tmp_path)
    scaled = [n for n, info in layers.items() if info["input_scale"]]
    assert scaled and all(n.endswith("o_proj") for n in scaled)  # the rest folded into norms / up_proj
    assert any("via AWQ" in n and "1 via RTN" in n for n in notes)  # lm_head: outside the decoder blocks
    reloaded = load_variant(tmp_path)
    assert torch.equal(reloaded.model.get_submodule(scaled[0]).input_scale,
                       loaded.model.get_submodule(scaled[0]).input_scale)
    first = loaded.generate(images["image"], images["question"], max_new_tokens=4)
    assert reloaded.generate(images["image"], images["question"], max_new_tokens=4).token_ids == first.token_ids
