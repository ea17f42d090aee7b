"""Latency suite: cold start apart, warm-up, then at least N iterations AND T seconds.

Each iteration is one batch-1 generation with a fixed number of new tokens (min = max, greedy),
timed per stage by the runtime: TTFT = preprocess + vision encode (+projector) + prefill, and
each decode step. Reported as p50/p90/p99, mean and CV, with threads and CPU recorded. The KV
cache's bytes at the end of a generation are reported when the runtime measures them.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.data.sources import DatasetSpec, load_split
from harness.environment import cpu_model
from harness.registries import SUITE_KINDS
from harness.stats import median_ci, summarize
from harness.suites._context import SuiteContext
from harness.suites._spec import SuiteConfig

STAGES = ("preprocess_ms", "vision_ms", "prefill_ms", "ttft_ms", "decode_token_ms", "total_ms")


class LatencyConfig(SuiteConfig):
    kind: Literal["latency"] = "latency"
    dataset: DatasetSpec = DatasetSpec(name="nano-vqa", split="test")
    items: int = Field(4, gt=0, description="distinct items, cycled")
    warmup: int = Field(3, ge=0)
    min_iterations: int = Field(20, gt=0)
    min_seconds: float = Field(3.0, ge=0)
    max_iterations: int = Field(1000, gt=0)
    new_tokens: int = Field(8, ge=2)


@SUITE_KINDS.register("latency", "TTFT split into preprocess / vision / prefill, decode tok/s; p50/p90/p99")
class Latency:
    Config = LatencyConfig

    def run(self, config: LatencyConfig, ctx: SuiteContext) -> dict[str, Any]:
        import torch

        data = load_split(config.dataset, ctx.recipe_dir)
        rows = data.select(range(min(config.items, len(data))))
        images, questions = rows["image"], rows["question"]

        def once(session: Any, i: int) -> Any:
            k = i % len(images)
            return session.generate([images[k]], [questions[k]], max_new_tokens=config.new_tokens,
                                    min_new_tokens=config.new_tokens).times

        start = time.perf_counter()
        session = ctx.runtime.load(ctx.artifact)
        load_ms = (time.perf_counter() - start) * 1e3
        first = once(session, 0)
        ctx.adopt(session)
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
        stats = {stage: summarize(values) for stage, values in samples.items()}
        for stage, values in samples.items():
            stats[stage]["p50_ci"] = list(median_ci(values))
        return {"cold_start": {"load_ms": load_ms, "first_generation_ms": first.total_ms,
                               "first_ttft_ms": first.ttft_ms},
                "stats": stats, "samples": samples, "iterations": i,
                "measured_seconds": time.perf_counter() - began, "new_tokens": config.new_tokens,
                "batch_size": 1, "threads": torch.get_num_threads(), "cpu": cpu_model(),
                "visual_tokens": getattr(session, "visual_tokens", None), "kv_cache_bytes": kv_bytes}
