"""MLX export (the LLM as an mlx-lm qwen2 directory, float or mlx-quantized), the `mlx` runtime,
parity and size on nano, the model MLX cannot express, and the missing extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError, MissingExtraError, RuntimeUnavailable, StepError

from . import exports
from .conftest import build_tiny

pytest.importorskip("mlx_lm")

FLOAT = {"kind": "export-mlx", "dtype": "float32"}


def build(path: Path, steps: list[dict], loaded=None):
    return exports.build_artifact(path, steps, steps[-1], loaded)


@pytest.fixture(scope="module")
def nano(nano_dir):
    from harness.models.loading import load_model

    return load_model("nano")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, nano):
    path = tmp_path_factory.mktemp("mlx") / "float"
    _, ctx = build(path, [FLOAT], nano)
    return path, ctx


@pytest.fixture(scope="module")
def items():
    from harness.data.nano_vqa import load_nano_vqa

    return load_nano_vqa("test").select(range(24))


def suite_ctx(artifact: Path, tmp_path: Path):
    from harness.registries import RUNTIMES
    from harness.suites._context import SuiteContext

    return SuiteContext(runtime_name="mlx", runtime=RUNTIMES.get("mlx")(), artifact=artifact, work_dir=tmp_path)


def run_parity(artifact: Path, tmp_path: Path, limit: int) -> dict:
    from harness.suites.parity import Parity, ParityConfig

    config = ParityConfig(name="parity", limit=limit, numeric_items=8, batch_size=limit, max_new_tokens=6)
    result = Parity().run(config, suite_ctx(artifact, tmp_path))
    print(f"\n{artifact.name}: logits {result['logits']} agreement {result['agreement']} of {result['n']}")
    return result


# --- the export -----------------------------------------------------------------------------------
def test_export_is_an_mlx_lm_qwen2_directory(exported, nano):
    from mlx_lm.models.qwen2 import ModelArgs
    from safetensors import safe_open

    path, ctx = exported
    manifest = exports.export_manifest(path, "mlx")
    assert manifest["graphs"] == {"llm": "llm"} and manifest["settings"]["vision"] == "torch"
    roles = {f["file"]: f["role"] for f in manifest["files"]}
    assert roles["llm/model.safetensors"] == "weights" and roles["tokenizer.json"] == "tokenizer"
    config = json.loads((path / "exports" / "mlx" / "llm" / "config.json").read_text())
    args = ModelArgs.from_dict(config)
    text = nano.model.config.text_config
    assert (args.model_type, args.hidden_size, args.num_hidden_layers, args.intermediate_size) == \
        ("qwen2", text.hidden_size, text.num_hidden_layers, text.intermediate_size)
    assert args.num_key_value_heads == text.num_key_value_heads and args.tie_word_embeddings is False
    assert "quantization" not in config
    with safe_open(str(path / "exports" / "mlx" / "llm" / "model.safetensors"), "np") as f:
        names = set(f.keys())
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.layers.0.self_attn.q_proj.bias",
            "model.layers.2.mlp.down_proj.weight", "model.norm.weight"} <= names
    assert (path / "model.safetensors").is_file()  # the torch weights stay: the parity reference
    assert any("mlx: LLM as mlx-lm qwen2 (float, float32)" in n for n in ctx.notes)


def test_float_export_matches_torch(exported, nano, items, tmp_path):
    """fp32 MLX LLM + the variant's torch vision: first-token logits and greedy answers equal torch's."""
    from harness.runtimes.mlx import Mlx

    path, _ = exported
    session = Mlx().load(path)
    want = nano.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    got = session.generate(items["image"], items["question"], max_new_tokens=6, keep_logits=True)
    assert got.token_ids == want.token_ids and got.texts == want.texts  # left-padded batch of 24
    assert abs(got.first_logits - want.first_logits.numpy()).max() < 1e-4
    times = got.times
    assert times.preprocess_ms > 0 and times.vision_ms > 0 and times.prefill_ms > 0 and times.decode_ms
    assert times.kv_cache_bytes and times.kv_cache_bytes > 0
    info = Mlx().info()
    assert info["device"].startswith("Device(cpu") if sys.platform == "linux" else "device" in info
    result = run_parity(path, tmp_path, 40)
    assert result["logits"]["cosine_min"] > 0.99999 and result["logits"]["max_abs"] < 1e-4
    assert result["encoder"]["max_abs"] == 0.0  # the same torch vision tower computes the features
    assert result["agreement"] == 1.0


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_g64_exports_run_and_agree(nano, tmp_path, bits):
    from safetensors import safe_open

    path = tmp_path / f"int{bits}"
    build(path, [{"kind": "export-mlx", "bits": bits, "group_size": 64}], nano)
    folder = path / "exports" / "mlx" / "llm"
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"]["bits"] == bits and config["quantization"]["group_size"] == 64
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        q = f.get_tensor("model.layers.0.mlp.down_proj.weight")
        names = set(f.keys())
    assert {"model.layers.0.mlp.down_proj.scales", "model.layers.0.mlp.down_proj.biases"} <= names
    assert str(q.dtype) == "uint32" and q.shape == (128, 320 * bits // 32)  # packed codes, 32 // bits per word
    result = run_parity(path, tmp_path, 40)
    assert result["agreement"] >= 0.9 and result["logits"]["top1_agreement"] >= 0.875
    assert result["logits"]["cosine_min"] > (0.999 if bits == 8 else 0.99)


def test_size_suite_measures_the_mlx_export(exported, nano, tmp_path):
    from harness.suites.size import Size, SizeConfig

    sizes = {}
    for name, step in {"float32": FLOAT, "float16": {"kind": "export-mlx"},
                       "int8": {"kind": "export-mlx", "bits": 8}, "int4": {"kind": "export-mlx", "bits": 4}}.items():
        path = exported[0] if name == "float32" else tmp_path / name
        if name != "float32":
            build(path, [step], nano)
        size = Size().run(SizeConfig(name="size"), suite_ctx(path, tmp_path))
        on_disk = sum(p.stat().st_size for p in (path / "exports" / "mlx").rglob("*") if p.is_file())
        assert size["format"] == "mlx" and size["total_bytes"] == on_disk
        sizes[name] = size["by_format"]["mlx"]["by_role_bytes"]["weights"]
    print(f"\nmlx weight bytes: {sizes}")
    assert sizes["float32"] > sizes["float16"] > sizes["int8"] > sizes["int4"]
    assert sizes["int4"] < 0.4 * sizes["float16"]


# --- what MLX cannot express, and bad configs ---------------------------------------------------
def test_group_size_must_divide_the_widths(nano, tmp_path):
    with pytest.raises(StepError) as info:
        build(tmp_path / "g128", [{"kind": "export-mlx", "bits": 4, "group_size": 128}], nano)
    message = str(info.value)
    assert "\n" not in message and "intermediate_size (down_proj) = 320" in message and "32 or 64" in message


def test_a_model_mlx_cannot_express_is_refused_in_one_line(tmp_path):
    from harness.steps._base import StepContext, apply_step

    pruned = build_tiny()
    apply_step({"kind": "structured-prune", "what": "heads", "heads": [1], "head_unit": "query"}, pruned,
               StepContext())
    with pytest.raises(StepError, match=r"cannot be described by mlx-lm's qwen2 .*structured-prune heads"):
        apply_step({"kind": "export-mlx"}, pruned, StepContext(staging=tmp_path / "a"))
    quantized = build_tiny()
    apply_step({"kind": "quantize", "method": "dynamic-int8", "targets": ["llm"]}, quantized, StepContext())
    with pytest.raises(StepError, match=r"cannot express .*export-mlx bits"):
        apply_step({"kind": "export-mlx"}, quantized, StepContext(staging=tmp_path / "b"))
    assert not any((tmp_path / d / "mlx" / "llm").exists() for d in ("a", "b"))  # refused before writing


def test_packed_weight_quant_layers_are_refused(tmp_path):
    pytest.importorskip("neural_compressor")
    from harness.steps._base import StepContext, apply_step

    loaded = build_tiny()
    apply_step({"kind": "weight-quant", "algorithm": "rtn", "bits": 4, "group_size": 16}, loaded, StepContext())
    with pytest.raises(StepError, match=r"cannot express 'model\.layers\.0\..*' \(PackedLinear\)"):
        apply_step({"kind": "export-mlx"}, loaded, StepContext(staging=tmp_path))


def test_config_errors_are_one_line_at_the_field(tmp_path):
    from harness.spec.recipe import load_recipe
    from harness.steps._base import StepConfigError, validate_step

    for raw, field in [({"bits": 3}, "bits"), ({"bits": 4, "group_size": 48}, "group_size"),
                       ({"group_size": 32}, "group_size applies only"), ({"targets": ["vision"]}, "targets"),
                       ({"vision": "coreml"}, "vision")]:
        with pytest.raises(StepConfigError, match=field) as info:
            validate_step({"kind": "export-mlx", **raw})
        assert "\n" not in str(info.value)
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nbase: nano\nsuites: [size]\nruntimes: [mlx]\nvariants:\n  - name: m\n"
                    "    steps:\n      - kind: export-mlx\n        bits: 4\n        group_size: 100\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:10: variants\.0\.steps\.0\.group_size: Input should be 32, 64"):
        load_recipe(path)


def test_missing_mlx_extra(exported, nano, monkeypatch):
    from harness.runtimes.mlx import Mlx
    from harness.steps._base import StepContext
    from harness.steps.export_mlx import ExportMlx, ExportMlxConfig

    for module in ("mlx", "mlx.core", "mlx_lm", "mlx_lm.utils"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"step export-mlx.*install 'fastvlm-harness\[mlx\]'"):
        ExportMlx().apply(ExportMlxConfig(), nano, StepContext())
    with pytest.raises(RuntimeUnavailable, match=r"runtime mlx.*fastvlm-harness\[mlx\]"):
        Mlx().load(exported[0])
    assert "error" in Mlx().info()  # info never breaks a run


def test_onnx_vision_graph_feeds_the_mlx_llm(tmp_path):
    """`vision: onnx`: the export carries vision.onnx; features from ORT, answers equal torch's."""
    pytest.importorskip("onnxruntime")
    from harness.data.nano_vqa import load_nano_vqa
    from harness.runtimes.mlx import Mlx

    items = load_nano_vqa("test").select(range(4))
    loaded, _ = build(tmp_path / "v", [{"kind": "export-mlx", "dtype": "float32", "vision": "onnx"}])
    manifest = exports.export_manifest(tmp_path / "v", "mlx")
    assert manifest["graphs"] == {"llm": "llm", "vision": "vision.onnx"} and manifest["settings"]["vision"] == "onnx"
    session = Mlx().load(tmp_path / "v")
    assert abs(session.encode_images(items["image"]) - loaded.encode_images(items["image"])).max() < 1e-4
    want = loaded.generate(items["image"], items["question"], max_new_tokens=4)
    assert session.generate(items["image"], items["question"], max_new_tokens=4).token_ids == want.token_ids


