"""Nano-spatial: a generated spatial VQA set — the scenes and kinds of `harness.data.nano_scenes`
(colour, shape, count by attribute, region counts, relations between any two objects, pseudo-depth,
grounding boxes, two-digit reading) on 64 px scenes of 1-6 objects — as a dataset any suite can
score (`suites/nano-spatial.yaml`). It is the data the next nano reference trains on; the current
nano (48 px, 9 visual tokens, trained on nano-VQA) was never trained on it, so its score here is a
floor, not a measure of compression."""

from __future__ import annotations

import random
from typing import Any

from harness.data import _generated
from harness.data._generated import COLUMNS, IGNORE, SPLITS, Generator, Item  # noqa: F401 - part of this module's API
from harness.data.nano_scenes import (
    GRID,
    KINDS,
    TEMPLATES,
    ask,
    ask_relation,
    cells,
    digit_scene,
    relation_pair,
    scene,
)

GENERATOR_VERSION = "1"
NO_CELLS = (IGNORE,) * GRID * GRID  # digit scenes have no cell annotation
DEFAULT_SIZES = {"train": 40000, "validation": 400, "test": 800}  # evaluation splits: 50 / 100 per kind
#: Questions asked per training scene (random applicable kinds; a relation comes with its contrast).
TRAIN_KINDS_PER_SCENE = 4
DIGIT_SCENES = 0.15  # share of training scenes that are two-digit numbers
#: Kinds asked more often in training: the ones that need two objects bound to two places.
TRAIN_WEIGHTS = {"colour": 1.0, "shape": 1.0, "count": 1.0, "region": 1.0, "relation": 2.0, "depth": 1.5,
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
    return Item(_generated.png(img), *asked, kind, cells(things)) if asked else None


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
        if kind == "relation":  # the pair asked both ways round: the contrast teaches the direction
            pair = relation_pair(rng, things)
            if pair:
                a, b, relation = pair
                items += [Item(png, *ask_relation(a, b, relation), kind, labels),
                          Item(png, *ask_relation(b, a, relation), kind, labels)]
            continue
        asked = ask(kind, rng, things)
        if asked:
            items.append(Item(png, *asked, kind, labels))
    return items


GENERATOR = Generator("nano-spatial", GENERATOR_VERSION, DEFAULT_SIZES, KINDS, _make_item, _make_scene_items)


def load_nano_spatial(split: str, sizes: dict[str, int] | None = None, seed: int = 0) -> Any:
    """One split of nano-spatial, generated once and cached."""
    return _generated.load_generated(GENERATOR, split, sizes, seed)
