"""Memory suite: each repeat in a fresh child process (`harness.isolation`); peak RSS from the OS
(VmHWM / ru_maxrss), absolute and as the model-attributable delta over the child's post-import
baseline (`harness.suites._memprobe`)."""

from __future__ import annotations

import statistics
from typing import Any, ClassVar, Literal

from pydantic import Field

from harness.errors import RuntimeBackendError
from harness.registries import SUITE_KINDS
from harness.results.pareto import Objective
from harness.spec.suite_files import SuiteConfig
from harness.suites._context import SuiteContext
from harness.suites._kind import HistoryRow, SuiteKind, TargetRule, TargetValue


class MemoryConfig(SuiteConfig):
    kind: Literal["memory"] = "memory"
    repeats: int = Field(3, gt=0)
    new_tokens: int = Field(8, gt=0)
    timeout_s: float = Field(600, gt=0)


@SUITE_KINDS.register("memory", "peak RSS of load + one answer in a fresh process; absolute and model delta")
class Memory(SuiteKind):
    Config = MemoryConfig
    section: ClassVar[str | None] = "memory_by_suite"
    headline: ClassVar[str | None] = "memory"
    targets: ClassVar[dict[str, TargetRule]] = {"max_peak_memory_mb": TargetRule(True, "MiB", "no memory suite")}
    objectives: ClassVar[tuple[Objective, ...]] = (
        Objective("memory_mb", False, min_relative_effect=0.02, rank=3, label="peak memory, model delta (MiB)",
                  target="max_peak_memory_mb"),)
    report_template: ClassVar[str] = "suites/memory.html.j2"

    deferred: ClassVar[bool] = True

    def run(self, config: MemoryConfig, ctx: SuiteContext) -> dict[str, Any]:
        """Every repeat now, one after the other, for direct callers (`harness run` measures in rounds)."""
        from harness.isolation import run_isolated
        from harness.results.rundir import measurement_files

        target, payload = self.process_job(config, {"runtime": ctx.runtime_name, "artifact": str(ctx.artifact)})
        runs = []
        for index in range(config.repeats):
            outcome = run_isolated(target, payload, measurement_files(ctx.work_dir, "memory", config.name, index),
                                   config.timeout_s)
            if not outcome.ok:
                raise RuntimeBackendError(f"memory probe {index} failed: {outcome.error}")
            runs.append(outcome.result)
        return self.merge(config, runs)

    def rounds(self, config: MemoryConfig) -> int:
        return config.repeats

    def process_job(self, config: MemoryConfig, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "harness.suites._memprobe:probe", {"runtime": job["runtime"], "artifact": job["artifact"],
                                                  "new_tokens": config.new_tokens}

    def merge(self, config: MemoryConfig, processes: list[dict[str, Any]]) -> dict[str, Any]:
        """Medians over the repeats, with their ranges (a change counts only when ranges do not overlap);
        the baseline RSS only when every repeat knows it (an imported app measurement may not)."""
        runs = [p for p in processes if not p.get("excluded")]
        peak = [r["peak_rss_mb"] for r in runs]
        delta = [r["model_delta_mb"] for r in runs]
        baselines = [r["baseline_rss_mb"] for r in runs if r.get("baseline_rss_mb") is not None]
        return {"peak_rss_mb": statistics.median(peak), "model_delta_mb": statistics.median(delta),
                "peak_rss_range_mb": [min(peak), max(peak)], "model_delta_range_mb": [min(delta), max(delta)],
                "baseline_rss_mb": statistics.median(baselines) if len(baselines) == len(runs) else None,
                "kv_cache_bytes": runs[-1].get("kv_cache_bytes"), "new_tokens": config.new_tokens,
                "repeats": runs}

    def summarize(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        return {"peak_rss_mb": data["peak_rss_mb"], "model_delta_mb": data["model_delta_mb"],
                "model_delta_range_mb": data["model_delta_range_mb"],
                "kv_cache_bytes": data.get("kv_cache_bytes"), "new_tokens": data.get("new_tokens")}

    def target_value(self, summary: dict[str, Any], target: str) -> TargetValue:
        memory = summary.get("memory")
        if memory is None:
            return TargetValue(None, why=self.targets[target].missing)
        return TargetValue(memory["model_delta_mb"], memory["model_delta_range_mb"])

    def objective_values(self, summary: dict[str, Any]) -> dict[str, tuple[float, list[float] | None]]:
        memory = summary.get("memory")
        return {"memory_mb": (memory["model_delta_mb"], memory["model_delta_range_mb"])} if memory else {}

    def headline_rows(self, entry: dict[str, Any]) -> list[HistoryRow]:
        return [("peak_memory_delta_mb", entry.get("model_delta_mb"), None)]

    def history_rows(self, name: str, entry: dict[str, Any]) -> list[HistoryRow]:
        return [(f"{name}.peak_memory_delta_mb", entry.get("model_delta_mb"), entry.get("model_delta_range_mb"))]

    def compare(self, name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                policy: dict[str, Any]) -> list[Any]:
        """A change counts only when the ratio passes the policy AND the repeats' ranges do not overlap."""
        from harness.results.compare import IMPROVEMENT, REGRESSION, SAME, Change

        a_low, a_high = old["model_delta_range_mb"]
        b_low, b_high = new["model_delta_range_mb"]
        ratio = new["model_delta_mb"] / old["model_delta_mb"] if old["model_delta_mb"] else float("inf")
        if ratio > policy["memory_ratio"] and b_low > a_high:
            verdict = REGRESSION
        elif ratio < 1 / policy["memory_ratio"] and b_high < a_low:
            verdict = IMPROVEMENT
        else:
            verdict = SAME
        return [Change(variant, runtime, "peak memory delta MiB", verdict, old["model_delta_mb"],
                       new["model_delta_mb"], f"x{ratio:.3f}", None, "ranges over repeats must not overlap")]
