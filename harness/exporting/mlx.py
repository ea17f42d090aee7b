"""MLX export of a FastVLM variant's LLM as an `mlx-lm` Qwen2 model directory.

Apple ships FastVLM with the LLM in MLX and the vision encoder elsewhere (Core ML). This export
does the same split: the Qwen2 decoder, its token embedding and LM head become the folder
`llm/` that `mlx_lm.utils.load_model` reads — `config.json` in mlx-lm's qwen2 `ModelArgs` form and
`model.safetensors` under mlx-lm's names (`model.layers.{i}.self_attn.q_proj.weight`, ...),
written by mlx-lm's own `save_model`/`save_config`. Float (fp16/bf16/fp32) or quantized by
`mlx.core.quantize` (through `mlx.nn.quantize`: affine, weight/scales/biases per group) with
`quantization: {group_size, bits}` in the config, which is mlx-lm's quantized layout.

The image features come from the vision graph the manifest names (`settings.vision`): `torch`
(the variant's own vision tower + projector, replayed from its torch weights) or `onnx`
(`vision.onnx` written into this folder by the ONNX exporter). Either way the runtime feeds
them to the MLX LLM as input embeddings.

What mlx-lm's qwen2 cannot describe is refused in one line before anything is written: another
LLM family, a RoPE variant or sliding window, a head width other than hidden/heads, per-layer
shapes (structured pruning), and layers that are not plain float Linear/Embedding/RMSNorm
(torchao- or harness-packed quantization: compress with this step's own `bits` instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import StepError
from harness.models.fastvlm import named_module

STEP = "export-mlx"
#: The mlx-lm model directory inside the export. Not the export folder itself: transformers picks a
#: tokenizer class from a `config.json` beside the tokenizer files (mlx-lm's says qwen2, which
#: would re-tokenize a non-Qwen2 vocabulary such as nano's), so the processor assets stay at the top.
LLM_DIR = "llm"
FLOAT_KINDS = {"Linear", "Embedding", "Qwen2RMSNorm"}


def mlx_config(loaded: Any) -> dict[str, Any]:
    """The LLM's config in mlx-lm's qwen2 `ModelArgs` form, or one StepError naming what it cannot say."""
    text = loaded.model.config.text_config
    if text.model_type != "qwen2":
        raise StepError(f"{STEP} writes mlx-lm's qwen2 model; this variant's LLM is '{text.model_type}'")
    rope = dict(getattr(text, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise StepError(f"{STEP}: RoPE type '{rope['rope_type']}' is not expressed by this export (default RoPE only)")
    if getattr(text, "use_sliding_window", False):
        raise StepError(f"{STEP}: mlx-lm's qwen2 has no sliding-window attention; this LLM uses it")
    heads, hidden = text.num_attention_heads, text.hidden_size
    head_dim = getattr(text, "head_dim", None)
    if hidden % heads or (head_dim is not None and head_dim != hidden // heads):
        raise StepError(f"{STEP}: head width {head_dim or hidden / heads} with hidden_size {hidden} and {heads} heads "
                        "cannot be described by mlx-lm's qwen2 (head_dim = hidden_size / heads): pruned heads? "
                        "export the variant without structured-prune heads")
    head = getattr(named_module(loaded.model, "lm_head"), "weight", None)  # None: a packed head (refused later)
    tied = head is not None and head is getattr(named_module(loaded.model, "embed_tokens"), "weight", None)
    return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": hidden,
            "num_hidden_layers": text.num_hidden_layers, "intermediate_size": text.intermediate_size,
            "num_attention_heads": heads, "num_key_value_heads": text.num_key_value_heads or heads,
            "rms_norm_eps": text.rms_norm_eps, "vocab_size": text.vocab_size,
            "max_position_embeddings": text.max_position_embeddings,
            "rope_theta": float(rope.get("rope_theta", getattr(text, "rope_theta", 1e6))),
            "rope_traditional": False, "tie_word_embeddings": bool(tied)}


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor mlx-lm's qwen2 `Model` holds for `config`, by its mlx-lm name."""
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head = hidden // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head, config["num_key_value_heads"] * head
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (q, hidden), p + "self_attn.q_proj.bias": (q,),
            p + "self_attn.k_proj.weight": (kv, hidden), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (hidden, q), p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden), p + "mlp.down_proj.weight": (hidden, inter),
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,)})
    return shapes


