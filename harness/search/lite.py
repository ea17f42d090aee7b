"""Early stopping of hopeless trials: score a lite subset first, stop a trial that cannot meet
the retention target.

The rule. A trial answers k of the n lite items correctly (a seeded subset stratified by the
suite's `group_by`, so every question kind is in it). Its full-set accuracy p is, with confidence
c (`early_stop.confidence`, default 0.95), at most the exact one-sided Clopper-Pearson upper bound
U(k, n) — scipy's `binomtest(...).proportion_ci`. The trial meets the retention target only if
p >= min_retention x baseline accuracy; when U < that, it is stopped (Optuna state PRUNED) before its
full accuracy and its latency/memory rounds are spent.

The risk, stated: a trial that would have met the target is stopped with probability at most
1 - c *when the baseline accuracy is exact*; the baseline's own sampling error is not in the bound
(it is the same for every trial, and the full-set baseline is measured on all items). A subset
whose items are not exchangeable with the full set would break the bound: hence the stratified,
seeded subset. The lite answers are kept in the response cache, so a trial that goes on pays
for them once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LiteVerdict:
    correct: int
    items: int
    upper: float
    needed: float
    stop: bool

    def describe(self) -> str:
        verb = "stopped early" if self.stop else "went on"
        return (f"{verb}: {self.correct}/{self.items} lite items correct; accuracy upper bound {self.upper:.3f} "
                f"{'<' if self.stop else '>='} the {self.needed:.3f} that retention needs")


def judge(correct: int, items: int, baseline_accuracy: float, min_retention: float, confidence: float) -> LiteVerdict:
    """Whether a trial with `correct` of `items` lite answers can still meet the retention target."""
    from scipy.stats import binomtest

    upper = 1.0 if items == 0 else float(
        binomtest(correct, items).proportion_ci(confidence_level=2 * confidence - 1, method="exact").high)
    needed = min_retention * baseline_accuracy
    return LiteVerdict(correct, items, upper, needed, stop=upper < needed)


def lite_suite(suites: list[dict[str, Any]], items: int, seed: int) -> dict[str, Any] | None:
    """The recipe's first accuracy suite, cut to a seeded, stratified lite subset of `items`."""
    suite = next((s for s in suites if s["kind"] == "accuracy"), None)
    if suite is None:
        return None
    return {**suite, "name": f"{suite['name']}-lite",
            "lite": {"size": items, "stratify_by": suite.get("group_by"), "seed": seed}}


def accuracy_of(result: dict[str, Any], runtime: str, suite: str) -> tuple[int, int] | None:
    """(correct, items) of a scored suite in a worker result, or None when it did not run."""
    data = result.get("measurements", {}).get(runtime, {}).get("suites", {}).get(suite, {})
    if data.get("status") != "ok" or not data.get("n"):
        return None
    return round(data["score"] * data["n"]), int(data["n"])
