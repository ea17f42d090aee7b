"""Benchmark: FastVLM-0.5B vs LLaVA-OneVision-0.5B time to first token on this CPU, each at its
published default input, beside the FastVLM paper's numbers (85x faster TTFT, 3.4x smaller vision
encoder). Writes benchmarks/results/paper_ttft.json.

Both models are the harness's `random:` shapes — the published dimensions with random weights
(`random:fastvlm-0.5b`, `random:llava-onevision-0.5b`): TTFT depends on the shapes and the token
counts, not on the weights' values. The inputs are the paper's: FastVLM at 1024 px (256 visual
tokens), LLaVA-OneVision at 1152 px, which its AnyRes processor cuts into the 3x3 grid of 384 px
tiles plus the base image (the processor's own token count is recorded). TTFT is the harness's
staged generation (`LoadedModel.generate`, one new token): preprocess + vision encode + prefill,
each stage recorded, so the encoder and the prefill are measured separately within each call.

Rounds interleave the models (order alternating), one call each per round after one warm-up call;
the ratio is LLaVA-OV's TTFT over FastVLM's within a round (drift of the machine cancels), its
median over rounds with a 95 % bootstrap CI (scipy, percentile, resampling rounds). The vision
encoder parameter ratio counts each model's vision tower (projector apart).

    python benchmarks/paper_ttft.py                 # the lead's run: paper inputs, 5 rounds (minutes per LLaVA call)
    python benchmarks/paper_ttft.py --quick         # a check that it works: small inputs, 1 round, no warm-up
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"ttft_ratio": 85.0, "vision_encoder_size_ratio": 3.4,
         "visual_tokens": {"fastvlm": 256, "llava_onevision": 7290},
         "source": "FastVLM (Vasu et al., CVPR 2025): FastVLM-0.5B vs LLaVA-OneVision-0.5B, 85x faster TTFT "
                   "and a 3.4x smaller vision encoder"}
#: (FastVLM side, LLaVA-OV side) of the square input image, in pixels: the paper's, and --quick's.
INPUTS = {"paper": (1024, 1152), "quick": (256, 384)}
SHAPES = {"fastvlm": "fastvlm-0.5b", "llava_onevision": "llava-onevision-0.5b"}
QUESTION = "Describe the image."


def build(quick: bool) -> dict[str, Any]:
    """Both models (real-size, random weights), with --quick's small inputs set on their processors:
    FastVLM resized to 256 px, LLaVA-OV's AnyRes grid limited to one 384 px tile."""
    from harness.models.families import family_of_shape

    models = {name: family_of_shape(shape).random_model(shape) for name, shape in SHAPES.items()}
    if quick:
        fast, _ = INPUTS["quick"]
        processor = models["fastvlm"].processor.image_processor
        processor.size = {"shortest_edge": fast}
        processor.crop_size = {"height": fast, "width": fast}
        tile = models["llava_onevision"].family.image_size(models["llava_onevision"].processor)[0]
        models["llava_onevision"].processor.image_processor.image_grid_pinpoints = [[tile, tile]]
        models["llava_onevision"].model.config.image_grid_pinpoints = [[tile, tile]]
    return models


def input_tokens(shape: str, side: int) -> int:
    """Visual tokens the shape's own processor writes for a square image of `side` px (no model built)."""
    from PIL import Image

    from harness.models.families import family_of_shape

    config, processor = family_of_shape(shape).random_config(shape)
    inputs = processor(images=[Image.new("RGB", (side, side))], text=["<image> " + QUESTION], return_tensors="pt")
    token = getattr(config, "image_token_id", None) or config.image_token_index
    return int((inputs["input_ids"][0] == token).sum())


