"""Latency suite: cold start apart, warm-up, then at least N iterations AND T seconds.

Each iteration is one batch-1 generation with a fixed number of new tokens (min = max, greedy),
timed per stage by the runtime: TTFT = preprocess + vision encode (+projector) + prefill, and
each decode step. Reported as p50/p90/p99, mean and CV, with threads and CPU recorded. The KV
cache's bytes at the end of a generation are reported when the runtime measures them.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.data.sources import DatasetSpec, load_split
from harness.environment import cpu_model
from harness.registries import SUITE_KINDS
from harness.results.pareto import Objective
from harness.results.stats import median_ci, summarize
from harness.spec.suite_files import SuiteConfig
from harness.suites._context import SuiteContext
from harness.suites._kind import HistoryRow, SuiteKind, TargetRule, TargetValue

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
    processes: int = Field(1, ge=1, description="fresh processes to measure in (process-level noise shows "
                                                "only across processes; 1 = measure in the variant's worker)")
    process_timeout_s: float = Field(600, gt=0)


@SUITE_KINDS.register("latency", "TTFT split into preprocess / vision / prefill, decode tok/s; p50/p90/p99")
class Latency(SuiteKind):
    Config = LatencyConfig
    section: ClassVar[str | None] = "latency_by_suite"
    headline: ClassVar[str | None] = "latency"
    targets: ClassVar[dict[str, TargetRule]] = {"max_ttft_ms": TargetRule(True, "ms", "no latency suite")}
    objectives: ClassVar[tuple[Objective, ...]] = (
        Objective("ttft_ms", False, rank=1, label="TTFT p50 (ms)", target="max_ttft_ms"),
        Objective("decode_tps", True, rank=4, label="decode tok/s (p50)"))
    report_template: ClassVar[str] = "suites/latency.html.j2"

    def run(self, config: LatencyConfig, ctx: SuiteContext) -> dict[str, Any]:
        if config.processes == 1:
            session, result = measure(ctx.runtime, ctx.artifact, config, ctx.recipe_dir)
            ctx.adopt(session)  # later suites reuse the warm session
            return result
        return _measure_in_processes(config, ctx)

    def required_columns(self, config: LatencyConfig) -> list[str]:
        return ["image", "question"]

    def summarize(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        return summarize_latency(data)

    def target_value(self, summary: dict[str, Any], target: str) -> TargetValue:
        latency = summary.get("latency")
        if latency is None:
            return TargetValue(None, why=self.targets[target].missing)
        return TargetValue(latency["ttft_p50_ms"], latency.get("ttft_p50_interval") or latency.get("ttft_p50_ci"))

    def objective_values(self, summary: dict[str, Any]) -> dict[str, tuple[float, list[float] | None]]:
        """Intervals include process-to-process spread when measured in several processes."""
        latency = summary.get("latency")
        if not latency:
            return {}
        return {"ttft_ms": (latency["ttft_p50_ms"], latency.get("ttft_p50_interval") or latency.get("ttft_p50_ci")),
                "decode_tps": (latency["decode_tokens_per_s_p50"], latency.get("decode_tokens_per_s_interval")
                               or latency.get("decode_tokens_per_s_ci"))}

    def headline_rows(self, entry: dict[str, Any]) -> list[HistoryRow]:
        return [("ttft_p50_ms", entry.get("ttft_p50_ms"), entry.get("ttft_p50_ci")),
                ("preprocess_p50_ms", entry.get("preprocess_p50_ms"), None),
                ("vision_p50_ms", entry.get("vision_p50_ms"), None),
                ("prefill_p50_ms", entry.get("prefill_p50_ms"), None),
                ("decode_tokens_per_s_p50", entry.get("decode_tokens_per_s_p50"), entry.get("decode_tokens_per_s_ci"))]

    def history_rows(self, name: str, entry: dict[str, Any]) -> list[HistoryRow]:
        return [(f"{name}.ttft_p50_ms", entry.get("ttft_p50_ms"), entry.get("ttft_p50_ci")),
                (f"{name}.decode_tokens_per_s_p50", entry.get("decode_tokens_per_s_p50"),
                 entry.get("decode_tokens_per_s_ci")),
                (f"{name}.kv_cache_bytes", entry.get("kv_cache_bytes"), None)]

    def compare(self, name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                policy: dict[str, Any]) -> list[Any]:
        from harness.suites._latency_compare import latency_changes

        return latency_changes(old, new, variant, runtime, policy)

    def report_context(self, rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
        """Per-iteration samples of each variant's first latency suite, for the distribution charts."""
        samples: dict[str, dict[str, list[float]]] = {"ttft_ms": {}, "decode_token_ms": {}}
        for row in rows:
            suites = row["result"].get("measurements", {}).get(row["runtime"], {}).get("suites", {})
            first = next((s for s in suites.values() if s.get("kind") == "latency" and s.get("status") == "ok"), None)
            for metric in samples if first else ():
                samples[metric][row["variant"]["name"]] = first["samples"].get(metric, [])
        stages = [(row["variant"]["name"], row["summary"]["latency"]) for row in rows if row["summary"].get("latency")]
        return {"samples": samples, "stages": stages}


