"""ExecuTorch export (XNNPACK; fp32 and torchao 8da4w), the `executorch` runtime over the shared
generation loop, and the bad inputs of the ExecuTorch export."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.errors import MissingExtraError, RuntimeBackendError, StepError

from . import exports
from .conftest import build_tiny

pytest.importorskip("executorch.runtime", reason="the executorch extra is not installed")

EXPORT = {"kind": "export-executorch", "prefill_length": 8, "cache_length": 64}
QUANT = {**EXPORT, "quantize": "8da4w"}


def build_artifact(path: Path, steps: list[dict], loaded=None):
    return exports.build_artifact(path, steps, steps[-1] if steps else EXPORT, loaded)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("pte") / "variant"
    loaded, ctx = build_artifact(path, [EXPORT])
    return path, loaded, ctx


@pytest.fixture(scope="module")
def items():
    from harness.data.nano_vqa import load_nano_vqa

    return load_nano_vqa("test").select(range(6))


def manifest_of(path: Path) -> dict:
    return exports.export_manifest(path, "pte")


def parity_and_size(path: Path, work: Path) -> tuple[dict, dict]:
    from harness.registries import RUNTIMES
    from harness.suites._context import SuiteContext
    from harness.suites.parity import Parity, ParityConfig
    from harness.suites.size import Size, SizeConfig

    ctx = SuiteContext(runtime_name="executorch", runtime=RUNTIMES.get("executorch")(), artifact=path, work_dir=work)
    parity = Parity().run(ParityConfig(name="parity", limit=8, numeric_items=4, batch_size=8, max_new_tokens=4), ctx)
    return parity, Size().run(SizeConfig(name="size"), ctx)


# --- export and runtime ----------------------------------------------------------------------
def test_export_writes_three_programs_with_roles(exported):
    path, loaded, ctx = exported
    manifest = manifest_of(path)
    assert manifest["format"] == "pte"
    assert manifest["graphs"] == {"vision": "vision.pte", "embed": "embed.pte", "decoder": "decoder.pte"}
    roles = {f["file"]: f["role"] for f in manifest["files"]}
    assert roles["decoder.pte"] == "graph" and roles["tokenizer.json"] == "tokenizer"
    settings = manifest["settings"]
    assert settings["quantize"] == "none" and settings["cache_length"] == 64 and settings["prefill_length"] == 8
    assert set(settings["convert_seconds"]) == {"vision", "embed", "decoder"}
    for name in ("vision", "decoder"):  # XNNPACK takes most of the compute graphs; the counts are recorded
        share = settings["delegation"][name]
        assert share["delegated_subgraphs"] >= 1 and share["delegated_nodes"] > share["non_delegated_nodes"]
    facts = manifest["model"]
    assert facts["signatures"]["decode"] == "decode" and facts["cache_length"] == 64 and facts["num_layers"] == 2
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(path / "exports" / "pte" / "decoder.pte"))
    assert program.method_names == {"prefill", "decode"}
    assert (path / "model.safetensors").is_file()
    assert any("pte: lowered vision, embed, decoder with ExecuTorch/XNNPACK" in n and "fp32" in n for n in ctx.notes)


def test_export_restores_the_attention_implementation(tmp_path):
    loaded = build_tiny()
    before = loaded.model.config.text_config._attn_implementation
    build_artifact(tmp_path / "embed-only", [{"kind": "export-executorch", "components": ["embed"]}], loaded=loaded)
    assert loaded.model.config.text_config._attn_implementation == before
    assert manifest_of(tmp_path / "embed-only")["graphs"] == {"embed": "embed.pte"}


def test_executorch_generation_equals_torch_greedy(exported, items):
    """Batched, left-padded prompts of ~20 tokens go through 3 prefill chunks of 8 and the KV
    cache; answers equal torch's greedy tokens and the first logits agree."""
    from harness.runtimes.executorch import ExecuTorch

    path, loaded, _ = exported
    session = ExecuTorch().load(path)
    want = loaded.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    got = session.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    assert got.token_ids == want.token_ids and got.texts == want.texts
    assert abs(got.first_logits - want.first_logits.numpy()).max() < 1e-4
    times = got.times
    assert times.vision_ms > 0 and times.prefill_ms > 0 and len(times.decode_ms) == 5
    assert times.kv_cache_bytes == len(items) * 2 * 2 * 64 * 16 * 4  # rows x layers x (k, v) x slots x head_dim
    info = ExecuTorch().info()
    assert info["executorch"] == "1.5.1" and info["delegate"] == "XNNPACK" and info["num_threads"] >= 1
    features = session.encode_images(items["image"][:2])
    assert features.shape == (2, loaded.visual_tokens, 32)