def llm_tensors(loaded: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The LLM's torch tensors under mlx-lm's names, checked against what the qwen2 config describes."""
    from harness.models.fastvlm import is_plain_tensor

    if loaded.cache_factory is not None:
        raise StepError(f"{STEP} cannot express a custom KV cache (kv-cache step): the MLX runtime keeps mlx-lm's "
                        "float cache; drop the kv-cache step from this variant")
    parts = {"model.": named_module(loaded.model, "llm"), "lm_head.": named_module(loaded.model, "lm_head")}
    for prefix, root in parts.items():
        for name, module in root.named_modules():
            kind = type(module).__name__
            if not list(module.children()) and module.state_dict() and kind not in FLOAT_KINDS:
                where = f"{prefix}{name}".rstrip(".")
                raise StepError(f"{STEP} cannot express '{where}' ({kind}): mlx-lm's qwen2 holds plain float "
                                "Linear weights; drop the torch quantization step and use export-mlx bits: 4|8")
    tensors = {prefix + name: t for prefix, root in parts.items() for name, t in root.state_dict().items()}
    if config["tie_word_embeddings"]:
        tensors.pop("lm_head.weight", None)
    want = expected_shapes(config)
    for name, tensor in tensors.items():
        if not is_plain_tensor(tensor):
            raise StepError(f"{STEP} cannot express the torch-quantized tensor '{name}'; export the float model and "
                            "quantize with export-mlx bits: 4|8")
        if name not in want or tuple(tensor.shape) != want[name]:
            expected = want.get(name, "no such tensor")
            raise StepError(f"{STEP}: '{name}' has shape {tuple(tensor.shape)} but mlx-lm's qwen2 config describes "
                            f"{expected} (per-layer pruned shapes cannot be expressed in one qwen2 config)")
    missing = sorted(set(want) - set(tensors))
    if missing:
        raise StepError(f"{STEP}: the LLM lacks '{missing[0]}' that mlx-lm's qwen2 needs")
    return tensors


def check_group_size(config: dict[str, Any], group_size: int) -> None:
    """Every quantized layer's input width must be a multiple of the group (mlx.core.quantize's rule)."""
    widths = {"hidden_size (q/k/v/gate/up projections, embedding, lm_head)": config["hidden_size"],
              "intermediate_size (down_proj)": config["intermediate_size"]}
    for what, width in widths.items():
        if width % group_size:
            fits = [g for g in (32, 64, 128) if not config["hidden_size"] % g and not config["intermediate_size"] % g]
            raise StepError(f"{STEP}: group_size {group_size} does not divide {what} = {width}; use group_size "
                            f"{' or '.join(map(str, fits)) or '(none of 32/64/128 fits this model)'}")


def write_llm(loaded: Any, folder: Path, dtype: str, bits: int | None, group_size: int) -> dict[str, Any]:
    """Write the mlx-lm model directory into `folder`; returns the config written and tensor counts."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models.qwen2 import Model, ModelArgs
    from mlx_lm.utils import save_config, save_model

    config = mlx_config(loaded)
    tensors = llm_tensors(loaded, config)
    if bits is not None:
        check_group_size(config, group_size)
    target = getattr(mx, dtype)
    model = Model(ModelArgs.from_dict(config))
    model.load_weights([(k, mx.array(t.detach().float().cpu().numpy()).astype(target)) for k, t in tensors.items()],
                       strict=True)
    if bits is not None:
        nn.quantize(model, group_size=group_size, bits=bits,
                    class_predicate=lambda _path, module: hasattr(module, "to_quantized"))
        config["quantization"] = {"group_size": group_size, "bits": bits, "mode": "affine"}
    mx.eval(model.parameters())
    save_model(folder, model)
    save_config(dict(config), folder / "config.json")
    written = dict(tree_flatten(model.parameters()))
    return {"config": config, "tensors": len(written),
            "quantized_layers": sum(1 for k in written if k.endswith(".scales")),
            "bytes": int(sum(v.nbytes for v in written.values()))}
