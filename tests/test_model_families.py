"""Contract tests over every registered model family (tiny config-built models), then the bad inputs:
an unsupported `model_type`, a misspelled `random:` shape, a family-specific step on another family."""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError, ModelLoadError
from harness.models.families import family, unknown_shape
from harness.models.families._base import PART_NAMES
from harness.registries import MODEL_FAMILIES

FAMILIES = MODEL_FAMILIES.names()
QUESTIONS = ["what colour is the shape ?", "what shape is it ?"]
#: Published parameter counts of the real checkpoints each new shape stands for.
PUBLISHED_PARAMS = {"internvl3-1b": 938e6, "smolvlm-500m": 507e6, "llava-onevision-0.5b": 894e6}


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    return one_thread


def pictures():
    """Two images of different sizes and aspect ratios (tiling families cut them differently)."""
    from PIL import Image

    return [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (50, 90), (20, 130, 30))]


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    return family(request.param).tiny(seed=1)


def cut(row, eos):
    return next((row[:i] for i, token in enumerate(row) if token in eos), row)


def test_the_families_are_registered_with_every_part():
    assert {"fastvlm", "internvl", "smolvlm", "llava_onevision"} <= set(FAMILIES)
    types = [t for name in FAMILIES for t in family(name).model_types]
    assert len(types) == len(set(types)), "a model_type read by two families"
    for name in FAMILIES:
        assert set(family(name).module_paths) == set(PART_NAMES), name
        assert family(name).shapes, f"{name} has no random: shape"


def test_tiny_model_components_resolve(tiny):
    import torch

    assert tiny.family.name in FAMILIES and tiny.model.config.model_type in tiny.family.model_types
    for part in PART_NAMES:
        assert isinstance(tiny.module(part), torch.nn.Module), part
    for component in ("vision", "projector", "llm"):
        modules = tiny.component_modules(component)
        assert modules and tiny.parameter_count(component) > 0, component
        assert all(tiny.component_of(f"{path}.x") == component for path in modules)
    assert tiny.llm.embed_tokens is tiny.embed_tokens


def test_greedy_generation_equals_transformers_generate(tiny):
    import torch

    images = pictures()
    ours = tiny.generate(images, QUESTIONS, max_new_tokens=6)
    inputs = tiny.prepare(images, QUESTIONS)
    with torch.inference_mode():
        reference = tiny.model.generate(**inputs, do_sample=False, max_new_tokens=6)
    eos = tiny.eos_token_ids()
    expected = [cut(row, eos) for row in reference[:, inputs["input_ids"].shape[1]:].tolist()]
    assert ours.token_ids == expected
    assert sum(map(len, ours.token_ids)) > 0


def test_staged_times_and_kv_bytes(tiny):
    images = pictures()
    generation = tiny.generate(images, QUESTIONS, max_new_tokens=5, min_new_tokens=5)
    times = generation.times
    assert times.preprocess_ms > 0 and times.vision_ms > 0 and times.prefill_ms > 0
    assert len(times.decode_ms) == 4 and all(t > 0 for t in times.decode_ms)
    assert times.ttft_ms == pytest.approx(times.preprocess_ms + times.vision_ms + times.prefill_ms)
    staged = times.ttft_ms + sum(times.decode_ms)
    assert 0.7 * times.total_ms <= staged <= times.total_ms
    text = tiny.model.config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    prompt = tiny.prepare(images, QUESTIONS)["input_ids"].shape[1]
    # every layer keeps keys and values of the prompt and the 4 decoded tokens, float32
    expected = text.num_hidden_layers * 2 * len(images) * text.num_key_value_heads * (prompt + 4) * head_dim * 4
    assert times.kv_cache_bytes == expected


def test_visual_tokens_match_the_features(tiny):
    """The processor's image tokens for one image equal the features the vision stage gives for it."""
    import torch
    from PIL import Image

    for size in [tiny.image_size, (tiny.image_size[0], 2 * tiny.image_size[1])]:
        image = Image.new("RGB", (size[1], size[0]), (90, 90, 200))
        inputs = tiny.prepare([image], [QUESTIONS[0]])
        counted = int((inputs["input_ids"] == tiny.model.config.image_token_id).sum())
        with torch.inference_mode():
            features = tiny.family.image_features(tiny.model, inputs)
        assert tiny.family.visual_tokens(tiny, *size) == counted == features.reshape(-1, features.shape[-1]).shape[0]
    assert tiny.visual_tokens == tiny.family.visual_tokens(tiny)


def test_internvl_tiles_give_256_tokens_each_at_448px():
    """InternVL3-1B: a square image is one 448 px tile (256 tokens); a 2:1 one two tiles plus a thumbnail."""
    from harness.models.fastvlm import LoadedModel
    from harness.models.sizing import meta_model

    internvl = family("internvl")
    config, processor = internvl.random_config("internvl3-1b")
    loaded = LoadedModel(model=meta_model(config), processor=processor, source="meta")
    assert internvl.tile_tokens("internvl3-1b") == 256
    assert internvl.visual_tokens(loaded, 448, 448) == 256
    assert internvl.visual_tokens(loaded, 448, 896) == 3 * 256


