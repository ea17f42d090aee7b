"""Statistics for honest comparisons: CIs on proportions, paired tests, latency summaries.

All from scipy/numpy: Wilson intervals (`binomtest().proportion_ci`), the exact McNemar test
(a binomial test on discordant pairs), a paired bootstrap for retention, percentiles and CV.
Graded per-item scores (VQA accuracy, ANLS, CIDEr) are not 0/1, so they get a bootstrap CI of the
mean (`scipy.stats.bootstrap`), and paired comparisons use a paired bootstrap of the mean
difference and of the ratio plus a Wilcoxon signed-rank test (`scipy.stats.wilcoxon`) instead of
McNemar, which would need a threshold that throws the grading away.
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


BOOTSTRAP_RESAMPLES = 2000


def _degenerate(*arrays: np.ndarray) -> bool:
    return any(a.size < 2 for a in arrays) or all(np.ptp(a) == 0 for a in arrays)


def bootstrap_ci(scores: list[float], confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap CI (BCa, scipy) of the mean of graded scores; a point when all are equal."""
    from scipy.stats import bootstrap

    arr = np.asarray(scores, dtype=float)
    if arr.size == 0:
        return (float("nan"), float("nan"))
    if _degenerate(arr):
        return (float(arr.mean()), float(arr.mean()))
    res = bootstrap((arr,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                    method="BCa", random_state=np.random.default_rng(seed))
    low, high = res.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa can fail on very skewed data
        res = bootstrap((arr,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                        method="percentile", random_state=np.random.default_rng(seed))
        low, high = res.confidence_interval
    return (float(low), float(high))


def paired_bootstrap(base: list[float], variant: list[float], confidence: float = 0.95,
                     seed: int = 0) -> dict[str, Any]:
    """Mean difference (variant - base) and ratio (variant / base) with paired bootstrap CIs."""
    from scipy.stats import bootstrap

    b = np.asarray(base, dtype=float)
    v = np.asarray(variant, dtype=float)
    if b.size != v.size:
        raise ValueError("paired test needs the same items in both runs")
    diff = float(v.mean() - b.mean()) if b.size else float("nan")
    ratio = float(v.mean() / b.mean()) if b.size and b.mean() > 0 else float("nan")
    out: dict[str, Any] = {"diff": diff, "diff_ci": [diff, diff], "ratio": ratio, "ratio_ci": [ratio, ratio]}
    if b.size < 2 or np.array_equal(b, v):
        return out

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return y.mean(axis=axis) - x.mean(axis=axis)

    def mean_ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        denominator = x.mean(axis=axis)
        return np.where(denominator > 0, y.mean(axis=axis) / np.where(denominator > 0, denominator, 1), np.nan)

    for name, statistic in (("diff", mean_diff), ("ratio", mean_ratio)):
        if name == "ratio" and not np.isfinite(ratio):
            continue
        res = bootstrap((b, v), statistic, paired=True, vectorized=True, confidence_level=confidence,
                        n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                        random_state=np.random.default_rng(seed))
        low, high = res.confidence_interval
        out[f"{name}_ci"] = [float(low), float(high)]
    return out


def wilcoxon_signed_rank(base: list[float], variant: list[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test on per-item score differences (ties dropped: 'wilcox')."""
    from scipy.stats import wilcoxon

    b = np.asarray(base, dtype=float)
    v = np.asarray(variant, dtype=float)
    lower = int((v < b).sum())
    higher = int((v > b).sum())
    if lower + higher == 0:
        return {"lower": 0, "higher": 0, "p_value": 1.0}
    p = float(wilcoxon(v, b, zero_method="wilcox").pvalue)
    return {"lower": lower, "higher": higher, "p_value": p}


def paired_scores(base: list[float], variant: list[float]) -> dict[str, Any]:
    """Retention and tests for graded scores on the same items (non-binary metrics)."""
    boot = paired_bootstrap(base, variant)
    return {"retention": boot["ratio"], "retention_ci": boot["ratio_ci"], "mean_diff": boot["diff"],
            "mean_diff_ci": boot["diff_ci"], "wilcoxon": wilcoxon_signed_rank(base, variant)}
