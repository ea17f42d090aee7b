"""Per-layer weight bit widths chosen by measured sensitivity under a size budget.

Why: layers differ a lot in how much low-bit rounding hurts; spending the bytes a budget allows
on the layers that need them beats one bit width for all. Three phases:

1. *Sensitivity* — for every candidate Linear and every bit width in `bits` below 16, fake-quantize
   only that layer (symmetric round-to-nearest, `group_size` groups for INT4, one group per row for
   INT8: a cheap proxy of `weight-quant`'s RTN) and measure the mean KL divergence of the model's
   next-token distributions from the float model's over the calibration tokens.
2. *Assignment* — a multiple-choice knapsack (dynamic programming over bytes) picks one width per
   layer minimising the summed sensitivity subject to `max_size_mb`, where the size is the
   `model.safetensors` file the variant would write: packed codes + fp16 scales of each quantized
   layer (`_packed.PackedLinear`'s layout), every other tensor as it is, and the header.
3. *Application* — `apply_assignment`, the one function that turns an assignment into real
   quantization: step `weight-quant` (INC RTN, packed storage) once per bit width.

The assignment and the sensitivities go into the step record, so replay applies the same bits
without data; the notes list the assignment for the report.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from harness.errors import ModelLoadError, StepError
from harness.registries import STEPS
from harness.steps._base import COMPONENTS, Step, StepConfig, StepContext
from harness.steps._calibration import CalibrationSpec
from harness.steps._layers import check_ignore, linear_layers

STEP = "mixed-precision"
KEEP = 16  # "16 bits" = leave the layer float, as stored
INT8_GROUP = -1  # INT8 uses one scale per output row
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
                      "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


class MixedPrecisionConfig(StepConfig):
    kind: Literal["mixed-precision"] = "mixed-precision"
    bits: list[Literal[4, 8, 16]] = Field([4, 8], description="widths to choose from; 16 = keep the layer float")
    max_size_mb: float = Field(..., gt=0, description="budget for model.safetensors in MB (1e6 bytes)")
    group_size: Literal[16, 32, 64, 128] = Field(32, description="INT4 group size (INT8 is per output row)")
    ignore: list[str] = Field([], description="fnmatch patterns of Linear layers left float")
    calibration: CalibrationSpec | None = Field(None, description="tokens the sensitivities are measured on "
                                                                  "(default: 64 nano-vqa train items)")

    @field_validator("bits")
    @classmethod
    def _distinct(cls, bits: list[int]) -> list[int]:
        if not bits or len(set(bits)) != len(bits):
            raise ValueError("bits must list distinct widths from [4, 8, 16], e.g. [4, 8]")
        if min(bits) == KEEP:
            raise ValueError("bits [16] quantizes nothing; add 4 and/or 8, e.g. [4, 8, 16]")
        return sorted(bits)


# --- sizes -------------------------------------------------------------------------------------
def _entry_bytes(name: str, tensor: Any) -> int:
    """Bytes one tensor adds to a safetensors file: its data plus its header entry."""
    dtype = SAFETENSORS_DTYPES.get(str(tensor.dtype).removeprefix("torch."), "F32")
    header = json.dumps({name: {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [10 ** 6, 10 ** 6]}},
                        separators=(",", ":"))
    return tensor.numel() * tensor.element_size() + len(header) - 1  # minus the braces, plus a comma


def _stored_tensors(module: Any, prefix: str) -> list[tuple[str, Any]]:
    """(name, tensor) as `artifacts.save_variant` writes them (tensor subclasses as their inner tensors)."""
    out = []
    for name, value in module.state_dict().items():
        qualified = f"{prefix}.{name}" if prefix else name
        if type(value).__name__ in ("Tensor", "Parameter") or not hasattr(value, "__tensor_flatten__"):
            out.append((qualified, value))
        else:
            out.extend((f"{qualified}::{inner}", getattr(value, inner)) for inner in value.__tensor_flatten__()[0]
                       if getattr(value, inner) is not None)
    return out


def option_bytes(linear: Any, name: str, bits: int, group_size: int) -> int:
    """Stored bytes of one Linear at `bits` (16 = as it is now), in weight-quant's packed layout."""
    if bits == KEEP:
        return sum(_entry_bytes(n, t) for n, t in _stored_tensors(linear, name))
    from harness.steps._packed import PackedLinear

    packed = PackedLinear(linear.in_features, linear.out_features, bits, group_size if bits == 4 else INT8_GROUP,
                          True, bias=linear.bias is not None)
    return sum(_entry_bytes(n, t) for n, t in _stored_tensors(packed, name))