@pytest.mark.parametrize("shape", sorted(PUBLISHED_PARAMS))
def test_random_shapes_have_the_published_size(shape):
    """The meta-device parameter count of each new `random:` shape is its real checkpoint's (within 1%)."""
    from harness.models.sizing import estimate

    params = estimate(shape)["params"]
    assert params["total"] == pytest.approx(PUBLISHED_PARAMS[shape], rel=0.01)
    assert min(params["vision"], params["projector"], params["llm"]) > 0


def test_weight_only_int8_round_trip(tiny, tmp_path):
    """weight-quant RTN INT8 on the LLM, saved and loaded again: the same tokens as before saving."""
    from harness.build.artifact import load_variant, save_variant
    from harness.steps._base import StepContext, apply_step
    from harness.steps._packed import PackedLinear

    loaded = tiny.family.tiny(seed=2)
    base_config = loaded.model.config.to_dict()
    steps = [{"kind": "weight-quant", "algorithm": "rtn", "bits": 8, "group_size": -1}]
    ctx = StepContext()
    for raw in steps:
        apply_step(raw, loaded, ctx)
    packed = [n for n, m in loaded.model.named_modules() if isinstance(m, PackedLinear)]
    assert packed and all(loaded.component_of(n) == "llm" for n in packed)
    save_variant(loaded, tmp_path, {"base": {"model": "tiny", "source": loaded.source}, "base_config": base_config,
                                    "steps": steps, "notes": ctx.notes, "step_records": ctx.records})
    before = loaded.generate(pictures(), QUESTIONS, max_new_tokens=5, min_new_tokens=5).token_ids
    reloaded = load_variant(tmp_path)
    assert reloaded.family.name == loaded.family.name
    assert reloaded.generate(pictures(), QUESTIONS, max_new_tokens=5, min_new_tokens=5).token_ids == before


def test_a_checkpoint_directory_loads_with_its_family(tiny, tmp_path):
    from harness.models.loading import base_family, load_model

    tiny.model.save_pretrained(tmp_path)
    tiny.processor.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.family.name == tiny.family.name == base_family(str(tmp_path)).name
    first = tiny.generate(pictures(), QUESTIONS, max_new_tokens=4, min_new_tokens=4).token_ids
    assert loaded.generate(pictures(), QUESTIONS, max_new_tokens=4, min_new_tokens=4).token_ids == first


# --- bad inputs -------------------------------------------------------------------------


def test_an_unsupported_model_type_lists_the_supported_ones(tmp_path):
    from harness.models.loading import base_family, load_model

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    with pytest.raises(ModelLoadError) as err:
        load_model(str(tmp_path))
    message = str(err.value)
    assert "'qwen2_vl' model" in message and "\n" not in message
    for model_type in ("fast_vlm", "internvl", "smolvlm", "llava_onevision", "llava_qwen2"):
        assert f"'{model_type}'" in message
    assert base_family(str(tmp_path)) is None


def test_a_variant_of_an_unsupported_model_type_is_one_line(tmp_path):
    from harness.build.artifact import BUILD_RECORD, load_variant

    (tmp_path / BUILD_RECORD).write_text(json.dumps({"base": {"source": "x"}, "base_config": {"model_type": "mllama"},
                                                     "steps": []}))
    with pytest.raises(ModelLoadError, match="'mllama' model, which no model family reads; supported model types: "
                                             "fast_vlm, internvl, llava_onevision, smolvlm"):
        load_variant(tmp_path)


def test_a_misspelled_shape_suggests_the_nearest_and_lists_the_shapes():
    from harness.models.loading import load_model
    from harness.run.preflight import check_base

    with pytest.raises(ConfigError) as err:
        load_model("random:internvl3-1bb")
    message = str(err.value)
    assert "unknown random shape 'internvl3-1bb' — did you mean 'internvl3-1b'?" in message
    for shape in ("fastvlm-0.5b", "internvl3-1b", "smolvlm-500m", "llava-onevision-0.5b"):
        assert shape in message
    problems = check_base("random:smolvlm-500")
    assert len(problems) == 1
    assert problems[0].startswith("base: unknown random shape 'smolvlm-500' — did you mean 'smolvlm-500m'? (shapes: ")
    assert "did you mean" not in unknown_shape("zzz", ["internvl3-1b"])


def _recipe(tmp_path, base, steps):
    from harness.spec.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: x\nbase: '{base}'\nbaseline: base\nruntimes: [torch-eager, onnxruntime]\n"
                    "variants:\n  - name: base\n    steps: []\n"
                    f"  - name: v\n    steps: {json.dumps(steps)}\n")
    return load_recipe(path)


