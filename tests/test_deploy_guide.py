"""`harness deploy-guide`: the facts of a LiteRT and a Core ML export against their manifests and
graph files, an app loop written only from the Android guide's facts that reproduces torch's greedy
answer, the CLI, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from . import exports

TFLITE = {"kind": "export-tflite", "prefill_length": 8, "cache_length": 64}
COREML = {"kind": "export-coreml", "sequence_length": 64}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("deploy")
    out: dict[str, Any] = {}
    for name, step in (("tflite", TFLITE), ("coreml", COREML)):
        loaded, _ = exports.build_artifact(root / name, [step], step)
        out[name] = root / name
        out["loaded"] = loaded
    return out


def _image() -> Any:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)  # not square: resize + crop
    return Image.fromarray(pixels)


def test_android_facts_match_the_manifest_and_the_processor(built):
    from transformers import AutoProcessor

    from harness.deploy.facts import collect

    facts = collect(built["tflite"], "tflite")
    manifest = exports.export_manifest(built["tflite"], "tflite")
    assert {g: v["file"] for g, v in facts["graphs"].items()} == manifest["graphs"]
    assert facts["total_bytes"] == sum(f["bytes"] for f in manifest["files"])
    signatures = manifest["model"]["signatures"]
    assert set(facts["graphs"]["decoder"]["signatures"]) == {signatures["prefill"], signatures["decode"]}
    assert set(facts["graphs"]["embed"]["signatures"]) == {signatures["embed_prefill"], signatures["embed_decode"]}
    layers = manifest["model"]["num_layers"]
    assert sorted(t["name"] for t in facts["cache_inputs"]) == sorted(
        f"kv_cache_{kv}_{i}" for kv in "kv" for i in range(layers))
    prompt = facts["prompt"]
    assert [t["id"] for t in prompt["stop_tokens"]] == manifest["model"]["eos_token_ids"]
    processor = AutoProcessor.from_pretrained(facts["folder"])
    real = processor(images=[_image()], text=[prompt["text"]], return_tensors="np")
    ids = real["input_ids"][0].tolist()  # the processor's own expansion of the image token
    assert len(ids) == prompt["expanded_length"] and ids.count(prompt["image_token_id"]) == prompt["visual_tokens"]
    assert list(real["pixel_values"].shape) == facts["vision_input"]["shape"]


def _pixels(facts: dict[str, Any], image: Any) -> np.ndarray:
    """The preprocessing as the guide words it, with PIL and numpy only."""
    from PIL import Image

    p = facts["preprocess"]
    image = image.convert("RGB") if p["convert_rgb"] else image
    scale = p["resize"] / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[p["resample"]])
    height, width = p["center_crop"]
    left, top = (image.width - width) // 2, (image.height - height) // 2
    array = np.asarray(image.crop((left, top, left + width, top + height)), np.float32) * p["rescale"]
    array = (array - np.array(p["mean"], np.float32)) / np.array(p["std"], np.float32)
    return array.transpose(2, 0, 1)[None]


def _mask(positions: Any, slots: int, value: float) -> np.ndarray:
    mask = np.full((1, 1, len(positions), slots), value, np.float32)
    for row, pos in enumerate(positions):
        mask[0, 0, row, :pos + 1] = 0.0
    return mask


def _follow_android_guide(facts: dict[str, Any], image: Any, new_tokens: int) -> list[int]:
    """An app's loop written from the guide's facts alone: names, signatures, shapes, mask, stop tokens."""
    from ai_edge_litert.interpreter import Interpreter

    folder, s, m = Path(facts["folder"]), facts["model"]["signatures"], facts["model"]
    run = {g: Interpreter(model_path=str(folder / v["file"])) for g, v in facts["graphs"].items()}
    chunk, slots, value = m["prefill_length"], m["cache_length"], m["mask_value"]
    features = run["vision"].get_signature_runner(s["vision"])(pixel_values=_pixels(facts, image))["features"][0]
    prompt = facts["prompt"]
    ids = [t for i in prompt["ids"] for t in ([i] * prompt["visual_tokens"] if i == prompt["image_token_id"] else [i])]
    one = run["embed"].get_signature_runner(s["embed_decode"])
    rows = np.concatenate([one(token_ids=np.array([[i]], np.int32))["embeddings"][0] for i in ids])
    rows[np.array(ids) == prompt["image_token_id"]] = features
    cache = {t["name"]: np.zeros(t["shape"], np.float32) for t in facts["cache_inputs"]}
    prefill = run["decoder"].get_signature_runner(s["prefill"])
    for start in range(0, len(ids) - 1, chunk):
        piece = rows[start:min(start + chunk, len(ids) - 1)]
        padded = np.zeros((1, chunk, rows.shape[1]), np.float32)
        padded[0, :len(piece)] = piece
        positions = np.arange(start, start + chunk, dtype=np.int32)
        out = prefill(embeddings=padded, input_pos=positions, mask=_mask(np.minimum(positions, len(ids) - 2),
                                                                          slots, value), **cache)
        cache = {k: out[k] for k in cache}
    decode, answer = run["decoder"].get_signature_runner(s["decode"]), []
    stops = {t["id"] for t in prompt["stop_tokens"]}
    row, pos = rows[-1], len(ids) - 1
    while len(answer) < new_tokens:
        out = decode(embeddings=row[None, None], input_pos=np.array([pos], np.int32), mask=_mask([pos], slots, value),
                     **cache)
        cache, token = {k: out[k] for k in cache}, int(out["logits"][0, -1].argmax())
        if token in stops:
            break
        answer.append(token)
        row, pos = one(token_ids=np.array([[token]], np.int32))["embeddings"][0, 0], pos + 1
    return answer


def test_an_app_loop_written_from_the_android_guide_gives_torchs_answer(built):
    from harness.deploy.facts import EXAMPLE_QUESTION, collect

    facts = collect(built["tflite"], "tflite")
    want = built["loaded"].generate([_image()], [EXAMPLE_QUESTION], max_new_tokens=6)
    assert _follow_android_guide(facts, _image(), 6) == want.token_ids[0]


def test_guides_name_every_input_and_output_and_the_cli_writes_them(built, tmp_path):
    from harness.cli import app

    for platform, fmt in (("android", "tflite"), ("ios", "coreml")):
        result = CliRunner().invoke(app, ["deploy-guide", str(built[fmt]), "--platform", platform,
                                          "-o", str(tmp_path / f"{platform}.md")])
        assert result.exit_code == 0, result.output
        text = (tmp_path / f"{platform}.md").read_text()
        manifest = exports.export_manifest(built[fmt], fmt)
        for graph in manifest["graphs"].values():
            assert f"`{graph}`" in text
        from harness.deploy.facts import collect

        for g in collect(built[fmt], fmt)["graphs"].values():
            for io in g["signatures"].values():
                for t in io["inputs"] + io["outputs"]:
                    assert f"| `{t['name']}` | [{', '.join(map(str, t['shape']))}] | {t['dtype']}" in text
    android, ios = (tmp_path / "android.md").read_text(), (tmp_path / "ios.md").read_text()
    assert 'runSignature(inputs, next + ("logits" to logits), "decode")' in android
    assert '"position_ids": positionIds' in ios and "MLMultiArray(shape: [1, 3, 64, 64], dataType: .float32)" in ios
    assert "repeat it\n16 times" in android  # the tiny model's 64 px / 16 px patches


def test_bad_targets_are_one_line(built, tmp_path):
    from harness.cli import app
    from harness.results import rundir

    cases = [([str(built["coreml"]), "--platform", "android"], "has no tflite export"),
             ([str(built["tflite"]), "--platform", "watch"], "--platform 'watch': use one of android, ios"),
             ([str(tmp_path), "--platform", "ios"], "neither a built variant")]
    run = rundir.create(tmp_path / "reports", "deploy")
    run.write_plan({"variants": ["a", "b"], "baseline": "a", "suites": []})
    for name in ("a", "b"):
        run.variant_dir(name).mkdir(parents=True)
        run.write_variant_result(name, {"artifact": str(built["tflite"]), "measurements": {}})
    cases += [([str(run.path)], "2 variants with a tflite export (a, b); name one with --variant"),
              ([str(run.path), "--variant", "c"], "has no built variant 'c'")]
    for args, message in cases:
        result = CliRunner().invoke(app, ["deploy-guide", *args, "-o", str(tmp_path / "x.md")])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    result = CliRunner().invoke(app, ["deploy-guide", str(run.path), "--variant", "b", "-o", str(tmp_path / "b.md")])
    assert result.exit_code == 0 and "`b` on LiteRT" in (tmp_path / "b.md").read_text()
    assert json.loads((built["tflite"] / "exports" / "tflite" / "export.json").read_text())  # untouched


def test_the_ios_guide_names_the_mlx_llm_when_the_variant_has_one(tmp_path):
    """Apple's split — vision in Core ML, the LLM in MLX — in one guide, with the MLX folder's facts."""
    pytest.importorskip("mlx_lm")
    from harness.deploy.facts import collect
    from harness.deploy.guide import render

    mlx = {"kind": "export-mlx", "bits": 4, "group_size": 32, "dtype": "float32"}
    exports.build_artifact(tmp_path / "split", [COREML, mlx], COREML)
    facts = collect(tmp_path / "split", "coreml")
    assert facts["mlx"]["quantization"]["bits"] == 4 and facts["mlx"]["quantization"]["group_size"] == 32
    assert facts["mlx"]["bytes"] == sum(f["bytes"] for f in facts["mlx"]["files"]) > 0
    text = render(facts, "ios")
    assert "## The LLM in MLX" in text and "4-bit, group size 32" in text and "`llm/model.safetensors`" in text
