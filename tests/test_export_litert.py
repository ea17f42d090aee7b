"""LiteRT (TFLite) export through litert-torch, the LiteRT runtime, litert-quant modes and the
bad inputs of the LiteRT export."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.errors import MissingExtraError, RuntimeBackendError, StepError

from . import exports
from .conftest import build_tiny

EXPORT = {"kind": "export-tflite", "prefill_length": 8, "cache_length": 64}


def build_artifact(path: Path, steps: list[dict], loaded=None, staging_from: Path | None = None):
    return exports.build_artifact(path, steps, EXPORT, loaded, staging_from)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("tflite") / "variant"
    loaded, ctx = build_artifact(path, [EXPORT])
    return path, loaded, ctx


@pytest.fixture(scope="module")
def items():
    from harness.data.nano_vqa import load_nano_vqa

    return load_nano_vqa("test").select(range(6))


def manifest_of(path: Path) -> dict:
    return exports.export_manifest(path, "tflite")


# --- export and runtime ----------------------------------------------------------------------
def test_export_writes_three_graphs_with_roles(exported):
    path, loaded, ctx = exported
    manifest = manifest_of(path)
    assert manifest["graphs"] == {"vision": "vision.tflite", "embed": "embed.tflite", "decoder": "decoder.tflite"}
    roles = {f["file"]: f["role"] for f in manifest["files"]}
    assert roles["decoder.tflite"] == "graph" and roles["tokenizer.json"] == "tokenizer"
    settings = manifest["settings"]
    assert settings["prefill_length"] == 8 and settings["cache_length"] == 64
    assert set(settings["convert_seconds"]) == {"vision", "embed", "decoder"}
    assert manifest["model"]["signatures"]["prefill"] == "prefill_8"
    assert (path / "model.safetensors").is_file()
    assert loaded.model.config.text_config._attn_implementation != "lrt_transposed_attention"  # variant untouched
    assert any("tflite: converted vision, embed, decoder" in n for n in ctx.notes)


def test_litert_generation_equals_torch_greedy(exported, items):
    """Batched, left-padded prompts of ~20 tokens go through 3 prefill chunks of 8 and the KV
    cache; answers equal torch's greedy tokens."""
    from harness.runtimes.litert import LiteRT

    path, loaded, _ = exported
    session = LiteRT().load(path)
    want = loaded.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    got = session.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    assert got.token_ids == want.token_ids and got.texts == want.texts
    assert abs(got.first_logits - want.first_logits.numpy()).max() < 1e-4
    times = got.times
    assert times.vision_ms > 0 and times.prefill_ms > 0 and len(times.decode_ms) == 5
    assert times.kv_cache_bytes == len(items) * 2 * 2 * 64 * 16 * 4  # rows x layers x (k, v) x slots x head_dim
    info = LiteRT().info()
    assert info["num_threads"] >= 1 and "XNNPACK" in info["delegate"]
    features = session.encode_images(items["image"][:2])
    assert features.shape == (2, loaded.visual_tokens, 32)


def test_parity_and_size_on_litert(exported, tmp_path):
    from harness.registries import RUNTIMES
    from harness.suites._context import SuiteContext
    from harness.suites.parity import Parity, ParityConfig
    from harness.suites.size import Size, SizeConfig

    path, _, _ = exported
    ctx = SuiteContext(runtime_name="litert", runtime=RUNTIMES.get("litert")(), artifact=path, work_dir=tmp_path)
    result = Parity().run(ParityConfig(name="parity", limit=8, numeric_items=4, batch_size=8, max_new_tokens=4), ctx)
    assert result["agreement"] == 1.0 and result["encoder"]["cosine_min"] > 0.9999
    assert result["logits"]["cosine_min"] > 0.9999 and result["logits"]["top1_agreement"] == 1.0
    size = Size().run(SizeConfig(name="size"), ctx)
    on_disk = sum(p.stat().st_size for p in (path / "exports" / "tflite").rglob("*") if p.is_file())
    assert size["format"] == "tflite" and size["total_bytes"] == on_disk
    assert size["by_format"]["tflite"]["by_role_bytes"]["graph"] > 0


@pytest.mark.parametrize("mode", ["dynamic-int8", "weight-only-int8", "weight-only-int4", "full-int8"])
def test_litert_quant_modes_build_run_and_report(exported, items, tmp_path, mode):
    from harness.runtimes.litert import LiteRT

    source, loaded, _ = exported
    step = {"kind": "litert-quant", "mode": mode, "calibration": {"items": 4, "batch_size": 4},
            "calibration_tokens": 2}
    path = tmp_path / "variant"
    _, ctx = build_artifact(path, [step], loaded=loaded, staging_from=source)
    manifest = manifest_of(path)
    assert manifest["steps"][-1]["mode"] == mode
    report = ctx.records[-1]["integer_report"]
    assert set(report) == {"vision", "embed", "decoder"}
    for name in ("vision", "decoder"):  # graphs with weights above the quantizer's size floor shrink
        assert report[name]["bytes_after"] < report[name]["bytes_before"]
    got = LiteRT().load(path).generate(items["image"], items["question"], max_new_tokens=4)
    assert len(got.token_ids) == len(items) and got.times.prefill_ms > 0
    if mode == "full-int8":
        vision, decoder = report["vision"], report["decoder"]
        assert vision["non_integer_ops"] == {} and vision["io_dtypes"]["encode"]["inputs"] == ["int8"]
        assert {"COS", "SIN"} <= set(decoder["non_integer_ops"])  # RoPE stays float: reported, not hidden
        assert manifest["steps"][-1]["integer_report"]["decoder"]["non_integer_ops"] == decoder["non_integer_ops"]
        assert manifest["model"]["mask_value"] == -30.0  # an int8-friendly mask (see litert_quant's doc)
        assert any("tflite decoder: full-int8" in n and "ops not integer" in n for n in ctx.notes)
        assert any("tflite vision: full-int8" in n and "all" in n and "ops integer, I/O int8" in n for n in ctx.notes)
        from harness.exporting.edgetpu import NOT_INSTALLED, installed

        if not installed():  # the compiler is not on these machines: the step says so, and why
            assert manifest["steps"][-1]["edgetpu"] == ctx.records[-1]["edgetpu"] == {"not_run": NOT_INSTALLED}
            assert f"Edge TPU: {NOT_INSTALLED}" in ctx.notes
    else:
        want = loaded.generate(items["image"], items["question"], max_new_tokens=4)
        assert sum(a == b for a, b in zip(got.token_ids, want.token_ids)) >= len(items) // 2


