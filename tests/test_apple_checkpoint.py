"""Apple's own `llava_qwen2` FastVLM checkpoints load directly (harness/models/apple.py).

Checkpoints are written in Apple's layout by tests/apple_layout.py from a config-built tiny
`fast_vlm` (FastViTHD's module structure at tiny widths); converting them back must give the
original model: the same tensors bit for bit (the image token's embedding row aside), the same
logits, the same tokenizer ids and Apple's prompt. No real Apple weights exist offline: the
real layout is checked on the meta device (every name of a full-size FastVLM maps back, the
structure read from it is timm's fastvit_mci3).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.apple_layout import IMAGE_SIZE, apple_state_dict, source_model, to_apple_key, write_apple_checkpoint

QUESTION = "what colour is the shape ?"
APPLE_PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
                f"{QUESTION}<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTVLM_HARNESS_CACHE", str(tmp_path / "cache"))


def picture(seed: int):
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def logits(model, processor, seed: int = 0):
    import torch

    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                        {"type": "text", "text": QUESTION}]}],
                                           add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[picture(seed)], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def load_dir(path: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype="float32").eval()
    return model, AutoProcessor.from_pretrained(str(path))


def test_full_size_fastvithd_names_map_back_and_give_mci3():
    """Every weight name of a full-size FastVLM (FastViTHD inference-mode tower, as released), in
    Apple's layout, maps back to itself; the structure read from the names and shapes is timm's
    fastvit_mci3 (FastViTHD) and the tokens are 64 px apart."""
    import torch
    from transformers import FastVlmConfig, FastVlmForConditionalGeneration, Qwen2Config

    from harness.models._apple_mapping import map_keys, reduction, vision_structure
    from harness.models.shapes import QWEN2_SHAPES

    config = FastVlmConfig(text_config=Qwen2Config(**QWEN2_SHAPES["fastvlm-0.5b"]))
    with torch.device("meta"):
        model = FastVlmForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    args = config.vision_config.model_args or {}
    apple = {to_apple_key(k, {"layers": [2, 12, 24, 4, 2], "embed_dims": [96, 192, 384, 768, 1536],
                                 "downsamples": [False, True, True, True, True], **args}): k for k in shapes}
    assert len(apple) == len(shapes)
    mapped = map_keys(apple)
    assert mapped == apple
    structure = vision_structure(shapes)
    assert structure["model_args"] == {
        "layers": [2, 12, 24, 4, 2], "embed_dims": [96, 192, 384, 768, 1536], "mlp_ratios": [4] * 5,
        "token_mixers": ["repmixer"] * 3 + ["attention"] * 2, "downsamples": [False, True, True, True, True],
        "se_downsamples": [False] * 5, "cls_ratio": 2.0, "inference_mode": True}
    assert structure["pos_emb_stages"] == [3, 4] and structure["num_features"] == 3072
    assert reduction(structure["model_args"]) == 64


@pytest.mark.parametrize(("apple_key", "expected"), [
    # transformers' convert_fastvlm_weights_to_hf.py: network 0 | 1 2 | 3 4 | 5 6 7 | 8 9 10 → stages 0..4
    ("network.0.1.token_mixer.reparam_conv.weight", "stages.0.blocks.1.token_mixer.reparam_conv.weight"),
    ("network.1.proj.0.lkb_reparam.weight", "stages.1.downsample.proj.0.reparam_conv.weight"),
    ("network.4.23.convffn.conv.bn.running_var", "stages.2.blocks.23.mlp.conv.bn.running_var"),
    ("network.6.reparam_conv.bias", "stages.3.pos_emb.reparam_conv.bias"),
    ("network.7.3.token_mixer.proj.weight", "stages.3.blocks.3.token_mixer.proj.weight"),
    ("network.8.proj.1.reparam_conv.weight", "stages.4.downsample.proj.1.reparam_conv.weight"),
    ("network.10.1.layer_scale_2", "stages.4.blocks.1.layer_scale_2.gamma"),
    ("network.2.0.layer_scale", "stages.1.blocks.0.layer_scale.gamma"),
    ("patch_embed.0.reparam_conv.weight", "stem.0.reparam_conv.weight"),
    ("conv_exp.se.reduce.weight", "final_conv.se.fc1.weight"),
    ("conv_exp.se.expand.bias", "final_conv.se.fc2.bias"),
])
def test_fastvithd_keys_follow_the_conversion_script(apple_key, expected):
    from harness.models._apple_mapping import map_key

    ends = [1, 3, 5, 8]  # FastViTHD's patch embeddings
    assert map_key("model.vision_tower.vision_tower.model." + apple_key, ends) == \
        "model.vision_tower.timm_model." + expected
    assert map_key("model.vision_tower.vision_tower.model.head.proj", ends) is None
    assert map_key("model.mm_projector.2.bias", ends) == "model.multi_modal_projector.linear_2.bias"
    assert map_key("model.layers.3.self_attn.q_proj.weight", ends) == \
        "model.language_model.layers.3.self_attn.q_proj.weight"


@pytest.mark.parametrize(("layout", "shards", "inference_mode"), [
    ("hub", 1, True), ("stage3", 3, True), ("stage3", 2, False)])
def test_conversion_gives_the_original_model(tmp_path, layout, shards, inference_mode, capsys):
    import torch

    from harness.models.apple import convert

    original, tok = source_model(inference_mode=inference_mode)
    source = write_apple_checkpoint(original, tmp_path / "apple", layout=layout, shards=shards)
    model, processor = load_dir(convert(source, tmp_path / "fast_vlm"))
    image_id = tok.convert_tokens_to_ids("<image>")
    assert model.config.image_token_id == image_id
    before, after = original.state_dict(), model.state_dict()
    assert set(before) == set(after)
    embed = "model.language_model.embed_tokens.weight"
    differ = [k for k in before if not torch.equal(before[k], after[k])]
    assert differ == [embed]
    rows = before[embed].clone()
    rows[image_id] = before[embed][:image_id].mean(dim=0)  # the documented deterministic row
    assert torch.equal(after[embed], rows)
    ours, theirs = logits(model, processor), logits(original, processor)
    diff = (ours - theirs).abs().max().item()
    with capsys.disabled():
        print(f"\n[apple {layout} shards={shards} inference_mode={inference_mode}] max |logit diff| = {diff}")
    assert diff == 0.0
    other = logits(model, processor, seed=1)
    assert (other - ours).abs().max().item() > 1e-4  # the image matters: the vision mapping was exercised
    assert not (source / "EXECUTED").exists()


def test_tokenizer_processor_and_chat_template_round_trip(tmp_path):
    from transformers import AutoProcessor

    from harness.models.apple import convert
    from tests.apple_layout import tokenizer

    original, _ = source_model()
    target = convert(write_apple_checkpoint(original, tmp_path / "apple"), tmp_path / "fast_vlm")
    assert (target / "chat_template.jinja").exists()
    processor = AutoProcessor.from_pretrained(str(target))
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                        {"type": "text", "text": QUESTION}]}],
                                           add_generation_prompt=True, tokenize=False)
    assert prompt == APPLE_PROMPT  # ml-fastvlm's conv_qwen_2 with `<image>\n` before the question
    apple_tok = tokenizer(with_image=False)
    assert processor.tokenizer(QUESTION)["input_ids"] == apple_tok(QUESTION)["input_ids"]
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert image_id == len(apple_tok) and processor.tokenizer.eos_token == "<|im_end|>"
    inputs = processor(images=[picture(0)], text=[prompt], return_tensors="pt")
    assert (inputs["input_ids"] == image_id).sum().item() == (IMAGE_SIZE // 64) ** 2
    assert tuple(inputs["pixel_values"].shape) == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert inputs["pixel_values"].min().item() >= 0.0 and inputs["pixel_values"].max().item() <= 1.0
    assert processor.decode(apple_tok(QUESTION)["input_ids"]) == QUESTION


def test_qwen2_tokenizer_files_as_apple_ships_them(tmp_path):
    """vocab.json + merges.txt + added_tokens.json + a Qwen2Tokenizer config: `<image>` is
    appended after the added tokens, the prompt tokenizes and decodes back, and the model's
    logits are those of LLaVA's splicing of the same inputs."""
    import torch

    from harness.models.apple import convert
    from tests.apple_layout import spliced_logits

    original, _ = source_model(rows=384)
    source = write_apple_checkpoint(original, tmp_path / "apple", bpe=True)
    model, processor = load_dir(convert(source, tmp_path / "out"))
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert image_id == model.config.image_token_id == len(processor.tokenizer) - 1
    assert processor.tokenizer.convert_tokens_to_ids("<|im_end|>") == image_id - 1 == processor.tokenizer.eos_token_id
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                        {"type": "text", "text": QUESTION}]}],
                                           add_generation_prompt=True, tokenize=False)
    assert prompt == APPLE_PROMPT
    inputs = processor(images=[picture(0)], text=[prompt], return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(image_id) == (IMAGE_SIZE // 64) ** 2
    assert processor.tokenizer.decode(ids).replace("<image>" * 4, "<image>") == prompt
    with torch.no_grad():
        ours = model(**inputs).logits
    assert (ours - spliced_logits(original, inputs, image_id)).abs().max().item() == 0.0


def test_rows_are_added_when_the_image_token_has_none(tmp_path):
    """A vocabulary whose rows end at the last real token: `<image>` gets new rows (to a multiple
    of 64, the mean embedding and the mean lm_head row); the original vocabulary's logits are
    those of LLaVA's own splicing."""
    import torch

    from harness.models.apple import convert
    from tests.apple_layout import spliced_logits

    original, tok = source_model(padded_vocab=False)
    rows = original.config.text_config.vocab_size
    model, processor = load_dir(convert(write_apple_checkpoint(original, tmp_path / "apple"), tmp_path / "out"))
    image_id = model.config.image_token_id
    assert image_id == rows and model.config.text_config.vocab_size == 64
    before, after = original.state_dict(), model.state_dict()
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(after[name][:rows], before[name])
        assert torch.equal(after[name][rows:], before[name].mean(dim=0).expand(64 - rows, -1))
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                        {"type": "text", "text": QUESTION}]}],
                                           add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[picture(0)], text=[prompt], return_tensors="pt")
    with torch.no_grad():
        ours = model(**inputs).logits
    assert (ours[..., :rows] - spliced_logits(original, inputs, image_id)).abs().max().item() == 0.0


