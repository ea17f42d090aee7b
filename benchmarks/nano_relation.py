"""Benchmark: how well the shipped nano answers relation questions, on many fresh scenes, split by
relation, the two objects' distance, object count and which named object wins. Writes
benchmarks/results/nano_relation.json.

The test split holds 100 relation items (95 % CI about +-0.1), too few to tell a weakly learned
kind from chance; this draws 1,200 fresh ones from the same generator (a seed the splits do not
use) and scores them the way the suite does (greedy answer, exact match).

    python benchmarks/nano_relation.py
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def fresh_relation_items(count: int, seed: int) -> list[tuple[Any, Any, Any, str]]:
    """(image, asked, (a, b), relation) for `count` fresh relation questions."""
    from harness.data import nano_scenes

    rng = random.Random(seed)
    items = []
    while len(items) < count:
        image, things = nano_scenes.scene(rng)
        pair = nano_scenes.relation_pair(rng, things)
        if pair:
            a, b, relation = pair
            items.append((image.convert("RGB"), nano_scenes.ask_relation(a, b, relation), (a, b, len(things)),
                          relation))
    return items


def groups_of(asked: Any, objects: tuple[Any, Any, int], relation: str) -> list[str]:
    a, b, count = objects
    horizontal = relation in ("further left", "further right")
    distance = abs(a.col - b.col) if horizontal else abs(a.row - b.row)
    return ["all", relation, f"distance {distance}", f"{count} objects",
            "first named wins" if asked.answer == a.colour else "second named wins"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "nano_relation.json")
    args = parser.parse_args()
    import torch

    from harness.models.loading import load_model
    from harness.models.nano import fingerprint
    from harness.results.stats import proportion_ci

    torch.set_num_threads(2)
    began = time.perf_counter()
    loaded = load_model("nano")
    items = fresh_relation_items(args.items, args.seed)
    scores: dict[str, list[bool]] = defaultdict(list)
    named = first = 0
    for begin in range(0, len(items), 100):
        chunk = items[begin:begin + 100]
        texts = loaded.generate([i[0] for i in chunk], [i[1].question for i in chunk], max_new_tokens=4).texts
        for (_, asked, objects, relation), text in zip(chunk, texts, strict=True):
            answer = text.strip()
            named += answer in (objects[0].colour, objects[1].colour)
            first += answer == objects[0].colour
            for group in groups_of(asked, objects, relation):
                scores[group].append(answer == asked.answer)
    result = {"nano_fingerprint": fingerprint(), "items": len(items), "seed": args.seed,
              "accuracy": {g: {"exact_match": sum(v) / len(v), "ci95": list(proportion_ci(sum(v), len(v))), "n": len(v)}
                           for g, v in sorted(scores.items())},
              "answered_a_named_colour": named / len(items), "answered_the_first_named": first / len(items),
              "chance": 0.5, "seconds": round(time.perf_counter() - began, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
