"""ExecuTorch export of a FastVLM variant (XNNPACK delegate) as three `.pte` programs, and the
backend the `executorch` runtime drives them with.

- `vision.pte`, method `forward`: pixel_values (1, 3, H, W) → features (1, N, hidden)
  (FastViTHD + projector).
- `embed.pte`, methods `prefill` (1, T) and `decode` (1, 1): token ids (int64) → embeddings.
- `decoder.pte`, methods `prefill` (T tokens) and `decode` (1 token): the Qwen2 decoder with an
  explicit static KV cache. Inputs `embeddings`, `input_pos` (int64), an additive float `mask`
  (1, 1, T, cache_length) and `kv_cache_{k,v}_<layer>` (1, kv_heads, cache_length, head_dim);
  outputs the updated caches (written at `input_pos` with an out-of-place `index_copy`), and
  `logits` (1, 1, vocab) of the last position (decode only).

Why this design: it is the LiteRT export's contract (same inputs, chunked prefill, a fixed cache,
the last prompt token through `decode`), so the runtime reuses `LiteRTBackend`'s loop logic and
one shape of deploy facts covers both. The cache is a graph input and output rather than a
mutable buffer (ExecuTorch's own llama export keeps it in the program): per-row state stays with
the caller, which is what the shared loop's batched rows need, at the cost of copying the cache in
and out each step. The decoder is the model's own transformers modules (eager attention, a
`transformers` cache whose layers write functionally) traced by `torch.export`, not a
re-implementation. Quantized schemes are the ones ExecuTorch's LLM export documents for XNNPACK
(`extension/llm/export/quantize.py`): torchao `Int8DynamicActivationIntxWeightConfig` on every
Linear whose input width divides the group size — `8da4w` (int4 weights, per group) and `8da8w`
(int8 weights, per group or per channel) — applied to a copy before export; embeddings stay float.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from harness.errors import RuntimeBackendError, first_line
from harness.exporting import check_exportable, converting, float_model, model_facts
from harness.exporting.litert import MASK_VALUE, LiteRTBackend
from harness.models.fastvlm import named_module

STEP = "export-executorch"
#: scheme → torchao weight dtype name (activations are int8, dynamic, per token)
SCHEMES = {"8da4w": "int4", "8da8w": "int8"}
METHODS = {"vision": "forward", "embed_prefill": "prefill", "embed_decode": "decode", "prefill": "prefill",
           "decode": "decode"}


def executorch_facts(loaded: Any, prefill_length: int, cache_length: int) -> dict[str, Any]:
    return model_facts(loaded, prefill_length=prefill_length, cache_length=cache_length, mask_value=MASK_VALUE,
                       signatures=dict(METHODS), kv_layout="(1, kv_heads, cache_length, head_dim)")


def export_model(loaded: Any, folder: Path, components: list[str], quantize: str, group_size: int,
                 prefill_length: int, cache_length: int) -> dict[str, Any]:
    """Lower `components` into `folder`; returns graphs, model facts, seconds, delegation counts
    and (quantized schemes) which Linear layers were quantized."""
    import torch

    check_exportable(loaded, STEP, "export-executorch (quantize: 8da4w)")
    model = float_model(loaded)
    quantized: dict[str, Any] = {}
    if quantize != "none":
        model, quantized = quantized_copy(model, quantize, group_size)
    facts = executorch_facts(loaded, prefill_length, cache_length)
    build = {"vision": _vision, "embed": _embed, "decoder": _decoder}
    graphs: dict[str, str] = {}
    seconds: dict[str, float] = {}
    delegation: dict[str, dict[str, int]] = {}
    text = model.config.text_config
    original = text._attn_implementation
    try:
        text._attn_implementation = "eager"  # additive 4-D mask, plain matmul/softmax XNNPACK takes
        for name in components:
            path = folder / f"{name}.pte"
            start = time.perf_counter()
            with converting(STEP, "executorch", name), torch.no_grad():
                buffer, delegation[name] = lower(build[name](model, facts))
            path.write_bytes(buffer)
            seconds[name] = round(time.perf_counter() - start, 2)
            graphs[name] = path.name
    finally:
        text._attn_implementation = original
    return {"graphs": graphs, "model": facts, "seconds": seconds, "delegation": delegation, "quantized": quantized}


def quantized_copy(model: Any, scheme: str, group_size: int) -> tuple[Any, dict[str, Any]]:
    """A copy of `model` with torchao's 8-bit-dynamic-activation / int-N-weight Linear layers
    (group size 0 = per output channel), as ExecuTorch's LLM export applies them for XNNPACK."""
    import torch
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerAxis, PerGroup

    model = copy.deepcopy(model)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    chosen = {n for n, m in linears.items() if group_size == 0 or m.in_features % group_size == 0}
    config = Int8DynamicActivationIntxWeightConfig(
        weight_dtype=getattr(torch, SCHEMES[scheme]),
        weight_granularity=PerAxis(0) if group_size == 0 else PerGroup(group_size))
    with converting(STEP, "torchao quantize_", scheme):
        quantize_(model, config, filter_fn=lambda m, fqn: fqn in chosen)
    skipped = sorted(set(linears) - chosen)
    return model, {"scheme": scheme, "group_size": group_size, "linear_layers": len(chosen),
                   "skipped": skipped}


