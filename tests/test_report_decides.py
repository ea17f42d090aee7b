"""The report's decision, on hand-made summaries (no model, no run): which variant is recommended,
why, at what cost and where its files are; the banners; and the pieces of the primary frontier
chart (fitted axes, labels that overlap nothing)."""

from __future__ import annotations

import itertools

import pytest

from harness.report import charts
from harness.report.html import standing_text
from harness.results.pareto import Comparison, Standing
from harness.results.recommend import advice, banners, objectives, recommend, target_label

SPEC = {"targets": {"max_ttft_ms": 50.0, "max_size_mb": 100.0, "min_retention": 0.9}}


def verdict(status: str, value: float | None, limit: float, ci: list[float] | None = None, unit: str = "",
            **extra) -> dict:
    return {"status": status, "value": value, "limit": limit, "ci": ci, "within_noise": False, "unit": unit, **extra}


def runtime(ttft: float, ci: tuple[float, float], size: float, score: float = 0.9, retention: float = 1.0,
            targets: dict | None = None, **extra) -> dict:
    """One runtime summary the way aggregate writes it (latency, size, accuracy, targets)."""
    return {"latency": {"ttft_p50_ms": ttft, "ttft_p50_ci": list(ci), "decode_tokens_per_s_p50": 1000.0 / ttft,
                        "decode_tokens_per_s_ci": [900.0 / ttft, 1100.0 / ttft]},
            "size": {"total_mb": size, "files": [{"file": "model.safetensors", "bytes": int(size * 1e6)}],
                     "storage_format": "safetensors"},
            "accuracy": {"acc": {"score": score, "ci": [score - 0.02, score + 0.02], "n": 600, "metric": "exact_match",
                                 "meaningful": True, "retention": retention,
                                 "retention_ci": [retention - 0.01, retention + 0.01], "n_paired": 600,
                                 "agreement": 0.97, "mcnemar": {"p_value": 0.25, "lost": 9, "gained": 4}}},
            "errors": {},
            "targets": targets if targets is not None else {
                "max_ttft_ms": verdict("pass", ttft, 50.0, list(ci), "ms"),
                "max_size_mb": verdict("pass", size, 100.0, None, "MB"),
                "min_retention": verdict("pass", retention, 0.9, [retention - 0.01, retention + 0.01], "×")},
            **extra}


def variant(name: str, data: dict | None, gate: bool = True, status: str = "ok", error: str | None = None) -> dict:
    return {"name": name, "status": status, "gate": gate, "steps": [], "error": error, "traceback": None,
            "notes": [], "training": [], "runtimes": {"torch-eager": data} if data else {}}


def summary(*variants: dict) -> dict:
    return {"run_id": "r", "recipe": "hand", "baseline": "base", "targets": SPEC["targets"], "variants": list(variants)}


BASE = variant("base", runtime(40.0, (39.0, 41.0), 80.0, score=0.92), gate=False)


def test_a_clear_winner_with_why_cost_and_files():
    run = summary(BASE, variant("fast", runtime(10.0, (9.5, 10.5), 20.0)),
                  variant("slow", runtime(30.0, (29.0, 31.0), 10.0)))
    results = {"fast": {"artifact": "/cache/variants/abc123"}}
    plan = {"plan": [{"name": "fast", "formats": ["torch", "onnx"], "runtimes": []}]}
    d = recommend(run, SPEC, results, plan)
    assert (d["variant"], d["runtime"], d["select"]) == ("fast", "torch-eager", "ttft_ms")
    assert d["select_title"] == "TTFT p50 (ms)" and d["higher_is_better"] is False
    assert d["value"] == {"point": 10.0, "low": 9.5, "high": 10.5}
    assert d["ties"] == [] and [c["variant"] for c in d["candidates"]] == ["fast", "slow"]  # base: not gated
    assert "best TTFT p50 (ms) of the 2 variants" in d["reason"]
    rows = {t["name"]: t for t in d["targets"]}
    assert rows["max_ttft_ms"]["margin"] == pytest.approx(40.0) and rows["max_ttft_ms"]["ci"] == [9.5, 10.5]
    assert rows["max_ttft_ms"]["label"] == "TTFT p50 (ms) ≤ 50"
    assert rows["min_retention"]["margin"] == pytest.approx(0.1)  # a lower bound: value - limit
    assert rows["min_retention"]["label"] == "accuracy ≥ 0.9× baseline"
    cost = d["accuracy"]
    assert cost["baseline_score"] == 0.92 and cost["change"] == pytest.approx(0.9 - 0.92)
    assert cost["retention"] == 1.0 and cost["test"] == {"name": "McNemar exact", "p_value": 0.25, "lost": 9,
                                                         "gained": 4}
    assert d["files"] == {"artifact": "/cache/variants/abc123", "formats": ["torch", "onnx"], "size_mb": 20.0,
                          "files": 1, "storage_format": "safetensors"}
    assert d["closest"] is None


