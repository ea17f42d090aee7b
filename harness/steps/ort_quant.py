"""`ort-quant`: quantize a variant's ONNX graphs with onnxruntime.quantization, in place.

- `dynamic-int8`: INT8 weights, activations quantized at run time (MatMul/Gemm by default).
- `static-int8`: QDQ format, INT8 weights (per channel) and activations with ranges from a
  calibration reader fed with the model's own processed inputs (`calibration:`, as every other
  calibrated step): pixel values for the vision graph; spliced prompt+answer embeddings, mask
  and positions (empty past, i.e. prefill) for the decoder.
- `int4-weight-only`: MatMul weights as 4-bit blocks (`MatMulNBits`, `block_size`, symmetric or
  not), activations float at the graph's edges; `accuracy_level` 4 (the default, as
  onnxruntime-genai's builder on CPU) lets the CPU kernels quantize the activations to int8 per
  block inside MatMulNBits. Measured here (2 threads, single MatMuls of FastVLM-0.5B's shapes):
  0.31 -> 0.05 ms (896x4864), 0.30 -> 0.13 ms (4864x896), 3.7 -> 0.9 ms (a quarter of the LM
  head); the decoder's last-token logits cosine to fp32 0.870 (level 0) vs 0.868 (level 4) at
  random:fastvlm-0.5b (benchmarks/results/ort_int4_accuracy.json).

`targets` pick graphs: vision/projector → `vision.onnx`, llm → `decoder.onnx` (the embedding
table is a Gather, left float). The torch weights are untouched: they stay the parity reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from harness.errors import StepError, first_line, require
from harness.registries import STEPS
from harness.steps._base import Step, StepConfig, StepContext, distinct
from harness.steps._calibration import CalibrationSpec

Mode = Literal["dynamic-int8", "static-int8", "int4-weight-only"]
DEFAULT_OPS = {"dynamic-int8": ["MatMul", "Gemm"], "static-int8": ["MatMul", "Gemm", "Conv"],
               "int4-weight-only": ["MatMul"]}


class OrtQuantConfig(StepConfig):
    kind: Literal["ort-quant"] = "ort-quant"
    mode: Mode = "dynamic-int8"
    op_types: list[str] | None = Field(None, min_length=1, description="op types to quantize (default per mode)")
    per_channel: bool = Field(True, description="per-channel weight scales (int8 modes)")
    reduce_range: bool | None = Field(None, description=(
        "int8 modes: 7-bit weights, so that ORT's u8s8 int8 kernels cannot saturate their 16-bit sums on a CPU "
        "without VNNI (AVX2, AVX-512 without VNNI); null: on where this CPU lacks VNNI (the choice is recorded)"))
    block_size: int = Field(32, ge=16, description="int4: weights per scale block (a power of two >= 16)")
    symmetric: bool = Field(True, description="int4: symmetric blocks (no zero points)")
    accuracy_level: int | None = Field(4, ge=0, le=4, description=(
        "int4: MatMulNBits compute type: 4 = int8 activations (VNNI/AMX kernels), 0 or null = float; 4 by default "
        "as onnxruntime-genai does on CPU: 2.5-6x faster MatMuls at 0.5B shapes, same logits cosine (see module doc)"))
    calibration: CalibrationSpec = Field(default_factory=lambda: CalibrationSpec(items=32),
                                         description="static-int8: activation ranges from these inputs")

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"block_size {value} is not a power of two; use 16, 32, 64, 128, ...")
        return value

    @field_validator("op_types")
    @classmethod
    def _ops_once(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else distinct(value, "op_types")


def graphs_for(targets: tuple[str, ...]) -> list[str]:
    graphs = []
    if {"vision", "projector"} & set(targets):
        graphs.append("vision")
    if "llm" in targets:
        graphs.append("decoder")
    return graphs


@STEPS.register("ort-quant", "quantize the ONNX export: dynamic INT8, static INT8 QDQ (calibrated), INT4 MatMulNBits")
class OrtQuant(Step):
    Config = OrtQuantConfig
    consumes: ClassVar[str] = "onnx"
    produces: ClassVar[str] = "onnx"
    example_requires: ClassVar[list[dict[str, Any]]] = [{"kind": "export-onnx", "external_data_mb": 0}]
    examples: ClassVar[list[dict[str, Any]]] = [
        {"kind": "ort-quant", "mode": "dynamic-int8"},
        {"kind": "ort-quant", "mode": "static-int8", "calibration": {"items": 8, "batch_size": 8}},
        {"kind": "ort-quant", "mode": "int4-weight-only", "block_size": 16, "targets": ["llm"]}]

    def apply(self, config: OrtQuantConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:
            return
        require("onnxruntime.quantization", "onnx", "step ort-quant")
        from harness.exporting import graphs_to_rewrite, read_manifest_file, record_export_step
        from harness.exporting.onnx import finalize

        folder = ctx.export_dir("onnx")
        manifest = read_manifest_file(folder)
        wanted = graphs_to_rewrite("ort-quant", "onnx", manifest, graphs_for(self.targets(config)))
        feeds = _calibration_feeds(model, config, ctx, manifest["model"]) if config.mode == "static-int8" else {}
        suffix = {"dynamic-int8": "int8", "static-int8": "qdq", "int4-weight-only": "q4"}[config.mode]
        reduced_range = reduce_range(config)  # decided once: what quantizes every graph is what the manifest records
        renamed = {}
        for graph in wanted:
            source = folder / manifest["graphs"][graph]
            target = folder / f"{graph}.{suffix}.onnx"
            big = (folder / f"{source.name}.data").exists()  # keep weights external if they were
            try:
                _quantize(config, source, target, feeds.get(graph), big, reduced_range)
            except StepError:
                raise
            except Exception as exc:  # noqa: BLE001 - onnxruntime.quantization raises untyped errors
                first = first_line(exc)
                raise StepError(f"ort-quant {config.mode}: {graph} graph failed to quantize: {first}") from exc
            finalize(target, float("inf"))
            for old in (source, folder / f"{source.name}.data"):
                old.unlink(missing_ok=True)
            renamed[graph] = target.name
        settings = {"mode": config.mode, "graphs": wanted, "op_types": config.op_types or DEFAULT_OPS[config.mode]}
        if config.mode == "int4-weight-only":
            settings |= {"block_size": config.block_size, "symmetric": config.symmetric,
                         "accuracy_level": config.accuracy_level}
        else:
            settings |= {"per_channel": config.per_channel, "reduce_range": reduced_range}
        if config.mode == "static-int8":
            settings |= {"format": "QDQ", "calibration": config.calibration.model_dump(mode="json"),
                         "calibration_feeds": {g: len(f) for g, f in feeds.items()}}
        after = record_export_step(folder, {"kind": "ort-quant", **settings}, renamed)
        graph_bytes = sum(f["bytes"] for f in after["files"] if f["role"] in ("graph", "external-data"))
        ctx.note(f"onnx: {config.mode} on {', '.join(wanted)} → {', '.join(renamed.values())}; "
                 f"graphs now {graph_bytes / 1e6:.2f} MB")


def reduce_range(config: OrtQuantConfig) -> bool:
    """The recipe's `reduce_range`, or (unset) whether this CPU lacks VNNI: without it ORT's int8 MatMul
    multiplies u8 by s8 in saturating 16-bit pairs, which full-range weights overflow (measured on an
    AVX2 EPYC: a tiny model's dynamic-INT8 decoder kept 0 of 8 greedy answers)."""
    if config.reduce_range is not None:
        return config.reduce_range
    from harness.environment import cpu_features

    return cpu_features()["vnni"] is False


def _quantize(config: OrtQuantConfig, source: Path, target: Path, feeds: list[dict[str, Any]] | None,
              big: bool, reduced_range: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    ops = config.op_types or DEFAULT_OPS[config.mode]
    if config.mode == "dynamic-int8":
        quantize_dynamic(source, target, op_types_to_quantize=ops, per_channel=config.per_channel,
                         reduce_range=reduced_range,
                         weight_type=QuantType.QInt8, use_external_data_format=big)
    elif config.mode == "static-int8":
        quantize_static(source, target, _Reader(feeds or []), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
                        per_channel=config.per_channel, reduce_range=reduced_range,
                        activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, use_external_data_format=big)
    else:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=4, block_size=config.block_size,
                                         is_symmetric=config.symmetric, accuracy_level=config.accuracy_level,
                                         op_types_to_quantize=tuple(ops))
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=big)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over prepared feeds."""

    def __init__(self, feeds: list[dict[str, Any]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self.feeds, None)

    def rewind(self) -> None:  # not needed for MinMax; kept for the protocol
        pass


def _calibration_feeds(loaded: Any, config: OrtQuantConfig, ctx: StepContext,
                       facts: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per graph, the inputs the graph sees at inference, computed with the (float) torch model;
    `facts` are the export's model facts (cache layout)."""
    import numpy as np
    import torch

    from harness.exporting.onnx import decoder_names
    from harness.steps._calibration import calibration_batches

    kv_heads, head_dim = int(facts["kv_heads"]), int(facts["head_dim"])
    past_names, _ = decoder_names(int(facts["num_layers"]))
    feeds: dict[str, list[dict[str, Any]]] = {"vision": [], "decoder": []}
    with torch.inference_mode():
        for batch in calibration_batches(loaded, config.calibration, "ort-quant", ctx.data_dir):
            feeds["vision"].append({"pixel_values": batch["pixel_values"].float().numpy()})  # graphs are fp32
            features = loaded.image_features(batch["pixel_values"]).pooler_output
            ids, mask = batch["input_ids"], batch["attention_mask"]
            embeds = loaded.embed_tokens(ids)
            image_mask = (ids == loaded.model.config.image_token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(image_mask, features.to(embeds.dtype))
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            empty = np.zeros((ids.shape[0], kv_heads, 0, head_dim), dtype=np.float32)
            feeds["decoder"].append({"inputs_embeds": embeds.float().numpy(), "attention_mask": mask.numpy(),
                                     "position_ids": positions.numpy(), **{n: empty for n in past_names}})
    return feeds
