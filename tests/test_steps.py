"""Contract tests over every registered step (timm-style), then step-specific checks."""

from __future__ import annotations

import pytest

from harness.build.artifact import load_variant, save_variant
from harness.registries import STEPS
from harness.steps._base import StepContext, apply_step

from .conftest import build_tiny, build_tiny_inference_mode

EXAMPLES = [(name, example) for name in STEPS.names() for example in STEPS.get(name).examples]


def apply(loaded, raw):
    ctx = StepContext()
    apply_step(raw, loaded, ctx)
    return ctx


def build_and_save(tmp_path, steps, loaded=None):
    """Apply `steps` as the worker does (one context, records saved) and save the variant."""
    loaded = loaded or build_tiny()
    base_config = loaded.model.config.to_dict()
    ctx = StepContext()
    for raw in steps:
        apply_step(raw, loaded, ctx)
    save_variant(loaded, tmp_path, {"base": {"model": "tiny", "source": "tiny"}, "base_config": base_config,
                                    "steps": steps, "notes": ctx.notes, "step_records": ctx.records})
    return loaded, ctx.notes


def test_every_step_has_an_example_and_a_description():
    for entry in STEPS.entries():
        assert entry.obj.examples, f"step {entry.name} has no contract examples"
        assert entry.description


@pytest.mark.parametrize("name,example", EXAMPLES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXAMPLES)])
def test_step_contract(tmp_path, images, name, example):
    loaded, notes = build_and_save(tmp_path, [*STEPS.get(name).example_requires, example])
    assert notes, "a step must say what it did"
    first = loaded.generate(images["image"], images["question"], max_new_tokens=4)
    again = loaded.generate(images["image"], images["question"], max_new_tokens=4)
    assert first.token_ids == again.token_ids  # deterministic
    reloaded = load_variant(tmp_path)
    assert reloaded.generate(images["image"], images["question"], max_new_tokens=4).token_ids == first.token_ids
    assert reloaded.visual_tokens == loaded.visual_tokens
    stored, dense = (tmp_path / "model.safetensors").stat().st_size, base_weight_bytes(tmp_path.parent / "dense")
    if STEPS.get(name).shrinks_storage:
        assert stored < dense, f"{name} claims to shrink storage: {stored} vs dense {dense} bytes"
    else:
        assert stored <= dense + 4096, f"{name} grew the stored weights: {stored} vs dense {dense} bytes"


def base_weight_bytes(directory):
    """Bytes of the untouched tiny model's `model.safetensors`, saved the same way."""
    if not (directory / "model.safetensors").exists():
        build_and_save(directory, [])
    return (directory / "model.safetensors").stat().st_size


def _vision_features(loaded, images):
    import torch

    inputs = loaded.prepare(images["image"], images["question"])
    with torch.inference_mode():
        return loaded.model.model.vision_tower(inputs["pixel_values"]).last_hidden_state.float()


@pytest.mark.parametrize("form", ["train", "inference"])
def test_reparameterize_keeps_outputs_and_folds_every_convffn_bn(form, images):
    """Train form (nano-style: every branch fused) and inference mode (released weights: only the
    ConvFFN BatchNorms are left to fold, timm's own reparameterize_model crashes there)."""
    import torch
    from timm.models.fastvit import ConvMlp

    loaded = build_tiny() if form == "train" else build_tiny_inference_mode()
    convffn_bns = [m.conv.bn for m in loaded.model.modules() if isinstance(m, ConvMlp)]
    assert convffn_bns and all(isinstance(bn, torch.nn.BatchNorm2d) for bn in convffn_bns)
    assert all(float((bn.running_var - 1).abs().max()) > 0.01 for bn in convffn_bns)  # the fold is exercised
    before = _vision_features(loaded, images)
    modules_before = sum(1 for _ in loaded.model.modules())
    notes = apply(loaded, {"kind": "reparameterize"}).notes
    after = _vision_features(loaded, images)
    assert sum(1 for _ in loaded.model.modules()) < modules_before
    assert before.abs().mean() > 0.01  # features are not vanishing, so the check below means something
    diff = float((after - before).abs().max())
    print(f"{form}: max-abs diff {diff:.3g} on features of mean magnitude {float(before.abs().mean()):.3g}")
    assert diff <= 1e-4 * max(1.0, float(before.abs().max()))
    assert not torch.equal(after, before)  # the fused convolutions really are different arithmetic
    assert all(isinstance(m.conv.bn, torch.nn.Identity) for m in loaded.model.modules() if isinstance(m, ConvMlp))
    assert loaded.model.config.vision_config.model_args["inference_mode"] is True
    fused = "0 blocks reparameterised" if form == "inference" else "10 blocks reparameterised"
    assert fused in notes[0] and f"{len(convffn_bns)} ConvFFN BatchNorms folded" in notes[0], notes


def test_reparameterize_inference_mode_round_trip_gives_the_same_logits(tmp_path, images):
    """Saved and reloaded (skeleton in inference mode -> replay -> tensors): identical logits."""
    import torch

    loaded, _ = build_and_save(tmp_path, [{"kind": "reparameterize"}], loaded=build_tiny_inference_mode())
    reloaded = load_variant(tmp_path)
    inputs = loaded.prepare(images["image"], images["question"])
    with torch.inference_mode():
        first = loaded.model(**inputs).logits
        again = reloaded.model(**inputs).logits
    print(f"round trip: max-abs logit diff {float((first - again).abs().max()):.3g}")
    assert torch.equal(first, again)
    assert reloaded.model.config.vision_config.model_args["inference_mode"] is True