def lower(programs: dict[str, tuple[Any, tuple]]) -> tuple[bytes, dict[str, int]]:
    """`torch.export` each method, lower them into one program with the XNNPACK partitioner, and
    count the nodes XNNPACK took (what runs in portable kernels instead is reported, not hidden)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    exported = {name: torch.export.export(module, args, strict=False) for name, (module, args) in programs.items()}
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    counts = {"delegated_nodes": 0, "non_delegated_nodes": 0, "delegated_subgraphs": 0}
    for name in programs:
        info = get_delegation_info(edge.exported_program(name).graph_module)
        counts["delegated_nodes"] += info.num_delegated_nodes
        counts["non_delegated_nodes"] += info.num_non_delegated_nodes
        counts["delegated_subgraphs"] += info.num_delegated_subgraphs
    return edge.to_executorch().buffer, counts


def _vision(model: Any, facts: dict[str, Any]) -> dict[str, tuple[Any, tuple]]:
    import torch

    class Encode(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return self.inner.model.get_image_features(pixel_values=pixel_values).pooler_output

    height, width = facts["image_size"]
    return {"forward": (Encode(model).eval(), (torch.zeros(1, 3, height, width),))}


def _embed(model: Any, facts: dict[str, Any]) -> dict[str, tuple[Any, tuple]]:
    import torch

    table = model.get_input_embeddings().eval()
    return {"prefill": (table, (torch.zeros(1, facts["prefill_length"], dtype=torch.long),)),
            "decode": (table, (torch.zeros(1, 1, dtype=torch.long),))}


def _decoder(model: Any, facts: dict[str, Any]) -> dict[str, tuple[Any, tuple]]:
    import torch

    layers, slots = facts["num_layers"], facts["cache_length"]
    kv = tuple(torch.zeros(1, facts["kv_heads"], slots, facts["head_dim"]) for _ in range(2 * layers))
    programs = {}
    for name, tokens, logits in (("prefill", facts["prefill_length"], False), ("decode", 1, True)):
        args = (torch.zeros(1, tokens, facts["hidden_size"]), torch.arange(tokens), torch.zeros(1, 1, tokens, slots),
                *kv)
        programs[name] = (_decoder_module(model, layers, logits), args)
    return programs


def _decoder_module(model: Any, layers: int, with_logits: bool) -> Any:
    import torch
    from transformers.cache_utils import Cache, CacheLayerMixin

    class Slots(CacheLayerMixin):
        """One layer's fixed cache, written at `input_pos` out of place (a traced graph output)."""

        def __init__(self, keys: Any, values: Any, positions: Any) -> None:
            super().__init__()
            self.keys, self.values, self.positions, self.is_initialized = keys, values, positions, True

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            return None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            self.keys = self.keys.index_copy(2, self.positions, key_states)
            self.values = self.values.index_copy(2, self.positions, value_states)
            return self.keys, self.values

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.keys.shape[2], 0

        def get_seq_length(self) -> int:
            return 0

        def get_max_length(self) -> int:
            return self.keys.shape[2]

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = named_module(model, "llm")
            self.head = named_module(model, "lm_head")

        def forward(self, embeddings: Any, input_pos: Any, mask: Any, *kv: Any) -> tuple[Any, ...]:
            cache = Cache(layers=[Slots(kv[2 * i], kv[2 * i + 1], input_pos) for i in range(layers)])
            out = self.lm(inputs_embeds=embeddings, attention_mask=mask, position_ids=input_pos[None], cache=cache,
                          use_cache=True)
            present = tuple(t for layer in cache.layers for t in (layer.keys, layer.values))
            if not with_logits:
                return present
            return (self.head(out.last_hidden_state[:, -1:, :]), *present)  # (1, 1, vocab), as LiteRT

    return Decoder().eval()