# --- a harness run ---------------------------------------------------------------------------------
@pytest.mark.slow  # ~2 min on 2 cores: the automatic parity suite (200 items) on MLX's CPU int4 kernels
def test_recipe_run_with_mlx_variants(tmp_path, nano_dir):
    """torch base + MLX 4-bit g64 + a pruned variant MLX cannot express: the MLX variant is measured
    (parity added automatically, size of the MLX files), the bad one is a recorded failed variant."""
    from harness.run.runner import run

    from .runs import make_recipe

    path = make_recipe(tmp_path, """\
        - name: base
          steps: []
        - name: mlx4
          steps: [{kind: export-mlx, bits: 4, group_size: 64}]
        - name: pruned
          steps: [{kind: structured-prune, what: heads, heads: [1], head_unit: query}, {kind: export-mlx}]
        """, suites="[acc-small, size]", name="mlxrun")
    path.write_text(path.read_text() + "runtimes: [torch-eager, mlx]\n")
    run_dir = run(path, output=tmp_path / "reports", progress=False)
    summary = json.loads((run_dir / "results.json").read_text())
    variants = {v["name"]: v for v in summary["variants"]}
    assert variants["base"]["status"] == "ok" and variants["mlx4"]["status"] == "ok"
    error = variants["pruned"]["error"]
    assert variants["pruned"]["status"] == "failed" and "cannot be described by mlx-lm's qwen2" in error, error
    assert "\n" not in error.strip()
    measured = variants["mlx4"]["runtimes"]["mlx"]
    assert measured["parity"]["agreement"] >= 0.9 and measured["parity"]["logits"]["top1_agreement"] >= 0.875
    assert measured["size"]["storage_format"].startswith("mlx (mlx-lm qwen2, affine int4 g64 float16")
    assert 0 < measured["size"]["total_mb"] < variants["base"]["runtimes"]["torch-eager"]["size"]["total_mb"]
    base_acc = variants["base"]["runtimes"]["torch-eager"]["accuracy"]["acc-small"]["score"]
    assert measured["accuracy"]["acc-small"]["n"] == 60 and measured["accuracy"]["acc-small"]["score"] >= base_acc - 0.1
    print(f"\nrun: mlx4 parity {measured['parity']['agreement']}, size {measured['size']['total_mb']:.3f} MB")
    html = (run_dir / "report.html").read_text()
    assert "mlx4" in html and "export-mlx" in html