# --- bad inputs ------------------------------------------------------------------------------
def test_corrupt_tflite_is_one_line_and_recorded_by_the_worker(exported, tmp_path):
    from harness.runtimes.litert import LiteRT

    exports.check_corrupt_graph_is_recorded(
        exported[0], tmp_path, EXPORT, "tflite", "decoder.tflite", LiteRT(), "litert", b"\x00not a flatbuffer")


def test_missing_litert_extras(exported, monkeypatch):
    from harness.runtimes.litert import LiteRT
    from harness.steps._base import StepContext
    from harness.steps.export_tflite import ExportTflite, ExportTfliteConfig
    from harness.steps.litert_quant import LitertQuant, LitertQuantConfig

    for module in ("ai_edge_litert", "litert_torch", "ai_edge_quantizer"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"runtime litert.*fastvlm-harness\[tflite\]"):
        LiteRT().load(exported[0])
    with pytest.raises(MissingExtraError, match="export-tflite"):
        ExportTflite().apply(ExportTfliteConfig(), exported[1], StepContext())
    with pytest.raises(MissingExtraError, match="litert-quant"):
        LitertQuant().apply(LitertQuantConfig(), exported[1], StepContext())
    assert "error" in LiteRT().info()  # info never breaks a run


def test_unexpressible_requests_are_clear(exported, items, tmp_path):
    from pydantic import ValidationError

    from harness.runtimes.litert import LiteRT
    from harness.steps._base import StepContext, apply_step
    from harness.steps.export_tflite import ExportTfliteConfig

    loaded = build_tiny()
    apply_step({"kind": "quantize", "method": "dynamic-int8", "targets": ["llm"]}, loaded, StepContext())
    with pytest.raises(StepError, match="cannot express torch-quantized tensors.*litert-quant"):
        apply_step(EXPORT, loaded, StepContext(staging=tmp_path))
    with pytest.raises(ValidationError, match="must be smaller than cache_length"):
        ExportTfliteConfig(prefill_length=64, cache_length=64)
    session = LiteRT().load(exported[0])
    session.backend.slots = 16  # as if exported with a 16-slot cache: ~20-token prompts cannot fit
    with pytest.raises(RuntimeBackendError, match="does not fit the LiteRT export"):
        session.generate(items["image"][:1], items["question"][:1], max_new_tokens=2)
    again = tmp_path / "twice"
    build_artifact(again, [{"kind": "litert-quant", "mode": "weight-only-int8", "graphs": ["embed"]}],
                   loaded=exported[1], staging_from=exported[0])
    with pytest.raises(StepError, match="already quantized"):
        build_artifact(tmp_path / "thrice", [{"kind": "litert-quant", "graphs": ["embed"]}],
                       loaded=exported[1], staging_from=again)
    with pytest.raises(StepError, match="has no decoder graph"):
        only_embed = tmp_path / "embed-only"
        build_artifact(only_embed, [{"kind": "export-tflite", "components": ["embed"]},
                                    {"kind": "litert-quant", "graphs": ["decoder"]}])


def test_export_recipe_has_litert_and_coreml_variants():
    from harness.spec.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "export.yaml")
    formats = {v.name: v.formats for v in recipe.variants}
    for name in ("tflite-fp32", "litert-dynamic-int8", "litert-int4", "litert-full-int8"):
        assert formats[name] == ["torch", "tflite"]
    for name in ("coreml-fp16", "coreml-int8", "coreml-palettized-4bit"):
        assert formats[name] == ["torch", "coreml"]
    assert {"litert", "coreml"} <= set(recipe.spec.runtimes)


# --- the nano reference ------------------------------------------------------------------------
@pytest.mark.slow
def test_nano_litert_answers_agree_with_torch(nano_dir, tmp_path):
    from harness.data.nano_vqa import load_nano_vqa
    from harness.models.loading import load_model
    from harness.runtimes.litert import LiteRT

    loaded = load_model("nano")
    items = load_nano_vqa("test").select(range(32))
    build_artifact(tmp_path / "nano", [{"kind": "export-tflite"}], loaded=loaded)
    session = LiteRT().load(tmp_path / "nano")
    want = loaded.generate(items["image"], items["question"], max_new_tokens=6)
    got = session.generate(items["image"], items["question"], max_new_tokens=6)
    assert got.texts == want.texts
