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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.exporting import check_exportable, converting, float_model, model_facts
from harness.models.fastvlm import model_family, named_module


def export_model(loaded: Any, folder: Path, components: list[str], opset: int = 17,
                 external_data_mb: float = 100.0) -> dict[str, Any]:
    """Export `components` of the variant into `folder`; returns manifest pieces."""
    import torch

    check_exportable(loaded, "export-onnx", "ort-quant")
    model = float_model(loaded)  # ORT's CPU kernels are float32
    text = model.config.text_config
    facts = model_facts(loaded)
    graphs: dict[str, str] = {}
    export = {"vision": _export_vision, "embed": _export_embed, "decoder": _export_decoder}
    orig_attn = text._attn_implementation
    try:
        text._attn_implementation = register_grouped_attention()  # additive 4-D mask, plain MatMul/Softmax
        with torch.no_grad():
            for name in components:
                path = folder / f"{name}.onnx"
                with converting("export-onnx", "torch.onnx.export", name):
                    export[name](model, path, opset, facts)
                finalize(path, external_data_mb)
                graphs[name] = path.name
    finally:
        text._attn_implementation = orig_attn
    return {"graphs": graphs, "model": facts}


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


def finalize(path: Path, external_data_mb: float) -> None:
    """Check the graph; store weights as external data (`<graph>.data`) when it is large."""
    import onnx

    onnx.checker.check_model(str(path))
    data = f"{path.name}.data"
    # A > 2 GB model comes out of the exporter with one external file per tensor: gather them too.
    header = onnx.load(str(path), load_external_data=False)
    scattered = {e.value for t in header.graph.initializer for e in t.external_data if e.key == "location"} - {data}
    if scattered or (path.stat().st_size > external_data_mb * 1e6 and not (path.parent / data).exists()):
        model = onnx.load(str(path))
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data, size_threshold=1024)
        for name in scattered:
            (path.parent / name).unlink(missing_ok=True)
        onnx.checker.check_model(str(path))


def _onnx_export(module: Any, args: tuple, path: Path, opset: int, inputs: list[str], outputs: list[str],
                 axes: dict[str, dict[int, str]]) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python values; the graphs are checked after
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)


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


def _export_decoder(model: Any, path: Path, opset: int, facts: dict[str, Any]) -> None:
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
            logits = self.head(out.last_hidden_state[:, -1, :])
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
    _onnx_export(Decoder().eval(), (embeds, mask, positions, *past), path, opset,
                 ["inputs_embeds", "attention_mask", "position_ids", *past_names], ["logits", *present_names], axes)
