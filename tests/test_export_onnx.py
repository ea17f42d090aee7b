"""ONNX export, ONNX Runtime generation, ort-quant modes, parity, and the export framework's
format/runtime rules and bad inputs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError, MissingExtraError, RuntimeBackendError, RuntimeUnavailable, StepError
from harness.spec.recipe import parse_recipe, runtime_plan

from . import exports
from .conftest import build_tiny

EXPORT = {"kind": "export-onnx", "external_data_mb": 0}


def build_artifact(path: Path, steps: list[dict], loaded=None, staging_from: Path | None = None):
    return exports.build_artifact(path, steps, EXPORT, loaded, staging_from)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "variant"
    loaded, ctx = build_artifact(path, [EXPORT])
    return path, loaded, ctx


@pytest.fixture(scope="module")
def items():
    from harness.data.nano_vqa import load_nano_vqa

    return load_nano_vqa("test").select(range(8))


def suite_ctx(artifact: Path, runtime_name: str, tmp_path: Path):
    from harness.registries import RUNTIMES
    from harness.suites._context import SuiteContext

    return SuiteContext(runtime_name=runtime_name, runtime=RUNTIMES.get(runtime_name)(), artifact=artifact,
                        work_dir=tmp_path)


# --- the export and ONNX Runtime ---------------------------------------------------------------
def test_export_writes_three_checked_graphs_with_roles(exported):
    path, _, ctx = exported
    manifest = json.loads((path / "exports" / "onnx" / "export.json").read_text())
    assert set(manifest["graphs"]) == {"vision", "embed", "decoder"}
    roles = {f["file"]: f["role"] for f in manifest["files"]}
    assert roles["decoder.onnx"] == "graph" and roles["decoder.onnx.data"] == "external-data"
    assert roles["tokenizer.json"] == "tokenizer"
    assert manifest["settings"]["opset"] == 17 and manifest["model"]["num_layers"] == 2
    assert (path / "model.safetensors").is_file()  # the torch weights stay: the parity reference
    assert any("onnx: exported" in n for n in ctx.notes)


def test_ort_generation_equals_torch_greedy(exported, items):
    from harness.runtimes.onnxruntime import OnnxRuntime

    path, loaded, _ = exported
    session = OnnxRuntime().load(path)
    want = loaded.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    got = session.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    assert got.token_ids == want.token_ids and got.texts == want.texts
    assert abs(got.first_logits - want.first_logits.numpy()).max() < 1e-4
    times = got.times
    assert times.preprocess_ms > 0 and times.vision_ms > 0 and times.prefill_ms > 0 and len(times.decode_ms) == 5
    assert times.kv_cache_bytes > 0 and session.visual_tokens == loaded.visual_tokens
    info = OnnxRuntime().info()
    assert info["intra_op_threads"] >= 1 and info["graph_optimization_level"] == "all"


def test_parity_suite_numbers(exported, tmp_path):
    from harness.suites.parity import Parity, ParityConfig

    path, _, _ = exported
    config = ParityConfig(name="parity", limit=16, numeric_items=4, batch_size=16, max_new_tokens=4)
    result = Parity().run(config, suite_ctx(path, "onnxruntime", tmp_path))
    assert result["agreement"] == 1.0 and result["token_agreement"] == 1.0 and result["n"] == 16
    assert result["encoder"]["cosine_min"] > 0.9999 and result["encoder"]["max_abs"] < 1e-4
    assert result["logits"]["cosine_min"] > 0.9999 and result["logits"]["top1_agreement"] == 1.0


def test_size_counts_the_format_the_runtime_runs(exported, tmp_path):
    from harness.suites.size import Size, SizeConfig

    path, _, _ = exported
    onnx = Size().run(SizeConfig(name="size"), suite_ctx(path, "onnxruntime", tmp_path))
    torch_size = Size().run(SizeConfig(name="size"), suite_ctx(path, "torch-eager", tmp_path))
    export_bytes = sum(p.stat().st_size for p in (path / "exports" / "onnx").rglob("*") if p.is_file())
    assert onnx["format"] == "onnx" and onnx["total_bytes"] == export_bytes
    assert all(row["file"].startswith("exports/onnx/") for row in onnx["files"])
    roles = onnx["by_format"]["onnx"]["by_role_bytes"]
    assert roles["graph"] > 0 and roles["external-data"] > 0 and roles["tokenizer"] > 0
    assert torch_size["format"] == "torch" and not any(r["file"].startswith("exports") for r in torch_size["files"])
    assert set(torch_size["by_format"]) == {"torch", "onnx"}
    assert "opset 17" in onnx["storage_format"]


def test_grouped_attention_is_eager_attention_without_expanding_the_cache(exported):
    """The decoder's attention (harness/exporting/onnx.py) equals transformers' eager one, and the
    exported graph holds no Expand (transformers' repeat_kv copied the cache to every query head)."""
    import onnx
    import torch
    from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward

    from harness.exporting.onnx import grouped_attention

    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, heads, length, 16, generator=generator)
                         for heads, length in ((14, 3), (2, 7), (2, 7)))
    mask = torch.where(torch.rand(2, 1, 3, 7, generator=generator) > 0.3, 0.0, -1e4)
    module = torch.nn.Module()
    module.num_key_value_groups, module.training = 7, False
    want, _ = eager_attention_forward(module, query, key, value, mask, scaling=0.25)
    got, _ = grouped_attention(module, query, key, value, mask, scaling=0.25)
    assert torch.allclose(got, want, atol=1e-6)
    path = exported[0] / "exports" / "onnx" / "decoder.onnx"
    assert "Expand" not in {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


@pytest.mark.parametrize("mode,op", [("dynamic-int8", "MatMulInteger"), ("static-int8", "QuantizeLinear"),
                                     ("int4-weight-only", "MatMulNBits")])
def test_ort_quant_modes_build_and_run(exported, items, tmp_path, mode, op):
    import onnx

    from harness.runtimes.onnxruntime import OnnxRuntime

    source, loaded, _ = exported
    step = {"kind": "ort-quant", "mode": mode, "block_size": 16, "calibration": {"items": 8, "batch_size": 8}}
    path = tmp_path / "variant"
    _, ctx = build_artifact(path, [step], loaded=loaded, staging_from=source)
    manifest = json.loads((path / "exports" / "onnx" / "export.json").read_text())
    decoder = manifest["graphs"]["decoder"]
    assert decoder != "decoder.onnx" and not (path / "exports" / "onnx" / "decoder.onnx").exists()
    nodes = onnx.load(str(path / "exports" / "onnx" / decoder)).graph.node
    assert op in {n.op_type for n in nodes}, f"{mode}: no {op} in the decoder graph"
    if mode == "int4-weight-only":  # int8 compute inside MatMulNBits by default (ort-quant's module doc)
        levels = {a.i for n in nodes if n.op_type == op for a in n.attribute if a.name == "accuracy_level"}
        assert levels == {4} and manifest["steps"][-1]["accuracy_level"] == 4
    assert manifest["steps"][-1]["mode"] == mode
    if mode != "int4-weight-only":  # chosen by this CPU's VNNI (see the next test), recorded either way
        from harness.environment import cpu_features

        assert manifest["steps"][-1]["reduce_range"] is (cpu_features()["vnni"] is False)
    got = OnnxRuntime().load(path).generate(items["image"], items["question"], max_new_tokens=4)
    assert len(got.token_ids) == len(items) and got.times.prefill_ms > 0
    if mode != "static-int8":  # weight quantization of a tiny random model keeps most greedy answers
        want = loaded.generate(items["image"], items["question"], max_new_tokens=4)
        assert sum(a == b for a, b in zip(got.token_ids, want.token_ids)) >= len(items) // 2


@pytest.mark.parametrize("vnni,asked,want", [(False, None, True), (True, None, False), (None, None, False),
                                             (False, False, False), (True, True, True)])
def test_reduce_range_is_on_where_the_cpu_lacks_vnni_unless_the_recipe_says(monkeypatch, vnni, asked, want):
    """Without VNNI ORT's u8s8 int8 kernels saturate 16-bit sums: a tiny model's dynamic-INT8 decoder kept
    0 of 8 greedy answers on an AVX2 EPYC with full-range weights, 8 of 8 with reduce_range."""
    import harness.environment as environment
    from harness.steps.ort_quant import OrtQuantConfig, reduce_range

    monkeypatch.setattr(environment, "cpu_features", lambda: {"vnni": vnni})
    assert reduce_range(OrtQuantConfig(reduce_range=asked)) is want


# --- bad inputs ------------------------------------------------------------------------------------
def test_corrupt_onnx_is_one_clear_line(exported, tmp_path):
    from harness.runtimes.onnxruntime import OnnxRuntime

    path = tmp_path / "variant"
    shutil.copytree(exported[0], path)
    (path / "exports" / "onnx" / "decoder.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(RuntimeBackendError) as err:
        OnnxRuntime().load(path)
    assert "decoder.onnx" in str(err.value) and "\n" not in str(err.value)


def test_missing_onnxruntime_extra(exported, monkeypatch):
    from harness.runtimes.onnxruntime import OnnxRuntime
    from harness.steps._base import StepContext
    from harness.steps.ort_quant import OrtQuant, OrtQuantConfig

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(MissingExtraError, match=r"fastvlm-harness\[onnx\]"):
        OnnxRuntime().load(exported[0])
    with pytest.raises(MissingExtraError, match="ort-quant"):
        OrtQuant().apply(OrtQuantConfig(), exported[1], StepContext())


def test_unexportable_requests_are_clear_errors(tmp_path):
    from harness.steps._base import StepContext, apply_step

    loaded = build_tiny()
    apply_step({"kind": "quantize", "method": "dynamic-int8", "targets": ["llm"]}, loaded, StepContext())
    with pytest.raises(StepError, match="cannot express torch-quantized tensors"):
        apply_step(EXPORT, loaded, StepContext(staging=tmp_path))
    with pytest.raises(StepError, match="only while building"):
        StepContext(replay=True).export_dir("onnx")
    with pytest.raises(StepError, match="not an export format"):
        StepContext(staging=tmp_path).export_dir("torch")


def test_worker_records_not_applicable_unavailable_and_broken_sessions(exported, tmp_path, monkeypatch):
    """A cached export variant measured by the worker: torch-eager is not applicable (recorded),
    a corrupt graph blocks session suites with one recorded line, size still measures; a runtime
    raising RuntimeUnavailable gives 'unavailable' suites."""
    from harness.build.variant import variant_key
    from harness.run.plan import job_for
    from harness.run.worker import run_variant
    from harness.runtimes.onnxruntime import OnnxRuntime

    base = {"model": "random:tiny"}
    cache = tmp_path / "cache"
    artifact = cache / "variants" / variant_key(base, [EXPORT])
    shutil.copytree(exported[0], artifact)
    suites = [{"name": "size", "kind": "size"},
              {"name": "par", "kind": "parity", "limit": 4, "numeric_items": 2, "max_new_tokens": 2}]
    job = job_for(base, [EXPORT], ["torch", "onnx"], ["torch-eager", "onnxruntime"], suites, cache, tmp_path / "work")
    result = run_variant(job)
    assert result["measurements"]["torch-eager"]["status"] == "not applicable"
    assert "onnx" in result["measurements"]["torch-eager"]["reason"]
    measured = result["measurements"]["onnxruntime"]["suites"]
    assert measured["size"]["status"] == "ok" and measured["par"]["status"] == "ok"
    assert measured["par"]["agreement"] == 1.0

    (artifact / "exports" / "onnx" / "vision.onnx").write_bytes(b"\x00garbage")
    measured = run_variant(job)["measurements"]["onnxruntime"]["suites"]
    assert measured["size"]["status"] == "ok"
    assert measured["par"]["status"] == "error" and "vision.onnx" in measured["par"]["error"]

    def unavailable(self, artifact):
        raise RuntimeUnavailable("needs macOS: prediction is not supported on Linux")

    monkeypatch.setattr(OnnxRuntime, "load", unavailable)
    measured = run_variant(job_for(base, [EXPORT], ["torch", "onnx"], ["torch-eager", "onnxruntime"],
                                   suites[:1] + [{"name": "parity", "kind": "parity"}], cache, tmp_path / "work"))
    suites_out = measured["measurements"]["onnxruntime"]["suites"]
    assert suites_out["parity"]["status"] == "unavailable" and "needs macOS" in suites_out["parity"]["error"]
    assert suites_out["size"]["status"] == "ok"


# --- recipe rules, aggregation and the gate --------------------------------------------------------
def recipe(variants: str, runtimes: str = "[torch-eager, onnxruntime]"):
    import yaml

    return parse_recipe(yaml.safe_load(f"name: r\nruntimes: {runtimes}\nsuites: [size]\nvariants:\n{variants}"))


def test_rewriting_steps_name_the_graphs_an_export_lacks():
    from harness.exporting import graphs_to_rewrite

    manifest = {"graphs": {"vision": "vision.onnx", "embed": "embed.onnx"}}
    assert graphs_to_rewrite("ort-quant", "onnx", manifest, None) == ["vision", "embed"]
    assert graphs_to_rewrite("ort-quant", "onnx", manifest, ["embed"]) == ["embed"]
    with pytest.raises(StepError, match=r"^ort-quant: the onnx export has no decoder graph \(it has vision, embed\)$"):
        graphs_to_rewrite("ort-quant", "onnx", manifest, ["vision", "decoder"])
    with pytest.raises(StepError, match=r"no selected graph \(it has none\)"):
        graphs_to_rewrite("litert-quant", "tflite", {}, None)


def test_a_converter_failure_is_one_line_naming_step_tool_and_graph():
    from harness.exporting import converting

    expected = r"^export-onnx: torch.onnx.export cannot convert the decoder graph: RuntimeError: first line$"
    with pytest.raises(StepError, match=expected), converting("export-onnx", "torch.onnx.export", "decoder"):
        raise RuntimeError("first line\n  a page of tracer output")
    with pytest.raises(StepError, match="^already one line$"), converting("export-tflite", "litert-torch", "vision"):
        raise StepError("already one line")


def test_recipe_format_rules():
    ok = recipe("  - {name: base}\n  - {name: q, steps: [{kind: export-onnx}, {kind: ort-quant, mode: static-int8}]}")
    assert ok.variant("q").formats == ["torch", "onnx"] and ok.variant("base").formats == ["torch"]
    mixed = recipe("  - {name: m, steps: [{kind: quantize}, {kind: export-onnx}, {kind: ort-quant}]}")
    assert mixed.variant("m").formats == ["torch", "onnx"]
    with pytest.raises(ConfigError, match="add an export to onnx before it"):
        recipe("  - {name: q, steps: [{kind: ort-quant}]}")
    with pytest.raises(ConfigError, match="changes the torch model after it was exported"):
        recipe("  - {name: q, steps: [{kind: export-onnx}, {kind: quantize}]}")
    with pytest.raises(ConfigError, match="no runtime of the recipe can run variant 'e'.*onnxruntime"):
        recipe("  - {name: e, steps: [{kind: export-onnx}]}", runtimes="[torch-eager]")
    with pytest.raises(ConfigError, match="runs onnx, but variant 'b' has only torch"):
        recipe("  - {name: b, runtimes: [onnxruntime]}")


def test_runtime_plan_is_explicit():
    plan = runtime_plan(["torch", "onnx"], ["torch-eager", "onnxruntime"])
    assert plan["onnxruntime"] is None and "measured as onnx" in plan["torch-eager"]
    plan = runtime_plan(["torch"], ["torch-eager", "onnxruntime"])
    assert plan["torch-eager"] is None and "runs onnx" in plan["onnxruntime"]
    both = runtime_plan(["torch", "onnx"], ["torch-eager", "onnxruntime"], ["torch-eager", "onnxruntime"])
    assert both == {"torch-eager": None, "onnxruntime": None}
    r = recipe("  - {name: e, runtimes: [torch-eager, onnxruntime], steps: [{kind: export-onnx}]}")
    assert r.variant("e").runtimes == ["torch-eager", "onnxruntime"]


def test_parity_verdicts_and_gate_cases():
    from harness.results.gate import checks
    from harness.suites.parity import evaluate_parity

    good = {"status": "ok", "agreement": 1.0, "encoder": {"cosine_min": 0.9999}, "logits": {"cosine_min": 0.999,
                                                                                          "max_abs": 0.01}}
    policy = {"min_agreement": 0.99, "min_cosine": 0.998, "max_logit_abs": None}
    assert evaluate_parity(good, policy)["status"] == "pass"
    bad = {**good, "agreement": 0.9}
    verdict = evaluate_parity(bad, policy)
    assert verdict["status"] == "fail" and "agreement 0.900 < 0.99" in verdict["failures"][0]
    assert evaluate_parity({"status": "unavailable", "error": "needs macOS"}, policy)["status"] == "unavailable"
    assert evaluate_parity(good, {})["status"] == "report only"

    summary = {"variants": [
        {"name": "q", "status": "ok", "gate": True, "not_applicable": {"torch-eager": "measured as onnx"},
         "runtimes": {"onnxruntime": {"targets": {}, "parity": {**bad, "verdict": verdict}}}},
        {"name": "c", "status": "ok", "gate": True,
         "runtimes": {"coreml": {"targets": {"max_ttft_ms": {"status": "not measured", "why": "no latency"}},
                                 "unavailable": {"latency": "needs macOS"},
                                 "parity": {"status": "unavailable", "error": "needs macOS",
                                            "verdict": {"status": "unavailable", "why": "needs macOS"}}}}}]}
    by = {(c.variant, c.runtime, c.target): c for c in checks(summary)}
    assert by[("q", "onnxruntime", "parity")].ok is False
    assert by[("q", "torch-eager", "applicable")].skipped
    # off macOS Core ML cannot be measured: not measured never passes, each check says why and what to do
    for target in ("parity", "max_ttft_ms", "suite:latency"):
        assert by[("c", "coreml", target)].mark == "ERROR", target
    assert "needs macOS" in by[("c", "coreml", "suite:latency")].message
    assert "gate: false" in by[("c", "coreml", "suite:latency")].message


# --- the nano reference ------------------------------------------------------------------------------
@pytest.mark.slow
def test_nano_export_ort_agrees_with_torch(nano_dir, tmp_path, items):
    from harness.models.loading import load_model
    from harness.runtimes.onnxruntime import OnnxRuntime

    loaded = load_model("nano")
    build_artifact(tmp_path / "nano", [{"kind": "export-onnx"}], loaded=loaded)
    session = OnnxRuntime().load(tmp_path / "nano")
    want = loaded.generate(items["image"], items["question"], max_new_tokens=4)
    got = session.generate(items["image"], items["question"], max_new_tokens=4)
    assert got.texts == want.texts


@pytest.mark.slow
def test_recipe_run_reports_and_gates_parity(tmp_path, nano_dir):
    """A real run: torch base + ONNX fp32 + ORT INT4 on nano; parity added automatically, shown in
    the report, gated by the recipe's `parity:`; not-applicable pairs recorded and reported."""
    from harness.results.gate import gate
    from harness.run.runner import run

    from .runs import make_recipe

    path = make_recipe(tmp_path, """\
        - name: base
          steps: []
        - name: onnx
          steps: [{kind: export-onnx}]
        - name: q4
          steps: [{kind: export-onnx}, {kind: ort-quant, mode: int4-weight-only, targets: [llm]}]
        """, suites="[acc-small, size]", name="exp")
    path.write_text(path.read_text() + "runtimes: [torch-eager, onnxruntime]\nparity: {min_agreement: 0.9}\n")
    run_dir = run(path, output=tmp_path / "reports", progress=False)
    summary = json.loads((run_dir / "results.json").read_text())
    variants = {v["name"]: v for v in summary["variants"]}
    assert all(v["status"] == "ok" for v in variants.values()), [v["error"] for v in variants.values()]
    assert "onnxruntime" in variants["base"]["not_applicable"]
    parity = variants["onnx"]["runtimes"]["onnxruntime"]["parity"]
    assert parity["agreement"] == 1.0 and parity["verdict"]["status"] == "pass"
    assert parity["encoder"]["cosine_min"] > 0.9999
    q4 = variants["q4"]["runtimes"]["onnxruntime"]
    assert q4["size"]["total_mb"] < variants["onnx"]["runtimes"]["onnxruntime"]["size"]["total_mb"]
    html = (run_dir / "report.html").read_text()
    assert "Exports and parity" in html and "not applicable" in html
    code, checks, _ = gate(run_dir)
    names = {(c.variant, c.runtime, c.target) for c in checks}
    assert ("onnx", "onnxruntime", "parity") in names and ("base", "onnxruntime", "applicable") in names


# --- the fused decoder (decoder_graph: fused) ---------------------------------------------------
FUSED = {"kind": "export-onnx", "external_data_mb": 0, "decoder_graph": "fused"}


@pytest.fixture(scope="module")
def fused(tmp_path_factory, exported):
    path = tmp_path_factory.mktemp("onnx-fused") / "variant"
    _, ctx = exports.build_artifact(path, [FUSED], FUSED, exported[1])
    return path, exported[1], ctx


def _decoder_ops(path: Path) -> list[str]:
    import onnx

    manifest = json.loads((path / "exports" / "onnx" / "export.json").read_text())
    graph = onnx.load(str(path / "exports" / "onnx" / manifest["graphs"]["decoder"]), load_external_data=False)
    return [n.op_type for n in graph.graph.node]


def test_fused_decoder_generates_as_torch_with_fewer_nodes(fused, exported, items):
    from harness.runtimes.onnxruntime import OnnxRuntime

    path, loaded, ctx = fused
    settings = json.loads((path / "exports" / "onnx" / "export.json").read_text())["settings"]
    layers = loaded.model.config.text_config.num_hidden_layers
    ops, traced = _decoder_ops(path), _decoder_ops(exported[0])
    # per layer: the attention norm with the previous residual add (the first layer's without), the MLP
    # norm with the attention's residual add, the scaled QK^T; the final norm with the last residual add
    assert settings["decoder_ort_ops"] == {"FusedMatMul": layers, "SimplifiedLayerNormalization": 1,
                                           "SkipSimplifiedLayerNormalization": 2 * layers, "nodes": len(ops)}
    assert settings["decoder_graph"] == "fused" and settings["decoder_opset"] == 18
    assert any("decoder fused for ORT" in n for n in ctx.notes)
    assert "Expand" not in ops and len(ops) < 0.6 * len(traced), (len(ops), len(traced))
    want = loaded.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    got = OnnxRuntime().load(path).generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    assert got.token_ids == want.token_ids
    assert abs(got.first_logits - want.first_logits.numpy()).max() < 1e-4


@pytest.mark.parametrize("mode,op", [("dynamic-int8", "MatMulInteger"), ("static-int8", "QuantizeLinear"),
                                     ("int4-weight-only", "MatMulNBits")])
def test_ort_quant_quantizes_the_fused_decoder(fused, items, tmp_path, mode, op):
    from harness.runtimes.onnxruntime import OnnxRuntime

    source, loaded, _ = fused
    step = {"kind": "ort-quant", "mode": mode, "block_size": 16, "calibration": {"items": 8, "batch_size": 8}}
    exports.build_artifact(tmp_path / "variant", [step], FUSED, loaded, source)
    ops = _decoder_ops(tmp_path / "variant")
    assert op in ops and "SkipSimplifiedLayerNormalization" in ops
    got = OnnxRuntime().load(tmp_path / "variant").generate(items["image"], items["question"], max_new_tokens=4)
    assert len(got.token_ids) == len(items) and got.times.prefill_ms > 0
