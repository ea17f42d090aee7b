"""Spatial scorers on hand-checked cases: grounding boxes (parsers per model family, IoU, Acc@0.5)
and SpatialLM layouts (parsing, thin-plane and oriented 3D IoU, Hungarian matching, per-class F1)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from harness.errors import DataError
from harness.metrics._boxes import iou, parse_box
from harness.metrics._layout import (
    Object3D,
    box_iou_3d,
    convex_intersection_area,
    match_count,
    parse_layout,
    plane_iou,
    wall_corners,
)
from harness.metrics.layout import evaluate, pooled_f1
from harness.registries import METRICS
from harness.suites.accuracy import AccuracyConfig, score_items

OCTAGON = 2 * (math.sqrt(2) - 1)  # area of a unit square ∩ the same square turned 45° (a regular octagon)


def metric(name: str) -> Any:
    return METRICS.get(name)()


def suite_result(metric_name: str, rows: dict[str, list], answers: list[str]) -> dict[str, Any]:
    import datasets

    from harness.data.sources import DatasetSpec

    cfg = AccuracyConfig(name="t", dataset=DatasetSpec(name="t"), metric=metric_name)
    return score_items(cfg, datasets.Dataset.from_dict(rows), answers)


# --- box IoU -------------------------------------------------------------------------------------

def test_box_iou_by_hand():
    assert iou((0, 0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)) == pytest.approx(1 / 7)  # 0.0625 / 0.4375
    assert iou((0, 0, 1, 1), (0, 0, 0.5, 0.5)) == pytest.approx(0.25)
    assert iou((0, 0, 0.2, 0.2), (0.5, 0.5, 1, 1)) == 0.0
    assert iou((0.3, 0.3, 0.3, 0.6), (0.3, 0.3, 0.3, 0.6)) == 0.0  # zero area overlaps nothing, not even itself


@pytest.mark.parametrize("text,fmt,size,expected", [
    ("[0.10, 0.20, 0.40, 0.55]", "auto", None, (0.1, 0.2, 0.4, 0.55)),
    ("The box is [0.4, 0.55, 0.1, 0.2].", "auto", None, (0.1, 0.2, 0.4, 0.55)),  # swapped corners ordered
    ("<|object_ref_start|>the man<|object_ref_end|><|box_start|>(100,200),(400,550)<|box_end|>", "auto", None,
     (0.1, 0.2, 0.4, 0.55)),
    ("(100,200),(400,550)", "qwen2vl", None, (0.1, 0.2, 0.4, 0.55)),  # special tokens skipped when decoding
    ("[100, 200, 400, 550]", "qwen2vl", None, (0.1, 0.2, 0.4, 0.55)),  # a forced family reads [...] on its grid
    ("<ref>man</ref><box>[[100, 200, 400, 550]]</box>", "auto", None, (0.1, 0.2, 0.4, 0.55)),
    ("[[100, 200, 400, 550], [0, 0, 10, 10]]", "internvl", None, (0.1, 0.2, 0.4, 0.55)),  # the first box
    ("<box>[[0.1, 0.2, 0.4, 0.55]]</box>", "internvl", None, (0.1, 0.2, 0.4, 0.55)),  # sum < 4: InternVL's 0-1
    ("[64, 48, 256, 264]", "auto", (640, 480), (0.1, 0.1, 0.4, 0.55)),  # pixels / (w, h, w, h)
    ("[64, 48, 256, 264]", "pixels", (640, 480), (0.1, 0.1, 0.4, 0.55)),
    ("[-0.2, 0.1, 1.3, 0.4]", "normalized", None, (0.0, 0.1, 1.0, 0.4)),  # clipped to the image
    ("[-64, 48, 700, 264]", "pixels", (640, 480), (0.0, 0.1, 1.0, 0.55)),
])
def test_box_parsers(text, fmt, size, expected):
    parsed = parse_box(text, fmt, size)
    assert parsed.box == pytest.approx(expected)


@pytest.mark.parametrize("text,fmt,size,reason", [
    ("I cannot see it", "auto", None, "no box"),
    ("[64, 48, 256, 264]", "auto", None, "image_width"),  # values > 1 are pixels, and pixels need the size
    ("[64, 48, 256, 264]", "pixels", None, "image_width"),
    ("<box>[[1, 2]]</box>", "internvl", None, "no [[x1, y1, x2, y2]] box"),
])
def test_unreadable_boxes_say_why(text, fmt, size, reason):
    parsed = parse_box(text, fmt, size)
    assert parsed.box is None and reason in parsed.reason


def test_box_iou_metric_scores_acc_at_half():
    m = metric("box_iou")
    assert m.binary and m.higher_is_better and m.item_fields == ("image_width", "image_height")
    assert m.score("[0.1, 0.2, 0.4, 0.55]", ["[0.10, 0.20, 0.40, 0.55]"]) == 1.0
    assert m.score("[0, 0, 0.5, 0.5]", ["[0.25, 0.25, 0.75, 0.75]"]) == 0.0  # IoU 1/7
    assert m.score("[0, 0, 1, 0.5]", ["[0, 0, 1, 1]"]) == 1.0  # IoU exactly 0.5 counts (>=)
    assert m.score("[0, 0, 0.5, 0.5]", ["[0.6, 0.6, 1, 1]", "[0, 0, 0.5, 0.6]"]) == 1.0  # best reference
    assert m.score("no idea", ["[0, 0, 1, 1]"]) == 0.0  # unparseable scores 0, never raises
    assert metric("box_iou_qwen2vl").score("[100, 200, 400, 550]", ["[0.1, 0.2, 0.4, 0.55]"]) == 1.0
    assert m.score("[100, 200, 400, 550]", ["[0.1, 0.2, 0.4, 0.55]"]) == 0.0  # auto: pixels, no size → unparseable
    with pytest.raises(DataError, match="reference box"):
        m.score("[0, 0, 1, 1]", ["the left dog"])


def test_box_iou_corpus():
    refs = ["[0, 0, 1, 1]", "[0.25, 0.25, 0.75, 0.75]", "[0, 0, 1, 1]", "[0, 0, 1, 0.8]", "[0, 0, 1, 1]"]
    preds = ["[0, 0, 1, 1]", "[0, 0, 0.5, 0.5]", "sorry", "[0, 0, 1, 1]", "[0, 0, 1, 0.5]"]  # IoU 1, 1/7, -, .8, .5
    items = [{"prediction": p, "references": [r]} for p, r in zip(preds, refs, strict=True)]
    corpus = metric("box_iou").corpus(items)
    assert corpus["mean_iou"] == pytest.approx((1 + 1 / 7 + 0 + 0.8 + 0.5) / 5)
    assert corpus["acc@0.5"] == pytest.approx(3 / 5) and corpus["acc@0.75"] == pytest.approx(2 / 5)
    assert corpus["unparseable"] == 1.0 and corpus["notes"] == ["1 unparseable prediction(s): no box"]


def test_box_iou_in_an_accuracy_suite_reads_the_image_size():
    rows = {"question": ["the dog", "the cat", "the cup"], "answer": ["[0.1, 0.1, 0.4, 0.55]"] * 3,
            "image_width": [640, 640, 640], "image_height": [480, 480, 480]}
    result = suite_result("box_iou", rows, ["[64, 48, 256, 264]", "<|box_start|>(100,100),(400,550)<|box_end|>",
                                            "[0.5, 0.5, 0.9, 0.9]"])
    assert [it["score"] for it in result["items"]] == [1.0, 1.0, 0.0]
    assert result["score"] == pytest.approx(2 / 3) and result["corpus"]["unparseable"] == 0.0
    assert result["corpus"]["mean_iou"] == pytest.approx(2 / 3)  # the third box misses entirely


# --- layout geometry -----------------------------------------------------------------------------

def box(x: float = 0.0, y: float = 0.0, z: float = 0.5, yaw: float = 0.0, sx: float = 1.0, sy: float = 1.0,
        sz: float = 1.0, cls: str = "chair") -> Object3D:
    return Object3D(cls, (x, y, z), yaw, (sx, sy, sz))


def test_oriented_3d_iou_by_hand():
    assert box_iou_3d(box(), box()) == pytest.approx(1.0)
    assert box_iou_3d(box(sx=2), box(x=1, sx=2)) == pytest.approx(1 / 3)  # half its width along x: 1 / (2+2-1)
    assert box_iou_3d(box(yaw=math.pi / 2), box()) == pytest.approx(1.0)  # square footprint turned 90°
    assert box_iou_3d(box(sx=2, yaw=math.pi / 2), box(sx=2)) == pytest.approx(1 / 3)  # 2×1 turned 90°: 1 / (2+2-1)
    # a square of side 2 turned 45° about the same centre: the intersection is a regular octagon with
    # apothem 1, area 8·tan(22.5°) = 2(√2−1)·s², so IoU = 2(√2−1) / (2 − 2(√2−1)) = 1/√2
    assert box_iou_3d(box(sx=2, sy=2, yaw=math.pi / 4), box(sx=2, sy=2)) == pytest.approx(1 / math.sqrt(2))
    # ... and with the z ranges [0, 1] and [0.5, 1.5] half overlapping
    inter = OCTAGON * 4 * 0.5
    assert box_iou_3d(box(sx=2, sy=2, yaw=math.pi / 4), box(z=1.0, sx=2, sy=2)) == pytest.approx(inter / (8 - inter))
    assert box_iou_3d(box(z=0.5), box(z=2.0)) == 0.0  # no z overlap


def test_convex_intersection_matches_scipy_halfspaces():
    """The clipping against an independent computation: scipy's half-space intersection + convex hull."""
    import numpy as np
    from scipy.optimize import linprog
    from scipy.spatial import ConvexHull, HalfspaceIntersection

    from harness.metrics._layout import footprint

    rng, empty = random.Random(0), 0
    for _ in range(50):
        a = box(rng.uniform(-1, 1), rng.uniform(-1, 1), yaw=rng.uniform(-3, 3), sx=rng.uniform(0.5, 3),
                sy=rng.uniform(0.5, 3))
        b = box(rng.uniform(-1, 1), rng.uniform(-1, 1), yaw=rng.uniform(-3, 3), sx=rng.uniform(0.5, 3),
                sy=rng.uniform(0.5, 3))
        rows = []
        for poly in (footprint(a), footprint(b)):  # counter-clockwise: inside is left of each edge
            for (px, py), (qx, qy) in zip(poly, poly[1:] + poly[:1]):
                rows.append([qy - py, -(qx - px), -(qy - py) * px + (qx - px) * py])
        hs = np.array(rows)
        norms = np.linalg.norm(hs[:, :2], axis=1)
        # the largest circle inside both (Chebyshev centre); none (infeasible) or radius 0 → they do not overlap
        centre = linprog([0, 0, -1], A_ub=np.c_[hs[:, :2], norms], b_ub=-hs[:, 2],
                         bounds=[(None, None)] * 2 + [(0, None)])
        if centre.status != 0 or centre.x[2] < 1e-6:
            empty += 1
            assert convex_intersection_area(footprint(a), footprint(b)) == pytest.approx(0.0, abs=1e-9)
            continue
        area = ConvexHull(HalfspaceIntersection(hs, centre.x[:2]).intersections).volume
        assert convex_intersection_area(footprint(a), footprint(b)) == pytest.approx(area, rel=1e-9)
    assert 0 < empty < 25  # both kinds of case were exercised


