"""`export-coreml`: add a Core ML (mlprogram) export — vision+projector, token embedding and a
stateless Qwen2 decoder — to the variant, and check each package's spec (what Linux can check;
prediction is macOS-only). See harness/exporting/coreml.py for why the decoder has no KV cache."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.errors import require
from harness.exporting import GENERATION_GRAPHS, Graph
from harness.registries import STEPS
from harness.steps._base import PartsConfig, Step, StepContext


class ExportCoremlConfig(PartsConfig):
    parts_field: ClassVar[str] = "components"
    parts_chosen: ClassVar[str] = "the packages to convert"

    kind: Literal["export-coreml"] = "export-coreml"
    components: list[Graph] = Field(default_factory=lambda: list(GENERATION_GRAPHS), min_length=1,
                                    description="packages to convert; generation (macOS) needs all three")
    compute_precision: Literal["float16", "float32"] = Field("float16", description="mlprogram compute precision")
    sequence_length: int = Field(128, ge=2, le=8192,
                                 description="static token length of embed/decoder (prompt + answer must fit)")
    deployment_target: Literal["iOS16", "iOS17", "iOS18"] = Field(
        "iOS18", description="minimum deployment target (iOS18 allows per-block int4 / grouped palettes)")


@STEPS.register("export-coreml", "export to Core ML mlprogram (coremltools): vision+projector, embedder, "
                                 "stateless decoder; spec validated")
class ExportCoreml(Step):
    Config = ExportCoremlConfig
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "coreml"
    examples: ClassVar[list[dict[str, Any]]] = [{"kind": "export-coreml", "components": ["embed"],
                                                 "sequence_length": 8}]

    def apply(self, config: ExportCoremlConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:
            return
        require("coremltools", "coreml", "step export-coreml")
        from harness.environment import package_version
        from harness.exporting import save_assets, write_export_manifest
        from harness.exporting.coreml import export_model

        folder = ctx.export_dir("coreml")
        roles = save_assets(model, folder)
        result = export_model(model, folder, list(config.components), config.sequence_length,
                              config.compute_precision, config.deployment_target)
        settings = {"exporter": f"coremltools {package_version('coremltools')} mlprogram {config.compute_precision}",
                    "compute_precision": config.compute_precision, "deployment_target": config.deployment_target,
                    "components": list(config.components), "sequence_length": config.sequence_length,
                    "decoder_kv_cache": False, "convert_seconds": result["seconds"]}
        model_facts = {**result["model"], "specs": result["specs"]}
        manifest = write_export_manifest(folder, "coreml", settings, result["graphs"], roles, model_facts)
        ctx.record["convert_seconds"] = result["seconds"]
        ctx.record["op_counts"] = {k: v["op_total"] for k, v in result["specs"].items()}
        size = sum(f["bytes"] for f in manifest["files"] if f["role"] in ("graph", "weights"))
        checked = ", ".join(f"{k} {v['op_total']} ops" for k, v in result["specs"].items())
        ctx.note(f"coreml: converted {', '.join(result['graphs'])} (mlprogram, {config.compute_precision}, "
                 f"{config.deployment_target}) {size / 1e6:.2f} MB; spec validated ({checked}); "
                 "decoder without KV cache (coremltools cannot convert StaticCache's index_copy_)")
