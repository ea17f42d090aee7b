"""Benchmark: FastViTHD encode time before vs after the `reparameterize` step, at real size
(`random:fastvlm-0.5b`'s vision tower: released inference-mode layout, realistic random weights).
Writes benchmarks/results/reparam_encoder.json.

"before" is the tower as released checkpoints have it (branches fused, ConvFFN BatchNorms not);
"after" is the same tower after `reparameterize` (the BatchNorms folded into the 7x7 depthwise
convs). Rounds interleave the arms (order alternating), each arm timed once per round per size
after one warm-up call; medians with min / max / p25 / p75. `--default-init` adds the tower as
the old default init built it (collapsed activations) to show what realistic weights change.

    python benchmarks/reparam_encoder.py                      # the lead's run: 256 + 512 px, 7 rounds
    python benchmarks/reparam_encoder.py --rounds 3 --sizes 256   # a quick check that it works
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from harness.models.shapes import random_model
from harness.steps._base import StepContext, apply_step

ROOT = Path(__file__).resolve().parents[1]


def encode_ms(vision, size: int) -> float:  # noqa: ANN001
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    start = time.perf_counter()
    with torch.inference_mode():
        vision(pixel_values=image)
    return (time.perf_counter() - start) * 1e3


def spread(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    quart = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "p25": quart[0],
            "p75": quart[2], "n": len(ordered)}


def arms(with_default_init: bool) -> tuple[dict[str, torch.nn.Module], list[str], float]:
    """The towers to time, the reparameterize step's notes, and the max-abs output difference."""
    loaded = random_model("fastvlm-0.5b")
    before = copy.deepcopy(loaded.vision).eval()
    ctx = StepContext()
    apply_step({"kind": "reparameterize"}, loaded, ctx)
    towers = {"before": before, "after": loaded.vision.eval()}
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = float((towers["before"](pixel_values=image).last_hidden_state
                      - towers["after"](pixel_values=image).last_hidden_state).abs().max())
    if with_default_init:
        from transformers import FastVlmForConditionalGeneration

        torch.manual_seed(0)
        towers["default_init"] = FastVlmForConditionalGeneration(loaded.model.config).model.vision_tower.eval()
    return towers, ctx.notes, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--default-init", action="store_true", help="also time the old default-init tower")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reparam_encoder.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    towers, notes, diff = arms(args.default_init)
    for size in args.sizes:  # warm-up: one call per arm and size
        for tower in towers.values():
            encode_ms(tower, size)
    samples = {size: {name: [] for name in towers} for size in args.sizes}
    for round_index in range(args.rounds):
        order = list(towers) if round_index % 2 == 0 else list(reversed(towers))
        for size in args.sizes:
            for name in order:
                samples[size][name].append(encode_ms(towers[name], size))
    result = {"model": "random:fastvlm-0.5b vision tower (FastViTHD)", "threads": torch.get_num_threads(),
              "rounds": args.rounds, "step_notes": notes, "max_abs_diff_before_after_256px": diff,
              "encode_ms": {str(size): {name: spread(v) for name, v in per.items()} for size, per in samples.items()},
              "speedup_before_over_after": {str(size): statistics.median(per["before"])
                                            / statistics.median(per["after"]) for size, per in samples.items()},
              "samples_ms": {str(size): per for size, per in samples.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples_ms"}, indent=1))


if __name__ == "__main__":
    main()
