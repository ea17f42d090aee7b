"""Nano-VQA scenes and the questions asked about them (harness.data.nano_vqa builds the splits).

A 64 px scene is a 4 x 4 grid of 16 px cells (one cell = one visual token of the nano encoder)
with 1-6 objects in distinct cells, each a unique colour-shape pair. An object is *near* (drawn
11-14 px) or *far* (7-9 px): pseudo-depth is size, as in a photo. Or a scene is a two-digit
number: two real handwritten digits from scikit-learn's bundled set, one in each half.

Question kinds and their answers (one word, a two-digit number, or a box):
- colour / shape: of the object with a unique shape / colour;
- count: all objects, or by colour, or by shape ("how many circles ...");
- region: objects in the left / right / top / bottom half;
- relation: which of two objects (any two, not only neighbours; different colours) is further
  left / further right / higher up / lower down → its colour;
- depth: which of two objects (one near, one far) is closer to the camera → its colour;
- grounding: where is an object → its box ``[x1, y1, x2, y2]``, normalised 0-1, two decimals
  (scored by IoU >= 0.5, the RefCOCO convention);
- digit: the two-digit number written.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

GRID = 4
CELL = 16
IMAGE_SIZE = CELL * GRID
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 240),
    "yellow": (240, 220, 40), "cyan": (40, 220, 230), "magenta": (220, 50, 220),
}
SHAPES = ("circle", "square", "triangle")
PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
MAX_OBJECTS = 6
NEAR_PX, FAR_PX = (11, 14), (7, 9)
HALVES = ("left", "right", "top", "bottom")
RELATIONS = ("further left", "further right", "higher up", "lower down")
OPPOSITE = {"further left": "further right", "further right": "further left", "higher up": "lower down",
            "lower down": "higher up"}
#: One direction per axis: what nano's relation curriculum teaches before the opposites.
FIRST_RELATIONS = ("further left", "higher up")
KINDS = ("colour", "shape", "count", "region", "relation", "depth", "grounding", "digit")
PAIRS = [(c, s) for c in COLOURS for s in SHAPES]
EMPTY_CELL = 2 * len(PAIRS)  # 36: a cell is empty, or a colour-shape pair at one of two depths

TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("what color is the {shape} ?", "which color does the {shape} have ?"),
    "shape": ("what shape is the {colour} object ?", "which shape is {colour} ?"),
    "count": ("how many objects are there ?", "how many {colour} objects are there ?", "how many {plural} are there ?"),
    "region": ("how many objects are in the {half} half ?",),
    "relation": ("which is {relation} , the {a} or the {b} ?",),
    "depth": ("which is closer to the camera , the {a} or the {b} ?",),
    "grounding": ("where is the {a} ?",),
    "digit": ("what number is written ?", "which number is shown ?"),
}


@dataclass(frozen=True)
class Thing:
    colour: str
    shape: str
    row: int
    col: int
    near: bool
    box: tuple[int, int, int, int]  # pixels, x0 y0 x1 y1 (inclusive drawing box)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def label(self) -> int:
        """The cell class the encoder's auxiliary head learns: pair and depth."""
        return PAIRS.index((self.colour, self.shape)) * 2 + (0 if self.near else 1)


@dataclass(frozen=True)
class Asked:
    """A question about a scene, its answer, and the objects it names, in the order named."""

    question: str
    answer: str
    named: tuple[Thing, ...] = ()


def _draw(draw: Any, thing: Thing) -> None:
    x0, y0, x1, y1 = thing.box
    fill = COLOURS[thing.colour]
    if thing.shape == "circle":
        draw.ellipse(thing.box, fill=fill)
    elif thing.shape == "square":
        draw.rectangle(thing.box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def scene(rng: random.Random, n: int | None = None) -> tuple[Any, list[Thing]]:
    """1-6 objects in distinct cells, unique colour-shape pairs, near or far; far ones drawn first."""
    from PIL import Image, ImageDraw

    n = n or rng.randint(1, MAX_OBJECTS)
    things = []
    for index, (colour, shape) in zip(rng.sample(range(GRID * GRID), n), rng.sample(PAIRS, n), strict=True):
        row, col = divmod(index, GRID)
        near = rng.random() < 0.5
        size = rng.randint(*(NEAR_PX if near else FAR_PX))
        x0 = col * CELL + rng.randint(1, CELL - size - 1)
        y0 = row * CELL + rng.randint(1, CELL - size - 1)
        things.append(Thing(colour, shape, row, col, near, (x0, y0, x0 + size, y0 + size)))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for thing in sorted(things, key=lambda t: t.near):
        _draw(draw, thing)
    return image, things


def cells(things: list[Thing]) -> tuple[int, ...]:
    """Per grid cell: the object's class, or EMPTY_CELL (dense supervision of the encoder)."""
    labels = [EMPTY_CELL] * GRID * GRID
    for thing in things:
        labels[thing.row * GRID + thing.col] = thing.label()
    return tuple(labels)


def digit_scene(rng: random.Random, images: Any, targets: Any, pool: list[int]) -> tuple[Any, int]:
    """Two handwritten digits, one per half, each tinted: the number they spell (10-99)."""
    from PIL import Image

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0))
    tens = rng.choice([i for i in pool if int(targets[i]) != 0] or pool)
    value = 0
    for half, index in enumerate((tens, rng.choice(pool))):
        pixels = (images[index] * (255.0 / 16.0)).clip(0, 255).astype("uint8")
        size = rng.randint(22, 30)
        glyph = Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR)
        tint = Image.new("RGB", (size, size), COLOURS[rng.choice(list(COLOURS))])
        x = half * IMAGE_SIZE // 2 + rng.randint(0, IMAGE_SIZE // 2 - size)
        image.paste(tint, (x, rng.randint(0, IMAGE_SIZE - size)), mask=glyph)
        value = value * 10 + int(targets[index])
    return image, value


