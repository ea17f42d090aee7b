"""`litert-quant`: quantize the variant's .tflite graphs in place with ai-edge-quantizer recipes.

Modes: `dynamic-int8` (int8 weights, activations quantized on the fly), `weight-only-int8`,
`weight-only-int4` (weights stored narrow, float compute), and `full-int8` (static int8 weights
and activations, int8 signature inputs/outputs, calibrated on the variant's own LiteRT generation
over calibration items). Full-integer graphs are what an Edge TPU compiler needs, so every
quantized graph gets an integer report (ops touching a float tensor, I/O dtypes) recorded in the
step record, in `export.json` and in the variant's notes; where Coral's `edgetpu_compiler` is on
PATH, full-int8 also records its Edge TPU op mapping per graph (`harness.exporting.edgetpu`), and
otherwise a note says it was not run and why.

Why full-int8 sets its own attention-mask value: the decoder adds the mask to the attention
scores, and an int8 ADD output has one scale for both. With the float export's -1e4 the scores
are left with steps of ~39 and attention degenerates (measured on nano: 4.5 % answer agreement);
-30 still masks (exp(-30) ~ 1e-13) with steps of ~0.16. The value is calibrated with and written
to the export's `model.mask_value`, which the runtime feeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.errors import StepError, first_line, require
from harness.exporting import Graph
from harness.registries import STEPS
from harness.steps._base import PartsConfig, Step, StepContext
from harness.steps._calibration import CalibrationSpec, step_rows

Mode = Literal["dynamic-int8", "weight-only-int8", "weight-only-int4", "full-int8"]
RECIPES = {"dynamic-int8": "dynamic_wi8_afp32", "weight-only-int8": "weight_only_wi8_afp32",
           "weight-only-int4": "weight_only_wi4_afp32", "full-int8": "static_wi8_ai8"}


class LitertQuantConfig(PartsConfig):
    parts_field: ClassVar[str] = "graphs"
    parts_chosen: ClassVar[str] = "the graphs to quantize"

    kind: Literal["litert-quant"] = "litert-quant"
    mode: Mode = "dynamic-int8"
    graphs: list[Graph] | None = Field(
        None, min_length=1, description="graphs to quantize (default: every graph of the tflite export)")
    calibration: CalibrationSpec = Field(default_factory=lambda: CalibrationSpec(items=8, batch_size=4),
                                         description="full-int8 only: items whose LiteRT generation calibrates")
    calibration_tokens: int = Field(4, ge=1, le=64, description="full-int8: tokens generated per calibration item")
    mask_value: float = Field(-30.0, lt=0, ge=-1e4, description=(
        "full-int8: additive attention-mask value fed to the integer decoder (see module doc)"))


@STEPS.register("litert-quant", "quantize .tflite graphs with ai-edge-quantizer: dynamic int8, weight-only int8/int4, "
                                "full-int8 (int8 I/O, non-integer op report)")
class LitertQuant(Step):
    Config = LitertQuantConfig
    consumes: ClassVar[str] = "tflite"
    produces: ClassVar[str] = "tflite"
    example_requires: ClassVar[list[dict[str, Any]]] = [{"kind": "export-tflite", "components": ["embed"]}]
    examples: ClassVar[list[dict[str, Any]]] = [{"kind": "litert-quant", "mode": "weight-only-int8"}]

    def apply(self, config: LitertQuantConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:
            return
        require("ai_edge_quantizer", "tflite", "step litert-quant")
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils

        from harness.exporting import graphs_to_rewrite, read_manifest_file, record_export_step, write_export_manifest

        folder = ctx.export_dir("tflite")
        manifest = read_manifest_file(folder)
        chosen = graphs_to_rewrite("litert-quant", "tflite", manifest, config.graphs or None)
        graphs = manifest["graphs"]
        for name in chosen:
            if not tfl_flatbuffer_utils.is_float_model(tfl_flatbuffer_utils.read_model(str(folder / graphs[name]))):
                raise StepError(f"litert-quant: the {name} graph is already quantized; quantize the float export once")
        calibration: dict[str, Any] = {}
        if config.mode == "full-int8":
            roles = {f["file"]: f["role"] for f in manifest.get("files", [])}
            manifest = write_export_manifest(folder, "tflite", {}, {}, roles, {"mask_value": config.mask_value})
            calibration = _calibration_data(model, config, folder, manifest, ctx)
        reports = {name: _quantize(folder / graphs[name], name, config.mode, calibration.get(name))
                   for name in chosen}
        tpu = _edgetpu_reports(folder, graphs, chosen) if config.mode == "full-int8" else {}
        record_export_step(folder, {"kind": "litert-quant", "mode": config.mode, "recipe": RECIPES[config.mode],
                                    "graphs": chosen, "integer_report": reports,
                                    **({"mask_value": config.mask_value, "edgetpu": tpu}
                                       if config.mode == "full-int8" else {})})
        ctx.record["integer_report"] = reports
        for name, rep in reports.items():
            integer = f"; {_integer_line(rep)}" if config.mode == "full-int8" else ""
            ctx.note(f"tflite {name}: {config.mode} ({RECIPES[config.mode]}) {rep['bytes_before'] / 1e6:.3f} -> "
                     f"{rep['bytes_after'] / 1e6:.3f} MB{integer}")
        if tpu:
            from harness.exporting.edgetpu import summary_line

            ctx.record["edgetpu"] = tpu
            for line in [f"Edge TPU: {tpu['not_run']}"] if "not_run" in tpu else \
                    [summary_line(name, rep) for name, rep in tpu.items()]:
                ctx.note(line)


def _quantize(path: Path, name: str, mode: str, calibration: Any) -> dict[str, Any]:
    """Quantize one graph in place with the mode's ai-edge-quantizer recipe; its integer report."""
    from ai_edge_quantizer import quantizer, recipe

    from harness.exporting.litert import op_report

    before = path.stat().st_size
    q = quantizer.Quantizer(str(path))
    q.load_quantization_recipe(getattr(recipe, RECIPES[mode])())
    try:
        result = q.calibrate(calibration, num_threads=2) if mode == "full-int8" else None
        quantized = q.quantize(result, enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise StepError(f"litert-quant ({mode}): ai-edge-quantizer failed on the {name} graph: "
                        f"{first_line(exc)}") from exc
    quantized.export_model(str(path), overwrite=True)
    report = op_report(path)
    return {"bytes_before": before, "bytes_after": path.stat().st_size, "non_integer_ops": report["non_integer_ops"],
            "io_dtypes": report["io_dtypes"], "ops": sum(report["ops"].values())}


def _edgetpu_reports(folder: Path, graphs: dict[str, str], chosen: list[str]) -> dict[str, Any]:
    """Edge TPU op mapping of each full-int8 graph where Coral's compiler is installed; otherwise one
    entry saying it was not run and why (the compiler is an optional, separately installed tool)."""
    from harness.exporting.edgetpu import NOT_INSTALLED, compile_report, installed

    if not installed():
        return {"not_run": NOT_INSTALLED}
    return {name: compile_report(folder / graphs[name]) for name in chosen}


def _integer_line(rep: dict[str, Any]) -> str:
    float_ops = rep["non_integer_ops"]
    io = sorted({d for sig in rep["io_dtypes"].values() for d in (*sig["inputs"], *sig["outputs"])})
    if not float_ops:
        return f"all {rep['ops']} ops integer, I/O {'/'.join(io)}"
    listed = ", ".join(f"{op}x{n}" for op, n in sorted(float_ops.items(), key=lambda kv: -kv[1]))
    return f"{sum(float_ops.values())}/{rep['ops']} ops not integer ({listed}); I/O {'/'.join(io)}"


def _calibration_data(model: Any, config: LitertQuantConfig, folder: Path, manifest: dict[str, Any],
                      ctx: StepContext) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Signature inputs recorded while the float export generates answers for calibration items."""
    import torch

    from harness.exporting import GENERATION_GRAPHS
    from harness.exporting.litert import LiteRTBackend, Signature, open_interpreter
    from harness.exporting.loop import LoopSession

    graphs = manifest["graphs"]
    missing = [g for g in GENERATION_GRAPHS if g not in graphs]
    if missing:
        raise StepError(f"litert-quant full-int8 calibrates by running the export, which lacks {', '.join(missing)}; "
                        "export all three graphs first")
    spec = config.calibration
    rows = step_rows(spec.dataset, spec.items, spec.seed, "litert-quant", ctx.data_dir, ("image", "question"))
    threads = torch.get_num_threads()
    interpreters = {n: open_interpreter(folder / graphs[n], threads) for n in GENERATION_GRAPHS}
    backend = LiteRTBackend(interpreters, manifest["model"])
    recorded: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in GENERATION_GRAPHS}
    for graph, attr in (("vision", "vision"), ("embed", "embed_prefill"), ("embed", "embed_decode"),
                        ("decoder", "prefill_sig"), ("decoder", "decode_sig")):
        signature: Signature = getattr(backend, attr)
        signature.record = recorded[graph].setdefault(signature.name, [])
    session = LoopSession(backend, model.processor, manifest["model"]["image_token_id"],
                          manifest["model"]["eos_token_ids"])
    for start in range(0, len(rows), spec.batch_size):
        chunk = rows[start:start + spec.batch_size]
        session.generate(chunk["image"], chunk["question"], max_new_tokens=config.calibration_tokens,
                         min_new_tokens=config.calibration_tokens)
    return recorded