def test_thin_plane_iou_by_hand():
    layout = parse_layout("wall_0=Wall(0,0,0,4,0,0,2,0)\nwall_1=Wall(2,0,0,6,0,0,2,0)\n"
                          "wall_2=Wall(0,0.1,0,4,0.1,0,2,0)\nwall_3=Wall(0,0.3,0,4,0.3,0,2,0)\n"
                          "wall_4=Wall(0,0,0,0,4,0,2,0)")
    w = {i: wall_corners(wall) for i, wall in layout.walls.items()}
    assert plane_iou(w[0], w[0]) == pytest.approx(1.0)
    assert plane_iou(w[1], w[0]) == pytest.approx(1 / 3)  # half its length along itself: 4 / (8+8-4)
    assert plane_iou(w[2], w[0]) == pytest.approx(1.0)  # 0.1 m apart: within eval.py's 0.2 m, projected
    assert plane_iou(w[3], w[0]) == 0.0 and plane_iou(w[0], w[3]) == 0.0  # 0.3 m apart, either side
    assert plane_iou(w[4], w[0]) == 0.0  # perpendicular
    # turned 3° about its midpoint: 2·sin 3° ≈ 0.105 m from the reference's corner, within 5°; projected
    # length 4·cos 3°, so IoU = (4 cos 3°·2) / (4 cos 3°·2 + 8 − 4 cos 3°·2) = cos 3°
    c, s = math.cos(math.radians(3)), math.sin(math.radians(3))
    turned = parse_layout(f"wall_0=Wall({2 - 2 * c},{-2 * s},0,{2 + 2 * c},{2 * s},0,2,0)").walls[0]
    assert plane_iou(wall_corners(turned), w[0]) == pytest.approx(c)
    c10, s10 = math.cos(math.radians(10)), math.sin(math.radians(10))
    turned = parse_layout(f"wall_0=Wall({2 - 2 * c10},{-2 * s10},0,{2 + 2 * c10},{2 * s10},0,2,0)").walls[0]
    assert plane_iou(wall_corners(turned), w[0]) == 0.0  # beyond 5°


