"""Tiny fixture copies of every shipped benchmark, in each dataset's real schema.

Written the way the hub stores them: parquet files named `<split>-00000-of-00001.parquet` under
`<data dir>/<hub id>/[<config>/]`, images as real encoded PNG/JPEG bytes in the `datasets` Image
feature (COCO Karpathy: JPEG files under `<data dir>/coco/val2014/`, as yerevann/coco-karpathy
holds paths, not pixels). The column names and types follow the lmms-lab / MMMU / yerevann
datasets the suites read, so a suite that runs here runs on the real data.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

MMMU_SUBJECTS = ["Accounting", "Agriculture", "Architecture_and_Engineering", "Art", "Art_Theory",
                 "Basic_Medical_Science", "Biology", "Chemistry", "Clinical_Medicine", "Computer_Science", "Design",
                 "Diagnostics_and_Laboratory_Medicine", "Economics", "Electronics", "Energy_and_Power", "Finance",
                 "Geography", "History", "Literature", "Manage", "Marketing", "Materials", "Math",
                 "Mechanical_Engineering", "Music", "Pharmacy", "Physics", "Psychology", "Public_Health", "Sociology"]
COLOURS = ["red", "green", "blue", "yellow"]


def image_bytes(seed: int, fmt: str = "PNG", size: int = 40) -> bytes:
    """A small real image: a coloured square on black (decodes with PIL like any photo)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), (0, 0, 0))
    colour = [(230, 40, 40), (40, 200, 60), (50, 80, 240), (240, 220, 40)][seed % 4]
    x, y = rng.randint(0, size // 2), rng.randint(0, size // 2)
    ImageDraw.Draw(img).rectangle((x, y, x + size // 3, y + size // 3), fill=colour)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _img(seed: int, fmt: str = "PNG") -> dict[str, Any]:
    return {"bytes": image_bytes(seed, fmt), "path": f"{seed}.{fmt.lower()}"}


def write(root: Path, hub_id: str, split: str, rows: dict[str, list], features: dict[str, Any],
          config: str | None = None) -> Path:
    import datasets

    folder = root / hub_id / (config or "")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}-00000-of-00001.parquet"
    datasets.Dataset.from_dict(rows, features=datasets.Features(features)).to_parquet(str(path))
    return path


def _v(kind: str = "string") -> Any:
    import datasets

    return datasets.Value(kind)


def _seq(inner: Any) -> Any:
    import datasets

    return datasets.Sequence(inner)


def _image() -> Any:
    import datasets

    return datasets.Image()


def textvqa(root: Path, n: int = 6) -> None:
    answers = [[COLOURS[i % 4]] * 7 + ["dark", "box", COLOURS[i % 4]] for i in range(n)]
    write(root, "lmms-lab/textvqa", "validation", {
        "image_id": [f"img{i}" for i in range(n)], "question_id": list(range(n)),
        "question": ["what color is the square ?"] * n, "question_tokens": [["what", "color"]] * n,
        "image": [_img(i, "JPEG") for i in range(n)], "image_width": [40] * n, "image_height": [40] * n,
        "flickr_original_url": [""] * n, "flickr_300k_url": [""] * n, "answers": answers,
        "image_classes": [["Box"]] * n, "set_name": ["val"] * n, "ocr_tokens": [[]] * n,
    }, {"image_id": _v(), "question_id": _v("int32"), "question": _v(), "question_tokens": _seq(_v()),
        "image": _image(), "image_width": _v("int32"), "image_height": _v("int32"), "flickr_original_url": _v(),
        "flickr_300k_url": _v(), "answers": _seq(_v()), "image_classes": _seq(_v()), "set_name": _v(),
        "ocr_tokens": _seq(_v())})


def vqav2(root: Path, n: int = 12) -> None:
    types = ["yes/no", "number", "other"]
    truth = ["yes", "2", "red"]
    answers = [[{"answer": truth[i % 3], "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)]
               for i in range(n)]
    write(root, "lmms-lab/VQAv2", "validation", {
        "question_type": ["what color"] * n, "multiple_choice_answer": [truth[i % 3] for i in range(n)],
        "answers": answers, "image_id": list(range(n)), "answer_type": [types[i % 3] for i in range(n)],
        "question_id": [1000 + i for i in range(n)], "question": ["what color is the square ?"] * n,
        "image": [_img(i) for i in range(n)],
    }, {"question_type": _v(), "multiple_choice_answer": _v(),
        "answers": [{"answer": _v(), "answer_confidence": _v(), "answer_id": _v("int64")}],
        "image_id": _v("int64"), "answer_type": _v(), "question_id": _v("int64"), "question": _v(),
        "image": _image()})


def docvqa(root: Path, n: int = 6) -> None:
    write(root, "lmms-lab/DocVQA", "validation", {
        "questionId": [str(50000 + i) for i in range(n)], "question": ["what is the colour ?"] * n,
        "question_types": [["layout"]] * n, "image": [_img(i) for i in range(n)], "docId": list(range(n)),
        "ucsf_document_id": ["xyz"] * n, "ucsf_document_page_no": ["1"] * n,
        "answers": [[COLOURS[i % 4], COLOURS[i % 4].upper()] for i in range(n)], "data_split": ["val"] * n,
    }, {"questionId": _v(), "question": _v(), "question_types": _seq(_v()), "image": _image(),
        "docId": _v("int64"), "ucsf_document_id": _v(), "ucsf_document_page_no": _v(), "answers": _seq(_v()),
        "data_split": _v()}, config="DocVQA")
    write(root, "lmms-lab/DocVQA", "validation", {
        "questionId": [str(60000 + i) for i in range(n)], "question": ["which colour is shown ?"] * n,
        "answers": [[COLOURS[i % 4]] for i in range(n)], "answer_type": [["single span"]] * n,
        "image": [_img(i + 50, "JPEG") for i in range(n)], "image_url": [""] * n,
        "operation/reasoning": [[]] * n, "ocr": ["{}"] * n, "data_split": ["val"] * n,
    }, {"questionId": _v(), "question": _v(), "answers": _seq(_v()), "answer_type": _seq(_v()), "image": _image(),
        "image_url": _v(), "operation/reasoning": _seq(_v()), "ocr": _v(), "data_split": _v()},
        config="InfographicVQA")


def chartqa(root: Path, n: int = 6) -> None:
    write(root, "lmms-lab/ChartQA", "test", {
        "type": ["human_test" if i % 2 else "augmented_test" for i in range(n)],
        "question": ["how many bars are there ?"] * n, "answer": [str(10 + i) for i in range(n)],
        "image": [_img(i) for i in range(n)],
    }, {"type": _v(), "question": _v(), "answer": _v(), "image": _image()})


def ai2d(root: Path, n: int = 6) -> None:
    write(root, "lmms-lab/ai2d", "test", {
        "question": ["which colour is the square ?"] * n, "options": [COLOURS] * n,
        "answer": [str(i % 4) for i in range(n)], "image": [_img(i) for i in range(n)],
    }, {"question": _v(), "options": _seq(_v()), "answer": _v(), "image": _image()})


def scienceqa(root: Path, n: int = 6) -> None:
    write(root, "lmms-lab/ScienceQA", "test", {
        "image": [_img(i) for i in range(n)], "question": ["which colour is the square ?"] * n,
        "choices": [COLOURS[:3]] * n, "answer": [i % 3 for i in range(n)],
        "hint": ["a square on black" if i % 2 else "" for i in range(n)], "task": ["closed choice"] * n,
        "grade": ["grade3"] * n, "subject": ["natural science" if i % 2 else "language science" for i in range(n)],
        "topic": ["colors"] * n, "category": ["x"] * n, "skill": ["y"] * n, "lecture": [""] * n,
        "solution": [""] * n,
    }, {"image": _image(), "question": _v(), "choices": _seq(_v()), "answer": _v("int8"), "hint": _v(),
        "task": _v(), "grade": _v(), "subject": _v(), "topic": _v(), "category": _v(), "skill": _v(),
        "lecture": _v(), "solution": _v()}, config="ScienceQA-IMG")


def mmmu(root: Path) -> None:
    features = {"id": _v(), "question": _v(), "options": _v(), "explanation": _v(),
                **{f"image_{k}": _image() for k in range(1, 8)}, "img_type": _v(), "answer": _v(),
                "topic_difficulty": _v(), "question_type": _v(), "subfield": _v()}
    for index, subject in enumerate(MMMU_SUBJECTS):
        rows: dict[str, list] = {k: [] for k in features}
        for j, qtype in enumerate(["multiple-choice", "open"] if index % 10 == 0 else ["multiple-choice"]):
            rows["id"].append(f"validation_{subject}_{j + 1}")
            rows["question"].append("<image 1> Which colour is the square?")
            rows["options"].append(str(COLOURS) if qtype == "multiple-choice" else "[]")
            rows["explanation"].append("")
            for k in range(1, 8):  # the first image may be missing: the first present one is used
                present = k == (2 if index % 7 == 3 else 1)
                rows[f"image_{k}"].append(_img(index * 10 + k) if present else None)
            rows["img_type"].append("['Diagrams']")
            rows["answer"].append("ABCD"[index % 4] if qtype == "multiple-choice" else "42")
            rows["topic_difficulty"].append("Easy")
            rows["question_type"].append(qtype)
            rows["subfield"].append(subject)
        write(root, "MMMU/MMMU", "validation", rows, features, config=subject)


def seedbench(root: Path, n: int = 10) -> None:
    write(root, "lmms-lab/SEED-Bench", "test", {
        "answer": ["ABCD"[i % 4] for i in range(n)],
        **{f"choice_{c}": [COLOURS["abcd".index(c)]] * n for c in "abcd"},
        "data_id": [f"{i}.jpg" for i in range(n)],
        "data_type": ["video" if i % 5 == 4 else "image" for i in range(n)],
        "question": ["Which colour is the square?"] * n, "question_id": [str(100 + i) for i in range(n)],
        "question_type_id": [1 + i % 3 for i in range(n)], "image": [[_img(i)] for i in range(n)],
        "segment": [[] for _ in range(n)],
    }, {"answer": _v(), **{f"choice_{c}": _v() for c in "abcd"}, "data_id": _v(), "data_type": _v(),
        "question": _v(), "question_id": _v(), "question_type_id": _v("int16"), "image": _seq(_image()),
        "segment": _seq(_v("int64"))})


def pope(root: Path, n: int = 9) -> None:
    cats = ["adversarial", "popular", "random"]
    write(root, "lmms-lab/POPE", "test", {
        "id": [str(i) for i in range(n)], "question_id": [str(i + 1) for i in range(n)],
        "question": ["Is there a square in the image?" if i % 2 else "Is there a dog in the image?" for i in range(n)],
        "answer": ["yes" if i % 2 else "no" for i in range(n)], "image_source": [f"COCO_{i}" for i in range(n)],
        "image": [_img(i) for i in range(n)], "category": [cats[i % 3] for i in range(n)],
    }, {"id": _v(), "question_id": _v(), "question": _v(), "answer": _v(), "image_source": _v(), "image": _image(),
        "category": _v()})


def mme(root: Path, n_images: int = 4) -> None:
    cats = ["color", "count", "code_reasoning"]
    rows: dict[str, list] = {"question_id": [], "image": [], "question": [], "answer": [], "category": []}
    for i in range(n_images):
        for answer in ("Yes", "No"):
            rows["question_id"].append(f"{cats[i % 3]}/{i:04d}.png")
            rows["image"].append(_img(i))
            rows["question"].append(f"Is there a {'square' if answer == 'Yes' else 'circle'} in the image? "
                                    "Please answer yes or no.")
            rows["answer"].append(answer)
            rows["category"].append(cats[i % 3])
    write(root, "lmms-lab/MME", "test", rows, {"question_id": _v(), "image": _image(), "question": _v(),
                                               "answer": _v(), "category": _v()})


def coco_karpathy(root: Path, n: int = 6) -> None:
    images = root / "coco" / "val2014"
    images.mkdir(parents=True, exist_ok=True)
    names = [f"COCO_val2014_{391895 + i:012d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        (images / name).write_bytes(image_bytes(i, "JPEG"))
    captions = [[f"a {COLOURS[i % 4]} square on a black background", f"a {COLOURS[i % 4]} box",
                 "a square in the dark", f"{COLOURS[i % 4]} shape on black", "a small square"] for i in range(n)]
    write(root, "yerevann/coco-karpathy", "test", {
        "filepath": ["val2014"] * n, "sentids": [[5 * i + k for k in range(5)] for i in range(n)],
        "filename": names, "imgid": list(range(n)), "split": ["test"] * n, "sentences": captions,
        "cocoid": [391895 + i for i in range(n)], "url": [""] * n,
    }, {"filepath": _v(), "sentids": _seq(_v("int32")), "filename": _v(), "imgid": _v("int32"), "split": _v(),
        "sentences": _seq(_v()), "cocoid": _v("int32"), "url": _v()})


WRITERS = {"textvqa": textvqa, "vqav2": vqav2, "docvqa": docvqa, "chartqa": chartqa, "ai2d": ai2d,
           "scienceqa": scienceqa, "mmmu": mmmu, "seedbench": seedbench, "pope": pope, "mme": mme,
           "coco": coco_karpathy}


def write_all(root: Path) -> Path:
    """Every shipped benchmark's fixture under `root` (a data dir); returns `root`."""
    for writer in WRITERS.values():
        writer(root)
    return root
