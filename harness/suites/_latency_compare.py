"""`harness compare` for latency suites: ratio of medians plus a one-sided Mann-Whitney U test
(a regression needs ratio > policy AND p < alpha).

Two runs are measured at different times, so their raw medians differ by whatever the machine
did in between. When both runs measured the variant and the run's baseline variant in the same
interleaved rounds, the test is on the variant's ratio to its baseline, round by round: drift
between the runs cancels, and a change of the variant itself still shows. The baseline variant
itself (nothing to relate it to) and runs measured without rounds are judged on the raw
per-process medians (or iterations, for single-process runs)."""

from __future__ import annotations

from typing import Any

from harness.results.compare import IMPROVEMENT, NOT_COMPARABLE, REGRESSION, SAME, UNDECIDED, Change
from harness.suites._latency_measure import headline, per_round_ratios

#: `RegressionPolicy.unpaired_latency_ratio` for runs recorded before it existed.
UNPAIRED_RATIO = 1.5

LATENCY_METRICS = {"ttft_ms": "TTFT", "vision_ms": "vision encode", "prefill_ms": "prefill",
                   "decode_token_ms": "decode per token"}


def latency_changes(old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str, policy: dict[str, Any],
                    bases: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)) -> list[Change]:
    out = []
    for metric, label in LATENCY_METRICS.items():
        a, b = old["samples"].get(metric, []), new["samples"].get(metric, [])
        if len(a) < 3 or len(b) < 3:
            out.append(Change(variant, runtime, label, NOT_COMPARABLE, note="fewer than 3 samples"))
            continue
        tested_a, tested_b, used, note = _tested(old, new, metric, policy, bases)
        verdict, p = _verdict(tested_a, tested_b, used)
        verdict, note = _settle(old, new, verdict, note, tested_a, tested_b, used)
        med_a, med_b = headline(old, metric)[0], headline(new, metric)[0]  # the figure every surface prints
        out.append(Change(variant, runtime, f"{label} p50 ms", verdict, med_a, med_b,
                          f"x{med_b / med_a if med_a else float('inf'):.3f}", p, note))
    return out


def _tested(old: dict[str, Any], new: dict[str, Any], metric: str, policy: dict[str, Any],
            bases: tuple[dict[str, Any] | None, dict[str, Any] | None],
            ) -> tuple[list[float], list[float], dict[str, Any], str]:
    """What to test and under which policy: the per-round ratios to the baseline variant when both runs
    have them, else the raw replicates under the wider unpaired ratio."""
    ratios_a, ratios_b = per_round_ratios(old, bases[0], metric), per_round_ratios(new, bases[1], metric)
    if len(ratios_a) >= 2 and len(ratios_b) >= 2:
        return ratios_a, ratios_b, policy, (
            f"judged on the ratio to the baseline variant, round by round ({_median(ratios_a):.3f} -> "
            f"{_median(ratios_b):.3f}, Mann-Whitney U on {len(ratios_a)}/{len(ratios_b)} rounds); the raw "
            "medians also carry the machine's drift between the runs")
    units_a, units_b, note = _replicates(old, new, metric)
    ratio = max(policy.get("unpaired_latency_ratio", UNPAIRED_RATIO), policy["latency_ratio"])
    return units_a, units_b, {**policy, "latency_ratio": ratio}, (
        f"{note}; unpaired (no baseline variant measured in the same rounds of both runs), so a change must "
        f"exceed x{ratio}, beyond the machine's drift between runs")


def _settle(old: dict[str, Any], new: dict[str, Any], verdict: str, note: str, tested_a: list[float],
            tested_b: list[float], policy: dict[str, Any]) -> tuple[str, str]:
    """What noise leaves of a verdict. A noisy run (its processes disagree beyond what healthy
    processes do) decides a change only where noise cannot turn it — every new replicate beyond every
    old one; a regression-sized change it cannot decide is *undecided* (the gate errors and says how
    to re-measure), never a pass. In a healthy run a large change that is not significant stays no
    significant change, with a note (identical A/A runs show such differences by chance)."""
    noisy = [f"{side} run noisy (between-process CV {data['noise']['between_process_cv']:.2f})"
             for side, data in (("old", old), ("new", new)) if (data.get("noise") or {}).get("noisy")]
    ratio = _median(tested_b) / _median(tested_a) if _median(tested_a) else float("inf")
    sized = ratio > policy["latency_ratio"] or ratio < 1 / policy["latency_ratio"]
    if not noisy:
        if verdict == SAME and sized:  # said, not gated: healthy processes of identical runs differ this much
            return verdict, (f"x{ratio:.3f} is beyond the policy's x{policy['latency_ratio']} but not significant "
                             f"on {len(tested_a)}/{len(tested_b)} replicates: more rounds (`processes:`) would tell; "
                             f"{note}")
        return verdict, note
    separated = min(tested_b) > max(tested_a) or max(tested_b) < min(tested_a)
    if verdict != SAME and separated:
        return verdict, f"{'; '.join(noisy)}, but every replicate of one run lies beyond the other's; {note}"
    if verdict != SAME or sized:
        return UNDECIDED, (f"{'; '.join(noisy)}: a change of x{ratio:.3f} that noise may have made or hidden; "
                           f"re-measure on a quiet machine or with more rounds; {note}")
    return verdict, f"{'; '.join(noisy)}; {note}"


def _verdict(old: list[float], new: list[float], policy: dict[str, Any]) -> tuple[str, float]:
    """Regression: new/old median ratio above the policy AND one-sided p below alpha (and the mirror)."""
    ratio = _median(new) / _median(old) if _median(old) else float("inf")
    slower, faster = _one_sided(new, old)
    if ratio > policy["latency_ratio"] and slower < policy["alpha"]:
        return REGRESSION, slower
    if ratio < 1 / policy["latency_ratio"] and faster < policy["alpha"]:
        return IMPROVEMENT, faster
    return SAME, min(slower, faster)


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