def box_text(thing: Thing) -> str:
    """The object's box, normalised to the image, two decimals (the grounding answer)."""
    x0, y0, x1, y1 = thing.box
    return "[" + ", ".join(f"{v / IMAGE_SIZE:.2f}" for v in (x0, y0, x1 + 1, y1 + 1)) + "]"


def _in_half(thing: Thing, half: str) -> bool:
    return {"left": thing.col < GRID // 2, "right": thing.col >= GRID // 2,
            "top": thing.row < GRID // 2, "bottom": thing.row >= GRID // 2}[half]


def _holds(a: Thing, relation: str, b: Thing) -> bool:
    truth = {"further left": a.col < b.col, "further right": a.col > b.col, "higher up": a.row < b.row,
             "lower down": a.row > b.row}
    return truth[relation]


def _count(rng: random.Random, things: list[Thing]) -> tuple[str, str]:
    template = rng.choice(TEMPLATES["count"])
    colour, shape = rng.choice(things).colour, rng.choice(SHAPES)
    if "{colour}" in template:
        return template.format(colour=colour), COUNT_WORDS[sum(t.colour == colour for t in things)]
    if "{plural}" in template:
        return template.format(plural=PLURAL[shape]), COUNT_WORDS[sum(t.shape == shape for t in things)]
    return template, COUNT_WORDS[len(things)]


def relation_pair(rng: random.Random, things: list[Thing]) -> tuple[Thing, Thing, str] | None:
    """Two objects of different colours and a relation that tells them apart (different columns for
    left / right, rows for higher / lower)."""
    pairs = [(a, b) for a in things for b in things if a.colour < b.colour]
    if not pairs:
        return None
    a, b = rng.sample(rng.choice(pairs), 2)
    relations = [r for r in RELATIONS if (a.col != b.col if r in ("further left", "further right") else a.row != b.row)]
    return (a, b, rng.choice(relations)) if relations else None


def relation_in(question: str) -> str | None:
    """The relation a relation question asks, or None for any other question."""
    return next((r for r in RELATIONS if f"which is {r} ," in question), None)


def ask_relation(a: Thing, b: Thing, relation: str) -> Asked:
    """Which of a and b is `relation` → its colour (the two colours differ)."""
    winner = a if _holds(a, relation, b) else b
    return Asked(TEMPLATES["relation"][0].format(a=a.name, relation=relation, b=b.name), winner.colour, (a, b))


def ask(kind: str, rng: random.Random, things: list[Thing]) -> Asked | None:
    """One question of `kind` about a shapes scene, or None if the scene cannot answer it."""
    thing = rng.choice(things)
    if kind == "colour":
        unique = sum(t.shape == thing.shape for t in things) == 1
        return Asked(rng.choice(TEMPLATES[kind]).format(shape=thing.shape), thing.colour, (thing,)) if unique else None
    if kind == "shape":
        unique = sum(t.colour == thing.colour for t in things) == 1
        return Asked(rng.choice(TEMPLATES[kind]).format(colour=thing.colour), thing.shape, (thing,)) if unique else None
    if kind == "count":
        return Asked(*_count(rng, things))
    if kind == "region":
        half = rng.choice(HALVES)
        return Asked(TEMPLATES[kind][0].format(half=half), COUNT_WORDS[sum(_in_half(t, half) for t in things)])
    if kind == "relation":
        pair = relation_pair(rng, things)
        return ask_relation(*pair) if pair else None
    if kind == "depth":
        return _ask_depth(rng, things)
    if kind == "grounding":
        return Asked(TEMPLATES[kind][0].format(a=thing.name), box_text(thing), (thing,))
    raise ValueError(f"unknown shapes-scene kind {kind!r}")


def _ask_depth(rng: random.Random, things: list[Thing]) -> Asked | None:
    near = [t for t in things if t.near]
    far = [t for t in things if not t.near and all(t.colour != n.colour for n in near)]
    if not near or not far:
        return None
    pair = [rng.choice(near), rng.choice(far)]
    closer = pair[0]
    rng.shuffle(pair)
    return Asked(TEMPLATES["depth"][0].format(a=pair[0].name, b=pair[1].name), closer.colour, tuple(pair))


def vocabulary() -> list[str]:
    """Every token a question or answer can contain (the nano tokenizer's vocabulary)."""
    words: set[str] = set(COLOURS) | set(SHAPES) | set(PLURAL.values()) | set(COUNT_WORDS) | set(HALVES)
    words |= {"yes", "no", "[", "]", ","} | {str(d) for d in range(10)} | {f"{v / 100:.2f}" for v in range(101)}
    for relation in RELATIONS:
        words |= set(relation.split())
    for templates in TEMPLATES.values():
        for template in templates:
            words |= {w for w in template.split() if not w.startswith("{")}
    return sorted(words)