def test_reparameterize_twice_changes_nothing(images):
    """A second pass finds nothing left to fuse or fold (and does not crash)."""
    import torch

    loaded = build_tiny_inference_mode()
    apply(loaded, {"kind": "reparameterize"})
    first = _vision_features(loaded, images)
    notes = apply(loaded, {"kind": "reparameterize"}).notes
    assert "0 blocks reparameterised" in notes[0] and "0 ConvFFN BatchNorms folded" in notes[0]
    assert torch.equal(_vision_features(loaded, images), first)


def test_reparameterize_refuses_other_components(tiny):
    from harness.errors import StepError

    with pytest.raises(StepError, match="vision component only"):
        apply(tiny, {"kind": "reparameterize", "targets": ["llm"]})


def test_cast_changes_dtype_and_halves_weights(tmp_path, images):
    import torch

    loaded, _ = build_and_save(tmp_path / "bf16", [{"kind": "cast", "dtype": "bf16"}])
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    _, _ = build_and_save(tmp_path / "fp32", [])
    fp32 = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    bf16 = (tmp_path / "bf16" / "model.safetensors").stat().st_size
    assert bf16 < 0.6 * fp32  # tensors halve; the safetensors header is a visible share of a tiny file


def test_bf16_cast_runs_the_conv_tower_in_channels_last(tiny):
    """oneDNN's bf16 convolutions want NHWC (the cast step's module doc): weights and inputs are channels_last."""
    import copy

    import torch

    reference = copy.deepcopy(tiny.vision).eval()
    pixels = torch.rand(2, 3, *tiny.image_size, generator=torch.Generator().manual_seed(0))
    apply(tiny, {"kind": "cast", "dtype": "bf16", "targets": ["vision"]})
    conv = next(m for m in tiny.vision.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.dim() == 4)
    assert conv.weight.dtype == torch.bfloat16 and conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = tiny.vision(pixel_values=pixels).last_hidden_state.float()
        want = reference(pixel_values=pixels).last_hidden_state
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.99
    apply(tiny, {"kind": "cast", "dtype": "bf16", "targets": ["llm"]})  # no convolutions: layout untouched
    assert all(p.is_contiguous() for p in tiny.llm.parameters())


@pytest.mark.parametrize("native", [True, False])
def test_bf16_cast_says_when_this_cpu_emulates_bf16(tiny, monkeypatch, native):
    import harness.steps.cast as cast

    monkeypatch.setattr(cast, "native_bf16", lambda: native)
    ctx = StepContext()
    apply_step({"kind": "cast", "dtype": "bf16", "targets": ["llm"]}, tiny, ctx)
    assert any("neither AVX512-BF16 nor AMX" in n for n in ctx.notes) is (not native)


def test_cpu_features_name_what_the_kernels_can_use():
    import torch

    from harness.environment import cpu_features, describe, native_bf16

    features = cpu_features()
    assert features["capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(features) == {"capability", "avx512_bf16", "amx", "vnni"}
    assert describe()["cpu_features"] == features
    if features["avx512_bf16"] is not None:  # this torch has the probes
        assert native_bf16() is bool(features["avx512_bf16"] or features["amx"])


def test_quantize_stores_int8_and_shrinks(tmp_path, images):
    import json

    from safetensors import safe_open

    build_and_save(tmp_path / "fp32", [])
    loaded, notes = build_and_save(tmp_path / "int8", [{"kind": "quantize", "method": "int8-weight-only",
                                                        "targets": ["projector", "llm"]}])
    weight = loaded.model.get_submodule("model.language_model.layers.0.mlp.up_proj").weight
    assert type(weight).__name__ == "Int8Tensor"
    with safe_open(str(tmp_path / "int8" / "model.safetensors"), "pt") as f:
        key = "model.language_model.layers.0.mlp.up_proj.weight::qdata"
        assert f.get_tensor(key).dtype.is_floating_point is False
    manifest = json.loads((tmp_path / "int8" / "harness_variant.json").read_text())
    assert "model.language_model.layers.0.mlp.up_proj.weight" in manifest["packed"]
    fp32 = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    int8 = (tmp_path / "int8" / "model.safetensors").stat().st_size
    assert int8 < fp32
    with safe_open(str(tmp_path / "fp32" / "model.safetensors"), "pt") as f32, \
            safe_open(str(tmp_path / "int8" / "model.safetensors"), "pt") as f8:
        float_bytes = sum(f32.get_tensor(name).nbytes for name in manifest["packed"])
        packed_bytes = sum(t.nbytes for name in manifest["packed"] for key in f8.keys()  # noqa: SIM118 - safe_open is not iterable
                           if key.startswith(name + "::") for t in [f8.get_tensor(key)])
    assert packed_bytes <= 0.3 * float_bytes  # int8 values + per-row scales, not fp32
    assert any("Linear layers -> int8-weight-only" in n for n in notes)


def test_quantize_conv_only_selection_is_an_error(tiny):
    from harness.errors import StepError

    with pytest.raises(StepError, match="ignore pattern 'nothing.*' matches no module"):
        apply(tiny, {"kind": "quantize", "ignore": ["nothing.*"]})
    with pytest.raises(StepError, match="no Linear layer"):
        apply(tiny, {"kind": "quantize", "targets": ["projector"], "ignore": ["model.multi_modal_projector.*"]})


def test_resolution_changes_visual_tokens_and_prefill(tiny, images):
    apply(tiny, {"kind": "resolution", "size": 32})
    assert tiny.visual_tokens == 4
    inputs = tiny.prepare(images["image"], images["question"])
    assert inputs["pixel_values"].shape[-1] == 32
    assert int((inputs["input_ids"] == tiny.model.config.image_token_id).sum(-1)[0]) == 4


def test_resolution_must_match_the_downsampling(tiny):
    from harness.errors import StepError

    with pytest.raises(StepError, match="not a multiple"):
        apply(tiny, {"kind": "resolution", "size": 40})
