"""ONNX export of a FastVLM variant as three graphs a generation loop can drive.

- `vision.onnx`: pixel_values (batch, 3, H, W) → projected image features (batch, N, hidden):
  the family's vision tower + projector (FastViTHD for FastVLM; InternViT + pixel shuffle for
  InternVL, whose batch is the image's 448 px tiles). Dynamic batch; the image size is fixed by
  the processor.
- `embed.onnx`: input_ids (batch, seq) → token embeddings (batch, seq, hidden).
- `decoder.onnx`: one merged graph for prefill and decode. Inputs `inputs_embeds`,
  `attention_mask` (batch, past + seq), `position_ids` and `past_key_values.{i}.key/value`
  (batch, kv_heads, past, head_dim; past = 0 for prefill); outputs `logits` of the last position
  (batch, vocab) and `present.{i}.key/value`. Dynamic batch, sequence and past lengths.

Why three graphs: the dynamo exporter fails on FastVLM's image-token check, so the legacy
(TorchScript) exporter is used on plain wrappers; the image features are spliced outside the
graphs (as the runtime loop does), and the decoder gets a ready 4-D additive mask, which
transformers passes through untouched (no traced mask helpers). Each graph is checked with
`onnx.checker`; weights move to external data when a graph is larger than a threshold.

`decoder_graph: fused` exports the decoder wrapper with torch.export (dynamo), which handles it,
and applies onnxscript's ORT fusions (RMSNorm → SimplifiedLayerNormalization, residual add +
RMSNorm → SkipSimplifiedLayerNormalization, scaled MatMul → FusedMatMul; its rotary fusion does not
survive, as transformers 5 computes the rotary angles with a Mul where onnxscript's cos/sin-cache
pattern wants a MatMul): the TorchScript graph's per-layer shape arithmetic goes — FastVLM-0.5B's
decoder has 1,356 nodes against 5,155, and ORT runs 1,188 against 2,049 per decode step
(benchmarks/ort_decode_profile.py).
Contrib ops are ORT's, so that graph is checked by loading it in ORT rather than `onnx.checker`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.exporting import check_exportable, converting, float_model, model_facts
from harness.models.fastvlm import model_family, named_module

#: The lowest opset torch.export's ONNX translation emits.
FUSED_OPSET = 18
#: ORT's own ops outside its contrib domain (it registers this normalisation in the ONNX domain).
ORT_OPS = ("SimplifiedLayerNormalization",)


def export_model(loaded: Any, folder: Path, components: list[str], opset: int = 17,
                 external_data_mb: float = 100.0, decoder_graph: str = "traced") -> dict[str, Any]:
    """Export `components` of the variant into `folder`; returns manifest pieces (and a fused
    decoder's ORT ops by type)."""
    import torch

    check_exportable(loaded, "export-onnx", "ort-quant")
    model = float_model(loaded)  # ORT's CPU kernels are float32
    text = model.config.text_config
    facts = model_facts(loaded)
    graphs: dict[str, str] = {}
    ort_ops: dict[str, int] = {}
    export = {"vision": _export_vision, "embed": _export_embed, "decoder": _export_decoder}
    orig_attn = text._attn_implementation
    try:
        text._attn_implementation = register_grouped_attention()  # additive 4-D mask, plain MatMul/Softmax
        with torch.no_grad():
            for name in components:
                path = folder / f"{name}.onnx"
                fused = name == "decoder" and decoder_graph == "fused"
                with converting("export-onnx", "torch.export + onnxscript" if fused else "torch.onnx.export", name):
                    if fused:
                        ort_ops = _export_decoder(model, path, max(opset, FUSED_OPSET), facts, external_data_mb)
                    else:
                        export[name](model, path, opset, facts)
                if not fused:
                    finalize(path, external_data_mb)
                graphs[name] = path.name
    finally:
        text._attn_implementation = orig_attn
    return {"graphs": graphs, "model": facts, "ort_ops": ort_ops}


GROUPED_ATTENTION = "harness-grouped-eager"


def grouped_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
                      dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """transformers' eager attention without `repeat_kv`: the query heads sharing a KV head are
    stacked along the query axis instead of copying the KV cache to every query head. In the ONNX
    decoder `repeat_kv` became an Expand of the whole cache and a 7x larger QK^T on every decode
    step (FastVLM-0.5B: 14 query / 2 KV heads): profiled, 7.5 of 47 ms per INT4 token."""
    import torch

    batch, heads, length, dim = query.shape
    kv_heads, total = key.shape[1], key.shape[-2]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads * length, dim)
    scores = (torch.matmul(grouped, key.transpose(2, 3)) * scaling).reshape(batch, kv_heads, -1, length, total)
    if attention_mask is not None:  # (batch, 1, length, total) -> one row per query head of a group
        scores = scores + attention_mask[:, :, None, :, :total]
    weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights.reshape(batch, kv_heads, -1, total), value)
    return out.reshape(batch, heads, length, dim).transpose(1, 2).contiguous(), None


