"""Regenerate nano_vqa.parquet: the first 40 items of nano-VQA test (8 per question kind), images
embedded, with the answer choices of each kind for the multiple-choice task.

    python suites/lm_eval_tasks/nano_vqa/make_data.py
"""

from __future__ import annotations

from pathlib import Path

from harness.data.nano_vqa import COLOURS, COUNT_WORDS, SHAPES, load_nano_vqa

CHOICES = {"colour": sorted(COLOURS), "spatial": sorted(COLOURS), "shape": sorted(SHAPES),
           "count": list(COUNT_WORDS), "digit": [str(d) for d in range(10)]}


def main() -> None:
    rows = load_nano_vqa("test").select(range(40)).remove_columns(["cells", "digit"])
    rows = rows.map(lambda r: {"choices": CHOICES[r["kind"]], "label": CHOICES[r["kind"]].index(r["answer"])})
    rows.to_parquet(str(Path(__file__).with_name("nano_vqa.parquet")))


if __name__ == "__main__":
    main()
