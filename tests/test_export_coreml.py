"""Core ML export (coremltools mlprogram), spec validation, ct.optimize.coreml steps, and the
coreml runtime on Linux: recorded as unavailable (needs macOS) while size is measured."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from harness.errors import MissingExtraError, RuntimeBackendError, RuntimeUnavailable

from . import exports

EXPORT = {"kind": "export-coreml", "sequence_length": 32}
needs_linux = pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML really predicts")


def build_artifact(path: Path, steps: list[dict], loaded=None, staging_from: Path | None = None):
    return exports.build_artifact(path, steps, EXPORT, loaded, staging_from)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("coreml") / "variant"
    loaded, ctx = build_artifact(path, [EXPORT])
    return path, loaded, ctx


def manifest_of(path: Path) -> dict:
    return exports.export_manifest(path, "coreml")


def package_bytes(path: Path, name: str) -> int:
    return sum(p.stat().st_size for p in (path / "exports" / "coreml" / f"{name}.mlpackage").rglob("*") if p.is_file())


def test_export_writes_validated_mlprograms(exported):
    from harness.exporting.coreml import validate_spec

    path, loaded, ctx = exported
    manifest = manifest_of(path)
    assert manifest["graphs"] == {"vision": "vision.mlpackage", "embed": "embed.mlpackage",
                                  "decoder": "decoder.mlpackage"}
    specs = manifest["model"]["specs"]
    assert specs["vision"]["inputs"] == {"pixel_values": [1, 3, 64, 64]}
    assert specs["decoder"]["inputs"]["mask"] == [1, 1, 32, 32] and specs["decoder"]["outputs"] == ["logits"]
    assert specs["vision"]["ops"]["conv"] > 0 and specs["decoder"]["ops"]["linear"] > 0
    assert manifest["settings"]["compute_precision"] == "float16" and manifest["settings"]["decoder_kv_cache"] is False
    roles = {f["file"]: f["role"] for f in manifest["files"]}
    assert roles["vision.mlpackage/Data/com.apple.CoreML/model.mlmodel"] == "graph"
    assert roles["vision.mlpackage/Data/com.apple.CoreML/weights/weight.bin"] == "weights"
    assert roles["tokenizer.json"] == "tokenizer"
    assert validate_spec(path / "exports" / "coreml" / "embed.mlpackage", "embed")["outputs"] == ["embeddings"]
    weights = path / "exports" / "coreml" / "decoder.mlpackage" / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    fp32_bytes = sum(p.numel() * 4 for p in loaded.model.model.language_model.parameters()) \
        + loaded.model.lm_head.weight.numel() * 4
    assert weights.stat().st_size < 0.6 * fp32_bytes  # fp16 weights on disk
    assert any("spec validated" in n and "decoder without KV cache" in n for n in ctx.notes)


@pytest.mark.parametrize("step,op", [
    ({"kind": "coreml-optimize", "method": "linear", "weight_threshold": 0}, "constexpr_blockwise_shift_scale"),
    ({"kind": "coreml-optimize", "method": "palettize", "nbits": 4, "weight_threshold": 0}, "constexpr_lut_to_dense"),
])
def test_optimize_steps_shrink_and_stay_valid(exported, tmp_path, step, op):
    source, loaded, _ = exported
    path = tmp_path / "variant"
    _, ctx = build_artifact(path, [step], loaded=loaded, staging_from=source)
    manifest = manifest_of(path)
    assert manifest["steps"][-1]["kind"] == "coreml-optimize"
    for name in ("vision", "decoder"):
        assert package_bytes(path, name) < package_bytes(source, name)
    from harness.exporting.coreml import validate_spec

    spec = validate_spec(path / "exports" / "coreml" / "decoder.mlpackage", "decoder")
    assert spec["ops"].get(op, 0) > 0
    assert ctx.records[-1]["report"]["decoder"]["constexpr_ops"] > 0
    assert not list((path / "exports" / "coreml").glob("*.tmp.mlpackage"))


@needs_linux
def test_coreml_runtime_is_unavailable_here_and_size_still_measures(exported, tmp_path):
    from harness.build.variant import variant_key
    from harness.run.plan import job_for
    from harness.run.worker import run_variant
    from harness.runtimes.coreml import Coreml

    with pytest.raises(RuntimeUnavailable, match="needs macOS: Core ML prediction is only supported on macOS"):
        Coreml().load(exported[0])
    assert "needs macOS" in Coreml().info()["prediction"]
    base = {"model": "random:tiny"}
    cache = tmp_path / "cache"
    artifact = cache / "variants" / variant_key(base, [EXPORT])
    shutil.copytree(exported[0], artifact)
    job = job_for(base, [EXPORT], ["torch", "coreml"], ["torch-eager", "coreml"],
                  [{"name": "size", "kind": "size"}, {"name": "latency", "kind": "latency"}], cache, tmp_path / "work")
    measured = run_variant(job)["measurements"]
    suites = measured["coreml"]["suites"]
    assert suites["size"]["status"] == "ok" and suites["size"]["format"] == "coreml"
    on_disk = sum(p.stat().st_size for p in (artifact / "exports" / "coreml").rglob("*") if p.is_file())
    assert suites["size"]["total_bytes"] == on_disk
    for name in ("latency", "parity"):  # parity is added automatically to every non-torch runtime
        assert suites[name]["status"] == "unavailable" and "needs macOS" in suites[name]["error"]
    assert measured["torch-eager"]["status"] == "not applicable"


def test_bad_coreml_inputs_are_clear(exported, tmp_path, monkeypatch):
    from pydantic import ValidationError

    from harness.exporting.coreml import validate_spec
    from harness.runtimes.coreml import Coreml
    from harness.steps._base import StepContext
    from harness.steps.coreml_optimize import CoremlOptimize, CoremlOptimizeConfig
    from harness.steps.export_coreml import ExportCoreml, ExportCoremlConfig

    broken = tmp_path / "broken.mlpackage"
    shutil.copytree(exported[0] / "exports" / "coreml" / "embed.mlpackage", broken)
    (broken / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x00garbage")
    with pytest.raises(RuntimeBackendError) as err:
        validate_spec(broken, "embed")
    assert "broken.mlpackage" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValidationError, match="per_block"):
        CoremlOptimizeConfig(method="linear", dtype="int4", granularity="per_channel")
    with pytest.raises(RuntimeBackendError, match="has no coreml export"):
        Coreml().load(tmp_path)  # a folder without exports/coreml
    monkeypatch.setitem(sys.modules, "coremltools", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"runtime coreml.*fastvlm-harness\[coreml\]"):
        Coreml().load(exported[0])
    with pytest.raises(MissingExtraError, match="export-coreml"):
        ExportCoreml().apply(ExportCoremlConfig(), exported[1], StepContext())
    with pytest.raises(MissingExtraError, match="coreml-optimize"):
        CoremlOptimize().apply(CoremlOptimizeConfig(), exported[1], StepContext())


@pytest.mark.slow
def test_nano_coreml_export_validates(nano_dir, tmp_path):
    from harness.models.loading import load_model

    loaded = load_model("nano")
    path = tmp_path / "nano"
    _, ctx = build_artifact(path, [{"kind": "export-coreml", "sequence_length": 64},
                                   {"kind": "coreml-optimize", "method": "palettize", "nbits": 4}], loaded=loaded)
    specs = manifest_of(path)["model"]["specs"]
    assert specs["vision"]["inputs"]["pixel_values"] == [1, 3, 64, 64]
    assert specs["decoder"]["ops"]["linear"] > 0
    assert ctx.records[-1]["report"]["decoder"]["bytes_after"] < ctx.records[-1]["report"]["decoder"]["bytes_before"]


def test_backend_feeds_the_stateless_decoder_a_causal_mask_and_positions():
    """The Core ML backend's own logic (prediction itself needs macOS): every decoder call gets the
    full static length, a causal mask of the export's mask value, and the logits of the last real token."""
    import numpy as np

    from harness.runtimes.coreml import CoremlBackend

    seen = []

    class Decoder:
        def predict(self, feeds):
            seen.append(feeds)
            logits = np.zeros((1, 4, 3), np.float32)
            logits[0, :, 0] = np.arange(4)  # logit 0 = position, so the chosen row is visible
            return {"logits": logits}

    backend = CoremlBackend({"decoder": Decoder()}, {"sequence_length": 4, "mask_value": -30.0})
    embeds = np.ones((1, 3, 2), np.float32)
    logits, past = backend.prefill(embeds, np.array([[0, 1, 1]]), None)
    assert logits[0, 0] == 1 and past[0].shape == (2, 2)  # two real tokens: the last is position 1
    logits, past = backend.decode(embeds[:, :1], None, None, past)
    assert logits[0, 0] == 2 and past[0].shape == (3, 2)
    for feeds in seen:
        assert feeds["embeddings"].shape == (1, 4, 2) and feeds["position_ids"].tolist() == [[0, 1, 2, 3]]
        assert feeds["mask"].shape == (1, 1, 4, 4) and feeds["mask"][0, 0, 0, 1] == -30.0
        assert feeds["mask"][0, 0, 3, 3] == 0 and feeds["mask"][0, 0, 3, 0] == 0
    with pytest.raises(RuntimeBackendError, match="re-export with a larger sequence_length"):
        backend.decode(np.ones((1, 2, 2), np.float32), None, None, [np.ones((4, 2), np.float32)])
