"""The spatial suites (RefCOCO / RefCOCO+ / RefCOCOg REC, VSR, What'sUp, CV-Bench, SpatialLM layouts):
the COCO xywh box → reference conversion, grouping, options order, the missing-box-column one-liner,
the layout kind's counts on a hand-computed scene pair, and one `harness run` of every new suite on nano."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.errors import ConfigError, DataError
from harness.suites._box_refs import BoxReference, reference

from .fixture_datasets import write
from .fixture_spatial import HEIGHT, LAYOUTS, WIDTH, layouts, refcoco_rows, write_all

SPATIAL = ["refcoco", "refcoco-plus", "refcocog", "vsr", "whatsup-a", "whatsup-b", "cv-bench", "spatiallm-layout"]
XYWH = BoxReference(column="bbox")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_all(tmp_path_factory.mktemp("spatial"))


# --- the box reference -----------------------------------------------------------------------------

def test_coco_xywh_pixels_become_a_normalised_reference():
    assert reference([4, 6, 20, 30], XYWH, (64, 48)) == "[0.0625, 0.125, 0.375, 0.75]"  # x2 = 24/64, y2 = 36/48
    corners = BoxReference(column="b", format="xyxy")
    assert reference([4, 6, 24, 36], corners, (64, 48)) == "[0.0625, 0.125, 0.375, 0.75]"
    assert reference([0.1, 0.2, 0.5, 0.6], BoxReference(column="b", format="xyxy", units="normalized"),
                     None) == "[0.1, 0.2, 0.5, 0.6]"
    assert reference([0, 0, 64.4, 48], XYWH, (64, 48)) == "[0, 0, 1, 1]"  # annotation rounding: clipped
    for box, size, why in [([4, 6, 0, 30], (64, 48), "no area"), ([4, 6, "a", 30], (64, 48), "non-number"),
                           ([4, 6, 20], (64, 48), "4 numbers"), ([50, 6, 20, 30], (64, 48), "outside the image"),
                           ([4, 6, 20, float("nan")], (64, 48), "non-finite"), ([4, 6, 20, 30], None, "size")]:
        with pytest.raises(ValueError, match=why):
            reference(box, XYWH, size)


def _refcoco_suite(**extra: Any) -> Any:
    from harness.spec.suite_files import find_suite, load_resolved, parse_suite

    data, _ = load_resolved(find_suite("refcoco"))
    return parse_suite({**data, **extra})


def test_box_suite_scores_normalised_and_pixel_boxes_per_expression():
    import datasets

    from harness.suites.accuracy import score_items

    rows, features = refcoco_rows(3)
    data = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
    # expressions: row 0 has two, row 1 one, row 2 two → 5 items; the image size comes from the image
    answers = ["[0.0625, 0.125, 0.375, 0.75]", "[4, 6, 24, 36]",  # right, normalised and in pixels
               "[0.15625, 0.166667, 0.78125, 0.791667]", "sorry, no idea", "[0, 0, 0.5, 0.5]"]
    result = score_items(_refcoco_suite(), data, answers)
    assert [it["id"] for it in result["items"]] == ["1000#0", "1000#1", "1001#0", "1002#0", "1002#1"]
    assert [it["score"] for it in result["items"]] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert result["items"][1]["image_width"] == WIDTH and result["items"][1]["image_height"] == HEIGHT
    assert result["corpus"]["unparseable"] == 1.0 and result["corpus"]["acc@0.5"] == pytest.approx(3 / 5)
    assert result["groups"]["small"]["n"] == 2 and result["groups"]["medium"]["n"] == 3  # COCO area classes


def test_a_bad_box_is_a_failed_item_not_a_crash():
    import datasets

    from harness.suites.accuracy import score_items

    rows, features = refcoco_rows(2)
    rows["bbox"][1] = [10.0, 8.0, 0.0, 30.0]  # no width
    data = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
    result = score_items(_refcoco_suite(), data, ["[0.0625, 0.125, 0.375, 0.75]"] * 3)
    failed = [it for it in result["items"] if "failed" in it]
    assert [it["id"] for it in failed] == ["1001#0"] and "bbox: box" in failed[0]["failed"]
    assert failed[0]["score"] == 0.0 and result["n"] == 3
    with pytest.raises(DataError, match="item '1001#0' field 'bbox'.*no area"):
        score_items(_refcoco_suite(on_bad_item="fail"), data, ["x"] * 3)


def test_one_answer_source_only():
    with pytest.raises(ConfigError, match="one way to read the answer"):
        _refcoco_suite(answer_index=True)


def test_missing_box_column_is_one_line_naming_it_and_the_dataset(tmp_path, nano_dir):
    import datasets

    from harness.cli import app
    from harness.suites.accuracy import score_items

    rows, features = refcoco_rows(2, bbox=False)
    with pytest.raises(DataError, match=r"dataset lmms-lab/RefCOCO, split val has no column 'bbox'"):
        score_items(_refcoco_suite(), datasets.Dataset.from_dict(rows, features=datasets.Features(features)), ["x"])
    data = tmp_path / "data"
    write(data, "lmms-lab/RefCOCO", "val", rows, features, config="data")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: nobox\nbase: nano\nbaseline: base\nsuites: [refcoco]\nvariants:\n"
                      "  - name: base\n    steps: []\n")
    out = CliRunner().invoke(app, ["run", str(recipe), "-o", str(tmp_path / "out"), "--no-progress",
                                   "--data-dir", str(data)])
    assert out.exit_code == 2, out.output
    lines = [line for line in out.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.output, out.output
    assert "no column 'bbox'" in lines[0] and "lmms-lab/RefCOCO" in lines[0] and "refcoco" in lines[0]


# --- options order and grouping --------------------------------------------------------------------

def test_shuffled_options_move_their_reference():
    from harness.suites._items import shuffled

    options, refs = shuffled(["right", "w1", "w2", "w3"], ["A"], "0:item")
    assert sorted(options) == ["right", "w1", "w2", "w3"] and options[ord(refs[0]) - ord("A")] == "right"
    assert shuffled(["a", "b"], ["a"], "k")[1] == ["a"]  # a text reference stays text
    orders = {tuple(shuffled(["r", "x", "y", "z"], ["A"], f"0:{i}")[0]) for i in range(20)}
    assert len(orders) > 4 and shuffled(["r", "x"], ["A"], "0:3") == shuffled(["r", "x"], ["A"], "0:3")


def test_each_suite_groups_by_its_relation_or_category(data_dir, monkeypatch):
    from harness.data.sources import load_split
    from harness.spec.suite_files import load_suite
    from harness.suites.accuracy import ImageSource, image_columns, prepare, resolve_image_root, select

    monkeypatch.setenv("FASTVLM_HARNESS_DATA", str(data_dir))
    expected = {"vsr": {"left of", "on top of"}, "whatsup-a": {"on", "under", "left", "right"},
                "cv-bench": {"Count", "Relation", "Depth", "Distance"}, "refcocog": {"small", "medium"}}
    for name, groups in expected.items():
        config = load_suite(name)
        data = select(config, load_split(config.dataset))
        items = prepare(config, data, "fast_vlm", ImageSource(data, image_columns(config),
                                                              resolve_image_root(config, None)))
        assert {it.group for it in items} == groups, name
        assert not any(it.failed for it in items), name
    vsr = prepare(load_suite("vsr"), load_split(load_suite("vsr").dataset))
    assert [it.references for it in vsr] == [["no"], ["yes"], ["no"], ["yes"]]  # label 0/1
    cv = load_suite("cv-bench")
    first = prepare(cv, load_split(cv.dataset), "fast_vlm")[0]
    assert first.prompt.startswith("Note: You only need to respond with A, B, C, D without")
    assert first.references == ["(A)"]


def _gallery_of(config: Any, prepared: list[Any], answers: dict[str, list[str]]) -> dict[str, Any]:
    """The report's gallery for variants answering every item of `prepared` with the given answers."""
    from harness.suites._gallery import gallery
    from harness.suites.accuracy import gallery_images, score_prepared

    rows = []
    for name, texts in answers.items():
        scored = score_prepared(config, prepared, dict(enumerate(texts)))
        suites = {config.name: {"kind": "accuracy", "status": "ok", **scored}}
        rows.append({"variant": {"name": name}, "runtime": "torch-eager",
                     "result": {"measurements": {"torch-eager": {"suites": suites}}}})
    return gallery(rows, {"baseline": "base", "suites": [config.model_dump(mode="json")]}, gallery_images)


