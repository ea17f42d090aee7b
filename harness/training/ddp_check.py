"""Train a tiny config-built FastVLM for a few steps; used to check DDP against one process.

    torchrun --nproc_per_node 2 -m harness.training.ddp_check --out OUT --accum 1
    python -m harness.training.ddp_check --out OUT --accum 2      # same global batch, one process

Rank 0 writes `OUT/weights.safetensors` and `OUT/curve.json` (loss per step, seconds, examples/s).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

TINY_VISION = {"layers": [1, 1, 1], "embed_dims": [8, 16, 32], "layer_scale_init_value": 1.0}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1}


def tiny_model(seed: int = 0, vision_args: dict | None = None, text_args: dict | None = None) -> Any:
    """A tiny `fast_vlm` (nano tokenizer and processor) built from config: trains in seconds."""
    from harness.models import nano
    from harness.models.fastvlm import LoadedModel

    processor = nano.build_processor()
    config = nano.build_config(processor.tokenizer, vision_args={**TINY_VISION, **(vision_args or {})},
                               text_args={**TINY_TEXT, **(text_args or {})})
    return LoadedModel(model=nano.build_model(config, seed=seed).eval(), processor=processor, source="tiny")


def main(argv: list[str] | None = None) -> None:
    import torch
    from safetensors.torch import save_file

    from harness.data.nano_vqa import load_nano_vqa
    from harness.training import TrainConfig, fit
    from harness.training.batches import VQABatcher
    from harness.training.distributed import init_from_env

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    world = init_from_env()
    loaded = tiny_model()
    batcher = VQABatcher(loaded.processor, load_nano_vqa("train").select(range(args.items)))
    result = fit(loaded.model, batcher, TrainConfig(steps=args.steps, batch_size=args.batch, grad_accum=args.accum,
                                                    lr=3e-3, warmup=2), progress=False)
    if world.rank == 0:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({n: p.detach().contiguous() for n, p in loaded.model.named_parameters()},
                  str(out / "weights.safetensors"))
        (out / "curve.json").write_text(json.dumps({
            "world_size": world.size, "grad_accum": args.accum, "batch_size": args.batch,
            "loss": [row["loss"] for row in result.history], "seconds": result.seconds,
            "examples_per_s": result.examples * world.size / result.seconds, "pid": os.getpid()}))
    if world.ddp:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()
