"""Nano-VQA: a deterministic visual question answering set the nano reference learns.

Scenes of coloured shapes on a 3x3 grid, and real handwritten digits from scikit-learn's bundled
digits set. Question kinds: colour, shape, count, spatial (of two objects sharing a row or a
column, the colour of the one on the left / right / top / bottom) and digit reading. Every
answer is one word, so exact match is a fair score and compression errors show up as wrong
words. Splits are generated from one seeded stream with a shared set of seen (image, question)
keys, so nothing repeats across splits; digit images come from disjoint index ranges per split.
"""

from __future__ import annotations

import random
from typing import Any

from harness.data import _generated
from harness.data._generated import COLUMNS, IGNORE, SPLITS, Generator, Item, digit_indices  # noqa: F401 - API

GENERATOR_VERSION = "6"
# 48 px = a 3x3 grid of 16 px cells, which is exactly the nano encoder's 3x3 visual tokens.
GRID = 3
IMAGE_SIZE = 16 * GRID
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (240, 220, 40),
    "cyan": (40, 220, 230),
    "magenta": (220, 50, 220),
}
SHAPES = ("circle", "square", "triangle")
COUNT_WORDS = ("zero", "one", "two", "three", "four")
KINDS = ("colour", "shape", "count", "spatial", "digit")
EMPTY_CELL = len(COLOURS) * len(SHAPES)  # 18: cell classes are 18 colour-shape pairs + empty
NO_CELLS = (IGNORE,) * GRID * GRID  # digit scenes have no cell annotation
DEFAULT_SIZES = {"train": 40000, "validation": 400, "test": 600}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("what color is the {shape} ?", "which color does the {shape} have ?"),
    "shape": ("what shape is the {colour} object ?", "which shape is {colour} ?"),
    "count": ("how many objects are there ?", "how many shapes are in the image ?"),
    "spatial": ("what color is the object on the {side} ?", "which color does the {side} object have ?"),
    "digit": ("what digit is written ?", "which number is shown ?"),
}
SIDES = ("left", "right", "top", "bottom")


def _cells(objects: list[tuple[str, str, int, int]]) -> tuple[int, ...]:
    """Scene annotation for dense auxiliary supervision of the encoder (one label per 16 px cell)."""
    labels = [EMPTY_CELL] * GRID * GRID
    for colour, shape, row, col in objects:
        labels[row * GRID + col] = list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape)
    return tuple(labels)