def test_load_model_converts_once_then_reuses_the_cache(tmp_path, capsys):
    from harness.models.loading import load_model
    from harness.run.preflight import check_base

    original, _ = source_model()
    source = write_apple_checkpoint(original, tmp_path / "apple", layout="stage3", shards=2)
    assert check_base(str(source)) == []
    started = time.perf_counter()
    first = load_model(str(source))
    cold = time.perf_counter() - started
    converted = Path(first.meta["converted"])
    assert converted.is_relative_to(tmp_path / "cache") and first.source == str(source.resolve())
    written = (converted / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    second = load_model(str(source))
    warm = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n[apple cache] first load {cold:.2f} s (converts), second {warm:.2f} s (cached copy)")
    assert second.meta["converted"] == str(converted)
    assert (converted / "model.safetensors").stat().st_mtime_ns == written
    answer = second.generate([picture(0)], [QUESTION], max_new_tokens=3)
    assert len(answer.token_ids[0]) == 3
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    assert load_model(str(source)).meta["converted"] != str(converted)  # a changed source → a new copy


def test_hub_id_from_the_offline_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from harness.models.loading import load_model
    from harness.run.preflight import check_base

    original, _ = source_model()
    repo = tmp_path / "hub" / "models--apple--FastVLM-tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    write_apple_checkpoint(original, repo / "snapshots" / commit, layout="hub")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert check_base("apple/FastVLM-tiny") == []
    loaded = load_model("apple/FastVLM-tiny")
    assert loaded.source == "apple/FastVLM-tiny" and loaded.meta["converted_from"] == "llava_qwen2"
    assert (logits(loaded.model, loaded.processor) - logits(original, loaded.processor)).abs().max().item() == 0.0


def test_cli_convert_round_trip(tmp_path):
    from harness.cli import app
    from harness.models.loading import load_model

    original, _ = source_model()
    source = write_apple_checkpoint(original, tmp_path / "apple", layout="stage3", shards=2)
    result = CliRunner().invoke(app, ["convert", str(source), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    loaded = load_model(str(tmp_path / "out"))
    assert loaded.model.config.model_type == "fast_vlm" and "converted" not in loaded.meta
    assert (logits(loaded.model, loaded.processor) - logits(original, loaded.processor)).abs().max().item() == 0.0
    again = CliRunner().invoke(app, ["convert", str(source), str(tmp_path / "out")])
    assert again.exit_code == 2 and "not an empty directory" in again.output
    assert len(again.output.strip().splitlines()) == 1


def _missing_shard(root: Path) -> None:
    (root / "model-00002-of-00002.safetensors").unlink()


def _garbage_header(root: Path) -> None:
    shard = root / "model-00001-of-00002.safetensors"
    shard.write_bytes(b"\xff" * 8 + shard.read_bytes()[8:])


def _truncated(root: Path) -> None:
    shard = root / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])


def _config(**fields):
    def edit(root: Path) -> None:
        config = json.loads((root / "config.json").read_text())
        (root / "config.json").write_text(json.dumps({**config, **fields}))
    return edit


def _wide_projector(root: Path) -> None:
    """A projector whose input is wider than the tower's output (config agreeing with the projector)."""
    import torch
    from safetensors.torch import load_file, save_file

    for shard in root.glob("*.safetensors"):
        state = load_file(str(shard))
        if "model.mm_projector.0.weight" in state:
            out, width = state["model.mm_projector.0.weight"].shape
            state["model.mm_projector.0.weight"] = torch.zeros(out, width + 8)
            save_file(state, str(shard))
            _config(mm_hidden_size=width + 8)(root)


@pytest.mark.parametrize(("damage", "message"), [
    (_missing_shard, "names 1 shard(s) that are not in"),
    (_config(mm_hidden_size=100), "mismatched projector width"),
    (_wide_projector, "mismatched projector width"),
    (_config(mm_projector_type="mlp3x_gelu"), "mm_projector_type 'mlp3x_gelu' cannot be converted"),
    (_config(mm_projector_type="qformer"), "it is not a LLaVA projector type"),
    (_config(mm_vision_tower="clip_vit_large_336"), "is not a vision tower the harness can map"),
    (_garbage_header, "is not a readable safetensors file"),
    (_truncated, "is truncated"),
])
def test_bad_apple_checkpoint_is_one_line(tmp_path, damage, message):
    from harness.cli import app
    from harness.errors import ModelLoadError
    from harness.models.loading import load_model
    from harness.run.preflight import check_base

    original, _ = source_model()
    source = write_apple_checkpoint(original, tmp_path / "apple", layout="stage3", shards=2)
    damage(source)
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_model(str(source))
    assert "\n" not in str(caught.value)
    result = CliRunner().invoke(app, ["convert", str(source), str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    problems = check_base(str(source))  # preflight (headers only, no tensor read) finds it too
    assert len(problems) == 1 and message in problems[0]


def test_apple_state_dict_is_the_apple_layout():
    """The helper writes Apple's names (a check of the test helper itself)."""
    original, _ = source_model()
    keys = set(apple_state_dict(original))
    assert "model.vision_tower.vision_tower.model.network.6.reparam_conv.weight" in keys  # stage 3's RepCPE
    assert "model.vision_tower.vision_tower.model.network.8.proj.0.lkb_reparam.weight" in keys
    assert "model.vision_tower.vision_tower.model.network.10.0.layer_scale_1" in keys
    assert "model.mm_projector.0.weight" in keys and "model.embed_tokens.weight" in keys
    assert not any("timm_model" in k or "language_model" in k for k in keys)


def test_cli_convert_refuses_what_is_not_an_apple_checkpoint(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from harness.cli import app

    original, tok = source_model()
    original.save_pretrained(tmp_path / "fast_vlm")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    for source, message in ((tmp_path / "fast_vlm", "is already a 'fast_vlm' checkpoint"),
                            ("apple/FastVLM-0.5B", "is not in the local hub cache")):
        result = CliRunner().invoke(app, ["convert", str(source), str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_a_recipe_runs_on_an_apple_base(tmp_path):
    """`base:` an Apple directory: preflight, the variant workers (load through the converted copy,
    a quantize step) and the size suite run as on any base."""
    from harness.run.runner import run

    original, _ = source_model()
    write_apple_checkpoint(original, tmp_path / "apple", layout="stage3", shards=2)
    (tmp_path / "r.yaml").write_text(
        f"name: apple-base\nbase: {tmp_path / 'apple'}\nvariants:\n  - {{name: base, steps: []}}\n"
        "  - {name: int8, steps: [{kind: quantize, method: dynamic-int8, targets: [llm]}]}\n"
        "runtimes: [torch-eager]\nsuites: [size]\n")
    folder = run(tmp_path / "r.yaml", output=tmp_path / "reports", progress=False)
    variants = {v["name"]: v for v in json.loads((folder / "results.json").read_text())["variants"]}
    assert {name: v["status"] for name, v in variants.items()} == {"base": "ok", "int8": "ok"}
    size = {name: v["runtimes"]["torch-eager"]["size"]["weights_mb"] for name, v in variants.items()}
    assert 0 < size["int8"] < size["base"]


def test_reparameterize_on_a_converted_apple_checkpoint_keeps_the_logits(tmp_path, capsys):
    """Released weights are in inference form: `reparameterize` has no branches to fuse there, but
    still folds every ConvFFN BatchNorm — and the converted model's logits stay the same."""
    import torch
    from timm.models.fastvit import ConvMlp

    from harness.models.apple import convert
    from harness.models.fastvlm import LoadedModel
    from harness.steps._base import StepContext, apply_step

    original, _ = source_model(inference_mode=True)
    model, processor = load_dir(convert(write_apple_checkpoint(original, tmp_path / "apple"), tmp_path / "fast_vlm"))
    before = logits(model, processor)
    ctx = StepContext()
    apply_step({"kind": "reparameterize"}, LoadedModel(model=model, processor=processor, source="apple"), ctx)
    after = logits(model, processor)
    tower = model.model.vision_tower.timm_model
    folded = [m for m in tower.modules() if isinstance(m, ConvMlp)]
    assert folded and all(isinstance(m.conv.bn, torch.nn.Identity) for m in folded)
    assert any(f"{len(folded)} ConvFFN BatchNorms folded" in note for note in ctx.notes), ctx.notes
    diff = (after - before).abs().max().item()
    with capsys.disabled():
        print(f"\n[apple + reparameterize] {len(folded)} ConvFFN BatchNorms folded, max |logit diff| = {diff:.3g}")
    assert diff < 1e-4 * before.abs().max().item()