# --- real size, by hand ------------------------------------------------------------------------------
def _dequantized_copy(loaded, model, quantization: dict):
    """A torch copy of the LLM carrying the MLX export's weights, dequantized by `mlx.core.dequantize`:
    the reference that says whether the runtime computes what the quantized weights hold."""
    import copy

    import mlx.core as mx
    import numpy as np
    import torch
    from mlx.utils import tree_flatten

    flat = dict(tree_flatten(model.parameters()))
    quant = {k: v for k, v in quantization.items() if k in ("group_size", "bits")}
    llm, head = copy.deepcopy(loaded.llm), copy.deepcopy(loaded.lm_head)
    with torch.no_grad():
        for name in [k for k in flat if not k.endswith((".scales", ".biases"))]:
            value = flat[name]
            if name.endswith(".weight") and name[:-6] + "scales" in flat:
                value = mx.dequantize(value, flat[name[:-6] + "scales"], flat[name[:-6] + "biases"], **quant)
            target = llm if name.startswith("model.") else head
            key = name.removeprefix("model.").removeprefix("lm_head.")
            target.get_parameter(key).copy_(torch.from_numpy(np.array(value.astype(mx.float32))))
        if "lm_head.weight" not in flat:  # tied: the head is the (dequantized) embedding
            head.weight.copy_(llm.embed_tokens.weight)
    return llm, head


