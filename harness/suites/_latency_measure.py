"""What one latency-measuring process does, and how several processes' results become one.

`measure` loads the artifact, times the first call (cold start, reported apart), warms up, then
times batch-1 generations with a fixed number of new tokens (min = max, greedy) until at least
`min_iterations` AND `min_seconds`. `harness run` runs it in interleaved rounds (one fresh process
per variant × runtime per round, `harness.run.rounds`); `merge` pools the processes that were not
excluded as outliers and records every process, its round and its medians.

The process is the unit of replication: its memory layout and thread placement shift all its
timings together (seen here: the same model at 15 or 21 ms TTFT depending on the process), so the
headline is the median of per-process medians, with a distribution-free CI over processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.data.sources import DatasetSpec, load_split
from harness.environment import cpu_model
from harness.results.stats import median_ci, summarize
from harness.spec.suite_files import SuiteConfig


class LatencyConfig(SuiteConfig):
    kind: Literal["latency"] = "latency"
    dataset: DatasetSpec = DatasetSpec(name="nano-vqa", split="test")
    items: int = Field(4, gt=0, description="distinct items, cycled")
    warmup: int = Field(3, ge=0)
    min_iterations: int = Field(20, gt=0)
    min_seconds: float = Field(3.0, ge=0)
    max_iterations: int = Field(1000, gt=0)
    new_tokens: int = Field(8, ge=2)
    processes: int = Field(1, ge=1, description="rounds: `harness run` measures each variant × runtime in this "
                                                "many fresh processes, one per round, rounds interleaved across "
                                                "variants in a shuffled order (process-level noise shows only "
                                                "across processes)")
    process_timeout_s: float = Field(600, gt=0)
    threads: int | None = Field(None, ge=1, description="torch intra-op threads of each measuring process (unset: "
                                                         "HARNESS_THREADS, else torch's choice); recorded per result")


STAGES = ("preprocess_ms", "vision_ms", "prefill_ms", "ttft_ms", "decode_token_ms", "total_ms")
#: A process is an outlier when its TTFT median is further than this many robust standard
#: deviations (1.4826 x MAD) from the median of the processes, AND more than FLOOR of it away.
OUTLIER_MADS = 5.0
OUTLIER_FLOOR = 0.25
#: Between-process CV of TTFT medians above this marks the measurement noisy (docs/measurement.md;
#: calibrated by benchmarks/calibrate_noise.py: healthy processes of the nano model on this 2-core
#: machine spread up to CV 0.26 over 3 quickstart runs, median 0.18; validated on the A/A runs).
NOISY_CV = 0.30


def measure(runtime: Any, artifact: Any, config: LatencyConfig, recipe_dir: Any) -> tuple[Any, dict[str, Any]]:
    """Load the artifact, time the first call, warm up, then measure; returns (session, result)."""
    import torch

    data = load_split(config.dataset, recipe_dir)
    rows = data.select(range(min(config.items, len(data))))
    images, questions = rows["image"], rows["question"]

    def once(session: Any, i: int) -> Any:
        k = i % len(images)
        return session.generate([images[k]], [questions[k]], max_new_tokens=config.new_tokens,
                                min_new_tokens=config.new_tokens).times

    start = time.perf_counter()
    session = runtime.load(artifact)
    load_ms = (time.perf_counter() - start) * 1e3
    first = once(session, 0)
    for i in range(config.warmup):
        once(session, i)
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    samples["decode_tokens_per_s"] = []
    began = time.perf_counter()
    i = 0
    kv_bytes = getattr(first, "kv_cache_bytes", None)
    while i < config.max_iterations and (
            i < config.min_iterations or time.perf_counter() - began < config.min_seconds):
        times = once(session, i)
        kv_bytes = getattr(times, "kv_cache_bytes", kv_bytes)
        decode_total = sum(times.decode_ms)
        for stage, value in (("preprocess_ms", times.preprocess_ms), ("vision_ms", times.vision_ms),
                             ("prefill_ms", times.prefill_ms), ("ttft_ms", times.ttft_ms),
                             ("decode_token_ms", decode_total / len(times.decode_ms)),
                             ("total_ms", times.total_ms),
                             ("decode_tokens_per_s", 1e3 * len(times.decode_ms) / decode_total)):
            samples[stage].append(value)
        i += 1
    result = {"cold_start": {"load_ms": load_ms, "first_generation_ms": first.total_ms,
                             "first_ttft_ms": first.ttft_ms},
              "samples": samples, "iterations": i, "measured_seconds": time.perf_counter() - began,
              "new_tokens": config.new_tokens, "batch_size": 1, "threads": torch.get_num_threads(),
              "cpu": cpu_model(), "visual_tokens": getattr(session, "visual_tokens", None),
              "kv_cache_bytes": kv_bytes, "processes": 1}
    return session, _with_stats(result, [samples])


def measure_child(payload: dict[str, Any]) -> dict[str, Any]:
    """Entry point of one fresh measuring process: {runtime, artifact, config, recipe_dir, threads}."""
    import os

    import torch

    from harness.registries import RUNTIMES

    os.environ["HARNESS_MEASURING"] = "latency"  # what this process is for (the `fault` step's stall-once reads it)
    if payload.get("threads"):
        torch.set_num_threads(int(payload["threads"]))
    recipe_dir = Path(payload["recipe_dir"]) if payload.get("recipe_dir") else None
    _, result = measure(RUNTIMES.get(payload["runtime"])(), Path(payload["artifact"]),
                        LatencyConfig.model_validate(payload["config"]), recipe_dir)
    return result


def process_median(result: dict[str, Any], metric: str = "ttft_ms") -> float:
    import numpy as np

    return float(np.median(result["samples"][metric]))


def outliers(processes: list[dict[str, Any]]) -> list[int]:
    """Indices of the processes whose TTFT median is far from the others' (see OUTLIER_MADS)."""
    import numpy as np

    kept = [i for i, p in enumerate(processes) if not p.get("excluded")]
    if len(kept) < 3:
        return []
    medians = np.array([process_median(processes[i]) for i in kept])
    centre = float(np.median(medians))
    spread = 1.4826 * float(np.median(np.abs(medians - centre)))
    limit = max(OUTLIER_MADS * spread, OUTLIER_FLOOR * centre)
    return [i for i, m in zip(kept, medians, strict=True) if abs(m - centre) > limit]