def test_a_tie_within_noise_is_named():
    run = summary(BASE, variant("a", runtime(10.0, (9.0, 11.0), 20.0)), variant("b", runtime(10.5, (9.8, 11.2), 20.0)),
                  variant("c", runtime(30.0, (29.0, 31.0), 20.0)))
    d = recommend(run, SPEC)
    assert d["variant"] == "a"
    assert [t["variant"] for t in d["ties"]] == ["b"]  # c is beyond noise
    assert "tied within noise with b" in d["reason"]


def test_no_candidate_names_the_closest_variant():
    undecided = runtime(45.0, (40.0, 55.0), 20.0)
    undecided["targets"]["max_ttft_ms"] = verdict("undecided", 45.0, 50.0, [40.0, 55.0], "ms",
                                                  why="the interval straddles the limit")
    too_big = runtime(10.0, (9.0, 11.0), 150.0)
    too_big["targets"]["max_size_mb"] = verdict("fail", 150.0, 100.0, None, "MB")
    too_big["targets"]["min_retention"] = verdict("fail", 0.8, 0.9, [0.78, 0.82], "×")
    broken = runtime(5.0, (4.0, 6.0), 10.0, errors={"lat": "boom"})
    run = summary(BASE, variant("undecided", undecided), variant("too-big", too_big), variant("broken", broken),
                  variant("crash", None, status="failed", error="SIGABRT"))
    d = recommend(run, SPEC)
    assert d["variant"] is None and d["runtime"] is None and d["candidates"] == []
    assert d["reason"].startswith("no variant meets every target")
    closest = d["closest"]  # one reason each for undecided and broken; broken is faster
    assert closest["variant"] == "broken" and closest["not_passed"] == ["suite 'lat' failed"]
    lines = banners(run)
    assert any("variant crash failed: SIGABRT" in line for line in lines)
    assert any("broken on torch-eager: suite 'lat' error: boom" in line for line in lines)
    undecided_line = next(line for line in lines if line.startswith("Target undecided"))
    assert "undecided on torch-eager: TTFT p50 (ms) ≤ 50" in undecided_line
    assert "straddles the limit" in undecided_line
    assert not any("too-big" in line for line in lines)  # a clear fail is in the table, not a banner


def test_a_higher_is_better_select():
    run = summary(BASE, variant("fast", runtime(10.0, (9.5, 10.5), 20.0, score=0.80)),
                  variant("accurate", runtime(30.0, (29.0, 31.0), 20.0, score=0.95)))
    d = recommend(run, {**SPEC, "select": "accuracy"})
    assert d["variant"] == "accurate" and d["higher_is_better"] is True and d["select_title"] == "accuracy"
    assert recommend(run, {**SPEC, "select": "decode_tps"})["variant"] == "fast"  # 100 tok/s beats 33
    assert recommend(run, {**SPEC, "select": "size_mb"})["ties"]  # equal sizes: a tie


