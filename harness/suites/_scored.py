"""What every scored suite kind shares (accuracy, lm-eval): results in one shape — `metric`,
`score`, `ci`, `n` and per-item `items` (id, group, prediction, score) — so retention against
the baseline, the paired tests of `harness compare`, the min_retention target, the Pareto
accuracy objective and the report's accuracy tables treat them alike."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.metrics._base import corpus_of, score_all
from harness.results.paired import is_binary, pair_items, paired, paired_test
from harness.results.pareto import Objective
from harness.suites._kind import HistoryRow, SuiteKind, TargetRule, TargetValue

#: Fields copied from a scored result into its summary entry when present.
OPTIONAL_FIELDS = ("corpus", "failed_items", "binary")


class ScoredKind(SuiteKind):
    scored: ClassVar[bool] = True
    section: ClassVar[str | None] = "accuracy"
    targets: ClassVar[dict[str, TargetRule]] = {"min_retention": TargetRule(False, "×", "no accuracy suite")}
    objectives: ClassVar[tuple[Objective, ...]] = (Objective("accuracy", True, rank=0, target="min_retention",
                                                                    relative=True),)
    report_template: ClassVar[str] = "suites/scored.html.j2"

    def summarize(self, data: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
        entry = {"score": data["score"], "ci": data["ci"], "n": data["n"], "metric": data["metric"],
                 "groups": data.get("groups", {}), "meaningful": data.get("meaningful", True),
                 **{k: data[k] for k in OPTIONAL_FIELDS if k in data}}
        if base is not None and base.get("status") == "ok":
            entry.update(paired(base["items"], data["items"], is_binary(data) and is_binary(base)))
        return entry

    def target_value(self, summary: dict[str, Any], target: str) -> TargetValue:
        """The worst retention over the meaningful scored suites (random weights score nothing)."""
        entries = summary.get(self.section or "", {}).values()
        retentions = [(a.get("retention"), a.get("retention_ci")) for a in entries
                      if a.get("meaningful", True) and a.get("retention") is not None]
        if retentions:
            worst = min(retentions, key=lambda r: r[0])
            return TargetValue(worst[0], worst[1])
        meaningful = all(a.get("meaningful", True) for a in entries)
        return TargetValue(None, why=self.targets[target].missing if meaningful
                           else "random weights: accuracy is meaningless")

    def objective_values(self, summary: dict[str, Any]) -> dict[str, tuple[float, list[float] | None]]:
        """The first scored suite's score (the recipe's first accuracy suite is the headline)."""
        first = next(iter(summary.get(self.section or "", {}).values()), None)
        if first and first.get("meaningful", True):
            return {"accuracy": (first["score"], first.get("ci"))}
        return {}

    def history_rows(self, name: str, entry: dict[str, Any]) -> list[HistoryRow]:
        return [(f"{name}.score", entry.get("score"), entry.get("ci")),
                (f"{name}.retention", entry.get("retention"), entry.get("retention_ci")),
                (f"{name}.agreement", entry.get("agreement"), None)]

    def export_rows(self, name: str, entry: dict[str, Any]) -> list[HistoryRow]:
        """Corpus numbers (POPE F1, MME acc+, CIDEr...), failed items, the mean paired change of graded
        metrics, then per-group scores."""
        extra = [(f"corpus.{k}", v, None) for k, v in (entry.get("corpus") or {}).items()]
        extra += [("failed_items", entry.get("failed_items"), None),
                  ("mean_diff", entry.get("mean_diff"), entry.get("mean_diff_ci"))]
        out = [(f"{name}.{metric}", float(value), ci) for metric, value, ci in extra
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
        return out + [(f"{name}.{group}.score", result["score"], result.get("ci"))
                      for group, result in entry.get("groups", {}).items()]

    def report_context(self, rows: list[dict[str, Any]], plan: dict[str, Any]) -> dict[str, Any]:
        """Per scored suite: (variant, group, score, ci) rows for the per-group chart."""
        groups: dict[str, list[tuple[str, str, float, list[float]]]] = {}
        for row in rows:
            for suite, entry in row["summary"].get(self.section or "", {}).items():
                groups.setdefault(suite, []).extend((row["variant"]["name"], group, r["score"], r["ci"])
                                                    for group, r in entry.get("groups", {}).items())
        return {"groups": groups}

    def compare(self, name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                policy: dict[str, Any]) -> list[Any]:
        """The same items in both runs: exact McNemar on 0/1 scores, Wilcoxon + paired bootstrap on graded."""
        from harness.results.compare import NOT_COMPARABLE, Change

        pairs = pair_items(old["items"], new["items"])
        n_old = len({it["id"] for it in old["items"]})
        if len(pairs) < n_old or len(pairs) < len(new["items"]):
            return [Change(variant, runtime, f"{name} score", NOT_COMPARABLE, old["score"], new["score"],
                           note=f"only {len(pairs)} of {n_old}/{len(new['items'])} items are shared")]
        binary = is_binary(old) and is_binary(new)
        tested = paired_test(pairs, binary)
        a = [float(o["score"]) for o, _ in pairs]
        b = [float(n["score"]) for _, n in pairs]
        if binary:
            a, b = [float(x >= 1.0) for x in a], [float(x >= 1.0) for x in b]
        old_score, new_score = sum(a) / len(pairs), sum(b) / len(pairs)  # from the paired items themselves
        return [_accuracy_change(name, variant, runtime, policy, tested, old_score, new_score, len(pairs))]


def _accuracy_change(name: str, variant: str, runtime: str, policy: dict[str, Any], tested: dict[str, Any],
                     old_score: float, new_score: float, n: int) -> Any:
    """A regression needs a drop beyond `accuracy_drop`, more items lost than gained (or a CI of the
    change below 0) and p < alpha; an improvement the mirror image."""
    from harness.results.compare import IMPROVEMENT, REGRESSION, SAME, Change

    drop, alpha = old_score - new_score, policy["alpha"]
    if "mcnemar" in tested:
        test = tested["mcnemar"]
        p = test["p_value"]
        worse, better = test["lost"] > test["gained"], test["gained"] > test["lost"]
        note = f"McNemar exact, lost {test['lost']} / gained {test['gained']} of {n}"
    else:
        low, high = tested["mean_diff_ci"]
        w = tested["wilcoxon"]
        p = w["p_value"]
        worse, better = high < 0, low > 0
        note = (f"Wilcoxon signed-rank, {w['lower']} lower / {w['higher']} higher of {n}; "
                f"paired bootstrap 95 % CI of the change [{low:+.4f}, {high:+.4f}]")
    if drop > policy["accuracy_drop"] and worse and p < alpha:
        verdict = REGRESSION
    elif new_score > old_score and better and p < alpha:
        verdict = IMPROVEMENT
    else:
        verdict = SAME
    return Change(variant, runtime, f"{name} score", verdict, old_score, new_score, f"{new_score - old_score:+.4f}",
                  p, note)


def score_with_failures(metric: Any, items: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """Score every item in place (failed ones 0, so they count in n) and return the corpus numbers of
    the valid ones, noting how many failed, plus that count: one rule for every scored kind."""
    valid = [it for it in items if "failed" not in it]
    for item, score in zip(valid, score_all(metric, valid), strict=True):
        item["score"] = score
    for item in items:
        item.setdefault("score", 0.0)
    corpus = corpus_of(metric, valid)
    failed = len(items) - len(valid)
    if corpus and failed:
        corpus["notes"] = [*corpus.get("notes", []), f"{failed} failed items are not in these corpus numbers"]
    return corpus, failed
