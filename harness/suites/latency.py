"""Latency suite: cold start apart, warm-up, then at least N iterations AND T seconds, in fresh
processes interleaved across variants (`harness.run.rounds`; measuring: `_latency_measure`).

Each iteration is one batch-1 generation with a fixed number of new tokens (min = max, greedy),
timed per stage by the runtime: TTFT = preprocess + vision encode (+projector) + prefill, and
each decode step. The headline is the median of per-process medians with its CI (`headline`);
a process far from the others is excluded and re-measured, a measurement whose processes
disagree beyond a threshold is marked noisy, and each variant's TTFT is also given as a ratio to
the baseline variant's, round by round. Threads and CPU are recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.registries import SUITE_KINDS
from harness.results.pareto import Objective
from harness.results.stats import median_ci
from harness.suites._context import SuiteContext
from harness.suites._kind import HistoryRow, SuiteKind, TargetRule, TargetValue
from harness.suites._latency_measure import (
    NOISY_CV,
    LatencyConfig,
    headline,
    measure,
    merge,
    outliers,
    per_round_ratios,
)

__all__ = ["Latency", "LatencyConfig", "headline", "paired_ratio", "summarize_latency"]


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

    deferred: ClassVar[bool] = True

    def run(self, config: LatencyConfig, ctx: SuiteContext) -> dict[str, Any]:
        """One measurement in this process, for direct callers (`harness run` measures in rounds)."""
        session, result = measure(ctx.runtime, ctx.artifact, config, ctx.recipe_dir)
        ctx.adopt(session)  # later suites reuse the warm session
        return result

    def rounds(self, config: LatencyConfig) -> int:
        return config.processes

    def process_job(self, config: LatencyConfig, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        threads = config.threads or job.get("threads")  # the suite's own setting outranks HARNESS_THREADS
        return "harness.suites._latency_measure:measure_child", {**job, "threads": threads,
                                                                 "config": config.model_dump(mode="json")}

    def outliers(self, config: LatencyConfig, processes: list[dict[str, Any]]) -> list[int]:
        return outliers(processes)

    def merge(self, config: LatencyConfig, processes: list[dict[str, Any]]) -> dict[str, Any]:
        return merge(processes)

    def required_columns(self, config: LatencyConfig) -> list[str]:
        return ["image", "question"]

    def summarize(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        entry = summarize_latency(data)
        if base is not None and base.get("status") == "ok":
            entry.update(paired_ratio(data, base))
        return entry

    def target_value(self, summary: dict[str, Any], target: str) -> TargetValue:
        latency = summary.get("latency")
        if latency is None:
            return TargetValue(None, why=self.targets[target].missing)
        noisy = (f"its processes disagree (between-process CV {latency['between_process_cv']:.2f} > "
                 f"{NOISY_CV})") if latency.get("noisy") else ""
        return TargetValue(latency["ttft_p50_ms"], latency.get("ttft_p50_interval") or latency.get("ttft_p50_ci"),
                           noisy=noisy, spread=latency.get("ttft_process_range"))

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
                policy: dict[str, Any], bases: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
                ) -> list[Any]:
        """Against the run's own baseline variant when both runs have one measured in the same rounds
        (drift of the machine between runs cancels); the raw medians alone for the baseline itself."""
        from harness.suites._latency_compare import latency_changes

        return latency_changes(old, new, variant, runtime, policy, bases)

    def report_context(self, rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
        """Per-iteration samples of each variant's first latency suite, for the distribution charts."""
        samples: dict[str, dict[str, list[float]]] = {"ttft_ms": {}, "decode_token_ms": {}}
        for row in rows:
            suites = row["result"].get("measurements", {}).get(row["runtime"], {}).get("suites", {})
            first = next((s for s in suites.values() if s.get("kind") == "latency" and s.get("status") == "ok"), None)
            for metric in samples if first else ():
                samples[metric][row["variant"]["name"]] = first["samples"].get(metric, [])
        stages = [(row["variant"]["name"], row["summary"]["latency"]) for row in rows if row["summary"].get("latency")]
        return {"samples": samples, "stages": stages, "excluded": excluded_processes(rows)}


