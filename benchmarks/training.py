"""Benchmark: the trainer's gradient-checkpointing memory saving and DDP equivalence.
Writes benchmarks/results/training.json.

- gradient checkpointing: a FastVLM whose LLM has the real FastVLM-0.5B layer dimensions
  (hidden 896, MLP 4864, 14/2 heads; 4 layers, nano vocabulary, nano vision tower) trains 2 steps
  on nano-VQA batches of 16 images (~48 rows) with and without checkpointing, each run in a
  fresh process; peak RSS (VmHWM) is read from the OS; medians over REPEATS alternating runs;
- DDP: `harness.training.ddp_check` with 2 processes (torchrun, gloo) vs 1 process with
  grad_accum 2 on the same global batch (max-abs weight difference, loss curves, examples/s),
  and 1 process without accumulation as the contrast that is *not* the same computation.

    python benchmarks/training.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3
TEXT_0P5B_LAYERS = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 4,
                    "num_attention_heads": 14, "num_key_value_heads": 2}


def measure(checkpointing: bool) -> dict:
    """In this (fresh) process: build, train 2 steps, report peak RSS and the step time."""
    import torch

    from harness.data.nano_vqa import load_nano_vqa
    from harness.models import nano
    from harness.suites._memprobe import rss_mb
    from harness.training import TrainConfig, fit
    from harness.training.batches import VQABatcher

    torch.set_num_threads(1)
    processor = nano.build_processor()
    model = nano.build_model(nano.build_config(processor.tokenizer, text_args=TEXT_0P5B_LAYERS)).eval()
    batcher = VQABatcher(processor, load_nano_vqa("train").select(range(400)))
    before = rss_mb()["peak_mb"]
    result = fit(model, batcher, TrainConfig(steps=2, batch_size=16, warmup=1, gradient_checkpointing=checkpointing),
                 progress=False)
    return {"peak_rss_mb": round(rss_mb()["peak_mb"], 1), "rss_before_training_mb": round(before, 1),
            "seconds_per_step": round(result.seconds / 2, 2), "tokens_per_step": result.tokens // 2,
            "loss": [r["loss"] for r in result.history]}


def _child(checkpointing: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", "on" if checkpointing else "off"], check=True,
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkpointing_saving() -> dict:
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(REPEATS):  # alternate, so drift on a shared machine hits both alike
        for mode in ("off", "on"):
            runs[mode].append(_child(mode == "on"))
    median = {m: statistics.median(r["peak_rss_mb"] for r in rs) for m, rs in runs.items()}
    return {"model": "nano vision + Qwen2 LLM with FastVLM-0.5B layer dims, 4 layers", "text": TEXT_0P5B_LAYERS,
            "batch": "16 images (~48 rows) per step, fp32, 2 steps, 1 thread", "repeats": REPEATS,
            "peak_rss_mb_median": median, "saving_mb": round(median["off"] - median["on"], 1),
            "saving_pct_of_peak": round(100 * (median["off"] - median["on"]) / median["off"], 1),
            "seconds_per_step_median": {m: statistics.median(r["seconds_per_step"] for r in rs)
                                        for m, rs in runs.items()},
            "same_loss": runs["on"][0]["loss"] == runs["off"][0]["loss"],
            "loss_max_abs_difference": max(abs(a - b) for a, b in zip(runs["on"][0]["loss"], runs["off"][0]["loss"])),
            "runs": runs}


def _ddp_run(out: Path, accum: int, processes: int) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    module = ["-m", "harness.training.ddp_check", "--out", str(out), "--accum", str(accum), "--steps", "8"]
    command = ([shutil.which("torchrun") or "torchrun", "--standalone", "--nproc_per_node", str(processes)]
               if processes > 1 else [sys.executable])
    subprocess.run(command + module, check=True, capture_output=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return load_file(str(out / "weights.safetensors")), json.loads((out / "curve.json").read_text())


def ddp_equivalence() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        one_w, one = _ddp_run(Path(tmp) / "one", 2, 1)
        two_w, two = _ddp_run(Path(tmp) / "two", 1, 2)
        full_w, full = _ddp_run(Path(tmp) / "full", 1, 1)
    diff = max(float((one_w[k] - two_w[k]).abs().max()) for k in one_w)
    contrast = max(float((full_w[k] - two_w[k]).abs().max()) for k in full_w)
    return {"model": "tiny config-built fast_vlm (harness.training.ddp_check)", "global_batch": one["batch_size"],
            "steps": len(one["loss"]), "backend": "gloo (CPU)",
            "max_abs_weight_difference_2proc_vs_1proc_accum2": diff,
            "max_abs_loss_difference": max(abs(a - b) for a, b in zip(one["loss"], two["loss"])),
            "loss_1proc_accum2": one["loss"], "loss_2proc": two["loss"],
            "contrast_1proc_no_accum_max_abs_weight_difference": contrast,
            "examples_per_s": {"1proc_accum2": round(one["examples_per_s"], 1),
                               "2proc": round(two["examples_per_s"], 1)},
            "note": "2 processes on a shared 2-core machine: throughput is not a scaling measurement"}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2] == "on")))
        return
    import platform

    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "gradient_checkpointing": checkpointing_saving(), "ddp": ddp_equivalence()}
    out = ROOT / "benchmarks" / "results" / "training.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result["gradient_checkpointing"].items() if k != "runs"}, indent=2))
    print(json.dumps(result["ddp"], indent=2))


if __name__ == "__main__":
    main()
