"""The measurement rounds' statistics on constructed processes: outliers flagged by the robust rule,
excluded and kept on record; noisy measurements; the one headline number; the paired ratio to the
baseline round by round; compare judging against the baseline variant; undecided targets."""

from __future__ import annotations

import random

import pytest

from harness.suites._latency_measure import NOISY_CV, merge, outliers
from harness.suites.latency import Latency, headline, paired_ratio, summarize_latency

STAGES = ("preprocess_ms", "vision_ms", "prefill_ms", "ttft_ms", "decode_token_ms", "total_ms", "decode_tokens_per_s")


def process(ttft: float, round_index: int, jitter: float = 0.02, n: int = 20, seed: int = 0) -> dict:
    """A measuring process's result whose TTFT iterations sit around `ttft` ms."""
    rng = random.Random(f"{seed}:{round_index}:{ttft}")
    samples = {s: [] for s in STAGES}
    for _ in range(n):
        t = ttft * (1 + rng.uniform(-jitter, jitter))
        samples["ttft_ms"].append(t)
        samples["preprocess_ms"].append(0.2 * t)
        samples["vision_ms"].append(0.5 * t)
        samples["prefill_ms"].append(0.3 * t)
        samples["decode_token_ms"].append(2.0)
        samples["total_ms"].append(t + 16)
        samples["decode_tokens_per_s"].append(500.0)
    return {"cold_start": {"load_ms": 300.0, "first_generation_ms": 50.0, "first_ttft_ms": 40.0}, "samples": samples,
            "iterations": n, "measured_seconds": 1.0, "new_tokens": 8, "batch_size": 1, "threads": 2, "cpu": "x",
            "visual_tokens": 9, "kv_cache_bytes": 1, "processes": 1, "round": round_index, "position": 0}


def test_a_stalled_process_is_an_outlier_and_healthy_spread_is_not():
    healthy = [process(t, i) for i, t in enumerate([14.0, 15.5, 16.0, 14.8, 17.0])]
    assert outliers(healthy) == []
    stalled = healthy[:2] + [process(423.0, 2)] + healthy[3:]
    assert outliers(stalled) == [2]
    assert outliers(stalled[:2]) == []  # two processes cannot say which one is off


def test_merge_excludes_flagged_processes_but_keeps_them_on_record():
    processes = [process(t, i) for i, t in enumerate([14.0, 15.0, 423.0, 15.5, 14.5])]
    processes[2] = {**processes[2], "excluded": True, "outlier": "stalled"}
    merged = merge(processes)
    assert merged["processes"] == 4 and len(merged["rounds"]) == 5
    assert merged["rounds"][2]["excluded"] and merged["rounds"][2]["ttft_median_ms"] > 400
    assert max(merged["samples"]["ttft_ms"]) < 20  # the stalled process's samples are not in the estimate
    value, (low, high) = headline(merged, "ttft_ms")
    assert 14 < low <= value <= high < 16
    assert merged["noise"]["noisy"] is False and merged["noise"]["excluded"] == 1


def test_processes_that_disagree_make_the_measurement_noisy_and_a_target_they_straddle_undecided():
    from harness.results.aggregate import evaluate_targets

    merged = merge([process(t, i) for i, t in enumerate([8.0, 14.0, 20.0, 11.0, 17.0])])
    assert merged["noise"]["between_process_cv"] > NOISY_CV and merged["noise"]["noisy"]
    entry = summarize_latency({**merged, "status": "ok"})
    assert entry["noisy"] and entry["ttft_p50_ms"] == pytest.approx(14.0, rel=0.05)
    verdict = evaluate_targets({"latency": entry}, {"max_ttft_ms": 15.0})["max_ttft_ms"]
    assert verdict["status"] == "undecided" and "noisy" in verdict["why"]  # processes on both sides of 15 ms
    assert "re-measure" in verdict["why"]
    far = evaluate_targets({"latency": entry}, {"max_ttft_ms": 100.0})["max_ttft_ms"]
    # every process under 100 ms: the noise cannot turn it, so it passes — and says it is noisy
    assert far["status"] == "pass" and far["within_noise"] and "noisy" in far["why"]
    assert "one side of the limit (7.9" in far["why"]


def test_an_interval_straddling_the_limit_is_undecided_and_the_gate_says_how_to_re_measure():
    from harness.results.aggregate import evaluate_targets
    from harness.results.gate import _target_check

    entry = summarize_latency(merge([process(t, i) for i, t in enumerate([19.0, 19.5, 20.2, 20.6, 21.0])]))
    verdict = evaluate_targets({"latency": entry}, {"max_ttft_ms": 20.0})["max_ttft_ms"]
    assert verdict["status"] == "undecided" and "straddles the limit" in verdict["why"]
    check = _target_check("v", "torch-eager", "max_ttft_ms", verdict)
    assert check.mark == "ERROR" and "add rounds" in check.message
    clear = evaluate_targets({"latency": entry}, {"max_ttft_ms": 30.0})["max_ttft_ms"]
    assert clear["status"] == "pass"


def test_paired_ratio_cancels_drift_that_hits_every_variant_alike():
    drift = [1.0, 1.3, 0.9, 1.6, 1.1]  # the machine slows down and speeds up between rounds
    base = merge([process(10.0 * d, i) for i, d in enumerate(drift)])
    slower = merge([process(15.0 * d, i) for i, d in enumerate(drift)])
    ratio = paired_ratio(slower, base)
    assert ratio["ttft_ratio_to_baseline"] == pytest.approx(1.5, rel=0.03) and ratio["paired_rounds"] == 5
    low, high = ratio["ttft_ratio_ci"]
    assert 1.4 < low <= high < 1.6  # much tighter than the raw medians' spread (10 to 16 ms)


def test_compare_judges_a_variant_against_its_own_baseline_so_drift_between_runs_is_no_regression():
    policy = {"latency_ratio": 1.10, "alpha": 0.01}
    base_a = merge([process(10.0, i) for i in range(5)])
    twin_a = merge([process(10.0, i, seed=1) for i in range(5)])
    base_b = merge([process(16.0, i) for i in range(5)])  # run B: the whole machine 60 % slower
    twin_b = merge([process(16.0, i, seed=1) for i in range(5)])
    slowed_b = merge([process(24.0, i, seed=1) for i in range(5)])  # x1.5 on top of the drift

    def ttft(old, new, bases):
        (change,) = [c for c in Latency().compare("lat", old, new, "twin", "rt", policy, bases=bases)
                     if c.metric == "TTFT p50 ms"]
        return change

    # raw medians: a drift beyond the unpaired allowance (x1.5) looks like a regression
    assert ttft(twin_a, twin_b, (None, None)).verdict == "regression"
    assert ttft(twin_a, twin_b, (base_a, base_b)).verdict == "no significant change"
    caught = ttft(twin_a, slowed_b, (base_a, base_b))
    assert caught.verdict == "regression" and "ratio to the baseline variant" in caught.note