def image(side: int) -> Any:
    """A seeded noise picture: the processors resize, tile and normalise it like a photo."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def ttft(loaded: Any, picture: Any) -> dict[str, float]:
    """One staged generation of one new token: its preprocess, vision and prefill times (ms)."""
    times = loaded.generate([picture], [QUESTION], max_new_tokens=1).times
    return {"ttft_ms": times.ttft_ms, "preprocess_ms": times.preprocess_ms, "vision_ms": times.vision_ms,
            "prefill_ms": times.prefill_ms}


def spread(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    quart = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "p25": quart[0],
            "p75": quart[2], "n": len(ordered)}


def median_ratio_ci(ratios: list[float]) -> dict[str, Any]:
    """The median per-round ratio with a 95 % percentile bootstrap CI over rounds (none from one round)."""
    import numpy as np
    from scipy.stats import bootstrap

    out: dict[str, Any] = {"median": statistics.median(ratios), "rounds": len(ratios)}
    if len(ratios) < 2 or len(set(ratios)) < 2:
        return {**out, "ci95": None, "ci_why": "one round (or identical rounds): no interval"}
    found = bootstrap((np.asarray(ratios),), np.median, confidence_level=0.95, n_resamples=2000,
                      method="percentile", random_state=0)
    return {**out, "ci95": [float(found.confidence_interval.low), float(found.confidence_interval.high)],
            "ci_method": "percentile bootstrap of the median over rounds, 2000 resamples"}


def measure(models: dict[str, Any], pictures: dict[str, Any], rounds: int, warmup: bool) -> dict[str, list]:
    """Per model, one stage-time dict per round; the models alternate which goes first."""
    names = list(models)
    if warmup:
        for name in names:
            ttft(models[name], pictures[name])
    samples: dict[str, list] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            samples[name].append(ttft(models[name], pictures[name]))
    return samples


def describe(models: dict[str, Any], pictures: dict[str, Any]) -> dict[str, Any]:
    """Each model's input: image side, the visual tokens its processor writes, its prompt length."""
    out = {}
    for name, loaded in models.items():
        inputs = loaded.prepare([pictures[name]], [QUESTION])
        tokens = int((inputs["input_ids"][0] == loaded.model.config.image_token_id).sum())
        out[name] = {"shape": f"random:{SHAPES[name]}", "image_px": pictures[name].size[0], "visual_tokens": tokens,
                     "prompt_tokens": int(inputs["input_ids"].shape[1]),
                     "vision_params": loaded.parameter_count("vision"),
                     "projector_params": loaded.parameter_count("projector"), "total_params": loaded.parameter_count()}
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small inputs (FastVLM 256 px, LLaVA-OV one 384 px "
                                                             "tile), 1 round, no warm-up: checks that it works")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/paper_ttft.json "
                                                                "(--quick: paper_ttft_quick.json, never the real one)")
    args = parser.parse_args()
    args.out = args.out or ROOT / "benchmarks" / "results" / ("paper_ttft_quick.json" if args.quick
                                                               else "paper_ttft.json")
    torch.set_num_threads(args.threads)
    rounds = 1 if args.quick else args.rounds
    began = time.perf_counter()
    models = build(args.quick)
    sides = dict(zip(SHAPES, INPUTS["quick" if args.quick else "paper"], strict=True))
    pictures = {name: image(side) for name, side in sides.items()}
    inputs = describe(models, pictures)
    samples = measure(models, pictures, rounds, warmup=not args.quick)
    ratios = [lv["ttft_ms"] / fv["ttft_ms"] for fv, lv in zip(samples["fastvlm"], samples["llava_onevision"],
                                                              strict=True)]
    encoder_ratio = inputs["llava_onevision"]["vision_params"] / inputs["fastvlm"]["vision_params"]
    result = {
        "quick": args.quick, "inputs_kind": "quick: small inputs, NOT the paper's" if args.quick else "paper inputs",
        "threads": torch.get_num_threads(), "rounds": rounds, "warmup": not args.quick,
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "weights": "random (the shapes' published dimensions); TTFT depends on shapes and token counts only",
        "measured": "end to end per call (staged generation, one new token): preprocess, vision encode and "
                    "prefill timed separately within each call",
        "inputs": inputs,
        "ttft_ms": {name: {stage: spread([s[stage] for s in per]) for stage in per[0]}
                    for name, per in samples.items()},
        "ttft_ratio_llava_over_fastvlm": median_ratio_ci(ratios),
        "vision_encoder_param_ratio_llava_over_fastvlm": encoder_ratio,
        "paper_inputs_visual_tokens": {name: input_tokens(shape, side) for (name, shape), side
                                       in zip(SHAPES.items(), INPUTS["paper"], strict=True)},
        "paper": PAPER, "seconds": time.perf_counter() - began, "samples": samples}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
