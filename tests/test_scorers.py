"""The official VQA / document / chart / multiple-choice / yes-no / caption scorers, on hand-made cases
with known answers, and the accuracy suite's metric contract (per item, item fields, corpus)."""

from __future__ import annotations

import math
import shutil
from typing import Any

import pytest

from harness.errors import DataError
from harness.metrics.anls import anls, levenshtein_distance
from harness.metrics.multiple_choice import extract_choice, parse_options
from harness.metrics.relaxed import relaxed_correctness
from harness.metrics.vqa import evalai_normalize, normalize_vqa_prediction, textvqa_accuracy, vqa_v2_accuracy
from harness.metrics.yes_no import mme_answer, pope_answer
from harness.registries import METRICS
from harness.suites.accuracy import AccuracyConfig, score_items


def metric(name: str) -> Any:
    return METRICS.get(name)()


def suite_result(metric_name: str, rows: dict[str, list], answers: list[str], **config: Any) -> dict[str, Any]:
    import datasets

    from harness.data.sources import DatasetSpec

    cfg = AccuracyConfig(name="t", dataset=DatasetSpec(name="t"), metric=metric_name, **config)
    return score_items(cfg, datasets.Dataset.from_dict(rows), answers)


# --- VQA accuracy (VQAv2 vqaEval.py; TextVQA mmf evaluator) ------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("Two", "2"), ("the dog", "dog"), ("A dog.", "dog"), ("it's", "it's"),  # "'" is not in the official punct list
    ("1,000", "1000"),  # digit-comma-digit: every mark is deleted, not spaced
    ("3.5", "3.5"), (".5", ".5"), ("yes.", "yes"), ("a.b", "ab"),  # periods go unless a digit follows
    ("dont", "don't"), ("Don't", "don't"), ("none", "0"), ("ten", "10"), ("eleven", "eleven"),
    ("red,blue", "red blue"), ("red, blue", "red blue"), ("left/right", "left right"),
    ("  Yes\n", "yes"), ("Hello!!", "hello"),
])
def test_vqa_prediction_normalisation_matches_vqaeval(raw, expected):
    assert normalize_vqa_prediction(raw) == expected


def test_textvqa_normalisation_adds_word_tokenize():
    assert evalai_normalize("it's") == "it 's"  # mmf splits the possessive
    assert evalai_normalize("Nokia") == "nokia"
    assert evalai_normalize("1,000") == "1000"
    assert evalai_normalize("What?") == "what"


def test_leave_one_out_over_ten_answers():
    others = [f"other{i}" for i in range(8)]
    assert vqa_v2_accuracy("cat", ["cat"] * 2 + others) == pytest.approx(0.6)  # (2·1/3 + 8·2/3) / 10
    assert vqa_v2_accuracy("cat", ["cat"] * 3 + others[:7]) == pytest.approx(0.9)  # (3·2/3 + 7·1) / 10
    assert vqa_v2_accuracy("cat", ["cat"] * 4 + others[:6]) == 1.0
    assert vqa_v2_accuracy("cat", ["cat"] + others + ["x"]) == pytest.approx(0.3)  # 9 subsets see it once
    assert vqa_v2_accuracy("dog", ["cat"] * 10) == 0.0


def test_vqa_accuracy_normalises_the_prediction_not_the_humans():
    assert vqa_v2_accuracy("Two", ["2"] * 10) == 1.0
    assert vqa_v2_accuracy("the dog", ["dog"] * 10) == 1.0
    assert vqa_v2_accuracy("1,000", ["1000"] * 10) == 1.0
    # official quirk: "none" → "0" in the prediction only, so a unanimous human "none" never matches ...
    assert vqa_v2_accuracy("none", ["none"] * 10) == 0.0
    # ... while TextVQA's evaluator normalises both sides
    assert textvqa_accuracy("none", ["none"] * 10) == 1.0
    # humans get processPunctuation (only that) and only when they disagree
    assert vqa_v2_accuracy("1000", ["1,000"] * 10) == 0.0
    assert vqa_v2_accuracy("1000", ["1,000"] * 9 + ["no"]) == 1.0
    assert vqa_v2_accuracy("yes", ["yes!"] * 9 + ["no"]) == 0.0  # "yes!" → "yes " (no strip), as the official code


def test_textvqa_accuracy_normalises_human_answers():
    humans = ["Nokia"] * 3 + ["nokia 3310"] * 7
    assert textvqa_accuracy("NOKIA", humans) == pytest.approx(0.9)
    assert vqa_v2_accuracy("NOKIA", humans) == 0.0  # VQAv2 leaves the humans' case alone


