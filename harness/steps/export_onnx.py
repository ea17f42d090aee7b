"""`export-onnx`: add an ONNX export (vision+projector, token embedding, KV-cache decoder) to the
variant, keeping its torch weights as the reference (see harness/exporting/onnx.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.errors import require
from harness.exporting import GENERATION_GRAPHS, Graph
from harness.registries import STEPS
from harness.steps._base import PartsConfig, Step, StepContext


class ExportOnnxConfig(PartsConfig):
    parts_field: ClassVar[str] = "components"
    parts_chosen: ClassVar[str] = "the graphs to export"

    kind: Literal["export-onnx"] = "export-onnx"
    opset: int = Field(17, ge=14, le=20, description="ONNX opset of the legacy (TorchScript) exporter")
    components: list[Graph] = Field(default_factory=lambda: list(GENERATION_GRAPHS), min_length=1,
                                    description="graphs to export; ORT generation needs all three")
    external_data_mb: float = Field(100.0, ge=0, description="graphs larger than this keep weights in <graph>.data")
    decoder_graph: Literal["traced", "fused"] = Field(
        "traced", description="traced: the TorchScript exporter, plain ONNX ops (any ONNX consumer); fused: "
        "torch.export + onnxscript's ORT fusions (RMSNorm, residual add + RMSNorm as ORT ops, opset >= 18): "
        "about a quarter of the decoder graph's nodes, for onnxruntime only; exporting takes longer")


@STEPS.register("export-onnx", "export to ONNX: vision+projector, embeddings, merged prefill/decode KV-cache decoder")
class ExportOnnx(Step):
    Config = ExportOnnxConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "onnx"
    examples: ClassVar[list[dict[str, Any]]] = [{"kind": "export-onnx", "external_data_mb": 0},
                                                {"kind": "export-onnx", "decoder_graph": "fused"}]

    def apply(self, config: ExportOnnxConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:  # the export is on disk already; the torch weights are what replay rebuilds
            return
        require("onnx", "onnx", "step export-onnx")
        from harness.exporting import save_assets, write_export_manifest
        from harness.exporting.onnx import FUSED_OPSET, export_model

        folder = ctx.export_dir("onnx")
        roles = save_assets(model, folder)
        result = export_model(model, folder, list(config.components), config.opset, config.external_data_mb,
                              config.decoder_graph)
        settings = {"exporter": "torch.onnx.export (TorchScript)", "opset": config.opset,
                    "components": list(config.components), "dtype": "float32",
                    "external_data_mb": config.external_data_mb, "decoder_graph": config.decoder_graph}
        if config.decoder_graph == "fused" and "decoder" in config.components:
            settings |= {"decoder_exporter": "torch.export + onnxscript ort_fusions",
                         "decoder_opset": max(config.opset, FUSED_OPSET), "decoder_ort_ops": result["ort_ops"]}
            ops = ", ".join(f"{k} {v}" for k, v in result["ort_ops"].items())
            ctx.note(f"onnx: decoder fused for ORT ({ops})")
        manifest = write_export_manifest(folder, "onnx", settings, result["graphs"], roles, result["model"])
        graph_bytes = sum(f["bytes"] for f in manifest["files"] if f["role"] in ("graph", "external-data"))
        ctx.note(f"onnx: exported {', '.join(result['graphs'])} (opset {config.opset}), "
                 f"{graph_bytes / 1e6:.2f} MB of graphs and weights")
