"""Multiple choice (AI2D, ScienceQA-IMG, MMMU, SEED-Bench): extract the option letter from a free answer.

Source: MMMU's ``parse_multi_choice_response`` (MMMU-Benchmark/MMMU ``eval/eval_utils.py``) in the
form lmms-eval ships it (``lmms_eval/tasks/mmmu/utils.py``, which adds the "A." pass): strip
``,.!?;:'`` from both ends and pad with spaces; candidates are letters written "(B)", else "B ",
else "B.", else — for answers longer than five words — options whose text occurs in the answer;
with several candidates the one that occurs last wins. The item is correct when the letter equals
the reference letter (``eval_multi_choice``).

Deliberate difference: where the official code finds no candidate it guesses ``random.choice`` (a
seeded global RNG, so the result depends on call order). Here, instead, an answer that *is* an
option's text (case-insensitive, surrounding punctuation ignored: "cat" for "B. cat") picks that
option, and anything else counts as unanswered (score 0); ``corpus`` reports the unparsed share.
This keeps scores deterministic and paired comparisons between variants meaningful.

Options come from the item (``item["options"]``): a list (letters A, B, … in order), a dict letter
→ text, or the string form of a list (as MMMU stores it). A reference is the correct letter, or
the correct option's text; a letter in parentheses, "(A)", is read as the letter (CV-Bench's answers).
"""

from __future__ import annotations

import ast
from typing import Any

from harness.errors import DataError
from harness.metrics._base import Metric
from harness.registries import METRICS

STRIP_CHARS = (",", ".", "!", "?", ";", ":", "'")


def parse_options(raw: Any) -> dict[str, str]:
    """Letter → option text from a list, a dict or the string form of a list."""
    if isinstance(raw, str):
        try:
            raw = ast.literal_eval(raw)
        except (ValueError, SyntaxError) as exc:
            raise DataError(f"multiple_choice: cannot read options {raw[:80]!r} (want a list or dict)") from exc
    if isinstance(raw, dict):
        return {str(k).strip(): str(v) for k, v in raw.items()}
    if isinstance(raw, (list, tuple)):
        return {chr(ord("A") + i): str(v) for i, v in enumerate(raw)}
    raise DataError(f"multiple_choice: options must be a list or dict, got {type(raw).__name__}")


def parse_multi_choice_response(response: str, all_choices: list[str], index2ans: dict[str, str]) -> str | None:
    """The option letter an answer names (lmms-eval's MMMU parser); None where MMMU would guess."""
    for char in STRIP_CHARS:
        response = response.strip(char)
    response = " " + response + " "  # add space to avoid partial match

    index_ans = True
    ans_with_brack = False
    candidates = [choice for choice in all_choices if f"({choice})" in response]  # (A) (B)
    if candidates:
        ans_with_brack = True
    if not candidates:
        candidates = [choice for choice in all_choices if f"{choice} " in response]  # A B
    if not candidates:
        candidates = [choice for choice in all_choices if f"{choice}." in response]  # A. B.
    if not candidates and len(response.split()) > 5:
        candidates = [index for index, ans in index2ans.items() if ans.lower() in response.lower()]
        index_ans = not candidates  # it's a content answer

    if not candidates:
        return None  # MMMU: random.choice(all_choices); see the module docstring
    if len(candidates) == 1:
        return candidates[0]
    if index_ans:
        pattern = "({})" if ans_with_brack else " {} "
        starts = [response.rfind(pattern.format(can)) for can in candidates]
    else:
        starts = [response.lower().rfind(index2ans[can].lower()) for can in candidates]
    return candidates[max(range(len(candidates)), key=starts.__getitem__)]  # the last one (first on ties)


def _bare(text: str) -> str:
    for char in STRIP_CHARS:
        text = text.strip(char)
    return " ".join(text.lower().split())


def extract_choice(response: str, options: dict[str, str]) -> str | None:
    """MMMU parsing, then (instead of a random guess) an answer equal to an option's text."""
    letter = parse_multi_choice_response(response, list(options), options)
    if letter is None:
        bare = _bare(response)
        matches = [k for k, text in options.items() if bare and _bare(text) == bare]
        letter = matches[0] if len(matches) == 1 else None
    return letter


def reference_letter(reference: str, options: dict[str, str]) -> str:
    ref = str(reference).strip()
    if len(ref) == 3 and ref[0] == "(" and ref[2] == ")" and ref[1] in options:  # CV-Bench writes "(A)"
        return ref[1]
    if ref in options:
        return ref
    matches = [k for k, text in options.items() if _bare(text) == _bare(ref)]
    if len(matches) == 1:
        return matches[0]
    raise DataError(f"multiple_choice: reference {ref!r} is neither an option letter ({', '.join(options)}) "
                    "nor exactly one option's text")


def _options_of(item: dict[str, Any] | None) -> dict[str, str]:
    if not item or item.get("options") is None:
        raise DataError("multiple_choice needs the item's options: a dataset column 'options' (list, dict or the "
                        "string form of a list), or map one with the suite's item_columns: {options: <column>}")
    return parse_options(item["options"])


@METRICS.register("multiple_choice", "option letter extracted from the answer (MMMU/lmms-eval parser) equals the "
                  "reference letter; needs the item's options")
class MultipleChoice(Metric):
    item_fields = ("options",)

    def score(self, prediction: str, references: list[str], item: dict[str, Any] | None = None) -> float:
        options = _options_of(item)
        letter = extract_choice(str(prediction), options)
        return float(letter is not None and letter in {reference_letter(r, options) for r in references})

    def corpus(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            return {}
        unparsed = sum(extract_choice(str(it["prediction"]), _options_of(it)) is None for it in items)
        return {"unparsed": unparsed / len(items)}
