"""`export-executorch`: add an ExecuTorch export (XNNPACK delegate; vision+projector, token
embedding, Qwen2 decoder with a static KV cache, float or torchao 8da4w / 8da8w) to the variant,
keeping its torch weights as the reference (see harness/exporting/executorch.py)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import require
from harness.exporting import GENERATION_GRAPHS, Graph
from harness.registries import STEPS
from harness.steps._base import PartsConfig, Step, StepContext


class ExportExecutorchConfig(PartsConfig):
    parts_field: ClassVar[str] = "components"
    parts_chosen: ClassVar[str] = "the programs to lower"

    kind: Literal["export-executorch"] = "export-executorch"
    components: list[Graph] = Field(default_factory=lambda: list(GENERATION_GRAPHS), min_length=1,
                                    description="programs to lower; ExecuTorch generation needs all three")
    quantize: Literal["none", "8da4w", "8da8w"] = Field(
        "none", description="none (fp32), or ExecuTorch's LLM schemes for XNNPACK via torchao: 8-bit dynamic "
                            "activations with int4 (8da4w) or int8 (8da8w) weights on Linear layers")
    group_size: int | None = Field(None, ge=0, le=4096,
                                   description="weights per quantization group (0 = per output channel); "
                                               "default 32 for 8da4w, 0 for 8da8w, as ExecuTorch's LLM export")
    prefill_length: int = Field(64, ge=1, le=4096,
                                description="tokens per prefill call (static shape; longer prompts go in chunks)")
    cache_length: int = Field(256, ge=2, le=32768,
                              description="KV-cache slots (static): prompt + generated tokens must fit")

    @model_validator(mode="after")
    def _fits(self) -> ExportExecutorchConfig:
        if self.prefill_length >= self.cache_length:
            raise ValueError(f"prefill_length ({self.prefill_length}) must be smaller than cache_length "
                             f"({self.cache_length})")
        if self.quantize == "none" and self.group_size is not None:
            raise ValueError("group_size applies to a quantize scheme (8da4w, 8da8w), not to quantize: none")
        if self.quantize == "8da4w" and self.group_size == 0:
            raise ValueError("8da4w needs a group size (e.g. 32): int4 weights are quantized per group")
        if self.group_size and (self.group_size & (self.group_size - 1) or self.group_size < 16):
            raise ValueError(f"group_size {self.group_size} must be 0 or a power of two >= 16 (XNNPACK's kernels)")
        return self

    def groups(self) -> int:
        if self.group_size is not None:
            return self.group_size
        return 32 if self.quantize == "8da4w" else 0


@STEPS.register("export-executorch", "export to ExecuTorch .pte programs (XNNPACK): vision+projector, embedder, "
                                     "prefill/decode static-KV-cache decoder; fp32 or torchao 8da4w/8da8w")
class ExportExecutorch(Step):
    Config = ExportExecutorchConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "pte"
    examples: ClassVar[list[dict[str, Any]]] = [{"kind": "export-executorch", "components": ["embed"]}]

    def apply(self, config: ExportExecutorchConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:  # the export is on disk already; replay rebuilds the torch reference only
            return
        require("executorch", "executorch", "step export-executorch")
        from harness.environment import package_version
        from harness.exporting import save_assets, write_export_manifest
        from harness.exporting.executorch import export_model

        folder = ctx.export_dir("pte")
        roles = save_assets(model, folder)
        result = export_model(model, folder, list(config.components), config.quantize, config.groups(),
                              config.prefill_length, config.cache_length)
        settings = {"exporter": f"executorch {package_version('executorch') or 'unknown'} (XNNPACK)",
                    "dtype": "float32", "quantize": config.quantize, "components": list(config.components),
                    "prefill_length": config.prefill_length, "cache_length": config.cache_length, "batch": 1,
                    "convert_seconds": result["seconds"], "delegation": result["delegation"]}
        if result["quantized"]:
            settings["quantization"] = {**result["quantized"],
                                        "torchao": package_version("torchao") or "unknown"}
        graphs = result["graphs"]
        roles |= {g: "graph" for g in graphs.values()}
        manifest = write_export_manifest(folder, "pte", settings, graphs, roles, result["model"])
        ctx.record["convert_seconds"] = result["seconds"]
        ctx.note(_note(config, result, manifest))


def _note(config: ExportExecutorchConfig, result: dict[str, Any], manifest: dict[str, Any]) -> str:
    graph_bytes = sum(f["bytes"] for f in manifest["files"] if f["role"] == "graph")
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in result["seconds"].items())
    share = ", ".join(f"{k} {d['delegated_nodes']}/{d['delegated_nodes'] + d['non_delegated_nodes']}"
                      for k, d in result["delegation"].items())
    quant = result["quantized"]
    scheme = (f"{quant['scheme']} (group {quant['group_size'] or 'per-channel'}) on {quant['linear_layers']} Linear "
              f"layers, {len(quant['skipped'])} left float" if quant else "fp32")
    return (f"pte: lowered {', '.join(result['graphs'])} with ExecuTorch/XNNPACK ({timing}), {scheme}, "
            f"{graph_bytes / 1e6:.2f} MB of programs; nodes delegated to XNNPACK: {share}; decoder cache "
            f"{config.cache_length} slots, prefill chunks of {config.prefill_length}")
