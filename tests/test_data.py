"""Nano-VQA: deterministic, disjoint splits, every kind present, questions and answers in the
nano tokenizer's vocabulary, the dataset's columns."""

from __future__ import annotations

import hashlib

from harness.data.nano_vqa import COLUMNS, IMAGE_SIZE, KINDS, digit_indices, generate_items, vocabulary
from harness.models.nano import build_processor

SIZES = {"train": 300, "validation": 60, "test": 80}


def test_generation_is_deterministic():
    first = generate_items(SIZES, seed=0)
    second = generate_items(SIZES, seed=0)
    for split in first:
        assert [(i.image_png, i.question, i.answer) for i in first[split]] == \
               [(i.image_png, i.question, i.answer) for i in second[split]]


def test_seed_changes_items():
    assert generate_items(SIZES, seed=0)["test"][0].image_png != generate_items(SIZES, seed=1)["test"][0].image_png


def test_splits_do_not_overlap():
    items = generate_items(SIZES, seed=0)
    keys = {split: {hashlib.sha1(i.image_png + i.question.encode()).hexdigest() for i in rows}
            for split, rows in items.items()}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    pools = {s: set(digit_indices(s, 1797)) for s in ("train", "validation", "test")}
    assert not pools["train"] & pools["test"] and not pools["validation"] & pools["test"]


def test_every_kind_and_answer_is_known():
    items = generate_items(SIZES, seed=0)["test"]
    assert {i.kind for i in items} == set(KINDS)
    words = set(vocabulary())
    tokenizer = build_processor().tokenizer
    for item in items:
        assert all(w in words for w in item.question.split())
        assert tokenizer.unk_token_id not in tokenizer(item.answer, add_special_tokens=False)["input_ids"]


def test_dataset_has_image_column(test_items):
    assert tuple(test_items.column_names) == COLUMNS
    assert test_items[0]["image"].size == (IMAGE_SIZE, IMAGE_SIZE) == (64, 64)
    assert len(set(test_items["id"])) == len(test_items)