# --- running programs ---------------------------------------------------------------------
def kv_names(layers: int) -> list[str]:
    return [f"kv_cache_{kind}_{i}" for i in range(layers) for kind in ("k", "v")]


class Method:
    """One loaded ExecuTorch method, called like a LiteRT signature runner: numpy feeds by name →
    numpy outputs by name (`inputs[name]["shape"]` is what the backend sizes caches from)."""

    def __init__(self, program: Any, name: str, inputs: dict[str, tuple[list[int], str]], outputs: list[str]) -> None:
        self.name = name
        self.method = program.load_method(name)
        if self.method is None:
            raise RuntimeBackendError(f"ExecuTorch program lacks the method '{name}'; rebuild the variant")
        self.inputs = {n: {"shape": shape, "dtype": dtype} for n, (shape, dtype) in inputs.items()}
        self.outputs = outputs

    def __call__(self, **feeds: Any) -> dict[str, Any]:
        import numpy as np
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=spec["dtype"]))
                for n, spec in self.inputs.items()]
        try:
            out = self.method.execute(args)
        except RuntimeError as exc:
            raise RuntimeBackendError(f"ExecuTorch method '{self.name}' failed: {first_line(exc)}") from None
        return {name: value.numpy().copy() for name, value in zip(self.outputs, out)}  # outputs live in planned memory


def open_program(path: Path) -> Any:
    """A loaded `.pte` program, or one clear error for a missing/corrupt file."""
    from executorch.runtime import Runtime

    if not path.is_file():
        raise RuntimeBackendError(f"ExecuTorch program '{path}' is missing; rebuild the variant")
    try:
        return Runtime.get().load_program(str(path))
    except (RuntimeError, ValueError) as exc:
        raise RuntimeBackendError(f"ExecuTorch cannot load '{path.name}' (corrupt or unsupported .pte): "
                                  f"{first_line(exc)}") from None


class ExecuTorchBackend(LiteRTBackend):
    """`LiteRTBackend`'s chunked prefill and static-cache decode over the ExecuTorch methods."""

    label = "ExecuTorch"

    def __init__(self, programs: dict[str, Any], facts: dict[str, Any]) -> None:  # noqa: D107 - no super(): no tflite
        self.facts = facts
        self.chunk = chunk = int(facts["prefill_length"])
        self.slots = slots = int(facts["cache_length"])
        height, width = facts["image_size"]
        hidden = facts["hidden_size"]
        names = kv_names(facts["num_layers"])
        self.kv_names = sorted(names)
        cache = {n: ([1, facts["kv_heads"], slots, facts["head_dim"]], "float32") for n in names}
        if "vision" in programs:  # vision and embed are optional, as in LiteRTBackend
            self.vision = Method(programs["vision"], "forward", {"pixel_values": ([1, 3, height, width], "float32")},
                                 ["features"])
        if "embed" in programs:
            self.embed_prefill = Method(programs["embed"], "prefill", {"token_ids": ([1, chunk], "int64")},
                                        ["embeddings"])
            self.embed_decode = Method(programs["embed"], "decode", {"token_ids": ([1, 1], "int64")}, ["embeddings"])

        def decoder(name: str, tokens: int, logits: bool) -> Method:
            inputs = {"embeddings": ([1, tokens, hidden], "float32"), "input_pos": ([tokens], "int64"),
                      "mask": ([1, 1, tokens, slots], "float32"), **cache}
            return Method(programs["decoder"], name, inputs, [*(["logits"] if logits else []), *list(cache)])

        self.prefill_sig = decoder("prefill", chunk, False)
        self.decode_sig = decoder("decode", 1, True)
