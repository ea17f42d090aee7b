"""The whole FastVLM in mlx-vlm's `fastvlm` layout: vision tower, projector and Qwen2 in MLX.

mlx-vlm reads Apple's own `llava_qwen2` checkpoints, so the export writes exactly that (config.json
and weights under Apple's names: `harness.models._apple_mapping.to_apple_keys`, the inverse of the
conversion's mapping) into a scratch folder and lets mlx-vlm's `load_model` do the rest — its
sanitize steps (key renames, NCHW → NHWC conv weights), then `quant_utils.quantize_model` with
mlx-vlm's converter's own rule (every layer but the vision tower's: the LLM and the projector) and
`save_weights`.

mlx-vlm's FastViTHD is written for the released tower only: its dimensions are class constants and
its blocks are the inference-mode (reparameterised) ones. Anything else is refused in one line. A
ConvFFN BatchNorm that the harness's `reparameterize` folded into its conv is written back as an
identity BatchNorm (weight 1, mean 0, var 1 - eps, the folded conv's bias as its bias): mlx-vlm's
ConvFFN always holds one, and the identity gives the folded conv's outputs exactly.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import StepError

STEP = "export-mlx"
BN_EPS = 1e-5  # mlx.nn.BatchNorm's default eps, which mlx-vlm's ConvFFN uses
#: MobileCLIP's image-text head, which mlx-vlm's tower holds and the VLM never uses: written as zeros
#: of width 1 (Apple's is 768 wide) so it costs 12 kB, not 9 MB.
HEAD_WIDTH = 1


def fastvithd_mismatch(loaded: Any) -> str | None:
    """Why mlx-vlm's fixed FastViTHD cannot hold this tower, or None."""
    from mlx_vlm.models.fastvlm.config import VisionConfig

    vision = loaded.model.config.vision_config
    args = dict(getattr(vision, "model_args", None) or {})
    if getattr(vision, "architecture", None) != "fastvit_mci3":
        return f"the vision tower is '{getattr(vision, 'architecture', vision.model_type)}', not FastViTHD"
    for field in ("layers", "embed_dims", "mlp_ratios", "token_mixers"):
        want = list(getattr(VisionConfig, field))
        have = list(args.get(field, want))  # absent: timm's fastvit_mci3 default, which is FastViTHD's
        if have != want:
            return f"its {field} are {have}, mlx-vlm's FastViTHD has {want}"
    if not args.get("inference_mode"):
        return "its tower is in training form; mlx-vlm holds the reparameterised (inference-mode) blocks"
    return None


def apple_config(loaded: Any, mm_hidden: int) -> dict[str, Any]:
    """config.json as Apple's checkpoints write it (Qwen2 fields at the top, LLaVA's mm_* fields)."""
    text = loaded.model.config.text_config
    rope = dict(getattr(text, "rope_parameters", None) or {})
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
              "max_position_embeddings", "rms_norm_eps", "vocab_size", "eos_token_id")
    return {"model_type": "llava_qwen2", "architectures": ["LlavaQwen2ForCausalLM"],
            **{k: getattr(text, k) for k in fields}, "tie_word_embeddings": bool(text.tie_word_embeddings),
            "rope_theta": float(rope.get("rope_theta", 1e6)), "mm_projector_type": "mlp2x_gelu",
            "mm_hidden_size": mm_hidden, "image_token_index": loaded.model.config.image_token_id,
            "vision_config": {"projection_dim": HEAD_WIDTH}}


def apple_state(loaded: Any) -> dict[str, Any]:
    """The model's tensors under Apple's names, folded ConvFFN BatchNorms written back as identities."""
    import torch

    from harness.models._apple_mapping import APPLE_VISION, HF_VISION, to_apple_keys

    state = {k: v.detach().float().contiguous() for k, v in loaded.model.state_dict().items()}
    for key in [k for k in state if k.startswith(HF_VISION) and k.endswith(".mlp.conv.conv.bias")]:
        bn = key[: -len("conv.bias")] + "bn."
        if bn + "weight" not in state:  # folded by reparameterize: conv has a bias, the norm is gone
            bias = state.pop(key)
            state.update({bn + "weight": torch.ones_like(bias), bn + "bias": bias,
                          bn + "running_mean": torch.zeros_like(bias),
                          bn + "running_var": torch.full_like(bias, 1.0 - BN_EPS)})
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if loaded.model.config.text_config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    renamed = {apple: state[hf] for hf, apple in to_apple_keys(state).items()}
    width = loaded.model.config.vision_config.hidden_size
    renamed[APPLE_VISION + "head.proj"] = torch.zeros(width, HEAD_WIDTH)
    return renamed


def write_vlm(loaded: Any, folder: Path, dtype: str, bits: int | None, group_size: int) -> dict[str, Any]:
    """Write the mlx-vlm `fastvlm` model directory into `folder`; returns the config and tensor counts."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_map
    from mlx_vlm.quant_utils import quantize_model
    from mlx_vlm.utils import load_model, save_config, save_weights, skip_multimodal_module
    from safetensors.torch import save_file

    problem = fastvithd_mismatch(loaded)
    if problem:
        raise StepError(f"{STEP} vision: mlx writes mlx-vlm's fastvlm model, which fits the released FastViTHD "
                        f"only: {problem}; use vision: torch or onnx")
    state = apple_state(loaded)
    config = apple_config(loaded, loaded.model.config.vision_config.hidden_size)
    with tempfile.TemporaryDirectory(prefix="apple-layout-") as tmp:
        save_file(state, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        del state
        try:
            model = load_model(Path(tmp))
        except Exception as exc:  # noqa: BLE001 - mlx-vlm raises untyped errors for weights it cannot place
            raise StepError(f"{STEP} vision: mlx: mlx-vlm cannot load the model in Apple's layout: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    target = getattr(mx, dtype)
    model.update(tree_map(lambda v: v.astype(target) if mx.issubdtype(v.dtype, mx.floating) else v,
                          model.parameters()))
    if bits is not None:
        model, config = quantize_model(model, config, group_size, bits, mode="affine",
                                       quant_predicate=lambda path, _module: not skip_multimodal_module(path))
    mx.eval(model.parameters())
    save_weights(folder, model)
    save_config(dict(config), folder / "config.json")
    written = dict(tree_flatten(model.parameters()))
    return {"config": config, "tensors": len(written),
            "quantized_layers": sum(1 for k in written if k.endswith(".scales")),
            "bytes": int(sum(v.nbytes for v in written.values()))}