def test_parity_and_size_on_executorch(exported, tmp_path):
    path, _, _ = exported
    parity, size = parity_and_size(path, tmp_path)
    assert parity["agreement"] == 1.0 and parity["encoder"]["cosine_min"] > 0.9999
    assert parity["logits"]["cosine_min"] > 0.9999 and parity["logits"]["top1_agreement"] == 1.0
    on_disk = sum(p.stat().st_size for p in (path / "exports" / "pte").rglob("*") if p.is_file())
    assert size["format"] == "pte" and size["total_bytes"] == on_disk
    assert size["by_format"]["pte"]["by_role_bytes"]["graph"] > 0


def test_8da4w_runs_and_mostly_agrees(exported, items, tmp_path):
    """torchao's 8-bit dynamic activations + int4 grouped weights: the Linear layers are quantized
    (recorded), the decoder program shrinks, and answers mostly agree with torch's."""
    from harness.runtimes.executorch import ExecuTorch

    fp32, loaded, _ = exported
    path = tmp_path / "q"
    _, ctx = build_artifact(path, [QUANT], loaded=loaded)
    quant = manifest_of(path)["settings"]["quantization"]
    assert quant["scheme"] == "8da4w" and quant["group_size"] == 32 and quant["linear_layers"] > 10
    sizes = {p: (p / "exports" / "pte" / "decoder.pte").stat().st_size for p in (fp32, path)}
    assert sizes[path] < sizes[fp32]
    assert any("8da4w (group 32) on" in n for n in ctx.notes)
    want = loaded.generate(items["image"], items["question"], max_new_tokens=4, keep_logits=True)
    got = ExecuTorch().load(path).generate(items["image"], items["question"], max_new_tokens=4, keep_logits=True)
    assert sum(a == b for a, b in zip(got.token_ids, want.token_ids)) >= len(items) // 2
    diff = abs(got.first_logits - want.first_logits.numpy()).max()
    assert 0 < diff < 1.0  # quantized: not bit-equal, but close
    parity, _ = parity_and_size(path, tmp_path / "work")
    assert parity["agreement"] >= 0.5 and parity["logits"]["cosine_min"] > 0.9


def test_8da8w_per_channel_quantizes_and_lowers_the_decoder(tmp_path):
    """8da8w defaults to per-channel int8 weights; the variant's own weights are left float."""
    import torch
    from torchao.quantization import IntxUnpackedToInt8Tensor

    from harness.exporting.executorch import quantized_copy

    loaded = build_tiny()
    original = loaded.model.model.language_model.layers[0].mlp.up_proj.weight
    copy, report = quantized_copy(loaded.model, "8da8w", 0)
    assert report == {"scheme": "8da8w", "group_size": 0, "linear_layers": report["linear_layers"], "skipped": []}
    assert isinstance(copy.model.language_model.layers[0].mlp.up_proj.weight, IntxUnpackedToInt8Tensor)
    assert type(original) is torch.nn.Parameter and loaded.model.model.language_model.layers[0].mlp.up_proj.weight \
        is original
    path = tmp_path / "q8"
    build_artifact(path, [{"kind": "export-executorch", "quantize": "8da8w", "components": ["decoder"]}],
                   loaded=loaded)
    settings = manifest_of(path)["settings"]
    assert settings["quantization"]["scheme"] == "8da8w" and settings["delegation"]["decoder"]["delegated_nodes"] > 0
    from executorch.runtime import Runtime

    assert Runtime.get().load_program(str(path / "exports" / "pte" / "decoder.pte")).method_names == {"prefill",
                                                                                                       "decode"}


