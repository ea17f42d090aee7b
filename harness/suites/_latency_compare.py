"""`harness compare` for latency suites: ratio of medians plus a one-sided Mann-Whitney U test
(a regression needs ratio > policy AND p < alpha), on per-process medians when both runs
measured in several processes."""

from __future__ import annotations

from typing import Any

from harness.results.compare import IMPROVEMENT, NOT_COMPARABLE, REGRESSION, SAME, Change

LATENCY_METRICS = {"ttft_ms": "TTFT", "vision_ms": "vision encode", "prefill_ms": "prefill",
                   "decode_token_ms": "decode per token"}


def latency_changes(old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                    policy: dict[str, Any]) -> list[Change]:
    out = []
    for metric, label in LATENCY_METRICS.items():
        a, b = old["samples"].get(metric, []), new["samples"].get(metric, [])
        if len(a) < 3 or len(b) < 3:
            out.append(Change(variant, runtime, label, NOT_COMPARABLE, note="fewer than 3 samples"))
            continue
        units_a, units_b, note = _replicates(old, new, metric)
        med_a, med_b = _median(units_a), _median(units_b)
        ratio = med_b / med_a if med_a else float("inf")
        slower, faster = _one_sided(units_b, units_a)
        if ratio > policy["latency_ratio"] and slower < policy["alpha"]:
            verdict, p = REGRESSION, slower
        elif ratio < 1 / policy["latency_ratio"] and faster < policy["alpha"]:
            verdict, p = IMPROVEMENT, faster
        else:
            verdict, p = SAME, min(slower, faster)
        out.append(Change(variant, runtime, f"{label} p50 ms", verdict, med_a, med_b, f"x{ratio:.3f}", p, note))
    return out


def _replicates(old: dict[str, Any], new: dict[str, Any], metric: str) -> tuple[list[float], list[float], str]:
    """What to test: per-process medians when both runs measured in several processes, else iterations.

    Iterations within one process share its memory layout and thread placement and move together
    (seen here: 15 vs 21 ms TTFT for the same model in two processes), so they are not independent
    samples; the process is the unit of replication. Testing iterations of single-process runs is
    kept as a fallback and the note says that process-to-process noise was not sampled.
    """
    a = (old.get("process_medians") or {}).get(metric) or []
    b = (new.get("process_medians") or {}).get(metric) or []
    if len(a) >= 2 and len(b) >= 2:
        return a, b, f"Mann-Whitney U on process medians, {len(a)}/{len(b)} processes"
    return (old["samples"][metric], new["samples"][metric],
            f"Mann-Whitney U on iterations, n={len(old['samples'][metric])}/{len(new['samples'][metric])}; "
            "one process per run: process-to-process noise not sampled")


def _one_sided(new: list[float], old: list[float]) -> tuple[float, float]:
    """p-values that `new` is slower / faster than `old` (exact for small samples)."""
    from scipy.stats import mannwhitneyu

    return (float(mannwhitneyu(new, old, alternative="greater").pvalue),
            float(mannwhitneyu(new, old, alternative="less").pvalue))


def _median(values: list[float]) -> float:
    import numpy as np

    return float(np.median(values))