def test_hungarian_matching_beats_greedy():
    # greedy by IoU would pair row 0 with column 0 (0.9) and leave row 1 unmatched
    assert match_count([[0.9, 0.3], [0.4, 0.0]], 0.25) == 2
    assert match_count([[0.9, 0.3], [0.4, 0.0]], 0.5) == 1
    assert match_count([[0.25]], 0.25) == 1 and match_count([], 0.25) == 0 and match_count([[], []], 0.25) == 0


# --- layout parsing and scoring ------------------------------------------------------------------

SCENE = """wall_0=Wall(0,0,0,4,0,0,2.5,0)
wall_1=Wall(4,0,0,4,3,0,2.5,0)
door_0=Door(wall_1,4,1,1,0.8,2)
window_0=Window(wall_0,2,0,1.5,1.2,1)
bbox_0=Bbox(chair,1,1,0.5,0,1,1,1)
bbox_1=Bbox(dining_table,2,2,0.4,0.3,1.6,0.9,0.8)"""


def test_identical_layouts_score_one():
    m = metric("spatiallm_layout")
    assert not m.binary
    assert m.score(SCENE, [SCENE]) == 1.0
    corpus = m.corpus([{"prediction": SCENE, "references": [SCENE]}])
    for cls in ("wall", "door", "window", "chair", "dining table"):
        assert corpus[f"{cls}.f1@0.25"] == 1.0 and corpus[f"{cls}.f1@0.5"] == 1.0 and corpus[f"{cls}.scenes"] == 1.0
    assert corpus["wall.precision@0.5"] == 1.0 and corpus["wall.recall@0.5"] == 1.0
    assert corpus["f1@0.25"] == 1.0 and corpus["malformed"] == 0.0 and "notes" not in corpus


