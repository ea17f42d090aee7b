"""Nano-VQA's spatial scenes: every kind balanced in the test split, each kind's answer recomputed
from the scene annotation, and the `exact_match_or_box` scorer by hand (tests/test_data.py:
determinism, disjoint splits, the dataset's columns)."""

from __future__ import annotations

import pytest

from harness.data import _generated
from harness.data.nano_scenes import COUNT_WORDS, EMPTY_CELL, GRID, KINDS, PAIRS, RELATIONS, vocabulary
from harness.data.nano_vqa import GENERATOR

SIZES = {"train": 200, "validation": 40, "test": 160}


@pytest.fixture(scope="module")
def items() -> dict:
    return _generated.generate_items(GENERATOR, SIZES, seed=0)


def test_generation_is_deterministic_and_balanced(items):
    again = _generated.generate_items(GENERATOR, SIZES, seed=0)
    assert [(i.image_png, i.question, i.answer) for i in items["test"]] == \
        [(i.image_png, i.question, i.answer) for i in again["test"]]
    kinds = [i.kind for i in items["test"]]
    assert {k: kinds.count(k) for k in KINDS} == {k: 20 for k in KINDS}
    words = set(vocabulary())
    assert all(w in words for i in items["test"] for w in i.question.split())


def test_answers_follow_the_scene(items):
    for item in items["test"]:
        present = [(PAIRS[c // 2], c % 2 == 0) for c in item.cells if 0 <= c < EMPTY_CELL]
        if item.question == "how many objects are there ?":
            assert item.answer == COUNT_WORDS[len(present)]
        if item.kind == "depth":  # the answer is the colour of the near one of the two named objects
            named = [(pair, near) for pair, near in present if f"{pair[0]} {pair[1]}" in item.question]
            assert len(named) == 2 and [p[0] for p, near in named if near] == [item.answer]
        if item.kind == "digit":
            assert 10 <= int(item.answer) <= 99 and item.digit == int(item.answer)
        if item.kind == "grounding":
            x1, y1, x2, y2 = (float(v) for v in item.answer.strip("[]").split(","))
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and 0.1 <= x2 - x1 <= 0.25
            cell = next(i for i, c in enumerate(item.cells) if 0 <= c < EMPTY_CELL and
                        "{} {}".format(*PAIRS[c // 2]) in item.question)
            row, col = divmod(cell, GRID)
            assert col / GRID <= x1 and x2 <= (col + 1) / GRID + 1e-9 and row / GRID <= y1  # inside its cell
        if item.kind == "relation":  # the colour of the named object that is further left / right / up / down
            named = [(cell, PAIRS[c // 2]) for cell, c in enumerate(item.cells)
                     if 0 <= c < EMPTY_CELL and "{} {}".format(*PAIRS[c // 2]) in item.question]
            assert len(named) == 2
            (cell_a, (colour_a, _)), (cell_b, (colour_b, _)) = named
            (row_a, col_a), (row_b, col_b) = divmod(cell_a, GRID), divmod(cell_b, GRID)
            relation = next(r for r in RELATIONS if r in item.question)
            first = {"further left": col_a < col_b, "further right": col_a > col_b, "higher up": row_a < row_b,
                     "lower down": row_a > row_b}[relation]
            assert colour_a != colour_b and item.answer == (colour_a if first else colour_b)
    train = items["train"]
    relations = [i for i in train if i.kind == "relation"]
    assert relations and len(relations) % 2 == 0  # asked with the relation and its opposite: the answers swap
    assert relations[0].answer != relations[1].answer and relations[0].image_png == relations[1].image_png


@pytest.mark.parametrize(("prediction", "reference", "score"), [
    ("[0.10, 0.10, 0.30, 0.30]", "[0.10, 0.10, 0.30, 0.30]", 1.0),
    ("[0.1,0.1,0.3,0.3]", "[0.12, 0.12, 0.30, 0.30]", 1.0),  # fused tokens; IoU 0.81
    ("[0.20, 0.20, 0.40, 0.40]", "[0.10, 0.10, 0.30, 0.30]", 0.0),  # IoU 1/7
    ("red", "[0.10, 0.10, 0.30, 0.30]", 0.0),  # not a box: 0, never raised
    ("Red.", "red", 1.0), ("47", "47", 1.0), ("4 7", "47", 0.0), ("yes", "no", 0.0)])
def test_exact_match_or_box_by_hand(prediction, reference, score):
    from harness.metrics.answer_or_box import ExactMatchOrBox

    assert ExactMatchOrBox().score(prediction, [reference]) == score

