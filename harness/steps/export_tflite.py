"""`export-tflite`: add a LiteRT (TFLite) export (vision+projector, token embedding, Qwen2 decoder
with a static KV cache) to the variant, keeping its torch weights as the reference
(see harness/exporting/litert.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import require
from harness.exporting import GENERATION_GRAPHS, Graph
from harness.registries import STEPS
from harness.steps._base import PartsConfig, Step, StepContext


class ExportTfliteConfig(PartsConfig):
    parts_field: ClassVar[str] = "components"
    parts_chosen: ClassVar[str] = "the graphs to convert"

    kind: Literal["export-tflite"] = "export-tflite"
    components: list[Graph] = Field(default_factory=lambda: list(GENERATION_GRAPHS), min_length=1,
                                    description="graphs to convert; LiteRT generation needs all three")
    prefill_length: int = Field(64, ge=1, le=4096,
                                description="tokens per prefill call (static shape; longer prompts go in chunks)")
    cache_length: int = Field(256, ge=2, le=32768,
                              description="KV-cache slots (static): prompt + generated tokens must fit")

    @model_validator(mode="after")
    def _fits(self) -> ExportTfliteConfig:
        if self.prefill_length >= self.cache_length:
            raise ValueError(f"prefill_length ({self.prefill_length}) must be smaller than cache_length "
                             f"({self.cache_length})")
        return self


@STEPS.register("export-tflite", "export to LiteRT/TFLite via litert-torch: vision+projector, embedder, "
                                 "prefill/decode KV-cache decoder")
class ExportTflite(Step):
    Config = ExportTfliteConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "tflite"
    examples: ClassVar[list[dict[str, Any]]] = [{"kind": "export-tflite", "components": ["vision"]}]

    def apply(self, config: ExportTfliteConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:  # the export is on disk already; replay rebuilds the torch reference only
            return
        require("litert_torch", "tflite", "step export-tflite")
        require("ai_edge_litert", "tflite", "step export-tflite")
        from harness.environment import package_version
        from harness.exporting import save_assets, write_export_manifest
        from harness.exporting.litert import export_model

        folder = ctx.export_dir("tflite")
        roles = save_assets(model, folder)
        result = export_model(model, folder, list(config.components), config.prefill_length, config.cache_length)
        settings = {"exporter": f"litert-torch {package_version('litert-torch') or 'unknown'}", "dtype": "float32",
                    "components": list(config.components), "prefill_length": config.prefill_length,
                    "cache_length": config.cache_length, "batch": 1, "convert_seconds": result["seconds"]}
        manifest = write_export_manifest(folder, "tflite", settings, result["graphs"], roles, result["model"])
        ctx.record["convert_seconds"] = result["seconds"]
        graph_bytes = sum(f["bytes"] for f in manifest["files"] if f["role"] == "graph")
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in result["seconds"].items())
        ctx.note(f"tflite: converted {', '.join(result['graphs'])} with litert-torch ({timing}), "
                 f"{graph_bytes / 1e6:.2f} MB of graphs; decoder cache {config.cache_length} slots, "
                 f"prefill chunks of {config.prefill_length}")
