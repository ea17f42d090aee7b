"""`export-mlx`: add an MLX export — the LLM as an mlx-lm Qwen2 model directory, float or quantized
by `mlx.core.quantize` (4/8-bit, group 32/64/128, Apple's shipping layout) — keeping the torch
weights as the reference; the vision features come from the graph `vision` names (see
harness/exporting/mlx.py). With `vision: mlx` the whole VLM goes to MLX in mlx-vlm's `fastvlm`
layout instead (harness/exporting/_mlx_vlm.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import require
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext, no_targets

DEFAULT_GROUP = 64  # what Apple ships FastVLM's MLX LLM with
VISION = {"torch": "the variant's own vision tower + projector (torch, from this artifact's weights)",
          "onnx": "vision.onnx in this folder (ONNX Runtime)",
          "mlx": "mlx-vlm's FastViTHD + projector in this folder's vlm/ (the whole VLM in MLX)"}
VLM_DIR = "vlm"  # the whole VLM in mlx-vlm's `fastvlm` layout (vision: mlx)


class ExportMlxConfig(StepConfig):
    kind: Literal["export-mlx"] = "export-mlx"
    dtype: Literal["float16", "bfloat16", "float32"] = Field(
        "float16", description="dtype of the float weights (and of the scales/biases when quantized)")
    bits: Literal[4, 8] | None = Field(None, description="mlx.core.quantize bits for every Linear and the embedding; "
                                                         "null keeps the LLM float")
    group_size: Literal[32, 64, 128] | None = Field(
        None, description="quantization group size with bits (default 64, Apple's); must divide hidden_size and "
                          "intermediate_size")
    vision: Literal["torch", "onnx", "mlx"] = Field(
        "torch", description="where the runtime computes image features: the variant's torch vision tower + "
                             "projector, a vision.onnx written into the export (needs the onnx extra), or mlx: "
                             "the whole VLM in mlx-vlm's fastvlm layout (released FastViTHD towers only; the "
                             "projector is quantized with the LLM, the tower stays float)")

    @model_validator(mode="after")
    def _only_llm(self) -> ExportMlxConfig:
        no_targets(self, "the MLX export is the LLM (or, with vision: mlx, the whole VLM); `vision` picks the vision "
                         "graph")
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
        from harness.exporting.mlx import LLM_DIR

        folder = ctx.export_dir("mlx")
        roles = save_assets(model, folder)
        group = config.group_size or DEFAULT_GROUP
        result, graphs = self._write(config, model, folder, group)
        weights = sorted(p.relative_to(folder).as_posix() for p in (folder / graphs.get("vlm", LLM_DIR)).glob("*"))
        roles.update({name: "weights" if name.endswith(".safetensors") else "config" for name in weights})
        quant = {"bits": config.bits, "group_size": group} if config.bits else {}
        mode = f"affine int{config.bits} g{group}" if config.bits else "float"
        library = "mlx-vlm fastvlm" if config.vision == "mlx" else "mlx-lm qwen2"
        versions = f"{library.split()[0]} {package_version(library.split()[0])}, mlx {mx.__version__}"
        layout = (f"{VLM_DIR}/: mlx-vlm fastvlm model directory (Apple's llava_qwen2 config + MLX weights)"
                  if config.vision == "mlx" else f"{LLM_DIR}/: mlx-lm model directory (config.json + "
                                                 "model.safetensors)")
        settings = {"exporter": f"{library}, {mode} {config.dtype} ({versions})", "layout": layout,
                    "dtype": config.dtype, "mode": mode,
                    **quant, "vision": config.vision, "vision_graph": VISION[config.vision]}
        facts = model_facts(model, mlx_config=result["config"], quantized_layers=result["quantized_layers"])
        manifest = write_export_manifest(folder, "mlx", settings, graphs, roles, facts)
        size = sum(f["bytes"] for f in manifest["files"] if f["role"] in ("weights", "graph", "external-data"))
        what = "VLM as mlx-vlm fastvlm" if config.vision == "mlx" else "LLM as mlx-lm qwen2"
        ctx.note(f"mlx: {what} ({settings['mode']}, {config.dtype}), {result['quantized_layers']} quantized layers, "
                 f"{size / 1e6:.2f} MB; vision from {config.vision}")

    @staticmethod
    def _write(config: ExportMlxConfig, model: Any, folder: Any, group: int) -> tuple[dict[str, Any], dict[str, str]]:
        """Write the MLX weights the `vision` choice needs; returns the write's result and the graphs."""
        from harness.exporting.mlx import LLM_DIR, check_group_size, mlx_config, write_llm

        if config.vision == "mlx":
            require("mlx_vlm", "mlx", "step export-mlx with vision: mlx")
            from harness.exporting._mlx_vlm import write_vlm

            if config.bits is not None:
                check_group_size(mlx_config(model), group)
            return write_vlm(model, folder / VLM_DIR, config.dtype, config.bits, group), {"vlm": VLM_DIR}
        result, graphs = write_llm(model, folder / LLM_DIR, config.dtype, config.bits, group), {"llm": LLM_DIR}
        if config.vision == "onnx":
            require("onnx", "onnx", "step export-mlx with vision: onnx")
            from harness.exporting.onnx import export_model

            graphs.update(export_model(model, folder, ["vision"], 17, 100.0)["graphs"])
        return result, graphs
