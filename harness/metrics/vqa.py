"""VQA accuracy, exactly as the official evaluators compute it (VQAv2 and TextVQA).

Sources:
- VQAv2: GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` (master; the
  Python 3 version). The prediction is cleaned (newlines/tabs → space, strip), then
  ``processPunctuation`` and ``processDigitArticle``; the human answers only get
  ``processPunctuation``, and only when they are not all identical. Accuracy is
  min(1, #other annotators giving the answer / 3), averaged over the leave-one-out subsets of the
  (10) human answers.
- TextVQA: facebookresearch/mmf ``mmf/utils/m4c_evaluators.py`` (``EvalAIAnswerProcessor`` and
  ``TextVQAAccuracyEvaluator``, the evaluator the TextVQA authors ship): the same tables, plus a
  ``word_tokenize`` step (lowercase, drop "," and "?", "'s" → " 's") and the full normalisation
  applied to prediction *and* every human answer.

The two differ on purpose-built answers such as "none" (VQAv2: the prediction becomes "0" but a
human "none" stays "none") and on raw-cased OCR answers ("Nokia"), so both are registered:
``vqa_accuracy`` (VQAv2) and ``textvqa_accuracy`` (TextVQA).

Reproduced quirks, deliberately: the period regex is the official ``(?!<=\\d)(\\.)(?!\\d)`` (a
look-*ahead* typo: it removes any period not followed by a digit) and is applied with
``count=re.UNICODE`` (= 32), as the official call passes the flag in the count slot; a digit-comma-
digit anywhere makes every punctuation mark be deleted rather than replaced by a space; the
contraction keys with capitals or apostrophes can never match (the text is lowercased first). The
leave-one-out is over answer positions (the official code compares answer dicts with unique ids).
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import DataError
from harness.metrics._base import Metric
from harness.registries import METRICS

# The official tables (vqaEval.py master; identical in mmf's EvalAIAnswerProcessor).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am",
    "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}

MANUAL_MAP: dict[str, str] = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                              "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES: tuple[str, ...] = ("a", "an", "the")
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
MMF_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
PUNCT: tuple[str, ...] = (";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                          ",", "?", "!")


def process_punctuation(text: str, comma_strip: re.Pattern[str] = COMMA_STRIP) -> str:
    """Official ``processPunctuation``: drop a mark next to a space (or anywhere, if a digit-comma-digit
    occurs), otherwise replace it by a space; then remove periods that are not decimal points."""
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or comma_strip.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=int(re.UNICODE))  # sic: the official call's count


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lowercase, number words → digits, drop articles, contractions."""
    words = [MANUAL_MAP.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


def normalize_vqa_prediction(text: str) -> str:
    """How vqaEval.py cleans a predicted answer."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def evalai_normalize(text: str) -> str:
    """mmf's ``EvalAIAnswerProcessor.__call__`` (TextVQA): word_tokenize, then the VQA steps."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text, MMF_COMMA_STRIP))


def leave_one_out_accuracy(answer: str, humans: list[str]) -> float:
    """Mean over the leave-one-out subsets of min(1, #matching humans / 3)."""
    accs = [min(1.0, sum(1 for j, h in enumerate(humans) if j != i and h == answer) / 3) for i in range(len(humans))]
    return sum(accs) / len(accs)


def vqa_v2_accuracy(prediction: str, answers: list[str]) -> float:
    """VQAv2 accuracy of one prediction against its human answers (official vqaEval.py)."""
    humans = [str(a) for a in answers]
    if len(set(humans)) > 1:
        humans = [process_punctuation(a) for a in humans]
    return leave_one_out_accuracy(normalize_vqa_prediction(str(prediction)), humans)


def textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """TextVQA accuracy of one prediction against its human answers (mmf TextVQAAccuracyEvaluator)."""
    return leave_one_out_accuracy(evalai_normalize(str(prediction)), [evalai_normalize(str(a)) for a in answers])


def _check(name: str, references: list[str]) -> None:
    if len(references) < 2:
        raise DataError(f"{name} needs every human answer of an item (10 in VQAv2/TextVQA), got {len(references)}: "
                        "with one answer the leave-one-out score is always 0 — use exact_match for single references")


@METRICS.register("vqa_accuracy", "VQAv2 accuracy: official answer normalisation, min(1, matches/3) leave-one-out")
class VQAAccuracy(Metric):
    binary = False

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        _check("vqa_accuracy", references)
        return vqa_v2_accuracy(prediction, references)


@METRICS.register("textvqa_accuracy", "TextVQA accuracy: mmf/EvalAI normalisation of answers and humans, "
                  "min(1, matches/3) leave-one-out")
class TextVQAAccuracy(Metric):
    binary = False

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        _check("textvqa_accuracy", references)
        return textvqa_accuracy(prediction, references)