def test_vqa_metrics_refuse_a_single_reference():
    with pytest.raises(DataError, match="exact_match"):
        metric("vqa_accuracy").score("yes", ["yes"])


# --- ANLS (DocVQA / InfographicVQA official script) ----------------------------------------------

def test_levenshtein():
    assert levenshtein_distance("kitten", "sitting") == 3
    assert levenshtein_distance("", "abc") == 3
    assert levenshtein_distance("abc", "abc") == 0


def test_anls_threshold_boundary_and_best_reference():
    assert anls("Denver Broncos", ["denver broncos "]) == 1.0  # lowercase + strip
    assert anls("abcd", ["abef"]) == 0.5  # NL = 0.5 exactly: kept, as the official script (1 - NL < 0.5 → 0)
    assert anls("abcde", ["abxyz"]) == 0.0  # NL = 0.6
    assert anls("abcdefghij", ["abcdefghiX"]) == pytest.approx(0.9)
    assert anls("12/15/89", ["nothing alike", "12/15/88"]) == pytest.approx(1 - 1 / 8)
    assert anls("", [""]) == 1.0


# --- ChartQA relaxed accuracy (pix2struct) -------------------------------------------------------

@pytest.mark.parametrize("target,prediction,correct", [
    ("100", "105", True), ("100", "95", True), ("100", "105.1", False), ("100", "94.9", False),
    ("45%", "0.45", True), ("45%", "45", False), ("0.45", "45%", True),
    ("0", "0", True), ("0", "0.0", False),  # a zero target falls back to string equality
    ("Yes", "yes", True), ("Yes", "Yes.", False), ("12", "twelve", False),
])
def test_relaxed_correctness(target, prediction, correct):
    assert relaxed_correctness(target, prediction) is correct


def test_relaxed_accuracy_takes_the_best_reference():
    assert metric("relaxed_accuracy").score("19", ["40", "20"]) == 1.0
    assert metric("relaxed_accuracy").score("19", ["40"]) == 0.0


# --- multiple choice (MMMU / lmms-eval parser) ----------------------------------------------------

OPTIONS = ["dog", "cat", "bird", "fish"]


@pytest.mark.parametrize("answer,letter", [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("The answer is B", "B"), ("The answer is (B).", "B"),
    ("Answer: B", "B"), ("B. cat", "B"), ("cat", "B"), ("Cat.", "B"),
    ("I think the animal in the picture is a cat", "B"),  # > 5 words: option text
    ("(A) looks plausible but (B) is right", "B"),  # the last bracketed letter
    ("b", None), ("a horse", None), ("", None),
])
def test_multiple_choice_extraction(answer, letter):
    assert extract_choice(answer, parse_options(OPTIONS)) == letter


def test_multiple_choice_options_forms_and_references():
    mc = metric("multiple_choice")
    assert parse_options("['dog', 'cat']") == {"A": "dog", "B": "cat"}  # MMMU stores a string
    assert parse_options({"A": "dog", "B": "cat"}) == {"A": "dog", "B": "cat"}
    assert mc.score("(B)", ["B"], item={"options": OPTIONS}) == 1.0
    assert mc.score("(B)", ["cat"], item={"options": OPTIONS}) == 1.0  # reference given as option text
    assert mc.score("(C)", ["B"], item={"options": OPTIONS}) == 0.0
    assert mc.score("no idea", ["B"], item={"options": OPTIONS}) == 0.0  # no random guess
    with pytest.raises(DataError, match="options"):
        mc.score("B", ["B"])


def test_multiple_choice_through_the_suite_reads_options():
    rows = {"question": ["q1", "q2", "q3"], "answer": ["B", "A", "C"],
            "choice_a": ["dog", "red", "1"], "choice_b": ["cat", "blue", "2"], "choice_c": ["cow", "green", "3"]}
    result = suite_result("multiple_choice", rows, ["(B)", "blue", "I don't know"],
                          item_columns={"options": ["choice_a", "choice_b", "choice_c"]})
    assert [it["score"] for it in result["items"]] == [1.0, 0.0, 0.0]
    assert result["items"][0]["options"] == ["dog", "cat", "cow"]
    assert result["corpus"] == {"unparsed": pytest.approx(1 / 3)}
    with_column = suite_result("multiple_choice", {"question": ["q"], "answer": ["A"], "options": [["x", "y"]]}, ["A"])
    assert with_column["score"] == 1.0  # a same-named column is picked up without item_columns