def _pixels(thumb: str) -> Any:
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(thumb.split(",", 1)[1]))).convert("RGB")


def test_gallery_draws_reference_baseline_and_variant_boxes(data_dir, monkeypatch):
    from harness.data.sources import load_split
    from harness.spec.suite_files import load_suite
    from harness.suites._gallery import BOX_COLOURS
    from harness.suites.accuracy import prepare, select

    monkeypatch.setenv("FASTVLM_HARNESS_DATA", str(data_dir))
    config = load_suite("refcoco")
    prepared = prepare(config, select(config, load_split(config.dataset)))
    n = len(prepared)
    out = _gallery_of(config, prepared, {"base": ["[0.4, 0.4, 0.6, 0.6]"] * n, "int4": ["[0.7, 0.7, 0.9, 0.9]"] * n})
    shown = out["rows"]["int4"]
    assert not out["note"] and out["boxes"] == BOX_COLOURS
    assert [r["id"] for r in shown] == [it.id for it in prepared]  # exploded ids (1000#1) find their image
    rgb = {role: tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for role, c in BOX_COLOURS.items()}
    for row, item in zip(shown, prepared, strict=True):
        image = _pixels(row["thumb"])
        w, h = image.size

        def corner(x: float, y: float, image: Any = image, w: int = w, h: int = h) -> tuple[int, ...]:
            return image.getpixel((round(x * (w - 1)), round(y * (h - 1))))

        assert corner(0.7, 0.7) == rgb["variant"] and corner(0.4, 0.4) == rgb["base"]
        assert corner(*(float(v) for v in item.references[0].strip("[]").split(",")[:2])) == rgb["reference"]
    vsr = load_suite("vsr")
    plain = prepare(vsr, select(vsr, load_split(vsr.dataset)))
    out = _gallery_of(vsr, plain, {"base": ["yes"] * len(plain), "int4": ["no"] * len(plain)})
    assert out["boxes"] == {} and all(r["thumb"] for r in out["rows"]["int4"])  # image_path files, no boxes


