"""ANLS (average normalised Levenshtein similarity) for DocVQA and InfographicVQA.

Source: the official evaluation script of the Robust Reading Competition DocVQA challenge
(rrc.cvc.uab.es/?ch=17, "Infographics VQA Evaluation scripts"; the same ``evaluate_method`` scores
DocVQA), also cited by google-research/pix2struct ``metrics.anls_metric``. Per question: both
strings are stripped, lowercased and their internal whitespace collapsed; NL = Levenshtein distance
/ max(len) of the two *raw* strings (as the script does); the score is 1 − min NL over the
references, set to 0 when it is below the threshold τ = 0.5.

Boundary, deliberately as the official code: a score of exactly 0.5 (NL = 0.5) is kept, because the
script zeroes only ``1 - NL < τ`` (pix2struct: ``NL <= θ``). The paper's formula (Biten et al.
2019, Eq. 1) writes NL < τ, i.e. would give 0 there; the published numbers come from the script.

Levenshtein: neither ``rapidfuzz`` nor ``python-Levenshtein``/``editdistance`` is installed here, so
this uses the official script's own pure-Python dynamic programme (``levenshtein_distance``), which
is exact; it is O(len·len), fine for short answers.
"""

from __future__ import annotations

from typing import Any

from harness.errors import DataError
from harness.metrics._base import Metric
from harness.registries import METRICS

THRESHOLD = 0.5


def levenshtein_distance(s1: str, s2: str) -> int:
    """Edit distance (insert, delete, substitute = 1), the official script's two-row DP."""
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    distances = list(range(len(s1) + 1))
    for i2, c2 in enumerate(s2):
        row = [i2 + 1]
        for i1, c1 in enumerate(s1):
            row.append(distances[i1] if c1 == c2 else 1 + min(distances[i1], distances[i1 + 1], row[-1]))
        distances = row
    return distances[-1]


def anls(prediction: str, references: list[str], threshold: float = THRESHOLD) -> float:
    """One question's ANLS, exactly as the official script's ``evaluate_method`` computes it."""
    if not references:
        raise DataError("anls needs at least one reference answer per item")
    det = " ".join(prediction.strip().lower().split())
    values = []
    for answer in references:
        gt = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))  # sic: raw lengths, as the script
        values.append(0.0 if length == 0 else levenshtein_distance(gt, det) / length)
    result = 1 - min(values)
    return 0.0 if result < threshold else result


@METRICS.register("anls", "DocVQA/InfoVQA ANLS: 1 - normalised Levenshtein (best reference), 0 below 0.5")
class ANLS(Metric):
    binary = False

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        return anls(str(prediction), [str(r) for r in references])