# --- POPE and MME ---------------------------------------------------------------------------------

def test_pope_answer_reading():
    assert pope_answer("Yes, there is a dog.") == "yes"
    assert pope_answer("No, there is not.") == "no"
    assert pope_answer("There is not a dog in the image.") == "no"
    assert pope_answer("There is a dog. It is not small.") == "yes"  # first sentence only
    assert pope_answer("Nope") == "yes"  # whole words only, as the official script


def test_pope_corpus_counts():
    predictions = ["Yes", "No, there is not.", "yes.", "There is a dog.", "not sure", "No"]
    labels = ["yes", "no", "no", "yes", "yes", "no"]  # → TP 2, TN 2, FP 1, FN 1
    result = suite_result("pope", {"question": ["q"] * 6, "answer": labels}, predictions)
    assert [it["score"] for it in result["items"]] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    corpus = result["corpus"]
    assert (corpus["tp"], corpus["tn"], corpus["fp"], corpus["fn"]) == (2, 2, 1, 1)
    assert corpus["accuracy"] == pytest.approx(4 / 6) == result["score"]
    assert corpus["precision"] == pytest.approx(2 / 3) and corpus["recall"] == pytest.approx(2 / 3)
    assert corpus["f1"] == pytest.approx(2 / 3)
    assert corpus["yes_ratio"] == 0.5  # share of "yes" among predictions, not labels
    assert result["ci"][0] < result["score"] < result["ci"][1]  # binary → Wilson CI as before


def test_pope_without_yes_predictions_gives_nan_precision():
    corpus = suite_result("pope", {"question": ["q", "q"], "answer": ["yes", "no"]}, ["no", "no"])["corpus"]
    assert math.isnan(corpus["precision"]) and corpus["recall"] == 0.0 and corpus["yes_ratio"] == 0.0


def test_mme_answer_reading():
    assert [mme_answer(a) for a in ["Yes", "no", "Yes, it is", "Nope", "Not really", "I think so"]] == \
        ["yes", "no", "yes", "no", "no", "other"]


def test_mme_acc_plus_and_score():
    rows = {"question": ["q"] * 8,
            "answer": ["yes", "no", "yes", "no", "yes", "no", "yes", "no"],
            "category": ["existence"] * 4 + ["count"] * 2 + ["code_reasoning"] * 2,
            "image": ["e1", "e1", "e2", "e2", "c1", "c1", "k1", "k1"]}
    answers = ["Yes", "No", "Yes, there is", "yes", "no", "nope", "Yes", "other stuff"]
    result = suite_result("mme", rows, answers, item_columns={"image_id": "image"})
    corpus = result["corpus"]
    assert corpus["existence.acc"] == 0.75 and corpus["existence.acc_plus"] == 0.5
    assert corpus["existence.score"] == pytest.approx(125.0)
    assert corpus["count.score"] == pytest.approx(50.0) and corpus["count.acc_plus"] == 0.0
    assert corpus["code_reasoning.score"] == pytest.approx(50.0)
    assert corpus["perception"] == pytest.approx(175.0) and corpus["cognition"] == pytest.approx(50.0)
    assert corpus["total"] == pytest.approx(225.0)
    assert "notes" not in corpus
    with pytest.raises(DataError, match="image_id"):
        suite_result("mme", {k: v for k, v in rows.items() if k != "image"}, answers)


# --- COCO captions (pycocoevalcap) ----------------------------------------------------------------

CAPTION_REFS = [["A dog runs on the grass.", "A brown dog running across a lawn.", "a dog playing outside"],
                ["Two cats sleep on a sofa.", "A pair of cats napping on the couch."]]