def summarize_latency(data: dict[str, Any]) -> dict[str, Any]:
    """A latency result's summary entry: TTFT p50 with its CI and its noise interval, the stage
    split, decode speed, cold start, visual tokens and KV-cache bytes."""
    stats = data["stats"]
    return {"ttft_p50_ms": stats["ttft_ms"]["p50"], "ttft_p50_ci": stats["ttft_ms"]["p50_ci"],
            "ttft_p50_interval": _noise_interval(data, "ttft_ms"),
            "decode_tokens_per_s_interval": _noise_interval(data, "decode_tokens_per_s"),
            "processes": data.get("processes", 1),
            "ttft_p90_ms": stats["ttft_ms"]["p90"], "ttft_cv": stats["ttft_ms"]["cv"],
            "preprocess_p50_ms": stats["preprocess_ms"]["p50"], "vision_p50_ms": stats["vision_ms"]["p50"],
            "prefill_p50_ms": stats["prefill_ms"]["p50"],
            "decode_tokens_per_s_p50": stats["decode_tokens_per_s"]["p50"],
            "decode_tokens_per_s_ci": stats["decode_tokens_per_s"]["p50_ci"],
            "iterations": data["iterations"], "new_tokens": data.get("new_tokens"),
            "cold_start_ms": data["cold_start"]["load_ms"] + data["cold_start"]["first_generation_ms"],
            "visual_tokens": data.get("visual_tokens"), "kv_cache_bytes": data.get("kv_cache_bytes")}


def _noise_interval(data: dict[str, Any], metric: str) -> list[float]:
    """The p50's CI widened to the spread of per-process medians (iterations of one process are
    not independent; see docs/measurement.md) — what the Pareto and target checks treat as noise."""
    low, high = data["stats"][metric]["p50_ci"]
    medians = (data.get("process_medians") or {}).get(metric) or []
    if len(medians) >= 2:
        low, high = min(low, *medians), max(high, *medians)
    return [low, high]


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
    """Entry point of one fresh measurement process (see `_measure_in_processes`)."""
    from pathlib import Path

    import torch

    from harness.registries import RUNTIMES

    if payload.get("threads"):
        torch.set_num_threads(int(payload["threads"]))
    recipe_dir = Path(payload["recipe_dir"]) if payload.get("recipe_dir") else None
    _, result = measure(RUNTIMES.get(payload["runtime"])(), Path(payload["artifact"]),
                        LatencyConfig.model_validate(payload["config"]), recipe_dir)
    return result


def _measure_in_processes(config: LatencyConfig, ctx: SuiteContext) -> dict[str, Any]:
    """The same measurement in `processes` fresh processes, pooled, with per-process medians.

    A process's memory layout and thread placement shift all its timings together (seen here: the
    same model at 15 or 21 ms TTFT depending on the process), so iterations of one process are not
    independent samples of the machine. Several processes let `harness compare` see that spread.
    """
    import torch

    from harness.errors import RuntimeBackendError
    from harness.isolation import run_isolated
    from harness.results.rundir import measurement_files

    payload = {"runtime": ctx.runtime_name, "artifact": str(ctx.artifact), "config": config.model_dump(mode="json"),
               "recipe_dir": str(ctx.recipe_dir) if ctx.recipe_dir else None, "threads": torch.get_num_threads()}
    results = []
    for index in range(config.processes):
        outcome = run_isolated("harness.suites.latency:measure_child", payload,
                               measurement_files(ctx.work_dir, "latency", config.name, index), config.process_timeout_s)
        if not outcome.ok:
            raise RuntimeBackendError(f"suite '{config.name}': measurement process {index} failed: {outcome.error}")
        results.append(outcome.result)
    merged = {**results[0], "iterations": sum(r["iterations"] for r in results),
              "measured_seconds": sum(r["measured_seconds"] for r in results), "processes": len(results),
              "samples": {k: [x for r in results for x in r["samples"][k]] for k in results[0]["samples"]}}
    return _with_stats(merged, [r["samples"] for r in results])


def _with_stats(result: dict[str, Any], per_process: list[dict[str, list[float]]]) -> dict[str, Any]:
    import numpy as np

    stats = {stage: summarize(values) for stage, values in result["samples"].items()}
    for stage, values in result["samples"].items():
        stats[stage]["p50_ci"] = list(median_ci(values))
    medians = {stage: [float(np.median(s[stage])) for s in per_process] for stage in result["samples"]}
    return {**result, "stats": stats, "process_medians": medians}
