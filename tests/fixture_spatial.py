"""Tiny fixture copies of the spatial benchmarks, in each dataset's real schema and hub file layout.

- RefCOCO / RefCOCO+ / RefCOCOg (lmms-lab): parquet `<split>-00000-of-00001.parquet`, columns
  question_id, image, question, answer (list of referring expressions), segmentation, bbox (COCO
  [x, y, w, h] pixels), iscrowd, file_name — the hub cards' dataset_info;
- VSR (cambridgeltl/vsr_random): `test.jsonl` as the hub holds it, images (COCO file names) under
  `<data dir>/vsr/images/`;
- What'sUp (joaomonteirof/whatsup_all_perturbed): `data/<split>-*.parquet`, image_options,
  caption_options (right caption first), perturbed_caption_options;
- CV-Bench (nyu-visionx/CV-Bench): idx, type, task, image, question, choices, answer "(A)", prompt,
  filename, source, source_dataset, source_filename, target_class, target_size, bbox;
- SpatialLM layouts: `manycore-research/SpatialLM-Testset/layout/<scene>.txt` references and
  `spatiallm-predictions/<scene>.txt` predictions.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from .fixture_datasets import _image, _img, _seq, _v, image_bytes, write

REFCOCO = {"lmms-lab/RefCOCO": "val", "lmms-lab/RefCOCOplus": "val", "lmms-lab/RefCOCOg": "val"}
WIDTH, HEIGHT = 64, 48  # not square: the box reference must be normalised per axis
# (x, y, w, h) in pixels: a small, a medium and a large box by COCO's area classes
BOXES = [(4.0, 6.0, 20.0, 30.0), (10.0, 8.0, 40.0, 30.0), (0.0, 0.0, 64.0, 48.0)]


def box_image(box: tuple[float, float, float, float]) -> dict[str, Any]:
    """A 64x48 PNG with a filled rectangle where the box is."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 0))
    x, y, w, h = box
    ImageDraw.Draw(img).rectangle((x, y, x + w - 1, y + h - 1), fill=(230, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": f"COCO_train2014_{int(x)}_{int(y)}.png"}


def refcoco_rows(n: int = 3, bbox: bool = True) -> tuple[dict[str, list], dict[str, Any]]:
    boxes = [BOXES[i % len(BOXES)] for i in range(n)]
    rows: dict[str, list] = {
        "question_id": [str(1000 + i) for i in range(n)], "image": [box_image(b) for b in boxes],
        "question": ["Please carefully observe the area circled in the image and come up with a caption for the area."]
        * n,
        "answer": [["the red box", "red square"] if i % 2 == 0 else ["the shape"] for i in range(n)],
        "segmentation": [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3]] for b in boxes],
        "bbox": [list(b) for b in boxes], "iscrowd": [0] * n,
        "file_name": [f"COCO_train2014_{i:012d}_{1000 + i}.jpg" for i in range(n)],
    }
    features = {"question_id": _v(), "image": _image(), "question": _v(), "answer": _seq(_v()),
                "segmentation": _seq(_v("float32")), "bbox": _seq(_v("float32")), "iscrowd": _v("int8"),
                "file_name": _v()}
    if not bbox:
        rows.pop("bbox")
        features.pop("bbox")
    return rows, features


def refcoco(root: Path, n: int = 3) -> None:
    for hub_id, split in REFCOCO.items():
        rows, features = refcoco_rows(n)
        # the hub layout data/val-*.parquet keeps the split's name ("val"; a top-level val-* file is
        # read by `datasets` as split "validation")
        write(root, hub_id, split, rows, features, config="data")


