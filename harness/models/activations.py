"""Per-stage activation statistics of a VLM of any family, and the check that they have not collapsed.

A random-weight model is only a stand-in for the real one if its activations live where real
ones do: a tower whose features have shrunk to subnormal or exact zeros runs convolutions on a
data-dependent slow path, so its latency is not the model's. `activation_stats` records, via
forward hooks, std / fraction of exact zeros / fraction of subnormals after the stem, every stage
and the final conv of a FastViT (every few blocks of another family's ViT), the projector's
output, and the decoder's hidden-state std every few layers with the first-token logits;
`collapse_problems` says in words what is wrong (empty = healthy).
"""

from __future__ import annotations

from typing import Any

#: A stage is collapsed below this std, above this share of exact zeros or of subnormals.
MIN_STD = 1e-3
MAX_ZERO_FRACTION = 0.5
MAX_SUBNORMAL_FRACTION = 1e-3
#: The decoder's hidden-state std must stay inside this band (O(1) up to two decades).
HIDDEN_STD_BAND = (1e-2, 1e2)


def tensor_stats(tensor: Any) -> dict[str, float]:
    import torch

    values = tensor.detach().float()
    tiny = torch.finfo(tensor.dtype).tiny if tensor.dtype.is_floating_point else 0.0
    magnitude = values.abs()
    return {"std": float(values.std(correction=0)), "zero_fraction": float((magnitude == 0).float().mean()),
            "subnormal_fraction": float(((magnitude > 0) & (magnitude < tiny)).float().mean()),
            "finite": bool(torch.isfinite(values).all())}


def tower_points(tower: Any, every: int = 4) -> list[tuple[str, Any]]:
    """Where to look inside a vision tower: a timm FastViT's stem, stages and final conv; another tower's
    (a ViT's) every `every`-th block of its longest module list, and the last."""
    import torch

    if all(hasattr(tower, name) for name in ("stem", "stages", "final_conv")):
        return [("stem", tower.stem), *((f"stage{i}", s) for i, s in enumerate(tower.stages)),
                ("final_conv", tower.final_conv)]
    lists = [module for module in tower.modules() if isinstance(module, torch.nn.ModuleList)]
    blocks = max(lists, key=len)
    return [(f"block{i}", blocks[i]) for i in sorted({*range(0, len(blocks), every), len(blocks) - 1})]


def hooked_stats(points: list[tuple[str, Any]], run: Any) -> tuple[list[dict[str, Any]], Any]:
    """The stats of each point's output (a block's first tensor when it returns a tuple) while `run()` runs."""
    import torch

    stats: list[dict[str, Any]] = []

    def record(name: str, out: Any) -> None:
        tensor = out if isinstance(out, torch.Tensor) else next(o for o in out if isinstance(o, torch.Tensor))
        stats.append({"point": name, **tensor_stats(tensor)})

    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: record(name, out)) for name, module in points]
    try:
        with torch.inference_mode():
            result = run()
    finally:
        for hook in hooks:
            hook.remove()
    return stats, result


def language_stats(loaded: Any, tokens: int = 16, every: int = 4, seed: int = 0) -> dict[str, Any]:
    """The decoder's hidden-state stats every `every` layers (and the last) on seeded random tokens,
    and the logits' std and finiteness."""
    import torch

    vocab = loaded.model.config.text_config.vocab_size
    ids = torch.randint(0, vocab, (1, tokens), generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        out = loaded.llm(input_ids=ids, output_hidden_states=True)
        logits = loaded.lm_head(out.last_hidden_state[:, -1, :])
    hidden = out.hidden_states
    picks = sorted({*range(0, len(hidden), every), len(hidden) - 1})
    return {"hidden": [{"layer": i, **tensor_stats(hidden[i])} for i in picks], "logits": tensor_stats(logits)}


def activation_stats(loaded: Any, image_size: int = 256, seed: int = 0) -> dict[str, Any]:
    """Vision per-stage stats, the projector output, and the decoder's (see the module docstring), from one
    forward pass of the image features. A FastVLM tower sees a seeded image of `image_size`; another family's
    sees a seeded noise image through its own processor (tiles and all), at the processor's size."""
    import torch

    tower = getattr(loaded.vision, "timm_model", None)
    if tower is not None:
        image = torch.rand(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
        points, features = hooked_stats(tower_points(tower),
                                        lambda: loaded.image_features(image.to(loaded.dtype)).pooler_output)
        stats = {"image_size": image_size, "vision": points}
    else:
        stats, features = _family_vision_stats(loaded, seed)
    stats["projector"] = tensor_stats(features)
    stats["llm"] = language_stats(loaded, seed=seed)
    return stats


def _family_vision_stats(loaded: Any, seed: int) -> tuple[dict[str, Any], Any]:
    import numpy as np
    from PIL import Image

    height, width = loaded.family.image_size(loaded.processor)
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    inputs = loaded.prepare([Image.fromarray(noise)], [""])
    points, features = hooked_stats(tower_points(loaded.vision), lambda: loaded.family.image_features(loaded.model,
                                                                                                        inputs))
    return {"image_size": height, "vision": points}, features


def collapse_problems(stats: dict[str, Any]) -> list[str]:
    """One line per collapsed point (vision stage, projector, decoder layer, logits); empty if healthy."""
    points = list(stats.get("vision", []))
    if "projector" in stats:
        points.append({"point": "projector", **stats["projector"]})
    problems = [line for entry in points for line in _point_problems(entry["point"], entry)]
    low, high = HIDDEN_STD_BAND
    for entry in stats.get("llm", {}).get("hidden", []):
        if not entry["finite"] or not low <= entry["std"] <= high:
            problems.append(f"llm layer {entry['layer']}: hidden std {entry['std']:.3g} outside [{low:g}, {high:g}]")
    logits = stats.get("llm", {}).get("logits")
    if logits is not None and not logits["finite"]:
        problems.append("llm logits are not finite (NaN/inf)")
    return problems


def _point_problems(point: str, entry: dict[str, Any]) -> list[str]:
    out = []
    if not entry["finite"]:
        out.append(f"{point}: non-finite activations")
    if entry["std"] < MIN_STD:
        out.append(f"{point}: std {entry['std']:.3g} < {MIN_STD:g}")
    if entry["zero_fraction"] > MAX_ZERO_FRACTION:
        out.append(f"{point}: {entry['zero_fraction']:.0%} exact zeros")
    if entry["subnormal_fraction"] > MAX_SUBNORMAL_FRACTION:
        out.append(f"{point}: {entry['subnormal_fraction']:.2%} subnormal")
    return out


def summary_line(stats: dict[str, Any]) -> str:
    """A build note: the std per vision point and per sampled decoder layer, worst zero/subnormal shares."""
    vision = stats.get("vision", [])
    stds = " ".join(f"{e['point']} {e['std']:.3g}" for e in vision)
    zeros = max((e["zero_fraction"] for e in vision), default=0.0)
    subnormal = max((e["subnormal_fraction"] for e in vision), default=0.0)
    hidden = " ".join(f"L{e['layer']} {e['std']:.3g}" for e in stats.get("llm", {}).get("hidden", []))
    logits = stats.get("llm", {}).get("logits", {})
    return (f"activations at {stats.get('image_size')} px: vision std {stds}; max zeros {zeros:.2%}, "
            f"max subnormal {subnormal:.2%}; llm hidden std {hidden}; logits std {logits.get('std', float('nan')):.3g}")