def test_malformed_lines_are_counted_not_fatal():
    text = SCENE + "\nwall_5=Wall(0,0,0)\nhello there\ndoor_2=Door(3,1,0,1,1,2)\nbbox_4=Wall(0,0,0,1,0,0,2,0)\n" \
                   "bbox_5=Bbox(chair,1,1,nan,0,1,1,1)\n\n```"
    layout = parse_layout(text)
    assert layout.malformed == 5  # wrong count, prose, no wall_ reference, label/type mismatch, nan
    assert (len(layout.walls), len(layout.openings), len(layout.objects)) == (2, 2, 2)
    ev = evaluate(text, SCENE)
    assert ev.malformed == 5 and pooled_f1(ev.counts, 0.25) == 1.0
    corpus = metric("spatiallm_layout").corpus([{"prediction": text, "references": [SCENE]}])
    assert corpus["malformed"] == 5.0 and corpus["notes"] == ["5 malformed prediction line(s) skipped"]


def test_shifted_object_counts_at_quarter_not_at_half():
    ref = "bbox_0=Bbox(sofa,0,0,0.5,0,2,1,1)"
    pred = "bbox_0=Bbox(sofa,1,0,0.5,0,2,1,1)"  # shifted by half its width: IoU 1/3
    ev = evaluate(pred, ref)
    assert ev.counts == {"sofa": {0.25: (1, 1, 1), 0.5: (0, 1, 1)}}
    assert pooled_f1(ev.counts, 0.25) == 1.0 and pooled_f1(ev.counts, 0.5) == 0.0


def test_class_mismatch_is_not_matched():
    chair, table = "bbox_0=Bbox(chair,0,0,0.5,0,1,1,1)", "bbox_0=Bbox(table,0,0,0.5,0,1,1,1)"  # same box
    ev = evaluate(chair, table)
    assert ev.counts == {"chair": {0.25: (0, 1, 0), 0.5: (0, 1, 0)}, "table": {0.25: (0, 0, 1), 0.5: (0, 0, 1)}}
    assert metric("spatiallm_layout").score(chair, [table]) == 0.0
    # class names compare lowercased with "_" as a space
    assert evaluate("bbox_0=Bbox(Dining_Table,0,0,0.5,0,1,1,1)", "bbox_0=Bbox(dining table,0,0,0.5,0,1,1,1)").counts \
        == {"dining table": {0.25: (1, 1, 1), 0.5: (1, 1, 1)}}


