"""Regenerate nano_vqa.parquet: the first 42 items of nano-VQA test whose kind has a closed answer
set (6 per kind; grounding's boxes have none, so it is left out), images embedded, with each
kind's answer choices for the multiple-choice task.

    python suites/lm_eval_tasks/nano_vqa/make_data.py
"""

from __future__ import annotations

from pathlib import Path

from harness.data.nano_vqa import COLOURS, COUNT_WORDS, KINDS, SHAPES, load_nano_vqa

CHOICES = {"colour": sorted(COLOURS), "shape": sorted(SHAPES), "count": list(COUNT_WORDS),
           "region": list(COUNT_WORDS), "relation": sorted(COLOURS), "depth": sorted(COLOURS),
           "digit": [str(n) for n in range(10, 100)]}
PER_KIND = 6


def main() -> None:
    assert set(CHOICES) == set(KINDS) - {"grounding"}
    test = load_nano_vqa("test")
    picked, taken = [], dict.fromkeys(CHOICES, 0)
    for index, kind in enumerate(test["kind"]):
        if kind in taken and taken[kind] < PER_KIND:
            picked.append(index)
            taken[kind] += 1
    rows = test.select(picked).remove_columns(["cells", "digit"])
    rows = rows.map(lambda r: {"choices": CHOICES[r["kind"]], "label": CHOICES[r["kind"]].index(r["answer"])})
    rows.to_parquet(str(Path(__file__).with_name("nano_vqa.parquet")))


if __name__ == "__main__":
    main()
