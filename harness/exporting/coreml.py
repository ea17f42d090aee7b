"""Core ML export (coremltools mlprogram) of a FastVLM variant, and the spec check that Linux can do.

- `vision.mlpackage`: pixel_values (1, 3, H, W) → features (1, N, hidden): FastViTHD + projector.
- `embed.mlpackage`: token_ids (1, T) int32 → embeddings (1, T, hidden).
- `decoder.mlpackage`: the Qwen2 decoder *without* a KV cache: embeddings (1, T, hidden),
  position_ids (1, T) int32 and an additive mask (1, 1, T, T) → logits (1, T, vocab); a runtime
  recomputes the whole prefix for every new token. Why no cache: Core ML's cache is a *state*
  (iOS 18) written in place, and transformers' StaticCache writes its keys/values with
  `index_copy_`, for which coremltools 9 has no converter ("PyTorch convert function for op
  'index_copy_' not implemented"); the stateless decoder is what converts faithfully.

Conversion traces with `torch.jit.trace` (coremltools' stable path; numpy < 2.4), fp16 compute by
default. On Linux nothing can run (Core ML prediction is macOS-only), so every package is loaded
with `skip_model_load=True` and its spec checked: program type, input/output names and shapes,
op counts (also what shows that a compression pass took effect: `constexpr_*` ops).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness.errors import RuntimeBackendError, StepError, first_line
from harness.exporting import check_exportable, converting, float_model, model_facts
from harness.models.fastvlm import named_module

MASK_VALUE = -1e4
IO = {"vision": (["pixel_values"], ["features"]), "embed": (["token_ids"], ["embeddings"]),
      "decoder": (["embeddings", "position_ids", "mask"], ["logits"])}


def coreml_facts(loaded: Any, sequence_length: int) -> dict[str, Any]:
    return model_facts(loaded, sequence_length=sequence_length, mask_value=MASK_VALUE, kv_cache=False)


def export_model(loaded: Any, folder: Path, components: list[str], sequence_length: int, precision: str,
                 target: str) -> dict[str, Any]:
    """Convert `components` into `folder`/<name>.mlpackage and check each spec."""

    check_exportable(loaded, "export-coreml", "coreml-optimize")
    model = float_model(loaded)
    facts = coreml_facts(loaded, sequence_length)
    graphs: dict[str, str] = {}
    seconds: dict[str, float] = {}
    specs: dict[str, Any] = {}
    for name in components:
        path = folder / f"{name}.mlpackage"
        start = time.perf_counter()
        with converting("export-coreml", "coremltools", name):
            mlmodel = _convert(name, model, facts, precision, target)
        mlmodel.save(str(path))
        seconds[name] = round(time.perf_counter() - start, 2)
        specs[name] = validate_spec(path, name)
        graphs[name] = path.name
    return {"graphs": graphs, "model": facts, "seconds": seconds, "specs": specs}


def _wrappers(model: Any) -> dict[str, Any]:
    import torch

    class Vision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, pixel_values: Any) -> Any:
            return self.inner.model.get_image_features(pixel_values=pixel_values).pooler_output

    class Decoder(torch.nn.Module):
        """A ready 4-D additive mask goes straight to attention: no traced mask helpers."""

        def __init__(self) -> None:
            super().__init__()
            self.lm, self.head = named_module(model, "llm"), named_module(model, "lm_head")

        def forward(self, embeddings: Any, position_ids: Any, mask: Any) -> Any:
            out = self.lm(inputs_embeds=embeddings, attention_mask=mask, position_ids=position_ids, use_cache=False)
            return self.head(out.last_hidden_state)

    return {"vision": Vision, "embed": model.get_input_embeddings, "decoder": Decoder}  # the table traces as is


def _convert(name: str, model: Any, facts: dict[str, Any], precision: str, target: str) -> Any:
    import coremltools as ct
    import numpy as np
    import torch

    height, width = facts["image_size"]
    length, hidden = facts["sequence_length"], facts["hidden_size"]
    samples = {"vision": (torch.zeros(1, 3, height, width),),
               "embed": (torch.zeros(1, length, dtype=torch.int32),),
               "decoder": (torch.zeros(1, length, hidden), torch.arange(length, dtype=torch.int32)[None],
                           torch.triu(torch.full((length, length), MASK_VALUE), 1)[None, None])}[name]
    module = _wrappers(model)[name]().eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, samples, check_trace=False)
    names_in, names_out = IO[name]
    inputs = [ct.TensorType(name=n, shape=tuple(s.shape), dtype=np.int32 if s.dtype == torch.int32 else np.float32)
              for n, s in zip(names_in, samples)]
    return ct.convert(traced, inputs=inputs, outputs=[ct.TensorType(name=n) for n in names_out],
                      convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, target),
                      compute_precision=ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32)


def validate_spec(path: Path, name: str | None = None) -> dict[str, Any]:
    """Load a package without compiling it (works on Linux) and check its program; op counts."""
    import coremltools as ct

    if not path.exists():
        raise RuntimeBackendError(f"Core ML package '{path}' is missing; rebuild the variant")
    try:
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    except Exception as exc:  # noqa: BLE001 - protobuf / file errors surface untyped
        first = first_line(exc)
        raise RuntimeBackendError(f"Core ML package '{path.name}' is unreadable (corrupt?): {first}") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise StepError(f"Core ML package '{path.name}' is a {spec.WhichOneof('Type')}, not an mlprogram")
    inputs = {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input}
    outputs = [o.name for o in spec.description.output]
    if name in IO:
        want_in, want_out = IO[name]
        if sorted(inputs) != sorted(want_in) or outputs != want_out:
            raise StepError(f"Core ML {name} spec has inputs {sorted(inputs)} / outputs {outputs}, "
                            f"expected {want_in} / {want_out}")
    ops: Counter[str] = Counter()
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
    return {"spec_version": spec.specificationVersion, "inputs": inputs, "outputs": outputs,
            "ops": dict(sorted(ops.items())), "op_total": sum(ops.values())}