@pytest.mark.slow
@pytest.mark.parametrize("bits", [None, 8, 4])
def test_fastvlm_0p5b_llm_first_token_parity(tmp_path, bits):
    """`random:fastvlm-0.5b`'s LLM in MLX against torch on a 64-token random prompt: first-token logits
    vs the fp32 torch LLM (reported: random weights are a worst case for 4-bit), and vs torch running
    the export's own dequantized weights (asserted: the MLX runtime computes what the weights hold)."""
    import mlx.core as mx
    import numpy as np
    import torch
    from mlx_lm.utils import load_model

    from harness.exporting.mlx import write_llm
    from harness.models.loading import load_model as load_harness

    loaded = load_harness("random:fastvlm-0.5b")
    write_llm(loaded, tmp_path / "llm", "float32", bits, 64)
    model, config = load_model(tmp_path / "llm")
    vocab = loaded.model.config.text_config.vocab_size
    ids = torch.randint(0, vocab, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = loaded.lm_head(loaded.llm(input_ids=ids).last_hidden_state[:, -1]).float().numpy()
    got = np.array(model(mx.array(ids.numpy()))[:, -1].astype(mx.float32))

    def cosine(a, b):
        return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))

    line = f"fastvlm-0.5b LLM mlx bits={bits} g64: vs fp32 torch max-abs {np.abs(got - want).max():.3g}, " \
           f"cosine {cosine(got, want):.6f}, top1 {'same' if got.argmax() == want.argmax() else 'differs'}"
    if bits is None:
        assert cosine(got, want) > 0.9999
    else:
        llm, head = _dequantized_copy(loaded, model, config["quantization"])
        with torch.inference_mode():
            same = head(llm(input_ids=ids).last_hidden_state[:, -1]).float().numpy()
        line += (f"; vs torch on the dequantized weights max-abs {np.abs(got - same).max():.3g}, "
                 f"cosine {cosine(got, same):.6f}")
        assert cosine(got, same) > 0.9999
    print("\n" + line)
