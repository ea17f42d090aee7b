"""Statistics for honest comparisons: CIs on proportions, paired tests, latency summaries.

All from scipy/numpy: Wilson intervals (`binomtest().proportion_ci`), the exact McNemar test
(a binomial test on discordant pairs), a paired bootstrap for retention, percentiles and CV.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def proportion_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar_exact(base_correct: list[bool], variant_correct: list[bool]) -> dict[str, Any]:
    """Exact McNemar test on paired correctness (same items, same order)."""
    from scipy.stats import binomtest

    if len(base_correct) != len(variant_correct):
        raise ValueError("paired test needs the same items in both runs")
    b = sum(1 for x, y in zip(base_correct, variant_correct) if x and not y)  # lost
    c = sum(1 for x, y in zip(base_correct, variant_correct) if y and not x)  # gained
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"lost": b, "gained": c, "p_value": p}


def retention_ci(base_correct: list[bool], variant_correct: list[bool], confidence: float = 0.95,
                 resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Retention (variant accuracy / base accuracy) with a paired bootstrap CI over items."""
    base = np.asarray(base_correct, dtype=float)
    variant = np.asarray(variant_correct, dtype=float)
    if base.sum() == 0:
        return (float("nan"),) * 3
    point = variant.mean() / base.mean()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(resamples, len(base)))
    b = base[idx].mean(axis=1)
    v = variant[idx].mean(axis=1)
    ratios = v[b > 0] / b[b > 0]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return (float(point), float(low), float(high))


def summarize(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99, mean, std, CV and count of a list of timings."""
    arr = np.asarray(samples, dtype=float)
    if arr.size == 0:
        return {"n": 0}
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    p50, p90, p99 = (float(x) for x in np.percentile(arr, [50, 90, 99]))
    return {"n": int(arr.size), "p50": p50, "p90": p90, "p99": p99, "mean": mean, "std": std,
            "cv": std / mean if mean else float("nan"), "min": float(arr.min()), "max": float(arr.max())}


def median_ci(samples: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (binomial)."""
    from scipy.stats import binom

    arr = np.sort(np.asarray(samples, dtype=float))
    n = arr.size
    if n < 3:
        return (float(arr.min()), float(arr.max())) if n else (float("nan"), float("nan"))
    alpha = 1 - confidence
    low = int(binom.ppf(alpha / 2, n, 0.5))
    high = int(binom.isf(alpha / 2, n, 0.5))
    return (float(arr[max(0, low - 1)]), float(arr[min(n - 1, high)]))
