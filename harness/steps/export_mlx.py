"""`export-mlx`: add an MLX export — the LLM as an mlx-lm Qwen2 model directory, float or quantized
by `mlx.core.quantize` (4/8-bit, group 32/64/128, Apple's shipping layout) — keeping the torch
weights as the reference; the vision features come from the graph `vision` names (see
harness/exporting/mlx.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import require
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext, no_targets

DEFAULT_GROUP = 64  # what Apple ships FastVLM's MLX LLM with
VISION = {"torch": "the variant's own vision tower + projector (torch, from this artifact's weights)",
          "onnx": "vision.onnx in this folder (ONNX Runtime)"}


class ExportMlxConfig(StepConfig):
    kind: Literal["export-mlx"] = "export-mlx"
    dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "float16", description="dtype of the float weights (and of the scales/biases when quantized)")
    bits: Literal[4, 8] | None = Field(None, description="mlx.core.quantize bits for every Linear and the embedding; "
                                                         "null keeps the LLM float")
    group_size: Literal[32, 64, 128] | None = Field(
        None, description="quantization group size with bits (default 64, Apple's); must divide hidden_size and "
                          "intermediate_size")
    vision: Literal["torch", "onnx"] = Field(
        "torch", description="where the runtime computes image features: the variant's torch vision tower + "
                             "projector, or a vision.onnx written into the export (needs the onnx extra)")

    @model_validator(mode="after")
    def _only_llm(self) -> ExportMlxConfig:
        no_targets(self, "the MLX export is always the LLM; `vision` picks the vision graph")
        if self.bits is None and self.group_size is not None:
            raise ValueError("group_size applies only to a quantized export: set bits: 4 or 8, or drop group_size")
        return self


@STEPS.register("export-mlx", "export the LLM to MLX (mlx-lm qwen2 dir; float or mlx 4/8-bit, group 32/64/128); "
                              "vision from torch or ONNX")
class ExportMlx(Step):
    Config = ExportMlxConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "mlx"
    examples: ClassVar[list[dict[str, Any]]] = [{"kind": "export-mlx", "dtype": "float32"},
                                                {"kind": "export-mlx", "bits": 4, "group_size": 32}]

    def apply(self, config: ExportMlxConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:  # the export is on disk already; the torch weights are what replay rebuilds
            return
        mx = require("mlx.core", "mlx", "step export-mlx")
        require("mlx_lm", "mlx", "step export-mlx")
        from harness.environment import package_version
        from harness.exporting import model_facts, save_assets, write_export_manifest
        from harness.exporting.mlx import LLM_DIR, write_llm

        folder = ctx.export_dir("mlx")
        roles = save_assets(model, folder)
        group = config.group_size or DEFAULT_GROUP
        result = write_llm(model, folder / LLM_DIR, config.dtype, config.bits, group)
        graphs = {"llm": LLM_DIR}
        if config.vision == "onnx":
            require("onnx", "onnx", "step export-mlx with vision: onnx")
            from harness.exporting.onnx import export_model

            graphs.update(export_model(model, folder, ["vision"], 17, 100.0)["graphs"])
        roles.update({f"{LLM_DIR}/model.safetensors": "weights", f"{LLM_DIR}/config.json": "config"})
        quant = {"bits": config.bits, "group_size": group} if config.bits else {}
        mode = f"affine int{config.bits} g{group}" if config.bits else "float"
        versions = f"mlx-lm {package_version('mlx-lm')}, mlx {mx.__version__}"
        settings = {"exporter": f"mlx-lm qwen2, {mode} {config.dtype} ({versions})",
                    "layout": f"{LLM_DIR}/: mlx-lm model directory (config.json + model.safetensors)",
                    "dtype": config.dtype,
                    "mode": mode,
                    **quant, "vision": config.vision, "vision_graph": VISION[config.vision]}
        facts = model_facts(model, mlx_config=result["config"], quantized_layers=result["quantized_layers"])
        manifest = write_export_manifest(folder, "mlx", settings, graphs, roles, facts)
        size = sum(f["bytes"] for f in manifest["files"] if f["role"] in ("weights", "graph", "external-data"))
        ctx.note(f"mlx: LLM as mlx-lm qwen2 ({settings['mode']}, {config.dtype}), {result['quantized_layers']} "
                 f"quantized layers, {size / 1e6:.2f} MB; vision from {config.vision}")
