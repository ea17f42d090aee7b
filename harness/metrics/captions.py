"""COCO caption metrics through ``pycocoevalcap``: BLEU-1..4, METEOR, ROUGE-L, CIDEr (SPICE optional).

Source: tylin/coco-caption ``pycocoevalcap/eval.py`` (``COCOEvalCap.evaluate``), installed as the
``pycocoevalcap`` package: every caption goes through its Stanford ``PTBTokenizer`` (Java; lowercases
and drops punctuation tokens), then ``Bleu(4)``, ``Meteor()``, ``Rouge()``, ``Cider()`` score the whole
set. Numbers are reported on pycocoevalcap's own scale (CIDEr ≈ 0–10, not ×100) under its names
(``Bleu_1`` … ``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``, ``SPICE``).

Per item, the suite keeps each image's CIDEr from the same corpus computation (CIDEr's n-gram IDF
comes from the whole reference set, so one image cannot be scored alone — ``score`` refuses);
the corpus numbers go to ``result["corpus"]``. Items are keyed by position, so duplicate ids are fine.

SPICE is run only when the two Stanford CoreNLP 3.6.0 jars it needs are already in
``pycocoevalcap/spice/lib``; otherwise it is skipped with a note saying how to add them, because
pycocoevalcap's ``Spice()`` would try to download them from nlp.stanford.edu at run time.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from harness.errors import DataError, HarnessError, require
from harness.metrics._base import Metric
from harness.registries import METRICS

CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def spice_lib_dir() -> Path:
    spice = require("pycocoevalcap.spice.spice", "eval", "SPICE")
    return Path(spice.__file__).resolve().parent / "lib"


def spice_missing_note() -> str | None:
    """Why SPICE cannot run offline here (None when the CoreNLP jars are in place)."""
    lib = spice_lib_dir()
    missing = [jar for jar in CORENLP_JARS if not (lib / jar).is_file()]
    if not missing:
        return None
    return (f"SPICE skipped: Stanford CoreNLP jars missing from {lib} ({', '.join(missing)}); pycocoevalcap would "
            "download them at run time, which cannot work offline. To enable SPICE, fetch "
            "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip on a machine with network and "
            f"copy {' and '.join(CORENLP_JARS)} from it into {lib}.")


def evaluate_captions(predictions: list[str], references: list[list[str]]) -> dict[str, Any]:
    """pycocoevalcap over a set: {"corpus": {metric: value, "notes": [...]}, "per_item": [CIDEr, ...]}."""
    if len(predictions) != len(references):
        raise DataError("coco_captions: one prediction per item is needed")
    if any(not refs for refs in references):
        raise DataError("coco_captions: every item needs at least one reference caption")
    if shutil.which("java") is None:
        raise HarnessError("coco_captions needs Java on PATH (pycocoevalcap's PTB tokenizer and METEOR are Java)")
    require("pycocoevalcap", "eval", "COCO caption metrics")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": str(c)} for c in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": str(p)}] for i, p in enumerate(predictions)})
    corpus: dict[str, Any] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)  # same numbers, no printing
    corpus |= {f"Bleu_{n + 1}": float(value) for n, value in enumerate(bleu)}
    meteor = Meteor()
    try:
        corpus["METEOR"] = float(meteor.compute_score(gts, res)[0])
    finally:
        del meteor  # closes its Java process
    corpus["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    cider, per_image = Cider().compute_score(gts, res)
    corpus["CIDEr"] = float(cider)
    note = spice_missing_note()
    if note is None:
        from pycocoevalcap.spice.spice import Spice

        try:
            corpus["SPICE"] = float(Spice().compute_score(gts, res)[0])
        except Exception as exc:  # SPICE is optional: say why it failed and keep the rest
            note = f"SPICE failed: {type(exc).__name__}: {exc}"
    if note:
        corpus["notes"] = [note]
    return {"corpus": corpus, "per_item": [float(s) for s in per_image]}


@METRICS.register("coco_captions", "COCO captions via pycocoevalcap (PTB tokenizer): per-item CIDEr; BLEU-1..4, "
                  "METEOR, ROUGE-L, CIDEr (SPICE if its jars are present) per corpus")
class CocoCaptions(Metric):
    binary = False
    unit = "CIDEr"

    def __init__(self) -> None:
        self._cache: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def _evaluate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """One pycocoevalcap pass per set (score_all and corpus share it)."""
        key = tuple((str(it["prediction"]), tuple(str(r) for r in it["references"])) for it in items)
        if self._cache is None or self._cache[0] != key:
            predictions = [str(it["prediction"]) for it in items]
            self._cache = (key, evaluate_captions(predictions, [list(it["references"]) for it in items]))
        return self._cache[1]

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        raise DataError("coco_captions scores a whole set (CIDEr's IDF comes from all references): "
                        "use score_all(items)")

    def score_all(self, items: list[dict[str, Any]]) -> list[float]:
        return list(self._evaluate(items)["per_item"]) if items else []

    def corpus(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._evaluate(items)["corpus"]) if items else {}
