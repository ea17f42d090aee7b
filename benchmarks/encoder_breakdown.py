"""Benchmark: where FastViTHD's time goes at 1024 px in the harness's fastest torch path, by kind of
layer, against this CPU's GEMM peak in the same dtype. Writes benchmarks/results/encoder_breakdown.json.

The fastest path depends on the CPU: with native bf16 (AVX512-BF16 / AMX) it is `reparameterize` +
`cast` bf16 (channels_last, oneDNN's AMX kernels; the peers benchmark measured it at 28 % of the
bf16 GEMM peak there, goal 50 %); without, torch emulates bf16 and the reparameterised fp32 tower
is the fastest (`--dtype auto` picks by `harness.environment.native_bf16`). Per module, forward
hooks time the call and `FlopCounterMode` counts its FLOPs; a module's *self* share is its own
minus its children's (an attention block's QK^T / AV are its own). Modules are grouped as dense
convolutions, depthwise convolutions, linear layers, attention and everything else (FlopCounterMode
counts no FLOPs for elementwise ops, nor for the CPU flash-attention kernel behind SDPA: their time
is counted, their work is not, so the percentages are lower bounds). The `bound`
asks: if every dense convolution, linear layer and attention ran at the GEMM peak and the rest at
its measured speed, what share of the peak would the whole encoder reach?

    python benchmarks/encoder_breakdown.py              # 1024 px, 5 timed runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_0p5b import gemm_peak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Layer kinds whose work is GEMM-shaped (what a GEMM peak can bound).
GEMM_KINDS = ("dense conv", "linear", "attention")


def kind_of(module: torch.nn.Module) -> str:
    if isinstance(module, torch.nn.Conv2d):
        return "depthwise conv" if module.groups > 1 and module.groups == module.in_channels else "dense conv"
    if isinstance(module, torch.nn.Linear):
        return "linear"
    if type(module).__name__ == "Attention":
        return "attention"
    return "other"


def towers(dtype: torch.dtype) -> tuple[Any, Any]:
    """(fp32 reparameterised tower: FLOPs are counted on it, the tower timed: the same, or after
    `cast` bf16 as the peers benchmark's `enc-torch-bf16` arm builds it)."""
    import copy

    from harness.models.shapes import random_model
    from harness.steps._base import StepContext, apply_step

    model = random_model("fastvlm-0.5b")
    apply_step({"kind": "reparameterize"}, model, StepContext())
    fp32 = copy.deepcopy(model.vision).eval()
    if dtype == torch.float32:
        return fp32, fp32
    apply_step({"kind": "cast", "dtype": "bf16", "targets": ["vision"]}, model, StepContext())
    return fp32, model.vision.eval()


def module_flops(tower: Any, size: int) -> dict[str, int]:
    """Inclusive FLOPs per module name (FlopCounterMode's names: 'Global' and dotted paths)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=None)
    with counter, torch.inference_mode():
        tower(pixel_values=torch.rand(1, 3, size, size))
    return {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


def module_times(tower: Any, size: int, runs: int, dtype: torch.dtype) -> tuple[dict[str, float], list[float]]:
    """Inclusive ms per module name (median over `runs` timed calls, after one warm-up), and the
    whole call's ms per run."""
    per_run: dict[str, list[float]] = defaultdict(list)
    started: dict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = defaultdict(float)
    handles = []
    for name, module in tower.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: started[n].append(time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, a, o, n=name: current.__setitem__(n, current[n] + time.perf_counter() - started[n].pop())))
    image = torch.rand(1, 3, size, size, dtype=dtype)
    totals = []
    try:
        for index in range(runs + 1):
            current.clear()
            began = time.perf_counter()
            with torch.inference_mode():
                tower(pixel_values=image)
            if index:  # the first call is the warm-up
                totals.append((time.perf_counter() - began) * 1e3)
                for name, seconds in current.items():
                    per_run[name].append(seconds * 1e3)
    finally:
        for handle in handles:
            handle.remove()
    return {name: statistics.median(v) for name, v in per_run.items()}, totals


def self_share(tower: Any, inclusive: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Per module: its inclusive value minus its direct children's."""
    out = {}
    for name, module in tower.named_modules():
        children = [f"{name}.{child}" if name else child for child, _ in module.named_children()]
        out[name] = inclusive.get(prefix + name, 0.0) - sum(inclusive.get(prefix + c, 0.0) for c in children)
    return out


def breakdown(size: int, runs: int, peak: float, dtype: torch.dtype) -> dict[str, Any]:
    fp32, timed = towers(dtype)
    flops = module_flops(fp32, size)
    root = type(fp32).__name__
    # FlopCounterMode names modules by their path under the root's class name; `named_modules` by path
    flops_by_path = {name.removeprefix(root).removeprefix("."): value for name, value in flops.items()
                     if name != "Global"}
    times, totals = module_times(timed, size, runs, dtype)
    self_ms, self_flops = self_share(timed, times), self_share(fp32, flops_by_path)
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"ms": 0.0, "gflop": 0.0, "modules": 0})
    for name, module in timed.named_modules():
        entry = kinds[kind_of(module)]
        entry["ms"] += self_ms[name]
        entry["gflop"] += self_flops.get(name, 0.0) / 1e9
        entry["modules"] += 1
    total_ms, total_gflop = statistics.median(totals), flops.get("Global", 0) / 1e9
    for entry in kinds.values():
        entry["share_of_time"] = entry["ms"] / total_ms
        entry["gflops"] = entry["gflop"] / entry["ms"] * 1e3 if entry["ms"] > 0 else None
        entry["pct_of_peak"] = 100 * entry["gflops"] / peak if entry["gflops"] else None
    at_peak_ms = sum(kinds[k]["gflop"] / peak * 1e3 for k in GEMM_KINDS if k in kinds)
    rest_ms = sum(v["ms"] for k, v in kinds.items() if k not in GEMM_KINDS)
    bound_ms = at_peak_ms + rest_ms
    return {"size": size, "runs": runs, "total_ms": total_ms, "total_ms_per_run": totals, "total_gflop": total_gflop,
            "gflops": total_gflop / total_ms * 1e3, "pct_of_peak": 100 * total_gflop / total_ms * 1e3 / peak,
            "hooked_ms_sum": sum(self_ms.values()), "kinds": dict(kinds),
            "bound": {"gemm_kinds_at_peak_ms": at_peak_ms, "other_kinds_as_measured_ms": rest_ms,
                      "encoder_ms": bound_ms, "pct_of_peak": 100 * total_gflop / bound_ms * 1e3 / peak}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: bfloat16 where this CPU runs it natively, else float32")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "encoder_breakdown.json")
    args = parser.parse_args()
    from harness.environment import cpu_features, cpu_model, native_bf16

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    name = args.dtype if args.dtype != "auto" else "bfloat16" if native_bf16() else "float32"
    dtype = getattr(torch, name)
    peaks = {"gemm_fp32_gflops": gemm_peak(torch.float32, 2048)}
    if native_bf16():  # emulated bf16 takes minutes per 2048^3 GEMM and bounds nothing
        peaks["gemm_bf16_gflops"] = gemm_peak(torch.bfloat16, 2048)
    peak = peaks["gemm_bf16_gflops" if dtype == torch.bfloat16 else "gemm_fp32_gflops"]
    result = {"threads": args.threads, "cpu": cpu_model(), "cpu_features": cpu_features(), "dtype": name,
              "peaks": peaks, "peak_gflops": peak, **breakdown(args.size, args.runs, peak, dtype),
              "seconds": time.perf_counter() - began}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "total_ms_per_run"}, indent=1))


if __name__ == "__main__":
    main()