def excluded_processes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every measuring process excluded as an outlier, with the median of the others, for the report."""
    import numpy as np

    out = []
    for row in rows:
        suites = row["result"].get("measurements", {}).get(row["runtime"], {}).get("suites", {})
        for name, data in suites.items():
            if data.get("kind") != "latency" or data.get("status") != "ok":
                continue
            kept = [r["ttft_median_ms"] for r in data.get("rounds", []) if not r["excluded"]]
            out += [{"variant": row["variant"]["name"], "suite": name, "round": r["round"],
                     "ttft_median_ms": r["ttft_median_ms"], "others_ms": float(np.median(kept)) if kept else None,
                     "why": r.get("outlier") or "excluded"} for r in data.get("rounds", []) if r["excluded"]]
    return out


def summarize_latency(data: dict[str, Any]) -> dict[str, Any]:
    """A latency result's summary entry: TTFT p50 with its CI, the stage split, decode speed,
    cold start, visual tokens, KV-cache bytes, and whether the measurement was noisy."""
    stats = data["stats"]
    ttft, ttft_ci = headline(data, "ttft_ms")
    decode, decode_ci = headline(data, "decode_tokens_per_s")
    noise = data.get("noise") or {}
    return {"ttft_p50_ms": ttft, "ttft_p50_ci": ttft_ci, "ttft_p50_interval": ttft_ci,
            "decode_tokens_per_s_interval": decode_ci, "processes": data.get("processes", 1),
            "ttft_p90_ms": stats["ttft_ms"]["p90"], "ttft_cv": stats["ttft_ms"]["cv"],
            "preprocess_p50_ms": _stage(data, "preprocess_ms"), "vision_p50_ms": _stage(data, "vision_ms"),
            "prefill_p50_ms": _stage(data, "prefill_ms"),
            "decode_tokens_per_s_p50": decode, "decode_tokens_per_s_ci": decode_ci,
            "iterations": data["iterations"], "new_tokens": data.get("new_tokens"),
            "cold_start_ms": data["cold_start"]["load_ms"] + data["cold_start"]["first_generation_ms"],
            "visual_tokens": data.get("visual_tokens"), "kv_cache_bytes": data.get("kv_cache_bytes"),
            "noisy": bool(noise.get("noisy")), "between_process_cv": noise.get("between_process_cv"),
            "noisy_why": (f"its processes disagree: between-process CV {noise['between_process_cv']:.2f} > "
                          f"{noise['threshold']}") if noise.get("noisy") else None,
            "excluded_processes": noise.get("excluded", 0), "ttft_process_range": _range(data, "ttft_ms"),
            **({"estimate": data["estimate"]} if data.get("estimate") else {})}


def _stage(data: dict[str, Any], stage: str) -> float | None:
    """A stage's headline, or None for a stage the runtime did not time (a device runtime does not
    time host-side preprocessing: absent, never zero)."""
    return headline(data, stage)[0] if stage in data["stats"] else None


def _range(data: dict[str, Any], metric: str) -> list[float] | None:
    """The lowest and highest process median (None for a single process)."""
    medians = (data.get("process_medians") or {}).get(metric) or []
    return [min(medians), max(medians)] if len(medians) >= 2 else None


def paired_ratio(data: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """TTFT over the baseline variant's, round by round (both were measured in the same rounds, so
    drift of the machine between rounds cancels), with a distribution-free CI over rounds."""
    import numpy as np

    ratios = per_round_ratios(data, base, "ttft_ms")
    if not ratios:
        return {}
    return {"ttft_ratio_to_baseline": float(np.median(ratios)), "ttft_ratio_ci": list(median_ci(ratios)),
            "paired_rounds": len(ratios)}
