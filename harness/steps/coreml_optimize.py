"""`coreml-optimize`: compress the variant's Core ML packages in place with `ct.optimize.coreml`:
linear (int8/int4, per-channel or per-block) weight quantization, or palettization (k-means or
uniform lookup tables of n bits). The spec of every rewritten package is checked again; its op
counts show the `constexpr_*` dequantization ops the pass inserted."""

from __future__ import annotations

import shutil
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from harness.errors import StepError, first_line, require
from harness.exporting import Graph
from harness.registries import STEPS
from harness.steps._base import PartsConfig, Step, StepContext


class CoremlOptimizeConfig(PartsConfig):
    parts_field: ClassVar[str] = "graphs"
    parts_chosen: ClassVar[str] = "the packages to compress"

    kind: Literal["coreml-optimize"] = "coreml-optimize"
    method: Literal["linear", "palettize"] = "linear"
    dtype: Literal["int8", "int4"] = Field("int8", description="linear: stored weight type")
    granularity: Literal["per_tensor", "per_channel", "per_block"] = Field(
        "per_channel", description="linear: scale granularity (per_block needs deployment_target iOS18)")
    block_size: int = Field(32, ge=1, description="linear per_block: weights per scale")
    nbits: Literal[1, 2, 3, 4, 6, 8] = Field(4, description="palettize: bits per weight index")
    palette_mode: Literal["kmeans", "uniform"] = Field("kmeans", description="palettize: how the palette is chosen")
    weight_threshold: int = Field(2048, ge=0, description="weights with fewer elements stay float (coremltools' rule)")
    graphs: list[Graph] | None = Field(
        None, min_length=1, description="packages to compress (default: every package of the coreml export)")

    @model_validator(mode="after")
    def _sense(self) -> CoremlOptimizeConfig:
        if self.method == "linear" and self.dtype == "int4" and self.granularity == "per_channel":
            raise ValueError("linear int4 needs granularity per_block (coremltools refuses per-channel int4)")
        return self


@STEPS.register("coreml-optimize", "compress Core ML packages with ct.optimize.coreml: linear int8/int4 "
                                   "quantization or palettization")
class CoremlOptimize(Step):
    Config = CoremlOptimizeConfig
    consumes: ClassVar[str] = "coreml"
    produces: ClassVar[str] = "coreml"
    example_requires: ClassVar[list[dict[str, Any]]] = [{"kind": "export-coreml", "components": ["embed"],
                                                         "sequence_length": 8}]
    examples: ClassVar[list[dict[str, Any]]] = [{"kind": "coreml-optimize", "method": "linear", "weight_threshold": 0}]

    def apply(self, config: CoremlOptimizeConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:
            return
        ct = require("coremltools", "coreml", "step coreml-optimize")
        from coremltools.optimize import coreml as cto

        from harness.exporting import graphs_to_rewrite, read_manifest_file, record_export_step
        from harness.exporting.coreml import validate_spec

        folder = ctx.export_dir("coreml")
        manifest = read_manifest_file(folder)
        chosen = graphs_to_rewrite("coreml-optimize", "coreml", manifest, config.graphs or None)
        graphs = manifest["graphs"]
        if config.method == "linear":
            op_config = cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype=config.dtype, granularity=config.granularity,
                block_size=config.block_size if config.granularity == "per_block" else None,
                weight_threshold=config.weight_threshold)
            run, label = cto.linear_quantize_weights, f"linear {config.dtype} {config.granularity}"
        else:
            op_config = cto.OpPalettizerConfig(mode=config.palette_mode, nbits=config.nbits,
                                               weight_threshold=config.weight_threshold)
            run, label = cto.palettize_weights, f"palettize {config.nbits}-bit {config.palette_mode}"
        report: dict[str, Any] = {}
        for name in chosen:
            path = folder / graphs[name]
            before = _bytes(path)
            mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
            try:
                compressed = run(mlmodel, cto.OptimizationConfig(global_config=op_config))
            except (ValueError, NotImplementedError, AssertionError) as exc:
                first = first_line(exc)
                raise StepError(f"coreml-optimize ({label}) failed on the {name} package: {first}") from exc
            tmp = path.with_name(path.stem + ".tmp.mlpackage")
            compressed.save(str(tmp))
            shutil.rmtree(path)
            tmp.rename(path)
            spec = validate_spec(path, name)
            constexpr = sum(n for op, n in spec["ops"].items() if op.startswith("constexpr_"))
            report[name] = {"bytes_before": before, "bytes_after": _bytes(path), "constexpr_ops": constexpr,
                            "op_total": spec["op_total"]}
            ctx.note(f"coreml {name}: {label} {before / 1e6:.3f} -> {report[name]['bytes_after'] / 1e6:.3f} MB, "
                     f"{constexpr} compressed weight tensors (constexpr ops); spec validated")
        record_export_step(folder, {"kind": "coreml-optimize", "mode": label, "graphs": chosen, "report": report})
        ctx.record["report"] = report


def _bytes(path: Any) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