def model_bytes(model: Any, exclude: set[str] = frozenset()) -> int:
    """Estimated model.safetensors size, leaving out the modules named in `exclude`."""
    tensors = _stored_tensors(model.model, "")
    kept = [(n, t) for n, t in tensors if not any(n.startswith(e + ".") for e in exclude)]
    metadata = len(json.dumps({"__metadata__": {"format": "harness-variant/1"}}, separators=(",", ":")))
    return 8 + metadata + 8 + sum(_entry_bytes(n, t) for n, t in kept)  # length prefix, header, padding


# --- sensitivity -------------------------------------------------------------------------------
def fake_quantize(weight: Any, bits: int, group_size: int) -> Any:
    """Symmetric round-to-nearest with one scale per `group_size` inputs (per row when -1 or ragged)."""
    import torch

    rows, cols = weight.shape
    group = cols if group_size == -1 or cols % group_size else group_size
    w = weight.detach().float().reshape(rows, cols // group, group)
    top = 2 ** (bits - 1) - 1
    scale = (w.abs().amax(-1, keepdim=True) / top).clamp(min=torch.finfo(torch.float32).tiny)
    return (torch.clamp(torch.round(w / scale), -top - 1, top) * scale).reshape(rows, cols).to(weight.dtype)


def _llm_inputs(model: Any, batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decoder's keyword inputs per batch (image features merged in), captured once: an LLM
    layer's sensitivity then costs a decoder pass, not a vision + decoder pass."""
    import torch

    captured: list[dict[str, Any]] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        captured.append({k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)})

    handle = model.llm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            for batch in batches:
                model.model(**batch, use_cache=False)
    finally:
        handle.remove()
    return captured


def _log_probs(model: Any, batches: list[dict[str, Any]], llm_inputs: list[dict[str, Any]] | None = None) -> list[Any]:
    """Next-token log-probabilities at the non-padding positions of every calibration batch
    (from the captured decoder inputs when given: same numbers, no vision pass)."""
    import torch

    out = []
    with torch.inference_mode():
        for index, batch in enumerate(batches):
            if llm_inputs is None:
                logits = model.model(**batch, use_cache=False).logits
            else:
                hidden = model.llm(**llm_inputs[index], use_cache=False).last_hidden_state
                logits = model.lm_head(hidden)
            out.append(torch.log_softmax(logits.float()[batch["attention_mask"].bool()], dim=-1))
    return out


def measure_sensitivity(model: Any, names: list[str], bits: list[int], group_size: int,
                        batches: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Mean KL(float ‖ only-this-layer-quantized) per layer and width (0 for 16 = kept)."""
    import torch

    reference = _log_probs(model, batches)
    llm_inputs = _llm_inputs(model, batches)
    result: dict[str, dict[int, float]] = {}
    for name in names:
        linear = model.model.get_submodule(name)
        in_llm = model.component_of(name) == "llm"
        original = linear.weight.data.clone()
        result[name] = {}
        for width in bits:
            if width == KEEP:
                result[name][width] = 0.0
                continue
            linear.weight.data.copy_(fake_quantize(original, width, group_size if width == 4 else INT8_GROUP))
            try:
                quantized = _log_probs(model, batches, llm_inputs if in_llm else None)
            finally:
                linear.weight.data.copy_(original)
            kl = [torch.nn.functional.kl_div(q, r, log_target=True, reduction="sum") / max(len(r), 1)
                  for r, q in zip(reference, quantized)]
            result[name][width] = max(float(sum(kl) / len(kl)), 0.0)
    return result


# --- assignment --------------------------------------------------------------------------------
def choose_bits(sensitivity: dict[str, dict[int, float]], costs: dict[str, dict[int, int]], budget: int,
                resolution: int = 4000) -> dict[str, int]:
    """Multiple-choice knapsack: one width per layer, total cost ≤ `budget`, least summed sensitivity.

    Costs above each layer's cheapest option are rounded *up* to `(budget - minimum) / resolution`
    byte units, so the result never exceeds the budget (it may leave less than one unit per layer
    unused). Raises ValueError with the minimum when even the cheapest choice does not fit.
    """
    import numpy as np

    names = list(costs)
    minimum = sum(min(costs[n].values()) for n in names)
    if minimum > budget:
        raise ValueError(f"needs at least {minimum} bytes")
    slack = budget - minimum
    unit = max(1.0, slack / resolution)
    capacity = int(slack // unit)
    best = np.zeros(capacity + 1)  # best[c]: least sensitivity using at most c extra units
    choices = []
    for name in names:
        floor = min(costs[name].values())
        options = sorted(costs[name], key=lambda b: (costs[name][b], b))
        new = np.full(capacity + 1, np.inf)
        pick = np.zeros(capacity + 1, dtype=np.int64)
        for index, width in enumerate(options):
            extra = math.ceil((costs[name][width] - floor) / unit)
            if extra > capacity:
                continue
            candidate = np.full(capacity + 1, np.inf)
            candidate[extra:] = best[:capacity + 1 - extra] + sensitivity[name][width]
            better = candidate < new - 1e-15
            new[better], pick[better] = candidate[better], index
        best = new
        choices.append((options, pick, floor))
    assignment: dict[str, int] = {}
    c = capacity
    for name, (options, pick, floor) in zip(reversed(names), reversed(choices)):
        width = options[int(pick[c])]
        assignment[name] = width
        c -= math.ceil((costs[name][width] - floor) / unit)
    return {n: assignment[n] for n in names}


# --- application -------------------------------------------------------------------------------
def apply_assignment(model: Any, assignment: dict[str, int], group_size: int, replay: bool,
                     saved: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Quantize each layer to its width through step `weight-quant` (one call per width).

    Returns that step's records per width (what replay hands back in `saved`) and its notes.
    """
    from harness.steps.weight_quant import WeightQuant, WeightQuantConfig

    records: dict[str, Any] = {}
    notes: list[str] = []
    for width in (4, 8):
        chosen = {n for n, b in assignment.items() if b == width}
        if not chosen:
            continue
        found = linear_layers(model, COMPONENTS, [])
        targets = [c for c, names in found.items() if chosen & set(names)]
        ignore = sorted(n for c in targets for n in found[c] if n not in chosen)
        missing = chosen - {n for c in targets for n in found[c]}
        if missing:
            raise StepError(f"step '{STEP}': layers {sorted(missing)[:3]} are no longer plain Linear layers; "
                            "put mixed-precision before other quantization steps")
        config = WeightQuantConfig(bits=width, group_size=group_size if width == 4 else INT8_GROUP,
                                   symmetric=True, targets=targets, ignore=ignore)
        sub = StepContext(replay=replay, records=[dict(saved.get(str(width), {}))] if replay else [{}], applied=1)
        WeightQuant().apply(config, model, sub)
        records[str(width)] = sub.records[0]
        notes.extend(f"INT{width}: {note}" for note in sub.notes if "unchanged" not in note)
    return records, notes


def _summary(assignment: dict[str, int]) -> str:
    """Layer names per width, shortened for the notes: decoder layer i's modules as `Li.…`."""
    from harness.steps.weight_quant import LLM_BLOCKS

    parts = []
    for width in sorted(set(assignment.values())):
        names = [n.replace(LLM_BLOCKS, "L").removeprefix("model.") for n, b in assignment.items() if b == width]
        label = "float" if width == KEEP else f"INT{width}"
        parts.append(f"{label} ({len(names)}): {', '.join(names)}")
    return "; ".join(parts)


@STEPS.register(STEP, "per-layer INT4/INT8/float weights chosen by measured sensitivity to meet max_size_mb")
class MixedPrecision(Step):
    Config = MixedPrecisionConfig
    shrinks_storage: ClassVar[bool] = True
    default_targets: ClassVar[tuple[str, ...]] = COMPONENTS
    examples: ClassVar[list[dict]] = [
        {"kind": STEP, "max_size_mb": 0.158, "bits": [4, 8],
         "calibration": {"items": 8, "batch_size": 8, "dataset": {"name": "nano-vqa", "split": "validation"}}},
    ]

    def apply(self, config: MixedPrecisionConfig, model: Any, ctx: StepContext) -> None:
        if ctx.replay:
            assignment = {n: int(b) for n, b in ctx.record.get("assignment", {}).items()}
            if not assignment:
                raise ModelLoadError(f"step '{STEP}': the saved variant has no bit assignment; rebuild it")
            _, notes = apply_assignment(model, assignment, config.group_size, True, ctx.record.get("applied", {}))
            ctx.note(f"{STEP}: {len(assignment)} layers rebuilt from the recorded assignment")
            return
        from harness.steps._calibration import calibration_batches

        check_ignore(STEP, model, config.ignore)
        layers = linear_layers(model, self.targets(config), config.ignore)
        names = [n for per in layers.values() for n in per]
        if not names:
            raise StepError(f"step '{STEP}': no Linear layer in {list(layers)} after ignore {config.ignore}; "
                            "change targets or ignore")
        costs: dict[str, dict[int, int]] = {}
        for name in names:
            linear = model.model.get_submodule(name)
            widths = [b for b in config.bits if b != 4 or linear.in_features % config.group_size == 0]
            if not widths:
                raise StepError(f"step '{STEP}': group_size {config.group_size} does not divide in_features "
                                f"{linear.in_features} of '{name}'; add 8 or 16 to bits, or ignore that layer")
            costs[name] = {b: option_bytes(linear, name, b, config.group_size) for b in widths}
        rest = model_bytes(model, exclude=set(names))
        budget = int(config.max_size_mb * 1e6) - rest
        smallest = rest + sum(min(c.values()) for c in costs.values())
        if budget <= 0 or smallest > config.max_size_mb * 1e6:
            raise StepError(f"step '{STEP}': max_size_mb {config.max_size_mb} cannot be met; the smallest "
                            f"reachable size with bits {config.bits} is {smallest / 1e6:.4f} MB "
                            f"(of which {rest / 1e6:.4f} MB is not a candidate Linear); raise max_size_mb")

        batches = calibration_batches(model, config.calibration or CalibrationSpec(), STEP, ctx.data_dir)
        sensitivity = measure_sensitivity(model, names, [b for b in config.bits], config.group_size, batches)
        sensitivity = {n: {b: sensitivity[n][b] for b in costs[n]} for n in names}
        assignment = choose_bits(sensitivity, costs, budget)
        predicted = rest + sum(costs[n][b] for n, b in assignment.items())
        applied, notes = apply_assignment(model, assignment, config.group_size, False, {})
        ctx.record.update({
            "assignment": assignment, "predicted_mb": round(predicted / 1e6, 6),
            "sensitivity": {n: {str(b): s for b, s in per.items()} for n, per in sensitivity.items()},
            "applied": applied})
        largest = max(config.bits)
        ranked = sorted(names, key=lambda n: -sensitivity[n].get(min(costs[n]), 0.0))[:3]
        ctx.note(f"{STEP}: {len(names)} Linear layers, predicted model.safetensors {predicted / 1e6:.4f} MB "
                 f"<= budget {config.max_size_mb} MB (all at the smallest width {smallest / 1e6:.4f} MB, "
                 f"all at {largest if largest != KEEP else 'float'}: "
                 f"{(rest + sum(c[max(c)] for c in costs.values())) / 1e6:.4f} MB); summed KL "
                 f"{sum(sensitivity[n][b] for n, b in assignment.items()):.4g}; most sensitive: "
                 + ", ".join(f"{n} ({sensitivity[n][min(costs[n])]:.3g})" for n in ranked))
        ctx.note(f"{STEP} assignment: {_summary(assignment)}")
        ctx.notes.extend(notes)