CAPTIONS = ["A dog is running on the grass.", "Two cats are sleeping on a couch."]


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")
def test_coco_captions_match_pycocoevalcap_directly(monkeypatch):
    pytest.importorskip("pycocoevalcap")
    import pycocoevalcap.spice.get_stanford_models as fetch
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("SPICE must not try to download CoreNLP")

    monkeypatch.setattr(fetch, "urlretrieve", no_download)
    result = suite_result("coco_captions", {"question": ["describe"] * 2, "answer": CAPTION_REFS}, CAPTIONS)

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(CAPTION_REFS)})
    res = tok.tokenize({i: [{"caption": c}] for i, c in enumerate(CAPTIONS)})
    bleu, _ = Bleu(4).compute_score(gts, res)
    cider, per_image = Cider().compute_score(gts, res)
    expected = {**{f"Bleu_{n + 1}": b for n, b in enumerate(bleu)}, "METEOR": Meteor().compute_score(gts, res)[0],
                "ROUGE_L": Rouge().compute_score(gts, res)[0], "CIDEr": cider}
    corpus = result["corpus"]
    for name, value in expected.items():
        assert corpus[name] == pytest.approx(float(value), abs=1e-9), name
    assert [it["score"] for it in result["items"]] == pytest.approx([float(s) for s in per_image])
    assert result["score"] == pytest.approx(float(cider))  # the mean of per-image CIDEr is corpus CIDEr
    assert result["metric"] == "coco_captions"  # not binary: a bootstrap CI of the mean, not Wilson
    assert result["ci"][0] <= result["score"] <= result["ci"][1] and not math.isnan(result["ci"][0])
    if "SPICE" not in corpus:
        assert any("stanford-corenlp-3.6.0.jar" in note and "offline" in note for note in corpus["notes"])


def test_captions_refuse_single_item_scoring():
    with pytest.raises(DataError, match="whole set"):
        metric("coco_captions").score("a dog", ["a dog"])


# --- the contract: old metrics, registration, unchanged results ------------------------------------

def test_every_new_metric_is_registered_with_direction_and_unit():
    for name in ("vqa_accuracy", "textvqa_accuracy", "anls", "relaxed_accuracy", "multiple_choice", "pope", "mme",
                 "coco_captions", "exact_match"):
        m = metric(name)
        assert m.higher_is_better is True and isinstance(m.unit, str) and isinstance(m.binary, bool)
    assert metric("vqa_accuracy").binary is False and metric("pope").binary is True


def test_a_two_argument_metric_still_works_and_reports_no_corpus(monkeypatch):
    class OldStyle:  # a plugin written against the original contract
        higher_is_better, unit, binary = True, "fraction", True

        def score(self, prediction, references):
            return float(prediction == references[0])

    monkeypatch.setitem(METRICS._entries, "old-style", METRICS._entries["exact_match"].__class__(
        "old-style", OldStyle, "old"))
    result = suite_result("old-style", {"question": ["q", "q"], "answer": ["a", "b"]}, ["a", "x"])
    assert [it["score"] for it in result["items"]] == [1.0, 0.0] and "corpus" not in result


def _old_score_items(config: AccuracyConfig, dataset: Any, answers: list[str]) -> dict[str, Any]:
    """The accuracy suite's scoring before the corpus hook (copied verbatim), to compare against."""
    from harness.suites.accuracy import _aggregate

    metric_ = METRICS.get(config.metric)()
    refs = dataset[config.answer_column]
    ids = dataset[config.id_column] if config.id_column in dataset.column_names else \
        [str(i) for i in range(len(dataset))]
    groups = dataset[config.group_by] if config.group_by else [None] * len(dataset)
    items = []
    for item_id, question, ref, answer, group in zip(ids, dataset[config.question_column], refs, answers, groups):
        references = ref if isinstance(ref, list) else [ref]
        items.append({"id": str(item_id), "group": group, "question": question,
                      "references": [str(r) for r in references], "prediction": answer,
                      "score": metric_.score(answer, references)})
    return {"metric": config.metric, "higher_is_better": metric_.higher_is_better,
            **_aggregate([it["score"] for it in items], metric_.binary),
            "groups": {g: _aggregate([it["score"] for it in items if it["group"] == g], metric_.binary)
                       for g in sorted({str(it["group"]) for it in items if it["group"] is not None})},
            "items": items}


def test_nano_vqa_exact_match_result_is_unchanged():
    import json

    from harness.data.nano_vqa import KINDS, build_dataset
    from harness.data.sources import DatasetSpec

    dataset = build_dataset({"train": 5, "validation": 5, "test": 40})["test"].remove_columns("image")
    truth = dataset["answer"]
    answers = [a.upper() + "." if i % 3 == 0 else a if i % 3 == 1 else "wrong" for i, a in enumerate(truth)]
    config = AccuracyConfig(name="nano-vqa", dataset=DatasetSpec(name="nano-vqa"), batch_size=100,
                            max_new_tokens=4, group_by="kind")
    new, old = score_items(config, dataset, answers), _old_score_items(config, dataset, answers)
    assert json.dumps(new, sort_keys=False) == json.dumps(old, sort_keys=False)  # same keys, order and values
    assert 0 < new["score"] < 1 and set(new["groups"]) == set(KINDS)