# --- the layout kind -------------------------------------------------------------------------------

def test_layout_suite_counts_on_a_hand_computed_scene_pair(tmp_path, monkeypatch):
    from harness.spec.suite_files import load_suite
    from harness.suites._context import SuiteContext
    from harness.suites.layout import Layout

    layouts(tmp_path)
    monkeypatch.setenv("FASTVLM_HARNESS_DATA", str(tmp_path))
    result = Layout().run(load_suite("spatiallm-layout"), SuiteContext("torch-eager", None, tmp_path, tmp_path))
    scores = {it["id"]: it["score"] for it in result["items"]}
    # scene a: all 4 entities exact → 1; scene b at IoU 0.25: walls 2 + table 1 matched of 4 predicted and
    # 3 reference → 2·3/7 (the table is 0.5 m off, IoU 1/3); scene c has no prediction: failed, 0
    assert scores == pytest.approx({"scene0000_00": 1.0, "scene0001_00": 6 / 7, "scene0002_00": 0.0})
    assert result["score"] == pytest.approx((1 + 6 / 7) / 3) and result["n"] == 3
    assert result["failed_items"] == 1 and result["unmatched_predictions"] == 1
    corpus = result["corpus"]
    assert corpus["f1@0.25"] == pytest.approx((1 + 6 / 7) / 2) and corpus["f1@0.5"] == pytest.approx((1 + 4 / 7) / 2)
    assert corpus["malformed"] == 1.0 and corpus["table.f1@0.25"] == 1.0 and corpus["table.f1@0.5"] == 0.0
    groups = {cls: (g["score"], g["n"]) for cls, g in result["groups"].items()}
    assert groups == {"chair": (1.0, 1), "door": (1.0, 1), "sofa": (0.0, 1), "table": (1.0, 1), "wall": (1.0, 2)}
    assert not result["binary"] and set(LAYOUTS) < set(scores)


def test_layout_preflight_names_a_missing_folder(tmp_path, monkeypatch):
    from harness.spec.suite_files import load_suite
    from harness.suites.layout import Layout

    monkeypatch.setenv("FASTVLM_HARNESS_DATA", str(tmp_path))
    problems = Layout().preflight(load_suite("spatiallm-layout"), None)
    assert len(problems) == 2 and "references folder 'manycore-research/SpatialLM-Testset/layout'" in problems[0]


# --- end to end ------------------------------------------------------------------------------------

def test_every_spatial_suite_runs_end_to_end_on_nano(tmp_path, data_dir, nano_dir, monkeypatch):
    from harness.run.runner import run

    recipe = tmp_path / "spatial.yaml"
    recipe.write_text(f"name: spatial\nbase: nano\nbaseline: base\nsuites: [{', '.join(SPATIAL)}]\n"
                      "variants:\n  - name: base\n    steps: []\n")
    monkeypatch.setenv("FASTVLM_HARNESS_DATA", str(data_dir))  # the spawned workers inherit it
    run_dir = run(recipe, output=tmp_path / "reports", progress=False, use_cache=False)
    summary = json.loads((run_dir / "results.json").read_text())
    assert {v["status"] for v in summary["variants"]} == {"ok"}, [v.get("error") for v in summary["variants"]]
    result = json.loads((run_dir / "variants" / "base" / "result.json").read_text())
    suites = result["measurements"]["torch-eager"]["suites"]
    assert not {name: s.get("error") for name, s in suites.items() if s["status"] != "ok"}
    accuracy = summary["variants"][0]["runtimes"]["torch-eager"]["accuracy"]
    assert set(accuracy) == set(SPATIAL)
    for name, acc in accuracy.items():
        assert acc["n"] == len(suites[name]["items"]) > 0 and acc["groups"], name
        assert 0 <= acc["score"] <= 1 and acc["ci"][0] <= acc["score"] + 1e-9 <= acc["ci"][1] + 2e-9, name
    assert accuracy["refcoco"]["n"] == 5 and "mean_iou" in accuracy["refcoco"]["corpus"]
    assert accuracy["spatiallm-layout"]["failed_items"] == 1 and accuracy["spatiallm-layout"]["score"] == \
        pytest.approx((1 + 6 / 7) / 3)
    assert set(accuracy["cv-bench"]["groups"]) == {"Count", "Relation", "Depth", "Distance"}
    assert "spatiallm-layout" in (run_dir / "report.html").read_text()
    from harness.results.compare import SAME, compare_runs

    changes = {c.metric: c.verdict for c in compare_runs(run_dir, run_dir).changes if c.variant == "base"}
    assert all(changes[f"{name} score"] == SAME for name in SPATIAL), changes  # paired item by item, as accuracy
