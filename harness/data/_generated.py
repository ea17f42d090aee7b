"""What a generated dataset (nano-VQA) is made of: splits drawn from one seeded stream
with a shared set of seen (image, question) keys — nothing repeats across splits —, evaluation
splits with the kinds balanced, the training split with several questions per scene, the splits
as a `datasets.DatasetDict`, and a cache keyed by generator version, sizes and seed."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "validation", "test")
COLUMNS = ("id", "image", "question", "answer", "kind", "cells", "digit")
IGNORE = -100


@dataclass(frozen=True)
class Item:
    image_png: bytes
    question: str
    answer: str
    kind: str
    cells: tuple[int, ...] = ()  # per grid cell: the object's class, the empty class, or IGNORE (digit scenes)
    digit: int = IGNORE


@dataclass(frozen=True)
class Generator:
    """One generated dataset: its name and version, split sizes, kinds, and how it draws items."""

    name: str
    version: str
    sizes: dict[str, int]
    kinds: tuple[str, ...]
    #: (kind, rng, digit data, digit pool) → one item of that kind, or None if the scene cannot ask it.
    make_item: Callable[..., Item | None]
    #: (rng, digit data, digit pool) → several items about one scene (the training split).
    make_scene_items: Callable[..., list[Item]]


def digits() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def digit_indices(split: str, n_total: int) -> list[int]:
    """Disjoint digit image pools: 3/5 train, 1/5 validation, 1/5 test."""
    buckets = {"train": (0, 1, 2), "validation": (3,), "test": (4,)}[split]
    return [i for i in range(n_total) if i % 5 in buckets]


def png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def generate_items(gen: Generator, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, list[Item]]:
    """Every split from one seeded stream; (image, question) keys never repeat."""
    sizes = {**gen.sizes, **(sizes or {})}
    digit_data = digits()
    seen: set[str] = set()
    out: dict[str, list[Item]] = {}
    # Evaluation splits first, so their items are fixed whatever the train size.
    for split in ("test", "validation", "train"):
        rng = random.Random(f"{gen.name}:{seed}:{split}")
        pool = digit_indices(split, len(digit_data[1]))
        items: list[Item] = []
        while len(items) < sizes[split]:
            if split == "train":
                batch = gen.make_scene_items(rng, digit_data, pool)
            else:
                item = gen.make_item(gen.kinds[len(items) % len(gen.kinds)], rng, digit_data, pool)
                batch = [item] if item else []
            for item in batch[: sizes[split] - len(items)]:
                key = hashlib.sha1(item.image_png + item.question.encode()).hexdigest()
                if key not in seen:
                    seen.add(key)
                    items.append(item)
        out[split] = items
    return out


def build_dataset(gen: Generator, sizes: dict[str, int] | None = None, seed: int = 0) -> Any:
    """The splits as a `datasets.DatasetDict` with the columns of COLUMNS."""
    import datasets

    features = datasets.Features({
        "id": datasets.Value("string"), "image": datasets.Image(), "question": datasets.Value("string"),
        "answer": datasets.Value("string"), "kind": datasets.Value("string"),
        "cells": datasets.Sequence(datasets.Value("int32")), "digit": datasets.Value("int32")})
    splits = {}
    for split, items in generate_items(gen, sizes, seed).items():
        rows = {"id": [f"{split}-{i:05d}" for i in range(len(items))],
                "image": [{"bytes": it.image_png, "path": None} for it in items],
                "question": [it.question for it in items], "answer": [it.answer for it in items],
                "kind": [it.kind for it in items], "cells": [list(it.cells) for it in items],
                "digit": [it.digit for it in items]}
        splits[split] = datasets.Dataset.from_dict(rows, features=features)
    return datasets.DatasetDict({s: splits[s] for s in SPLITS})


def load_generated(gen: Generator, split: str, sizes: dict[str, int] | None = None, seed: int = 0) -> Any:
    """One split, generated once and cached (keyed by generator version, sizes and seed)."""
    import datasets

    from harness.paths import cache_dir

    sizes = {**gen.sizes, **(sizes or {})}
    key = hashlib.sha1(f"{gen.version}:{sorted(sizes.items())}:{seed}".encode()).hexdigest()
    path = cache_dir() / "data" / f"{gen.name}-{key[:12]}"
    if not (path / "dataset_dict.json").exists():
        tmp = path.with_name(path.name + f".tmp{random.getrandbits(32)}")
        build_dataset(gen, sizes, seed).save_to_disk(str(tmp))
        try:
            tmp.rename(path)
        except OSError:  # another process won the race; its copy is identical
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(path))[split]
