"""`harness run` with the `android-litert` runtime against the fake adb (tests/fake_adb.py): the
phone's numbers reach results.json, result.json, the report, `harness compare` and the gate like
any runtime's, accuracy is not applicable there, and a phone that is locked or prints garbage is
one line in the recorded result while torch-eager's results are all there."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from . import fake_adb
from .test_android_runtime import MEMORY_OUT, OVERALL_MB, SERIAL, expected_latency, state

VARIANTS = """\
- name: base
  steps: []
- name: tfl
  steps: [{kind: export-tflite, prefill_length: 8, cache_length: 64}]
"""


def _phone_recipe(root: Path, suites: str, name: str) -> Path:
    from .runs import make_recipe

    path = make_recipe(root, VARIANTS, suites=suites, name=name)
    path.write_text(path.read_text() + f"runtimes: [torch-eager, android-litert]\nruntime_options:\n"
                                       f"  android-litert: {{serial: {SERIAL}, threads: 2, runs: 5}}\n")
    return path


def _run_with(root: Path, phone_state: dict, suites: str, name: str) -> tuple[Path, Path]:
    from harness.run.runner import run

    with pytest.MonkeyPatch.context() as mp:
        state_file = fake_adb.install(root / "bin", phone_state)
        mp.setenv("PATH", f"{root / 'bin'}:{os.environ['PATH']}")
        mp.setenv("FAKE_ADB_STATE", str(state_file))
        return run(_phone_recipe(root, suites, name), output=root / "reports", progress=False), state_file


@pytest.fixture(scope="module")
def phone_run(tmp_path_factory, nano_dir) -> tuple[Path, Path]:
    return _run_with(tmp_path_factory.mktemp("phone"), state(), "[acc-small, lat-small, mem-small, size]", "phone")


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def _variant(summary: dict, name: str) -> dict:
    return next(v for v in summary["variants"] if v["name"] == name)


def test_a_run_records_the_phone_like_any_runtime(phone_run):
    from harness.results.gate import checks
    from harness.runtimes.android_litert import AndroidLiteRT

    run_dir, _ = phone_run
    summary = _summary(run_dir)
    tfl = _variant(summary, "tfl")
    phone = tfl["runtimes"]["android-litert"]
    result = json.loads((run_dir / "variants" / "tfl" / "result.json").read_text())
    manifest = json.loads((Path(result["artifact"]) / "exports" / "tflite" / "export.json").read_text())
    chunks = -(-manifest["model"]["visual_tokens"] // manifest["model"]["prefill_length"])
    want = expected_latency(chunks)
    latency = phone["latency"]
    assert latency["ttft_p50_ms"] == pytest.approx(want["ttft"])
    assert latency["vision_p50_ms"] == pytest.approx(want["vision"])
    assert latency["prefill_p50_ms"] == pytest.approx(want["prefill"])
    assert latency["preprocess_p50_ms"] is None
    assert latency["decode_tokens_per_s_p50"] == pytest.approx(1e3 / want["step"])
    assert latency["estimate"]["prefill_chunks"] == chunks and latency["estimate"]["not_included"]
    memory = sum(OVERALL_MB[MEMORY_OUT[s]] for s in ("encode", "prefill_embedder_8", "prefill_8"))
    assert phone["memory"]["model_delta_mb"] == pytest.approx(memory)
    why = f"android-litert measures latency/memory/size suites only: {AndroidLiteRT.not_measured}"
    assert phone["not_applicable"] == {"acc-small": why, "parity": why}
    assert phone["targets"]["min_retention"]["status"] == "not applicable"
    assert phone["targets"]["max_ttft_ms"]["status"] == "fail"  # 4 s on the recorded samples vs 1000 ms
    assert phone["size"]["total_mb"] > 0 and not phone["errors"]
    assert "ttft_ratio_to_baseline" not in latency  # the baseline was timed on this machine, not the phone
    measured = result["measurements"]["android-litert"]
    assert measured["info"]["device"]["model"] == "Pixel 8"
    note = next(n for n in tfl["notes"] if n.startswith("android-litert: measured on Google Pixel 8 (Tensor G3, "
                                                         f"Android 14, cpufreq governor schedutil; serial {SERIAL})"))
    assert "TTFT is an estimate" in note and "not included: host-side image preprocessing" in note
    assert measured["suites"]["lat-small"]["device"]["android"] == "14"
    assert measured["suites"]["acc-small"] == {"status": "not applicable", "kind": "accuracy", "reason": why}
    base = _variant(summary, "base")
    assert base["runtimes"]["torch-eager"]["accuracy"]["acc-small"]["score"] > 0
    assert base["not_applicable"]["android-litert"].startswith("android-litert runs tflite artifacts")
    gate = {(c.variant, c.runtime, c.target): c for c in checks(summary)}
    assert gate[("tfl", "android-litert", "min_retention")].skipped
    assert gate[("tfl", "android-litert", "suite:acc-small")].skipped
    assert not gate[("tfl", "android-litert", "max_ttft_ms")].ok
    report = (run_dir / "report.html").read_text()
    assert "Variants on android-litert" in report and f"{want['ttft']:.2f}" in report
    assert "measured on Google Pixel 8" in report


def test_compare_sees_the_phone_between_two_runs(phone_run, tmp_path):
    from harness.results.compare import compare_runs

    run_dir, _ = phone_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    changes = [c for c in compare_runs(run_dir, copy).changes if c.runtime == "android-litert"]
    assert {c.metric for c in changes} >= {"peak memory delta MiB"}
    assert any("ttft" in c.metric.lower() for c in changes)


def test_output_that_does_not_parse_is_one_line_and_the_rest_stays(phone_run, tmp_path):
    """The phone's rounds measured again (`harness run --resume`) with benchmark_model printing garbage."""
    from harness.run.runner import run

    run_dir, state_file = phone_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    result_path = copy / "variants" / "tfl" / "result.json"
    result = json.loads(result_path.read_text())
    for suite, kind in (("lat-small", "latency"), ("mem-small", "memory")):
        result["measurements"]["android-litert"]["suites"][suite] = {"status": "pending", "kind": kind}
    result_path.write_text(json.dumps(result))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{state_file.parent}:{os.environ['PATH']}")
        mp.setenv("FAKE_ADB_STATE", str(state_file))
        fake_adb.update(state_file, garbage="Segmentation fault")
        try:
            run(resume=copy, progress=False)
        finally:
            fake_adb.update(state_file, garbage=None)
    phone = _variant(_summary(copy), "tfl")["runtimes"]["android-litert"]
    error = phone["errors"]["lat-small"]
    assert "has no 'Inference timings in us' line" in error and "(its last line: 'Segmentation fault')" in error
    assert "\n" not in error and "vision.tflite:encode" in error
    assert "mem-small" in phone["errors"] and phone["size"]["total_mb"] > 0
    base = _variant(_summary(copy), "base")["runtimes"]["torch-eager"]
    assert base["latency"]["ttft_p50_ms"] > 0 and base["accuracy"]["acc-small"]["score"] > 0


def test_an_unauthorized_phone_is_one_line_and_torch_eager_is_measured(tmp_path_factory, nano_dir):
    run_dir, _ = _run_with(tmp_path_factory.mktemp("locked"), state(devices={SERIAL: "unauthorized"}),
                           "[lat-small, size]", "locked")
    summary = _summary(run_dir)
    phone = _variant(summary, "tfl")["runtimes"]["android-litert"]
    line = phone["unavailable"]["lat-small"]
    assert line == (f"android-litert: device '{SERIAL}' is unauthorized: accept the 'Allow USB debugging?' prompt on "
                    "the phone (or revoke and re-accept the authorisations in Developer options), then rerun")
    assert phone["size"]["total_mb"] > 0 and phone["targets"]["max_ttft_ms"]["status"] == "not measured"
    assert _variant(summary, "base")["runtimes"]["torch-eager"]["latency"]["ttft_p50_ms"] > 0
    plan = json.loads((run_dir / "run.json").read_text())
    assert plan["notices"] == [f"{line} (its latency and memory suites will be recorded unavailable)"]