def test_a_family_specific_step_on_another_family_is_refused_in_preflight(tmp_path):
    from harness.run.preflight import check_steps, preflight
    from harness.spec.messages import ConfigProblems

    steps = [{"kind": "reparameterize"}, {"kind": "quantize"}, {"kind": "export-onnx"}]
    recipe = _recipe(tmp_path, "random:internvl3-1b", steps)
    assert check_steps(recipe) == [  # export-onnx: InternVL has it too
        "step 'reparameterize' needs a FastViT vision tower (FastVLM); base 'random:internvl3-1b' is an internvl "
        "model"]
    with pytest.raises(ConfigProblems, match="step 'reparameterize' needs a FastViT vision tower"):
        preflight(recipe, [], tmp_path / "out")
    assert check_steps(_recipe(tmp_path, "random:fastvlm-0.5b", steps)) == []
    assert check_steps(_recipe(tmp_path, "random:smolvlm-500m", [{"kind": "quantize"}])) == []
    assert check_steps(_recipe(tmp_path, "random:smolvlm-500m", [{"kind": "export-onnx"}])) == [
        "step 'export-onnx' needs ONNX generation graphs for a vision tower fed one (tiles, 3, H, W) pixel tensor "
        "(FastVLM, InternVL); base 'random:smolvlm-500m' is a smolvlm model"]


def test_internvl_onnx_export_runs_in_ort_as_torch_does(tmp_path):
    """"Unified mobile deployment" for a second family: InternVL's tiles go through the same three ONNX graphs
    and generation loop as FastVLM, with torch's greedy tokens, and survive an ort-quant step."""
    import numpy as np
    import torch

    from harness.runtimes.onnxruntime import OnnxRuntime

    from .exports import build_artifact

    export = {"kind": "export-onnx", "external_data_mb": 0}
    loaded, _ = build_artifact(tmp_path / "v", [export], export, loaded=family("internvl").tiny(seed=1))
    session = OnnxRuntime().load(tmp_path / "v")
    want = loaded.generate(pictures(), QUESTIONS, max_new_tokens=6, keep_logits=True)
    got = session.generate(pictures(), QUESTIONS, max_new_tokens=6, keep_logits=True)
    assert got.token_ids == want.token_ids and got.texts == want.texts
    assert np.abs(got.first_logits - want.first_logits.numpy()).max() < 1e-4
    assert session.visual_tokens == int((loaded.prepare(pictures()[:1], QUESTIONS[:1])["input_ids"]
                                         == loaded.model.config.image_token_id).sum())
    with torch.no_grad():
        torch_features = family("internvl").image_features(loaded.model, loaded.prepare(pictures(), QUESTIONS))
    ort_features = session.encode_images(pictures())
    assert ort_features.shape == tuple(torch_features.shape) and ort_features.shape[0] > len(pictures())  # tiles
    assert np.abs(ort_features - torch_features.numpy()).max() < 1e-4

    build_artifact(tmp_path / "q", [{"kind": "ort-quant", "mode": "dynamic-int8"}], export,
                   loaded=loaded, staging_from=tmp_path / "v")
    quantized = OnnxRuntime().load(tmp_path / "q").generate(pictures(), QUESTIONS, max_new_tokens=4)
    assert len(quantized.token_ids) == 2 and quantized.times.prefill_ms > 0


def test_ls_models_lists_families_and_shapes():
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["ls", "models", "--json"])
    assert result.exit_code == 0, result.output
    listing = {entry["name"]: entry for entry in json.loads(result.output)["models"]}
    assert set(listing) == set(FAMILIES)
    assert {s["name"] for s in listing["internvl"]["shapes"]} == {"random:internvl3-1b"}
    assert "256 visual tokens per tile" in listing["internvl"]["shapes"][0]["description"]
    text = CliRunner().invoke(app, ["ls", "models"]).output
    assert "random:llava-onevision-0.5b" in text and "729 visual tokens per tile" in text


def test_every_familys_activations_are_recorded_and_a_dead_tower_is_flagged(tiny):
    """The collapse check reaches every family: a ViT's blocks, the projector and the decoder are sampled,
    healthy under the init `random:` uses (transformers' own; FastVLM's realistic one, since its default
    collapses: test_random_init.py); a tower whose weights are zeroed is named in the problems."""
    import copy

    import torch

    from harness.models.activations import activation_stats, collapse_problems

    from .conftest import build_tiny_inference_mode

    if tiny.family.name == "fastvlm":
        tiny = build_tiny_inference_mode()
    stats = activation_stats(tiny)
    assert stats["vision"] and collapse_problems(stats) == []
    assert stats["projector"]["std"] > 0 and stats["llm"]["logits"]["finite"]
    dead = copy.deepcopy(tiny)
    with torch.no_grad():
        for parameter in dead.vision.parameters():
            parameter.zero_()
    problems = collapse_problems(activation_stats(dead))
    assert any(line.startswith(("projector:", "stage", "block", "stem", "final_conv")) for line in problems), problems
