"""Yes/no hallucination and perception benchmarks: POPE and MME, per item and per corpus.

POPE — source: the POPE authors' ``evaluate.py`` (RUCAIBox/POPE; LLaVA's ``eval_pope.py`` is the
same code). An answer keeps only its first sentence (text before the first "."), commas are
removed, and it is "no" when one of its space-separated words is exactly "No", "no" or "not",
otherwise "yes". A reference is "no" or "yes". Corpus: accuracy, precision, recall and F1 with
"yes" as the positive class, and ``yes_ratio`` — the share of "yes" among the *predictions* —
plus the TP/FP/TN/FN counts. Where the official script would divide by zero (no "yes" predicted,
or no "yes" labels) the value is NaN.

MME — source: the MME authors' ``eval_tool/calculation.py`` (BradyFU/Awesome-Multimodal-Large-
Language-Models, Evaluation branch; lmms-eval's mme task follows it). The answer is lowercased;
"yes"/"no" as is, else "yes" if its first four characters contain "yes", else "no" if they contain
"no", else "other" (always wrong). Per category (``item["category"]``, else the suite's group): acc
over questions, acc+ = share of images (``item["image_id"]``) whose questions (two per image) are
all right, score = 100·(acc + acc+). ``perception`` / ``cognition`` sum the scores of the official
subtasks of each kind that are present; ``total`` sums every category.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from harness.errors import DataError
from harness.metrics._base import Metric
from harness.registries import METRICS

MME_TYPES: dict[str, tuple[str, ...]] = {
    "perception": ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                   "artwork", "OCR"),
    "cognition": ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"),
}


def _label(reference: str, metric: str) -> str:
    label = str(reference).strip().lower()
    if label not in ("yes", "no"):
        raise DataError(f"{metric}: references must be 'yes' or 'no', got {reference!r}")
    return label


def pope_answer(text: str) -> str:
    """POPE's reading of a free answer as "yes" or "no"."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def pope_metrics(predicted: list[str], labels: list[str]) -> dict[str, float]:
    """POPE's corpus numbers from yes/no predictions and labels."""
    pairs = list(zip(predicted, labels))
    tp = sum(p == "yes" and g == "yes" for p, g in pairs)
    fp = sum(p == "yes" and g == "no" for p, g in pairs)
    tn = sum(p == "no" and g == "no" for p, g in pairs)
    fn = sum(p == "no" and g == "yes" for p, g in pairs)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall) if not math.isnan(precision + recall) else math.nan
    return {"accuracy": _ratio(tp + tn, len(pairs)), "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": _ratio(predicted.count("yes"), len(predicted)),
            "tp": float(tp), "fp": float(fp), "tn": float(tn), "fn": float(fn)}


@METRICS.register("pope", "POPE: yes/no correctness per item; accuracy, precision, recall, F1, yes-ratio per corpus")
class Pope(Metric):
    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        return float(pope_answer(str(prediction)) == _label(references[0], "pope"))

    def corpus(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            return {}
        return pope_metrics([pope_answer(str(it["prediction"])) for it in items],
                            [_label(it["references"][0], "pope") for it in items])


def mme_answer(text: str) -> str:
    """MME's reading of a free answer: "yes", "no" or "other"."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    return "yes" if "yes" in prefix else "no" if "no" in prefix else "other"


def mme_scores(items: list[dict[str, Any]]) -> dict[str, Any]:
    """acc, acc+ and score per category, and the perception / cognition / total sums."""
    by_category: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for it in items:
        category = it.get("category") or it.get("group")
        if category is None or it.get("image_id") is None:
            raise DataError("mme needs each item's category (a 'category' column or group_by) and image_id "
                            "(e.g. item_columns: {image_id: question_id} for lmms-lab/MME)")
        right = mme_answer(str(it["prediction"])) == _label(it["references"][0], "mme")
        by_category[str(category)][str(it["image_id"])].append(right)
    out: dict[str, Any] = {}
    notes = []
    for category, images in sorted(by_category.items()):
        answers = [r for rights in images.values() for r in rights]
        odd = sum(len(rights) != 2 for rights in images.values())
        if odd:
            notes.append(f"{category}: {odd} image(s) without exactly two questions (MME pairs them)")
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(rights) for rights in images.values()) / len(images)
        out |= {f"{category}.acc": acc, f"{category}.acc_plus": acc_plus, f"{category}.score": 100 * (acc + acc_plus)}
    for kind, names in MME_TYPES.items():
        out[kind] = sum(out[f"{n}.score"] for n in names if f"{n}.score" in out)
    out["total"] = sum(out[f"{c}.score"] for c in by_category)
    if notes:
        out["notes"] = notes
    return out


@METRICS.register("mme", "MME: yes/no correctness per item; acc, acc+ (both questions of an image) and the "
                  "MME score per category")
class MME(Metric):
    item_fields = ("category", "image_id")

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        return float(mme_answer(str(prediction)) == _label(references[0], "mme"))

    def corpus(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return mme_scores(items) if items else {}
