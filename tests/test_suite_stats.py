"""Statistics of accuracy suites: bootstrap CIs for graded scores, paired retention/tests that use
the grading (not a score >= 1 threshold), item-by-item run comparison, corpus numbers in export."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results.paired import is_binary, paired
from harness.results.stats import bootstrap_ci, paired_bootstrap, paired_scores, wilcoxon_signed_rank


def _items(scores: list[float], prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "prediction": f"a{i}", "score": s, "group": "g" if i % 2 else "h"}
            for i, s in enumerate(scores)]


def test_bootstrap_ci_of_graded_scores():
    rng = np.random.default_rng(0)
    small, large = list(rng.random(30)), list(rng.random(600))
    low, high = bootstrap_ci(small)
    assert low < float(np.mean(small)) < high
    big_low, big_high = bootstrap_ci(large)
    assert big_high - big_low < (high - low) * 0.5  # 20x the items → about 1/sqrt(20) the width
    assert bootstrap_ci([0.6] * 10) == pytest.approx((0.6, 0.6))  # no spread: the point
    assert bootstrap_ci(small) == bootstrap_ci(small)  # seeded


def test_graded_retention_is_not_a_threshold():
    """0.9 VQA accuracy everywhere in both runs is full retention — the old `score >= 1` rule gave NaN."""
    base = _items([0.9] * 20)
    result = paired(base, _items([0.9] * 20), binary=False)
    assert result["retention"] == pytest.approx(1.0) and result["retention_ci"] == pytest.approx([1.0, 1.0])
    assert result["wilcoxon"]["p_value"] == 1.0 and "mcnemar" not in result
    worse = paired(base, _items([0.6] * 20), binary=False)
    assert worse["retention"] == pytest.approx(0.6 / 0.9)
    assert worse["mean_diff"] == pytest.approx(-0.3) and worse["wilcoxon"]["lower"] == 20
    assert worse["wilcoxon"]["p_value"] < 1e-4
    assert set(worse["group_retention"]) == {"g", "h"}


def test_paired_bootstrap_and_wilcoxon_on_noisy_scores():
    rng = np.random.default_rng(1)
    base = rng.random(200)
    variant = np.clip(base - 0.05 + rng.normal(0, 0.02, 200), 0, 1)
    boot = paired_bootstrap(list(base), list(variant))
    assert boot["diff_ci"][0] < boot["diff"] < boot["diff_ci"][1] < 0
    assert boot["ratio_ci"][0] < boot["ratio"] < boot["ratio_ci"][1] < 1
    same = wilcoxon_signed_rank(list(base), list(base + rng.normal(0, 1e-3, 200)))
    assert same["p_value"] > 0.01
    assert paired_scores(list(base), list(variant))["wilcoxon"]["p_value"] < 1e-6
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_binary_path_is_unchanged_and_binary_is_detected():
    base = _items([1, 0, 1, 1] * 5)
    result = paired(base, _items([1, 0, 0, 1] * 5))
    assert "mcnemar" in result and result["mcnemar"]["lost"] == 5
    assert is_binary({"items": base}) and not is_binary({"items": _items([0.3, 1])})
    assert not is_binary({"binary": False, "items": base})  # the metric's word wins
    failed = _items([1.0, 0.0])
    failed[1]["prediction"] = None  # an item recorded as failed
    assert paired(failed, failed)["agreement"] == 1.0


def _suite(scores: list[float], binary: bool) -> dict:
    return {"kind": "accuracy", "status": "ok", "score": float(np.mean(scores)), "binary": binary,
            "items": _items(scores)}


def test_compare_runs_item_by_item_for_graded_scores():
    from harness.results.compare import IMPROVEMENT, REGRESSION, SAME, _definition_difference
    from harness.suites.accuracy import Accuracy

    def _accuracy(name, old, new, variant, runtime, policy):
        (change,) = Accuracy().compare(name, old, new, variant, runtime, policy)
        return change

    policy = {"accuracy_drop": 0.01, "alpha": 0.05}
    rng = np.random.default_rng(2)
    base = list(rng.uniform(0.5, 1.0, 80))
    drop = _accuracy("docvqa", _suite(base, False), _suite([s - 0.2 for s in base], False), "v", "rt", policy)
    assert drop.verdict == REGRESSION and "Wilcoxon" in drop.note and drop.p_value < 0.05
    rise = _accuracy("docvqa", _suite(base, False), _suite([s + 0.1 for s in base], False), "v", "rt", policy)
    assert rise.verdict == IMPROVEMENT
    jitter = [s + rng.normal(0, 0.01) for s in base]
    assert _accuracy("docvqa", _suite(base, False), _suite(jitter, False), "v", "rt", policy).verdict == SAME
    binary = _accuracy("pope", _suite([1.0, 0.0] * 10, True), _suite([1.0, 0.0] * 10, True), "v", "rt", policy)
    assert "McNemar" in binary.note
    # a definition recorded before new (None-default) fields were added is not "defined differently"
    old = {"name": "s", "dataset": {"name": "nano-vqa", "split": "test"}}
    new = {"name": "s", "dataset": {"name": "nano-vqa", "split": "test", "configs": None}, "prompt": None}
    assert _definition_difference(old, new) is None
    assert _definition_difference(old, {**new, "prompt": "x"}) is not None


def test_export_carries_corpus_numbers_and_failed_items():
    from harness.results.table import rows

    summary = {"run_id": "r", "recipe": "x", "variants": [{"name": "v", "status": "ok", "runtimes": {"rt": {
        "accuracy": {"pope": {"score": 0.8, "ci": [0.7, 0.9], "groups": {}, "failed_items": 2,
                              "corpus": {"f1": 0.75, "yes_ratio": 0.5, "notes": ["x"]}},
                     "docvqa": {"score": 0.5, "ci": [0.4, 0.6], "groups": {}, "retention": 0.9,
                                "retention_ci": [0.8, 1.0], "mean_diff": -0.05, "mean_diff_ci": [-0.1, 0.0]}}}}}]}
    table = {r["metric"]: r for r in rows(summary)}
    assert table["pope.corpus.f1"]["value"] == 0.75 and table["pope.failed_items"]["value"] == 2.0
    assert "pope.corpus.notes" not in table
    assert table["docvqa.mean_diff"]["ci_low"] == -0.1 and table["docvqa.retention"]["ci_high"] == 1.0