def register_grouped_attention() -> str:
    """Register `grouped_attention` (and eager's mask) with transformers; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(GROUPED_ATTENTION, grouped_attention)
    AttentionMaskInterface.register(GROUPED_ATTENTION, eager_mask)
    return GROUPED_ATTENTION


def check_graph(path: Path, header: Any = None) -> None:
    """`onnx.checker` for a plain graph; one holding ORT's own ops (a fused decoder, and what ort-quant
    makes of it), which the checker does not know, is checked by loading it in ORT."""
    import onnx

    header = header or onnx.load(str(path), load_external_data=False)
    if any(n.domain == "com.microsoft" or n.op_type in ORT_OPS for n in header.graph.node):
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        onnx.checker.check_model(str(path))


def finalize(path: Path, external_data_mb: float) -> None:
    """Check the graph; store weights as external data (`<graph>.data`) when it is large."""
    import onnx

    header = onnx.load(str(path), load_external_data=False)
    check_graph(path, header)
    data = f"{path.name}.data"
    # A > 2 GB model comes out of the exporter with one external file per tensor: gather them too.
    scattered = {e.value for t in header.graph.initializer for e in t.external_data if e.key == "location"} - {data}
    if scattered or (path.stat().st_size > external_data_mb * 1e6 and not (path.parent / data).exists()):
        model = onnx.load(str(path))
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data, size_threshold=1024)
        for name in scattered:
            (path.parent / name).unlink(missing_ok=True)
        check_graph(path)


def _onnx_export(module: Any, args: tuple, path: Path, opset: int, inputs: list[str], outputs: list[str],
                 axes: dict[str, dict[int, str]]) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python values; the graphs are checked after
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def _dynamo_export(module: Any, args: tuple, path: Path, opset: int, inputs: list[str], outputs: list[str],
                   axes: dict[str, dict[int, str]], leading: int) -> None:
    """torch.export's ONNX exporter; the inputs after the first `leading` are the module's *args."""
    import warnings

    import torch

    shapes = [{axis: torch.export.Dim.AUTO for axis in axes.get(name, {})} for name in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=opset,
                          dynamic_shapes=(*shapes[:leading], tuple(shapes[leading:])), dynamo=True, optimize=True,
                          external_data=True, verbose=False)


def fuse_for_ort(raw: Path, path: Path, external_data_mb: float) -> dict[str, int]:
    """onnxscript's ORT fusions on the graph at `raw`, saved at `path` (weights in `<graph>.data` when
    larger than `external_data_mb`) and loaded once in ORT, the only consumer of its contrib ops.
    Returns the ORT ops in the saved graph by type, and its node count: what survived, since a fusion
    that no later one consumes is inlined back (rotary embedding, here)."""
    import logging
    from collections import Counter

    from onnxscript import ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    quiet = logging.getLogger("onnx_ir")  # one INFO line per deduplicated initializer, thousands at 0.5B
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        model, _ = optimize_for_ort(ir.load(str(raw)))
    finally:
        quiet.setLevel(level)
    ops = Counter(n.op_type for n in model.graph if n.domain == "com.microsoft" or n.op_type in ORT_OPS)
    ops["nodes"] = len(model.graph)
    weights = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    if weights > external_data_mb * 1e6:
        ir.save(model, str(path), external_data=f"{path.name}.data")
    else:  # inline: read the exporter's external file into the graph before it goes
        ir.save(ir.external_data.load_to_model(model), str(path))
    del model
    for leftover in (raw, raw.with_name(f"{raw.name}.data")):
        leftover.unlink(missing_ok=True)
    check_graph(path)
    return dict(sorted(ops.items()))


def _export_vision(model: Any, path: Path, opset: int, facts: dict[str, Any]) -> None:
    import torch

    family = model_family(model)

    class Vision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, pixel_values: Any) -> Any:
            return family.image_features(self.inner, {"pixel_values": pixel_values})

    height, width = facts["image_size"]
    pixels = torch.rand(2, 3, height, width)
    _onnx_export(Vision().eval(), (pixels,), path, opset, ["pixel_values"], ["image_features"],
                 {"pixel_values": {0: "batch"}, "image_features": {0: "batch"}})


def _export_embed(model: Any, path: Path, opset: int, facts: dict[str, Any]) -> None:
    import torch

    ids = torch.zeros(2, 5, dtype=torch.long)
    _onnx_export(model.get_input_embeddings().eval(), (ids,), path, opset, ["input_ids"], ["inputs_embeds"],
                 {"input_ids": {0: "batch", 1: "sequence"}, "inputs_embeds": {0: "batch", 1: "sequence"}})


def decoder_names(num_layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]
    return past, present


def _export_decoder(model: Any, path: Path, opset: int, facts: dict[str, Any],
                    fused_external_data_mb: float | None = None) -> dict[str, int]:
    """The merged prefill/decode graph; traced by TorchScript, or (`fused_external_data_mb` given) by
    torch.export and then fused for ORT, returning the ORT ops the fused graph holds."""
    import torch
    from transformers import DynamicCache

    layers = facts["num_layers"]
    text_config = model.config.text_config

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm = named_module(model, "llm")
            self.head = named_module(model, "lm_head")

        def forward(self, inputs_embeds: Any, attention_mask: Any, position_ids: Any, *past: Any) -> Any:
            query = inputs_embeds.shape[1]
            total = attention_mask.shape[1]
            keys = torch.arange(total, device=inputs_embeds.device).view(1, -1)
            queries = torch.arange(query, device=inputs_embeds.device).view(-1, 1) + (total - query)
            allowed = (keys <= queries)[None, None] & attention_mask[:, None, None, :].bool()
            zero = torch.zeros((), dtype=inputs_embeds.dtype)
            low = torch.tensor(torch.finfo(inputs_embeds.dtype).min, dtype=inputs_embeds.dtype)
            mask = torch.where(allowed, zero, low)
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)],
                                 config=text_config)
            out = self.lm(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids,
                          cache=cache, use_cache=True)
            logits = self.head(out.last_hidden_state[:, -1:, :])[:, 0]  # 3-D: a MatMul, never a Gemm
            present = []
            for layer in out.cache.layers:
                present += [layer.keys, layer.values]
            return (logits, *present)

    batch, query, past_len = 2, 3, 4
    embeds = torch.randn(batch, query, facts["hidden_size"])
    mask = torch.ones(batch, past_len + query, dtype=torch.long)
    positions = torch.arange(past_len, past_len + query).repeat(batch, 1)
    past = [torch.randn(batch, facts["kv_heads"], past_len, facts["head_dim"]) for _ in range(2 * layers)]
    past_names, present_names = decoder_names(layers)
    axes: dict[str, dict[int, str]] = {"inputs_embeds": {0: "batch", 1: "sequence"},
                                       "attention_mask": {0: "batch", 1: "total"},
                                       "position_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
    axes |= {n: {0: "batch", 2: "past"} for n in past_names}
    axes |= {n: {0: "batch", 2: "total"} for n in present_names}
    names = ["inputs_embeds", "attention_mask", "position_ids", *past_names], ["logits", *present_names]
    if fused_external_data_mb is None:
        _onnx_export(Decoder().eval(), (embeds, mask, positions, *past), path, opset, *names, axes)
        return {}
    raw = path.with_name(f"{path.stem}.raw.onnx")
    _dynamo_export(Decoder().eval(), (embeds, mask, positions, *past), raw, opset, *names, axes, leading=3)
    return fuse_for_ort(raw, path, fused_external_data_mb)
