"""Nano-VQA: the generated VQA set the nano reference is trained and scored on — the scenes and
kinds of `harness.data.nano_scenes` (colour, shape, count by attribute, region counts, relations
between any two objects, pseudo-depth, grounding boxes, two-digit reading) on 64 px scenes of 1-6
objects, as a dataset any suite can score (`suites/nano-vqa.yaml`). The splits share their
drawing and caching with nothing else; `harness.data._generated` holds that machinery."""

from __future__ import annotations

import random
from typing import Any

from harness.data import _generated
from harness.data._generated import COLUMNS, IGNORE, SPLITS, Generator, Item, digit_indices  # noqa: F401 - API
from harness.data.nano_scenes import (  # noqa: F401 - COLOURS ... vocabulary are part of this module's API
    COLOURS,
    COUNT_WORDS,
    EMPTY_CELL,
    FIRST_RELATIONS,
    GRID,
    IMAGE_SIZE,
    KINDS,
    OPPOSITE,
    SHAPES,
    TEMPLATES,
    Asked,
    ask,
    ask_relation,
    cells,
    digit_scene,
    relation_in,
    relation_pair,
    scene,
    vocabulary,
)

GENERATOR_VERSION = "8"  # 1-6: the 48 px, 5-kind set of nano v1/v2
NO_CELLS = (IGNORE,) * GRID * GRID  # digit scenes have no cell annotation
DEFAULT_SIZES = {"train": 40000, "validation": 400, "test": 800}  # evaluation splits: 50 / 100 per kind
#: Questions asked per training scene (random applicable kinds; a relation comes with its opposite).
TRAIN_KINDS_PER_SCENE = 4
DIGIT_SCENES = 0.15  # share of training scenes that are two-digit numbers
#: Kinds asked more often in training: the ones the model learns last (counting, boxes).
TRAIN_WEIGHTS = {"colour": 1.0, "shape": 1.0, "count": 1.5, "region": 1.5, "relation": 1.0, "depth": 1.0,
                 "grounding": 2.0}


def _digit_items(rng: random.Random, digit_data: tuple, pool: list[int], templates: int) -> list[Item]:
    img, value = digit_scene(rng, *digit_data, pool)
    png = _generated.png(img)
    return [Item(png, template, str(value), "digit", NO_CELLS, value)
            for template in rng.sample(TEMPLATES["digit"], templates)]


def _make_item(kind: str, rng: random.Random, digit_data: tuple, pool: list[int]) -> Item | None:
    """One question of a given kind about a fresh scene (evaluation splits: kinds balanced)."""
    if kind == "digit":
        return _digit_items(rng, digit_data, pool, 1)[0]
    img, things = scene(rng)
    asked = ask(kind, rng, things)
    return _item(_generated.png(img), asked, kind, cells(things)) if asked else None


def _item(png: bytes, asked: Asked, kind: str, labels: tuple[int, ...]) -> Item:
    return Item(png, asked.question, asked.answer, kind, labels)


def _make_scene_items(rng: random.Random, digit_data: tuple, pool: list[int]) -> list[Item]:
    """Several questions about one scene (train split): the encoder's work is shared by all."""
    if rng.random() < DIGIT_SCENES:
        return _digit_items(rng, digit_data, pool, 2)
    img, things = scene(rng)
    png, labels = _generated.png(img), cells(things)
    kinds = list(TRAIN_WEIGHTS)
    chosen: set[str] = set()
    while len(chosen) < TRAIN_KINDS_PER_SCENE:
        chosen.add(rng.choices(kinds, weights=[TRAIN_WEIGHTS[k] for k in kinds])[0])
    items = []
    for kind in sorted(chosen):
        if kind == "relation":  # the pair asked with the relation and its opposite: the answers swap
            pair = relation_pair(rng, things)
            if pair:
                a, b, relation = pair
                items += [_item(png, ask_relation(a, b, relation), kind, labels),
                          _item(png, ask_relation(a, b, OPPOSITE[relation]), kind, labels)]
            continue
        asked = ask(kind, rng, things)
        if asked:
            items.append(_item(png, asked, kind, labels))
    return items


GENERATOR = Generator("nano-vqa", GENERATOR_VERSION, DEFAULT_SIZES, KINDS, _make_item, _make_scene_items)


def generate_items(sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, list[Item]]:
    return _generated.generate_items(GENERATOR, sizes, seed)


def build_dataset(sizes: dict[str, int] | None = None, seed: int = 0) -> Any:
    return _generated.build_dataset(GENERATOR, sizes, seed)


def load_nano_vqa(split: str, sizes: dict[str, int] | None = None, seed: int = 0) -> Any:
    """One split of nano-VQA, generated once and cached."""
    return _generated.load_generated(GENERATOR, split, sizes, seed)
