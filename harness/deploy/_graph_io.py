"""Inputs and outputs of exported graphs, read from the graph files themselves (not from the
manifest), so a guide states what the app will really be handed. One reader per format; each
returns signature name → {"inputs": [...], "outputs": [...]} with name, shape and dtype."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import MissingExtraError, RuntimeBackendError, first_line, require

Tensor = dict[str, Any]


def _tensor(name: str, shape: Any, dtype: str, quantization: Any = None) -> Tensor:
    """One tensor; `quantization` (scale, zero point) only for a quantized (integer) tensor."""
    out = {"name": str(name), "shape": [int(d) if isinstance(d, (int, float)) or str(d).isdigit() else str(d)
                                        for d in shape], "dtype": dtype}
    if quantization and float(quantization[0]) != 0.0:
        out["quantization"] = {"scale": float(quantization[0]), "zero_point": int(quantization[1])}
    return out


def tflite_io(path: Path) -> dict[str, dict[str, list[Tensor]]]:
    """Every signature of a `.tflite` graph with its named inputs and outputs."""
    require("ai_edge_litert", "tflite", "deploy-guide for a tflite export")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    out = {}
    for signature in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(signature)
        out[signature] = {
            side: [_tensor(name, detail["shape"], detail["dtype"].__name__, detail.get("quantization"))
                   for name, detail in sorted(details.items())]
            for side, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details()))}
    return out


def coreml_io(path: Path) -> dict[str, dict[str, list[Tensor]]]:
    """The one function of an `.mlpackage` (its spec is readable on Linux; prediction is not)."""
    require("coremltools", "coreml", "deploy-guide for a coreml export")
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2

    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    names = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType

    def describe(feature: Any) -> Tensor:
        array = feature.type.multiArrayType
        return _tensor(feature.name, list(array.shape), names.Name(array.dataType).lower())

    return {"main": {"inputs": [describe(f) for f in spec.description.input],
                     "outputs": [describe(f) for f in spec.description.output]}}


def onnx_io(path: Path) -> dict[str, dict[str, list[Tensor]]]:
    """The graph's inputs and outputs (external weights are not loaded)."""
    require("onnx", "onnx", "deploy-guide for an onnx export")
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(value: Any) -> Tensor:
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]
        return _tensor(value.name, shape, onnx.TensorProto.DataType.Name(tensor.elem_type).lower())

    return {"main": {"inputs": [describe(v) for v in graph.input if v.name not in initializers],
                     "outputs": [describe(v) for v in graph.output]}}


READERS = {"tflite": tflite_io, "coreml": coreml_io, "onnx": onnx_io}


def graph_io(fmt: str, path: Path) -> dict[str, dict[str, list[Tensor]]]:
    """The signatures of one graph file; a file its reader cannot open is one line."""
    try:
        return READERS[fmt](path)
    except (RuntimeBackendError, MissingExtraError):
        raise
    except Exception as exc:  # noqa: BLE001 - the converters' readers raise many untyped errors
        raise RuntimeBackendError(f"cannot read the {fmt} graph '{path}': {first_line(exc)}; rebuild the variant") \
            from None