def vsr(root: Path, n: int = 4) -> None:
    images = root / "vsr" / "images"
    images.mkdir(parents=True, exist_ok=True)
    relations = ["left of", "on top of"]
    folder = root / "cambridgeltl" / "vsr_random"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name = f"{50403 + i:012d}.jpg"
        (images / name).write_bytes(image_bytes(i, "JPEG"))
        lines.append({"image": name, "image_link": f"http://images.cocodataset.org/train2017/{name}",
                      "caption": f"The square is {relations[i % 2]} the circle.", "label": i % 2,
                      "relation": relations[i % 2], "annotator_id": 31, "vote_true_validator_id": [2, 6],
                      "vote_false_validator_id": []})
    (folder / "test.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def whatsup(root: Path, n: int = 4) -> None:
    preps = ["on", "under", "to the left of", "to the right of"]
    rows: dict[str, list] = {"image_options": [], "caption_options": [], "perturbed_caption_options": []}
    for i in range(n):
        right = preps[i % 4]
        rows["image_options"].append(_img(i))
        rows["caption_options"].append([f"A mug {right} a table"] + [f"A mug {p} a table" for p in preps if p != right])
        rows["perturbed_caption_options"].append([f"A table {p} a mug" for p in preps])
    features = {"image_options": _image(), "caption_options": _seq(_v()), "perturbed_caption_options": _seq(_v())}
    # the hub layout: data/<split>-00000-of-00001.parquet (split names that are not train/test)
    for split in ("Controlled_Images_A", "Controlled_Images_B"):
        write(root, "joaomonteirof/whatsup_all_perturbed", split, rows, features, config="data")


def cv_bench(root: Path) -> None:
    tasks = [("2D", "Count", ["0", "1", "2", "3"], "ADE20K"), ("2D", "Relation", ["left", "right"], "COCO"),
             ("3D", "Depth", ["lamp", "chair"], "Omni3D"), ("3D", "Distance", ["lamp", "chair"], "Omni3D")]
    rows: dict[str, list] = {k: [] for k in ("idx", "type", "task", "image", "question", "choices", "answer",
                                              "prompt", "filename", "source", "source_dataset", "source_filename",
                                              "target_class", "target_size", "bbox")}
    for i, (kind, task, choices, source) in enumerate(tasks):
        question = f"Which option is right for the {task.lower()} question?"
        options = "\n".join(f"({chr(65 + k)}) {c}" for k, c in enumerate(choices))
        for key, value in {"idx": i, "type": kind, "task": task, "image": _img(i), "question": question,
                           "choices": choices, "answer": f"({'AB'[i % 2]})",
                           "prompt": f"{question}\n{options}\nAnswer with the option's letter from the given "
                                     "choices directly.",
                           "filename": f"img/{kind}/{task.lower()}/{i}.png", "source": source,
                           "source_dataset": source, "source_filename": f"{i}.jpg", "target_class": "lamp",
                           "target_size": 100, "bbox": [[1.0, 2.0, 10.0, 12.0]]}.items():
            rows[key].append(value)
    write(root, "nyu-visionx/CV-Bench", "test", rows, {
        "idx": _v("int32"), "type": _v(), "task": _v(), "image": _image(), "question": _v(), "choices": _seq(_v()),
        "answer": _v(), "prompt": _v(), "filename": _v(), "source": _v(), "source_dataset": _v(),
        "source_filename": _v(), "target_class": _v(), "target_size": _v("int32"),
        "bbox": _seq(_seq(_v("float32")))})


WALLS = "wall_0=Wall(0,0,0,4,0,0,2.5,0)\nwall_1=Wall(4,0,0,4,3,0,2.5,0)\n"
# scene a: walls, a door on wall_0 and a chair, predicted exactly; scene b: the table predicted 0.5 m off
# (IoU 0.4 / 1.2 = 1/3: matched at 0.25, not at 0.5), a malformed line, and a sofa the reference lacks
LAYOUTS = {
    "scene0000_00": (WALLS + "door_0=Door(wall_0,1,0,1,0.9,2)\nbbox_0=Bbox(chair,1,1,0.5,0,0.6,0.6,1)\n",
                     WALLS + "door_0=Door(wall_0,1,0,1,0.9,2)\nbbox_0=Bbox(chair,1,1,0.5,0,0.6,0.6,1)\n"),
    "scene0001_00": (WALLS + "bbox_0=Bbox(table,2.5,1,0.4,0,1,1,0.8)\nbbox_1=Bbox(sofa,3,2,0.4,0,2,1,0.8)\n"
                     "not a layout line\n",
                     WALLS + "bbox_0=Bbox(table,2,1,0.4,0,1,1,0.8)\n"),
}


def layouts(root: Path, missing: bool = True) -> None:
    """References for 2 scenes (3 with `missing`: one without a prediction) and their predictions."""
    refs = root / "manycore-research" / "SpatialLM-Testset" / "layout"
    preds = root / "spatiallm-predictions"
    refs.mkdir(parents=True, exist_ok=True)
    preds.mkdir(parents=True, exist_ok=True)
    for scene, (pred, ref) in LAYOUTS.items():
        (refs / f"{scene}.txt").write_text(ref)
        (preds / f"{scene}.txt").write_text(pred)
    if missing:
        (refs / "scene0002_00.txt").write_text(WALLS)
    (preds / "scene9999_00.txt").write_text(WALLS)  # a prediction without a reference


def write_all(root: Path) -> Path:
    for writer in (refcoco, vsr, whatsup, cv_bench, layouts):
        writer(root)
    return root
