"""Paired statistics of per-item scores: the one implementation behind retention in a run's
summary (variant vs the baseline variant) and behind `harness compare` (a run vs a baseline run).

Items pair by id. 0/1 scores get retention with a paired bootstrap CI and an exact McNemar test
on the discordant pairs; graded scores (VQA accuracy, ANLS, CIDEr) get a paired bootstrap of the
ratio and of the mean difference and a Wilcoxon signed-rank test instead: thresholding them at 1
would call 0.9 VQA accuracy wrong.
"""

from __future__ import annotations

from typing import Any

from harness.results.stats import mcnemar_exact, paired_scores, retention_ci

Pairs = list[tuple[dict[str, Any], dict[str, Any]]]


def is_binary(data: dict[str, Any]) -> bool:
    """Whether a suite's per-item scores are 0/1 (its metric says so; older results: every score is)."""
    if "binary" in data:
        return bool(data["binary"])
    return all(it.get("score") in (0, 1, 0.0, 1.0) for it in data.get("items", []))


def pair_items(base_items: list[dict[str, Any]], items: list[dict[str, Any]]) -> Pairs:
    """(base item, item) for every item of `items` whose id the base also answered, in `items` order."""
    base_by_id = {it["id"]: it for it in base_items}
    return [(base_by_id[it["id"]], it) for it in items if it["id"] in base_by_id]


def paired_test(pairs: Pairs, binary: bool) -> dict[str, Any]:
    """Retention with its CI plus the test that suits the scores (see the module doc)."""
    if not binary:
        return paired_scores([float(b["score"]) for b, _ in pairs], [float(v["score"]) for _, v in pairs])
    base_ok = [b["score"] >= 1.0 for b, _ in pairs]
    ok = [v["score"] >= 1.0 for _, v in pairs]
    point, low, high = retention_ci(base_ok, ok)
    return {"retention": point, "retention_ci": [low, high], "mcnemar": mcnemar_exact(base_ok, ok)}


def agreement(pairs: Pairs) -> float:
    """Share of items answered with the same text (case and surrounding space aside)."""
    same = sum((b.get("prediction") or "").strip().lower() == (v.get("prediction") or "").strip().lower()
               for b, v in pairs)
    return same / len(pairs)


def paired(base_items: list[dict[str, Any]], items: list[dict[str, Any]], binary: bool = True) -> dict[str, Any]:
    """Retention, a paired test and answer agreement on the items both answered, overall and per group."""
    pairs = pair_items(base_items, items)
    if not pairs:
        return {"n_paired": 0}
    by_group: dict[str, Any] = {}
    for group in sorted({str(v.get("group")) for _, v in pairs if v.get("group") is not None}):
        chosen = [(b, v) for b, v in pairs if str(v.get("group")) == group]
        tested = paired_test(chosen, binary)
        by_group[group] = {"retention": tested["retention"], "retention_ci": tested["retention_ci"],
                           "n": len(chosen)}
    return {"n_paired": len(pairs), **paired_test(pairs, binary), "agreement": agreement(pairs),
            "group_retention": by_group}