def merge(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the included processes (every sample of each), keep every process's record, and say
    whether the measurement is noisy (between-process CV of TTFT medians above NOISY_CV)."""
    import numpy as np

    included = [p for p in processes if not p.get("excluded")]
    first = included[0]
    medians = [process_median(p) for p in included]
    cv = float(np.std(medians, ddof=1) / np.mean(medians)) if len(medians) > 1 else 0.0
    merged = {**{k: v for k, v in first.items() if k not in ("round", "position", "excluded", "outlier")},
              "iterations": sum(p["iterations"] for p in included),
              "measured_seconds": sum(p["measured_seconds"] for p in included), "processes": len(included),
              "samples": {k: [x for p in included for x in p["samples"][k]] for k in first["samples"]},
              "rounds": [{"round": p.get("round", i), "position": p.get("position"),
                          "excluded": bool(p.get("excluded")), "outlier": p.get("outlier"),
                          "ttft_median_ms": process_median(p),
                          "decode_tokens_per_s_median": process_median(p, "decode_tokens_per_s"),
                          "medians": {k: process_median(p, k) for k in p["samples"]}}
                         for i, p in enumerate(processes)],
              "noise": {"between_process_cv": cv, "threshold": NOISY_CV, "noisy": cv > NOISY_CV,
                        "excluded": sum(bool(p.get("excluded")) for p in processes)}}
    return _with_stats(merged, [p["samples"] for p in included])


def _with_stats(result: dict[str, Any], per_process: list[dict[str, list[float]]]) -> dict[str, Any]:
    import numpy as np

    stats = {stage: summarize(values) for stage, values in result["samples"].items()}
    for stage, values in result["samples"].items():
        stats[stage]["p50_ci"] = list(median_ci(values))
    medians = {stage: [float(np.median(s[stage])) for s in per_process] for stage in result["samples"]}
    return {**result, "stats": stats, "process_medians": medians}


def headline(data: dict[str, Any], metric: str) -> tuple[float, list[float]]:
    """THE number reported for a latency metric, and its 95 % CI: the median of the per-process
    medians with a distribution-free CI over processes (one process: over its iterations). The
    report, the targets, the gate, `harness compare`, the history and the export all read it."""
    import numpy as np

    medians = (data.get("process_medians") or {}).get(metric) or []
    if len(medians) >= 2:
        return float(np.median(medians)), list(median_ci(medians))
    return data["stats"][metric]["p50"], list(data["stats"][metric]["p50_ci"])


def per_round_ratios(result: dict[str, Any], base: dict[str, Any] | None, metric: str) -> list[float]:
    """The variant's per-process median over the baseline variant's, for every round both measured
    (an extra round of re-measured processes included: the baseline is measured in it too). Only
    between measurements of one machine: a device runtime's rounds (`device` set) ran on a phone,
    where this machine's drift does not reach, so a ratio to a host measurement cancels nothing."""
    if base is None or result.get("device") != base.get("device"):
        return []

    def rounds(data: dict[str, Any]) -> dict[str, float]:  # keyed "0", "1", … and "again-1", …
        return {str(r["round"]): r["medians"][metric] for r in data.get("rounds", [])
                if not r["excluded"] and metric in r.get("medians", {})}

    mine, theirs = rounds(result), rounds(base)
    return [mine[k] / theirs[k] for k in sorted(mine, key=_round_order) if k in theirs and theirs[k] > 0]


def _round_order(key: str) -> tuple[int, int]:
    """Rounds first, in order, then the extra rounds of re-measured processes."""
    return (0, int(key)) if key.isdigit() else (1, int(key.rsplit("-", 1)[-1]))