def _draw_shape(draw: Any, shape: str, box: tuple[int, int, int, int], fill: tuple) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _scene(rng: random.Random) -> tuple[Any, list[tuple[str, str, int, int]]]:
    """Draw 1-4 objects in distinct cells of a 3x3 grid; return the image and (colour, shape, row, col)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    n = rng.randint(1, 4)
    cells = rng.sample(range(GRID * GRID), n)
    pairs = rng.sample([(c, s) for c in COLOURS for s in SHAPES], n)
    objects = []
    cell = IMAGE_SIZE // GRID
    for (colour, shape), index in zip(pairs, cells):
        row, col = divmod(index, GRID)
        size = rng.randint(9, 13)
        x0 = col * cell + rng.randint(1, cell - size - 1)
        y0 = row * cell + rng.randint(1, cell - size - 1)
        _draw_shape(draw, shape, (x0, y0, x0 + size, y0 + size), COLOURS[colour])
        objects.append((colour, shape, row, col))
    return img, objects


def _digit_scene(rng: random.Random, images: Any, targets: Any, pool: list[int]) -> tuple[Any, str]:
    from PIL import Image

    idx = rng.choice(pool)
    pixels = (images[idx] * (255.0 / 16.0)).clip(0, 255).astype("uint8")
    size = rng.randint(24, 36)
    digit = Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR)
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0))
    colour = COLOURS[rng.choice(list(COLOURS))]
    tint = Image.new("RGB", (size, size), colour)
    x, y = rng.randint(0, IMAGE_SIZE - size), rng.randint(0, IMAGE_SIZE - size)
    img.paste(tint, (x, y), mask=digit)
    return img, str(int(targets[idx]))


def _sides(objects: list[tuple]) -> dict[str, tuple] | None:
    """For two objects sharing a row or a column: which one is on which side."""
    if len(objects) != 2:
        return None
    a, b = objects
    if a[2] == b[2]:
        left, right = (a, b) if a[3] < b[3] else (b, a)
        return {"left": left, "right": right}
    if a[3] == b[3]:
        top, bottom = (a, b) if a[2] < b[2] else (b, a)
        return {"top": top, "bottom": bottom}
    return None


def _ask(kind: str, rng: random.Random, objects: list[tuple]) -> tuple[str, str] | None:
    """One (question, answer) of `kind` about a shapes scene, or None if the scene cannot answer it."""
    template = rng.choice(TEMPLATES[kind])
    if kind == "count":
        return template, COUNT_WORDS[len(objects)]
    obj = rng.choice(objects)
    if kind == "colour":
        unique = sum(o[1] == obj[1] for o in objects) == 1
        return (template.format(shape=obj[1]), obj[0]) if unique else None
    if kind == "shape":
        unique = sum(o[0] == obj[0] for o in objects) == 1
        return (template.format(colour=obj[0]), obj[1]) if unique else None
    sides = _sides(objects)
    if not sides:
        return None
    side = rng.choice(list(sides))
    return template.format(side=side), sides[side][0]


def _make_item(kind: str, rng: random.Random, digit_data: tuple, pool: list[int]) -> Item | None:
    """One question of a given kind about a fresh scene (evaluation splits: kinds balanced)."""
    if kind == "digit":
        img, answer = _digit_scene(rng, *digit_data, pool)
        return Item(_generated.png(img), rng.choice(TEMPLATES["digit"]), answer, kind, NO_CELLS, int(answer))
    img, objects = _scene(rng)
    asked = _ask(kind, rng, objects)
    return Item(_generated.png(img), *asked, kind, _cells(objects)) if asked else None


def _make_scene_items(rng: random.Random, digit_data: tuple, pool: list[int]) -> list[Item]:
    """Several questions about one scene (train split): the encoder's work is shared by all."""
    if rng.random() < 1 / 3:
        img, answer = _digit_scene(rng, *digit_data, pool)
        png = _generated.png(img)
        return [Item(png, template, answer, "digit", NO_CELLS, int(answer))
                for template in TEMPLATES["digit"]]
    img, objects = _scene(rng)
    while rng.random() < 0.3 and not _sides(objects):  # more aligned pairs: spatial is the rarest kind
        img, objects = _scene(rng)
    png = _generated.png(img)
    items = []
    for kind in ("colour", "shape", "count"):
        for _ in range(3):  # a few tries to find an object the question can be about
            asked = _ask(kind, rng, objects)
            if asked:
                items.append(Item(png, *asked, kind, _cells(objects)))
                break
    # Both sides of an aligned pair: the contrast teaches which way "left" / "top" point.
    for side, obj in (_sides(objects) or {}).items():
        question = rng.choice(TEMPLATES["spatial"]).format(side=side)
        items.append(Item(png, question, obj[0], "spatial", _cells(objects)))
    return items


def vocabulary() -> list[str]:
    """Every word a question or answer can contain (the nano tokenizer's vocabulary)."""
    words: set[str] = set(COLOURS) | set(SHAPES) | set(COUNT_WORDS) | set(SIDES)
    words |= {str(d) for d in range(10)}
    for templates in TEMPLATES.values():
        for template in templates:
            for word in template.split():
                if not word.startswith("{"):
                    words.add(word)
    return sorted(words)




GENERATOR = Generator("nano-vqa", GENERATOR_VERSION, DEFAULT_SIZES, KINDS, _make_item, _make_scene_items)


def generate_items(sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, list[Item]]:
    return _generated.generate_items(GENERATOR, sizes, seed)


def build_dataset(sizes: dict[str, int] | None = None, seed: int = 0) -> Any:
    return _generated.build_dataset(GENERATOR, sizes, seed)


def load_nano_vqa(split: str, sizes: dict[str, int] | None = None, seed: int = 0) -> Any:
    """One split of nano-VQA, generated once and cached."""
    return _generated.load_generated(GENERATOR, split, sizes, seed)