def test_ungated_and_unknown_select_and_nothing_measured():
    run = summary(BASE)
    d = recommend(run, SPEC)
    assert d["variant"] is None and "gate: false" in d["reason"] and d["closest"]["variant"] == "base"
    run = summary(BASE, variant("a", runtime(10.0, (9.0, 11.0), 20.0)))
    assert "no objective" in recommend(run, {**SPEC, "select": "nonsense"})["reason"]
    assert recommend(summary(variant("x", None, status="failed", error="e")), SPEC)["reason"] == \
        "no gated variant was measured (x failed)"


def test_banners_for_unmeasured_targets_noise_and_noisy_headlines():
    missing = runtime(10.0, (9.0, 11.0), 20.0)
    missing["targets"]["max_peak_memory_mb"] = {"status": "not measured", "limit": 500, "why": "no memory suite"}
    noisy = runtime(49.0, (47.0, 52.0), 20.0)
    noisy["targets"]["max_ttft_ms"]["within_noise"] = True
    noisy["latency"]["noisy"] = True
    other = runtime(10.0, (9.0, 11.0), 20.0)
    other["targets"]["max_peak_memory_mb"] = {"status": "not measured", "limit": 500, "why": "no memory suite"}
    lines = banners(summary(BASE, variant("a", missing), variant("b", noisy), variant("c", other)))
    grouped = [line for line in lines if line.startswith("Target not measured")]
    assert len(grouped) == 1 and "a on torch-eager, c on torch-eager" in grouped[0]  # one line per reason
    assert "no memory suite" in grouped[0] and "add a suite" in grouped[0]
    assert any(line.startswith("Pass within noise — b on torch-eager") for line in lines)
    assert any(line.startswith("Noisy number — b on torch-eager: its latency headline") for line in lines)
    assert advice({"status": "pass"}) == "" and "re-measure" in advice({"status": "undecided"}, short=True)
    assert "fix the failed suite" in advice({"status": "not measured", "why": "suite 'x' failed: boom"}, short=True)


def test_human_names_for_targets_and_pareto_standing():
    assert target_label("max_size_mb", 100.0) == "size (MB) ≤ 100"
    assert target_label("max_peak_memory_mb", 500) == "peak memory, model delta (MiB) ≤ 500"
    assert target_label("no_such_target", 3) == "no_such_target 3"
    titles = {o.name: o.title for o in objectives()}
    standing = Standing(weakly_dominated_by={"b": Comparison(better=["ttft_ms"], ties=["size_mb", "accuracy"])})
    text = standing_text(standing, titles)
    assert text == "weakly dominated by b (better on TTFT p50 (ms); within noise on size (MB), accuracy)"
    assert "size_mb" not in standing_text(standing)  # titles by default


def test_axes_fit_the_data_and_go_log_beyond_ten_times():
    axis = charts.fit_axis([8.0, 9.0, 21.0], limit=20.0)
    assert not axis.log and 6.0 < axis.lo < 8.0 and 21.0 < axis.hi < 23.0  # not 0 to the target
    far = charts.fit_axis([1.0, 2.8], limit=100.0)  # a far-off limit does not squash the points
    assert not far.log and far.hi < 3.0 and not far.contains(100.0)
    near = charts.fit_axis([1.0, 2.0], limit=2.3)
    assert near.contains(2.3)
    log = charts.fit_axis([1.0, 5.0, 250.0])
    assert log.log and log.lo < 0 < log.hi and log.contains(1.0) and log.contains(250.0)
    flat = charts.fit_axis([0.5, 0.5])
    assert flat.lo < 0.5 < flat.hi


def test_labels_overlap_no_other_label_or_marker():
    crowd = [(f"variant-{i}", 100 + 3 * i, 200 + (i % 3)) for i in range(8)] + [("far", 700, 50)]
    offsets = charts.place_labels(crowd, 900, 400)
    boxes = []
    for name, x, y in crowd:
        w, h = charts._label_size(name)
        dx, dy = offsets[name]
        boxes.append((x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2))
    assert all(charts._overlap(a, b) == 0 for a, b in itertools.combinations(boxes, 2))
    markers = [(x - 7, y - 7, x + 7, y + 7) for _, x, y in crowd]
    assert all(charts._overlap(box, marker) == 0 for box in boxes for marker in markers)
