"""Apple's `llava_qwen2` FastVLM weight names → transformers' `fast_vlm` names, and the FastViT
structure read back from those names and shapes. Pure string/shape logic, no torch.

Apple's checkpoint keeps MobileCLIP's FastViT as one flat `network` list: the blocks of a stage
(`network.N.M.…`), the patch embedding that downsamples into the next stage (`network.N.proj.…`)
and, in attention stages, a conditional positional encoding (`network.N.reparam_conv` or
`.pe`) each take an index. timm's `fastvit_mci3` groups them as `stages.S.{downsample,pos_emb,
blocks.M}`. For FastViTHD the indices are 0 | 1 2 | 3 4 | 5 6 7 | 8 9 10 (the table transformers'
conversion script hard-codes); here the stage of an index is found from where the patch
embeddings sit, so a tower of any depth maps the same way (timm's own MobileCLIP filter does so too).
The module renames follow Apple's `mci.py` against timm's `fastvit.py`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The files besides weights and config.json that a conversion reads (never a `.py` or `.bin`).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "generation_config.json")


@dataclass
class AppleCheckpoint:
    """An Apple checkpoint directory that passed the fast checks."""

    path: Path
    config: dict[str, Any]
    shards: list[Path]
    image_size: int
    tower: str


APPLE_VISION = "model.vision_tower.vision_tower.model."
HF_VISION = "model.vision_tower.timm_model."

#: Module names inside the FastViT blocks: Apple (mci.py) → timm (fastvit.py). Applied per path
#: segment, so `proj` of an attention block and a stage's downsample `proj` never clash.
SEGMENTS = {
    "patch_embed": "stem",
    "conv_exp": "final_conv",
    "convffn": "mlp",
    "rbr_conv": "conv_kxk",        # MobileOneBlock, training form
    "rbr_scale": "conv_scale",
    "rbr_skip": "identity",
    "lkb_origin": "large_conv",    # ReparamLargeKernelConv, training form
    "lkb_reparam": "reparam_conv",  # ... and reparameterised
    "reduce": "fc1",               # SEBlock → timm SqueezeExcite
    "expand": "fc2",
}
#: Bare layer-scale parameters in Apple's code are `LayerScale2d.gamma` in timm.
LAYER_SCALES = ("layer_scale", "layer_scale_1", "layer_scale_2")
#: The text model and the projector (LLaVA's `mm_projector` Sequential: Linear, GELU, Linear).
TOP_LEVEL = (
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
#: Apple keys the VLM never uses: MobileCLIP's image-text projection head (`head.proj`).
DROPPED = re.compile(r"^" + re.escape(APPLE_VISION) + r"head\.")
_NETWORK = re.compile(r"^network\.(\d+)\.(.*)$")


def stage_ends(vision_keys: Iterable[str]) -> list[int]:
    """The `network` indices that are patch embeddings (`network.N.proj.…`), sorted."""
    ends = {int(m.group(1)) for k in vision_keys if (m := _NETWORK.match(k)) and m.group(2).startswith("proj.")}
    return sorted(ends)


def map_key(key: str, ends: list[int]) -> str | None:
    """The `fast_vlm` name of one Apple key; None for a key the VLM does not use; a key neither
    side knows comes back unchanged (the caller's shape check names it)."""
    if DROPPED.match(key):
        return None
    if key.startswith(APPLE_VISION):
        return HF_VISION + _vision_key(key[len(APPLE_VISION):], ends)
    for apple, hf in TOP_LEVEL:
        if key.startswith(apple):
            return hf + key[len(apple):]
    return key


def _vision_key(key: str, ends: list[int]) -> str:
    match = _NETWORK.match(key)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        stage = bisect.bisect_right(ends, index)
        if rest.startswith("proj."):
            key = f"stages.{stage}.downsample.{rest}"
        elif rest.split(".")[0] in ("reparam_conv", "pe"):
            key = f"stages.{stage}.pos_emb.{rest.replace('pe.', 'pos_enc.', 1)}"
        else:
            key = f"stages.{stage}.blocks.{rest}"
    parts = [SEGMENTS.get(part, part) for part in key.split(".")]
    if parts[-1] in LAYER_SCALES:
        parts.append("gamma")
    return ".".join(parts)


def map_keys(keys: Iterable[str]) -> dict[str, str]:
    """Every used Apple key → its `fast_vlm` name."""
    keys = list(keys)
    ends = stage_ends(k[len(APPLE_VISION):] for k in keys if k.startswith(APPLE_VISION))
    mapped = {key: map_key(key, ends) for key in keys}
    return {key: new for key, new in mapped.items() if new is not None}


def vision_structure(shapes: dict[str, tuple[int, ...]]) -> dict:
    """timm `fastvit_mci3` model_args read from the mapped vision names and shapes, plus the stages
    that carry a positional encoding (`pos_emb_stages`, not a model_arg: timm takes it from the
    architecture) — what Apple's config does not say (its tower is named, not described)."""
    tower = {k[len(HF_VISION):]: v for k, v in shapes.items() if k.startswith(HF_VISION)}
    stages = sorted({int(k.split(".")[1]) for k in tower if k.startswith("stages.")})
    if not stages or stages != list(range(len(stages))):
        raise ValueError("the vision tower has no FastViT stages (no `network.N.M` blocks)")
    layers, dims, ratios, mixers, downsamples, se_downsamples, pos = [], [], [], [], [], [], []
    for stage in stages:
        prefix = f"stages.{stage}."
        blocks = {int(k.split(".")[3]) for k in tower if k.startswith(prefix + "blocks.")}
        if not blocks:
            raise ValueError(f"vision stage {stage} has no blocks")
        fc1 = tower.get(f"{prefix}blocks.0.mlp.fc1.weight")
        if fc1 is None:
            raise ValueError(f"vision stage {stage} block 0 has no ConvFFN (`convffn.fc1`)")
        layers.append(len(blocks))
        dims.append(fc1[1])
        ratios.append(fc1[0] / fc1[1])
        mixers.append("attention" if f"{prefix}blocks.0.token_mixer.qkv.weight" in tower else "repmixer")
        downsamples.append(any(k.startswith(prefix + "downsample.") for k in tower))
        se_downsamples.append(any(k.startswith(prefix + "downsample.proj.0.se.") for k in tower))
        if any(k.startswith(prefix + "pos_emb.") for k in tower):
            pos.append(stage)
    final = tower.get("final_conv.reparam_conv.weight") or tower.get("final_conv.conv_kxk.0.conv.weight")
    if final is None:
        raise ValueError("the vision tower has no final conv (`conv_exp`)")
    inference = "stem.0.reparam_conv.weight" in tower
    args = {"layers": layers, "embed_dims": dims, "mlp_ratios": [int(r) if r == int(r) else r for r in ratios],
            "token_mixers": mixers, "downsamples": downsamples, "se_downsamples": se_downsamples,
            "cls_ratio": final[0] / dims[-1], "inference_mode": inference}
    return {"model_args": args, "pos_emb_stages": pos, "num_features": final[0]}


def reduction(model_args: dict) -> int:
    """Pixels per visual token along a side: the stem's 4x, then 2x per downsampling stage."""
    return 4 * 2 ** sum(bool(d) for d in model_args["downsamples"])


#: timm → Apple per path segment (the inverse of SEGMENTS). Two renames depend on context, handled
#: in `_apple_vision_key`: `reparam_conv` is `lkb_reparam` only in a downsample's large-kernel conv,
#: and `fc1`/`fc2` are `reduce`/`expand` only inside a squeeze-excite (`se`) block — a ConvFFN's
#: `fc1`/`fc2` keep their names.
TO_APPLE_SEGMENTS = {hf: apple for apple, hf in SEGMENTS.items() if apple not in ("lkb_reparam", "reduce", "expand")}
SE_TO_APPLE = {"fc1": "reduce", "fc2": "expand"}
_HF_STAGE = re.compile(r"^stages\.(\d+)\.(downsample|pos_emb|blocks)\.(.*)$")


def network_indices(hf_vision_keys: Iterable[str]) -> dict[tuple[int, str], int]:
    """Apple's flat `network` index of each (stage, part) present: a stage's downsample, then its
    positional encoding, then its blocks (FastViTHD: 0 | 1 2 | 3 4 | 5 6 7 | 8 9 10)."""
    present = {(int(m.group(1)), m.group(2)) for k in hf_vision_keys if (m := _HF_STAGE.match(k))}
    order = {"downsample": 0, "pos_emb": 1, "blocks": 2}
    return {part: index for index, part in enumerate(sorted(present, key=lambda p: (p[0], order[p[1]])))}


def to_apple_keys(keys: Iterable[str]) -> dict[str, str]:
    """Every `fast_vlm` name → Apple's `llava_qwen2` name: the inverse of `map_keys` (what an export
    in Apple's layout, e.g. mlx-vlm's `fastvlm`, reads)."""
    keys = list(keys)
    indices = network_indices(k[len(HF_VISION):] for k in keys if k.startswith(HF_VISION))
    out = {}
    for key in keys:
        if key.startswith(HF_VISION):
            out[key] = APPLE_VISION + _apple_vision_key(key[len(HF_VISION):], indices)
            continue
        out[key] = next((apple + key[len(hf):] for apple, hf in TOP_LEVEL if key.startswith(hf)), key)
    return out


def _apple_vision_key(key: str, indices: dict[tuple[int, str], int]) -> str:
    parts = key.split(".")
    if parts[-1] == "gamma" and len(parts) > 1 and parts[-2] in LAYER_SCALES:
        parts = parts[:-1]
    key = ".".join(parts).replace("downsample.proj.0.reparam_conv", "downsample.proj.0.lkb_reparam")
    key = key.replace("pos_emb.pos_enc.", "pos_emb.pe.")
    match = _HF_STAGE.match(key)
    if match:
        key = f"network.{indices[(int(match.group(1)), match.group(2))]}.{match.group(3)}"
    parts = key.split(".")
    return ".".join(SE_TO_APPLE.get(part, part) if i and parts[i - 1] == "se" else TO_APPLE_SEGMENTS.get(part, part)
                    for i, part in enumerate(parts))