def test_doors_lie_on_the_wall_they_name():
    ref = "wall_0=Wall(0,0,0,0,4,0,2,0)\ndoor_3=Door(wall_0,0,1,1,1,2)"  # along y: the door spans y 0.5..1.5
    shifted = "wall_0=Wall(0,0,0,0,4,0,2,0)\ndoor_3=Door(wall_0,0,1.5,1,1,2)"  # y 1..2: IoU 1/3
    ev = evaluate(shifted, ref)
    assert ev.counts["door"] == {0.25: (1, 1, 1), 0.5: (0, 1, 1)} and ev.counts["wall"][0.5] == (1, 1, 1)
    orphan = "wall_0=Wall(0,0,0,0,4,0,2,0)\ndoor_3=Door(wall_7,0,1,1,1,2)\nwall_1=Wall(1,1,0,1,1,0,2,0)"
    ev = evaluate(orphan, ref)
    assert ev.orphans == 1 and ev.degenerate == 1  # a missing wall, and a wall without length
    assert ev.counts == {"wall": {0.25: (1, 1, 1), 0.5: (1, 1, 1)}, "door": {0.25: (0, 0, 1), 0.5: (0, 0, 1)}}


def test_minimum_scale_and_pooled_f1():
    # a zero-height box gets eval.py's 0.1 m, so it still has volume and matches itself
    flat = "bbox_0=Bbox(carpet,0,0,0,0,2,1,0)"
    assert parse_layout(flat).objects[0].scale == (2.0, 1.0, 0.1)
    assert pooled_f1(evaluate(flat, flat).counts, 0.5) == 1.0
    # two walls right, one chair predicted where the reference has a table: 2·2 / (3 + 3)
    walls = "wall_0=Wall(0,0,0,4,0,0,2,0)\nwall_1=Wall(4,0,0,4,3,0,2,0)\n"
    pred, ref = walls + "bbox_0=Bbox(chair,1,1,0.5,0,1,1,1)", walls + "bbox_0=Bbox(table,1,1,0.5,0,1,1,1)"
    assert metric("spatiallm_layout").score(pred, [ref]) == pytest.approx(2 / 3)
    assert metric("spatiallm_layout").score("", [""]) == 1.0  # nothing to find, nothing predicted


def test_layout_corpus_averages_over_scenes_with_the_class():
    walls = "wall_0=Wall(0,0,0,4,0,0,2,0)\n"
    scene_a = walls + "bbox_0=Bbox(chair,1,1,0.5,0,1,1,1)"
    scene_b_ref = walls
    scene_b_pred = walls + "bbox_0=Bbox(table,2,2,0.5,0,1,1,1)"  # a table the reference lacks
    items = [{"prediction": scene_a, "references": [scene_a]},
             {"prediction": scene_b_pred, "references": [scene_b_ref]}]
    corpus = metric("spatiallm_layout").corpus(items)
    assert corpus["chair.scenes"] == 1.0 and corpus["chair.f1@0.25"] == 1.0  # scene b has no chair: masked
    assert corpus["table.scenes"] == 1.0 and corpus["table.precision@0.25"] == 0.0 and corpus["table.f1@0.25"] == 0.0
    assert corpus["wall.scenes"] == 2.0 and corpus["wall.f1@0.5"] == 1.0
    assert corpus["f1@0.25"] == pytest.approx((1.0 + 2 / 3) / 2)  # scene b: 2·1 / (2 + 1)
    with pytest.raises(DataError, match="one reference"):
        metric("spatiallm_layout").score(scene_a, [scene_a, scene_a])


def test_layout_in_an_accuracy_suite():
    rows = {"question": ["scene a", "scene b"], "answer": [SCENE, SCENE]}
    result = suite_result("spatiallm_layout", rows, [SCENE, "wall_0=Wall(0,0,0,4,0,0,2.5,0)\nnot a line"])
    assert [it["score"] for it in result["items"]] == pytest.approx([1.0, 2 / 7])  # 2·1 / (1 + 6)
    assert result["score"] == pytest.approx((1 + 2 / 7) / 2)
    assert result["corpus"]["malformed"] == 1.0 and result["corpus"]["wall.recall@0.25"] == pytest.approx(0.75)
