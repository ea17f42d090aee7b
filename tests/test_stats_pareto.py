"""Statistics and the noise-aware Pareto analysis on constructed cases."""

from __future__ import annotations

import pytest

from harness.results.pareto import Objective, Value, compare, dominates, standings
from harness.results.stats import mcnemar_exact, median_ci, proportion_ci, retention_ci, summarize

ACC = Objective("accuracy", True)
TTFT = Objective("ttft", False)


def test_wilson_interval_contains_the_estimate():
    low, high = proportion_ci(90, 100)
    assert 0.8 < low < 0.9 < high < 0.96


def test_mcnemar_counts_discordant_pairs():
    base = [True] * 20 + [False] * 5
    variant = [False] * 10 + [True] * 10 + [False] * 5
    result = mcnemar_exact(base, variant)
    assert (result["lost"], result["gained"]) == (10, 0)
    assert result["p_value"] < 0.01
    assert mcnemar_exact(base, base)["p_value"] == 1.0


def test_retention_of_identical_answers_is_exactly_one():
    answers = [True, False, True, True] * 25
    point, low, high = retention_ci(answers, answers)
    assert point == low == high == 1.0


def test_retention_ci_covers_a_real_drop():
    base = [True] * 100
    variant = [True] * 80 + [False] * 20
    point, low, high = retention_ci(base, variant)
    assert point == pytest.approx(0.8)
    assert low < 0.8 < high < 0.9


def test_summary_percentiles():
    stats = summarize([float(x) for x in range(1, 101)])
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(90.1)
    low, high = median_ci(list(range(1, 101)))
    assert low < 50.5 < high


def test_noise_overlapping_values_do_not_dominate():
    a = {"accuracy": Value.of(0.90, [0.85, 0.95]), "ttft": Value.of(10.0, [9.0, 11.0])}
    twin = {"accuracy": Value.of(0.91, [0.86, 0.96]), "ttft": Value.of(9.8, [8.9, 10.9])}
    assert not dominates(a, twin, [ACC, TTFT]) and not dominates(twin, a, [ACC, TTFT])


def test_clear_win_on_one_objective_and_tie_on_the_other_is_only_weak_dominance():
    fast = {"accuracy": Value.of(0.90, [0.85, 0.95]), "ttft": Value.of(5.0, [4.8, 5.2])}
    slow = {"accuracy": Value.of(0.91, [0.86, 0.96]), "ttft": Value.of(10.0, [9.5, 10.5])}
    assert not dominates(fast, slow, [ACC, TTFT])  # accuracy is a tie: more items could flip it
    standing = standings({"fast": fast, "slow": slow}, [ACC, TTFT])
    assert standing["slow"].dominated_by == [] and not standing["slow"].on_frontier
    weak = standing["slow"].weakly_dominated_by["fast"]
    assert (weak.better, weak.ties, weak.worse) == (["ttft"], ["accuracy"], [])
    assert standing["fast"].on_frontier


def test_better_beyond_noise_on_every_objective_dominates():
    good = {"accuracy": Value.of(0.95, [0.93, 0.97]), "ttft": Value.of(5.0, [4.8, 5.2]), "size": Value.of(1.0)}
    bad = {"accuracy": Value.of(0.80, [0.76, 0.84]), "ttft": Value.of(9.0, [8.5, 9.5]), "size": Value.of(2.0)}
    objectives = [ACC, TTFT, Objective("size", False)]
    assert dominates(good, bad, objectives) and not dominates(bad, good, objectives)
    result = standings({"good": good, "bad": bad}, objectives)
    assert (result["good"].dominated_by, result["bad"].dominated_by) == ([], ["good"])


def test_a_variant_never_dominates_its_own_twin():
    a = {"accuracy": Value.of(0.9, [0.87, 0.93]), "ttft": Value.of(10.0, [9.6, 10.4]), "size": Value.of(1.5)}
    twin = {"accuracy": Value.of(0.9, [0.87, 0.93]), "ttft": Value.of(10.3, [9.9, 10.8]), "size": Value.of(1.5)}
    objectives = [ACC, TTFT, Objective("size", False)]
    result = standings({"a": a, "twin": twin}, objectives)
    assert result["a"].on_frontier and result["twin"].on_frontier
    assert result["a"].ties_with == ["twin"] and result["twin"].ties_with == ["a"]
    assert compare(a, twin, objectives).ties == ["accuracy", "ttft", "size"]


def test_missing_objectives_are_ignored_not_counted_as_wins():
    measured = {"accuracy": Value.of(0.9, [0.88, 0.92]), "ttft": Value.of(5.0)}
    partial = {"ttft": Value.of(10.0)}
    c = compare(measured, partial, [ACC, TTFT])
    assert c.better == ["ttft"] and c.ties == [] and c.dominates


def test_a_trade_off_keeps_both_on_the_frontier():
    small = {"accuracy": Value.of(0.70, [0.68, 0.72]), "ttft": Value.of(5.0)}
    big = {"accuracy": Value.of(0.90, [0.88, 0.92]), "ttft": Value.of(10.0)}
    assert all(not s.dominated_by for s in standings({"small": small, "big": big}, [ACC, TTFT]).values())
    assert all(s.on_frontier for s in standings({"small": small, "big": big}, [ACC, TTFT]).values())


def test_exact_values_need_a_minimum_relative_effect():
    size = Objective("size", False, min_relative_effect=0.01)
    a, b = {"size": Value.of(2.8220)}, {"size": Value.of(2.8221)}  # a few bytes of config apart
    assert compare(a, b, [size]).ties == ["size"]
    assert compare({"size": Value.of(1.4)}, b, [size]).better == ["size"]
