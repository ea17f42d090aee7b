"""Pruning steps: achieved sparsity, exact N:M patterns, Wanda vs magnitude, real shrinking, replay."""

from __future__ import annotations

import json

import pytest

from harness.build.artifact import load_variant
from harness.errors import StepError
from harness.steps._base import StepContext, apply_step

from .conftest import build_tiny
from .test_steps import build_and_save

CALIBRATION = {"items": 8, "batch_size": 8, "dataset": {"name": "nano-vqa", "split": "validation"}}
LLM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def apply(loaded, raw):
    ctx = StepContext()
    apply_step(raw, loaded, ctx)
    return ctx


def build_gqa(seed: int = 0):
    """The tiny model with 4 heads in 2 KV groups and 3 layers, so heads can go by KV group."""
    return build_tiny(seed, vision_args={"layers": [1, 1, 2]},
                      text_args={"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2})


def linear(loaded, layer: int, name: str):
    part = "self_attn" if name in LLM_LINEARS[:4] else "mlp"
    return loaded.model.get_submodule(f"model.language_model.layers.{layer}.{part}.{name}")


def params(loaded) -> int:
    return sum(p.numel() for p in loaded.model.parameters())


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_achieved_sparsity(tiny, method, sparsity):
    extra = {"calibration": CALIBRATION} if method == "wanda" else {}
    ctx = apply(tiny, {"kind": "prune", "method": method, "sparsity": sparsity, **extra})
    for layer in range(2):
        for name in LLM_LINEARS:
            weight = linear(tiny, layer, name).weight
            assert type(weight).__name__ == "Parameter"  # reparametrisation removed: a plain tensor is saved
            assert float((weight == 0).float().mean()) == pytest.approx(sparsity, abs=0.02)
    assert not (tiny.model.lm_head.weight == 0).any()  # the head stays dense by default
    assert ctx.records[0]["achieved"]["llm"]["sparsity"] == pytest.approx(sparsity, abs=0.02)
    assert "dense storage and compute unchanged" in ctx.notes[0]


@pytest.mark.parametrize("pattern,keep", [("2:4", 2), ("1:4", 1), ("4:8", 4)])
def test_nm_pattern_is_exact(tiny, pattern, keep):
    apply(tiny, {"kind": "prune", "method": pattern, "targets": ["projector", "llm"]})
    group = int(pattern.split(":")[1])
    pruned = [tiny.model.model.multi_modal_projector.linear_1, tiny.model.model.multi_modal_projector.linear_2]
    pruned += [linear(tiny, layer, name) for layer in range(2) for name in LLM_LINEARS]
    for module in pruned:
        groups = (module.weight != 0).reshape(module.weight.shape[0], -1, group).sum(-1)
        assert bool((groups == keep).all())


def test_wanda_uses_activations_and_magnitude_does_not():
    """Scaling input channels up by 64 and their weights down by 64 changes nothing the model computes:
    Wanda's mask must stay the same, magnitude's must drop exactly those (now small) weights."""
    import torch

    channels = torch.arange(0, 32, 4)

    def skewed():
        loaded = build_tiny()
        with torch.no_grad():  # powers of two: the rescaled model computes bit-identical activations
            loaded.model.model.language_model.layers[0].post_attention_layernorm.weight[channels] *= 64
            for name in ("gate_proj", "up_proj"):
                linear(loaded, 0, name).weight[:, channels] /= 64
        return loaded

    def mask(loaded, method):
        extra = {"calibration": CALIBRATION} if method == "wanda" else {}
        apply(loaded, {"kind": "prune", "method": method, "sparsity": 0.5, **extra})
        return linear(loaded, 0, "gate_proj").weight != 0

    plain_wanda, skewed_wanda = mask(build_tiny(), "wanda"), mask(skewed(), "wanda")
    plain_magnitude, skewed_magnitude = mask(build_tiny(), "magnitude"), mask(skewed(), "magnitude")
    assert torch.equal(plain_wanda, skewed_wanda)  # Wanda sees the function, not the parametrisation
    assert not skewed_magnitude[:, channels].any()  # magnitude throws away the high-activation inputs
    assert plain_wanda[:, channels].float().mean() > 0.3  # Wanda keeps many of them
    assert not torch.equal(skewed_magnitude, skewed_wanda)
    assert not torch.equal(plain_magnitude, plain_wanda)


def test_structured_prune_shrinks_parameters_and_file(tmp_path, images):
    base, _ = build_and_save(tmp_path / "base", [], loaded=build_gqa())
    steps = [{"kind": "structured-prune", "what": "heads", "amount": 0.5},
             {"kind": "structured-prune", "what": "mlp", "amount": 0.5},
             {"kind": "structured-prune", "what": "layers", "layers": [1]},
             {"kind": "structured-prune", "what": "vision-blocks", "blocks": ["2.1"]}]
    pruned, notes = build_and_save(tmp_path / "pruned", steps, loaded=build_gqa())
    assert params(pruned) < 0.9 * params(base)
    size = (tmp_path / "pruned" / "model.safetensors").stat().st_size
    assert size < 0.9 * (tmp_path / "base" / "model.safetensors").stat().st_size
    attn = pruned.model.model.language_model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (16, 32) and attn.k_proj.weight.shape == (8, 32)
    assert pruned.model.model.language_model.layers[0].mlp.up_proj.weight.shape == (32, 32)
    assert len(pruned.model.model.language_model.layers) == 2
    text = json.loads((tmp_path / "pruned" / "config.json").read_text())["text_config"]
    assert (text["num_attention_heads"], text["num_key_value_heads"], text["head_dim"]) == (2, 1, 8)
    assert (text["intermediate_size"], text["num_hidden_layers"], len(text["layer_types"])) == (32, 2, 2)
    assert any("parameters" in n and "->" in n for n in notes)
    out = pruned.generate(images["image"], images["question"], max_new_tokens=4, min_new_tokens=4)
    assert all(len(ids) == 4 for ids in out.token_ids)


def test_pruned_model_matches_transformers_generate_and_from_pretrained(tmp_path, images):
    """The KV cache and the config stay consistent after heads and layers go."""
    import torch
    from transformers import FastVlmForConditionalGeneration

    steps = [{"kind": "structured-prune", "what": "heads", "heads": [0]},
             {"kind": "structured-prune", "what": "layers", "layers": [0]}]
    loaded, _ = build_and_save(tmp_path, steps, loaded=build_gqa())
    questions = list(images["question"])
    ours = loaded.generate(images["image"], questions, max_new_tokens=5, min_new_tokens=5)
    inputs = loaded.prepare(images["image"], questions)
    reference = FastVlmForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
    assert params(loaded) == sum(p.numel() for p in reference.parameters())
    with torch.inference_mode():
        new = reference.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    new = new[:, inputs["input_ids"].shape[1]:].tolist()
    eos = loaded.model.generation_config.eos_token_id
    assert ours.token_ids == [row[: row.index(eos)] if eos in row else row for row in new]


def test_replay_round_trip_with_records(tmp_path, images):
    import torch

    steps = [{"kind": "structured-prune", "what": "heads", "amount": 0.5, "calibration": CALIBRATION},
             {"kind": "structured-prune", "what": "mlp", "amount": 0.25, "calibration": CALIBRATION},
             {"kind": "structured-prune", "what": "layers", "amount": 0.34, "calibration": CALIBRATION},
             {"kind": "structured-prune", "what": "vision-blocks", "amount": 0.25, "calibration": CALIBRATION},
             {"kind": "prune", "method": "2:4", "score": "wanda", "calibration": CALIBRATION}]
    loaded, _ = build_and_save(tmp_path, steps, loaded=build_gqa())
    manifest = json.loads((tmp_path / "harness_variant.json").read_text())
    records = manifest["step_records"]
    assert set(records[0]["removed"]) == {"0", "1", "2"} and all(len(v) == 1 for v in records[0]["removed"].values())
    assert all(len(v) == 16 for v in records[1]["removed"].values())
    assert len(records[2]["removed"]) == 1 and len(records[3]["removed"]) == 1
    reloaded = load_variant(tmp_path)
    assert reloaded.model.state_dict().keys() == loaded.model.state_dict().keys()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(reloaded.model.state_dict()[key], value), key
    first = loaded.generate(images["image"], images["question"], max_new_tokens=4)
    assert reloaded.generate(images["image"], images["question"], max_new_tokens=4).token_ids == first.token_ids


def test_importance_removes_the_weakest_units(tiny):
    import torch

    with torch.no_grad():  # make MLP channel 5 of layer 0 and decoder layer 1 obviously unimportant
        linear(tiny, 0, "down_proj").weight[:, 5] = 0
        tiny.model.model.language_model.layers[1].self_attn.o_proj.weight.mul_(1e-3)
        tiny.model.model.language_model.layers[1].mlp.down_proj.weight.mul_(1e-3)
    mlp = apply(tiny, {"kind": "structured-prune", "what": "mlp", "amount": 0.1})
    assert 5 in mlp.records[0]["removed"]["0"]
    layers = apply(tiny, {"kind": "structured-prune", "what": "layers", "amount": 0.5})
    assert layers.records[0]["removed"] == [1]


BAD = [
    ({"kind": "prune", "sparsity": 1.0}, "sparsity 1.0 is outside"),
    ({"kind": "prune", "sparsity": 0.0}, "sparsity 0.0 is outside"),
    ({"kind": "prune", "ignore": ["nothing.*"]}, "ignore pattern 'nothing.*' matches no module"),
    ({"kind": "prune", "method": "2:3", "targets": ["projector"], "ignore": []}, "not a multiple of 3"),
    ({"kind": "prune", "method": "4:4"}, "needs 0 < N < M"),
    ({"kind": "prune", "method": "2:4", "sparsity": 0.5}, "remove the sparsity field"),
    ({"kind": "prune", "targets": ["projector"], "ignore": ["model.multi_modal_projector.*"]}, "no prunable layer"),
    ({"kind": "structured-prune", "what": "layers", "amount": 1.0}, "outside"),
    ({"kind": "structured-prune", "what": "layers", "amount": 0.9}, "would remove all 2"),
    ({"kind": "structured-prune", "what": "layers", "layers": [0, 1]}, "would remove all 2"),
    ({"kind": "structured-prune", "what": "layers", "layers": [2]}, "index 2 is out of range"),
    ({"kind": "structured-prune", "what": "mlp", "amount": 0.001}, "removes nothing"),
    ({"kind": "structured-prune", "what": "heads", "amount": 0.5}, "use head_unit: query"),
    ({"kind": "structured-prune", "what": "heads", "heads": [0], "targets": ["vision"]},
     "applies to the llm component only"),
    ({"kind": "structured-prune", "what": "vision-blocks", "blocks": ["3.0"]}, "out of range"),
    ({"kind": "structured-prune", "what": "vision-blocks", "blocks": ["0.0", "1.0", "2.0"]}, "keep at least one"),
    ({"kind": "structured-prune", "what": "vision-blocks", "layers": [0]}, "belongs to what: layers"),
    ({"kind": "structured-prune", "what": "mlp"}, "exactly one of amount"),
]


@pytest.mark.parametrize("raw,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_step_error(tiny, raw, message):
    with pytest.raises(StepError, match=message.replace("(", r"\(").replace("*", r"\*")) as err:
        apply(tiny, raw)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"step '{raw['kind']}'")


def test_recipe_rejects_unknown_method_at_parse_time():
    from harness.errors import ConfigError
    from harness.spec.recipe import parse_recipe

    data = {"name": "x", "base": "nano", "variants": [{"name": "a", "steps": [{"kind": "prune", "method": "l1"}]}]}
    with pytest.raises(ConfigError, match="method"):
        parse_recipe(data)