# --- bad inputs ------------------------------------------------------------------------------
def test_corrupt_pte_is_one_line_and_recorded_by_the_worker(exported, tmp_path):
    from harness.runtimes.executorch import ExecuTorch

    exports.check_corrupt_graph_is_recorded(
        exported[0], tmp_path, EXPORT, "pte", "decoder.pte", ExecuTorch(), "executorch", b"\x00not a program")


def test_missing_executorch_extra(exported, monkeypatch):
    from harness.runtimes.executorch import ExecuTorch
    from harness.steps._base import StepContext
    from harness.steps.export_executorch import ExportExecutorch, ExportExecutorchConfig

    for module in ("executorch", "executorch.runtime"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"runtime executorch.*fastvlm-harness\[executorch\]") as err:
        ExecuTorch().load(exported[0])
    assert "\n" not in str(err.value)
    with pytest.raises(MissingExtraError, match="export-executorch"):
        ExportExecutorch().apply(ExportExecutorchConfig(), exported[1], StepContext())
    assert "error" in ExecuTorch().info()  # info never breaks a run


def test_unexpressible_requests_are_clear(exported, items, tmp_path):
    from pydantic import ValidationError

    from harness.runtimes.executorch import ExecuTorch
    from harness.steps._base import StepContext, apply_step
    from harness.steps.export_executorch import ExportExecutorchConfig

    loaded = build_tiny()
    apply_step({"kind": "quantize", "method": "dynamic-int8", "targets": ["llm"]}, loaded, StepContext())
    with pytest.raises(StepError, match="cannot express torch-quantized tensors.*export-executorch"):
        apply_step(EXPORT, loaded, StepContext(staging=tmp_path / "q"))
    cached = build_tiny()
    apply_step({"kind": "kv-cache", "quantize": "int8"}, cached, StepContext())
    with pytest.raises(StepError, match="cannot express a custom KV cache"):
        apply_step(EXPORT, cached, StepContext(staging=tmp_path / "kv"))
    for bad, message in (({"quantize": "int3"}, "8da4w"), ({"prefill_length": 64, "cache_length": 64}, "smaller"),
                         ({"quantize": "8da4w", "group_size": 0}, "needs a group size"),
                         ({"quantize": "8da8w", "group_size": 24}, "power of two"),
                         ({"group_size": 32}, "quantize: none")):
        with pytest.raises(ValidationError, match=message):
            ExportExecutorchConfig(**bad)
    session = ExecuTorch().load(exported[0])
    session.backend.slots = 16  # as if exported with a 16-slot cache: ~20-token prompts cannot fit
    with pytest.raises(RuntimeBackendError, match="does not fit the ExecuTorch export"):
        session.generate(items["image"][:1], items["question"][:1], max_new_tokens=2)
    only_embed = tmp_path / "embed-only"
    build_artifact(only_embed, [{"kind": "export-executorch", "components": ["embed"]}], loaded=exported[1])
    with pytest.raises(RuntimeBackendError, match="lacks the vision, decoder graph"):
        ExecuTorch().load(only_embed)


def test_export_recipe_has_executorch_variants():
    from harness.spec.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "export.yaml")
    formats = {v.name: v.formats for v in recipe.variants}
    for name in ("executorch-fp32", "executorch-8da4w"):
        assert formats[name] == ["torch", "pte"]
    assert "executorch" in recipe.spec.runtimes


# --- the nano reference ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("quantize,min_agree", [("none", 1.0), ("8da4w", 0.75)])
def test_nano_executorch_answers_agree_with_torch(nano_dir, tmp_path, quantize, min_agree):
    from harness.data.nano_vqa import load_nano_vqa
    from harness.models.loading import load_model
    from harness.runtimes.executorch import ExecuTorch

    loaded = load_model("nano")
    items = load_nano_vqa("test").select(range(16))
    build_artifact(tmp_path / "nano", [{"kind": "export-executorch", "quantize": quantize}], loaded=loaded)
    session = ExecuTorch().load(tmp_path / "nano")
    want = loaded.generate(items["image"], items["question"], max_new_tokens=6)
    got = session.generate(items["image"], items["question"], max_new_tokens=6)
    agree = sum(a == b for a, b in zip(got.texts, want.texts)) / len(items)
    print(f"nano executorch {quantize}: answer agreement {agree:.3f} on {len(items)} items")
    assert agree >= min_agree
