"""Numbers measured on a device, imported into a run: the `benchmark_model` parser on real outputs
(tests/data/benchmark_model/, each naming its source on its first line; the expected numbers are
read off the files by hand), the app JSON format and its one-line errors, and `harness device
import` end to end on a real run of the nano reference (results.json, report, compare, gate)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.devices.app_format import DeviceResults, json_schema, loads, parse
from harness.errors import DataError
from harness.runtimes import benchmark_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "data" / "benchmark_model"
runner = CliRunner()


# --- benchmark_model ------------------------------------------------------------------------------
EXPECTED = {
    # plain output, scientific notation, op profiling after the timings (its "Timings (microseconds):
    # count=50 ... avg=2.9499e+06" line must not be taken for the steady state)
    "riscv-qemu-cpu-op-profiling.txt": dict(
        init_us=17187, first_us=3512391, warmup_avg_us=3.51239e6, inference_avg_us=2.95034e6, warmup_count=1,
        model="./mobilenet_v1_1.0_224.tflite", graph="mobilenet_v1_1.0_224.tflite", threads=4, delegates={},
        applied={}, model_size_mb=16.9008, memory_init_mb=4.21094, memory_overall_mb=46.0859, peak_memory_mb=None,
        steady=dict(count=50, avg_us=2.95034e6, std_us=109798, min_us=2727568, max_us=3189954, first_us=2990275,
                    median_us=None)),
    # INFO: prefixes, percentiles on the count line, threads only on the quoted command line
    "am62x-xnnpack.txt": dict(
        init_us=614333, first_us=905463, warmup_avg_us=905463, inference_avg_us=899641, warmup_count=1,
        model="/usr/share/oob-demo-assets/models/ssd_mobilenet_v2_coco.tflite", graph="ssd_mobilenet_v2_coco.tflite",
        threads=4, delegates={"XNNPACK": True}, applied={"XNNPACK": "partially (1 delegate kernels)"},
        model_size_mb=67.3128, memory_init_mb=146.363, memory_overall_mb=150.141, signature=None,
        steady=dict(count=50, avg_us=899641, std_us=1549, min_us=898007, max_us=906121, first_us=900416,
                    median_us=899281, p5_us=898333, p95_us=904305)),
    # a multi-line adb command (backslash continuations), the GPU delegate, a warm-up line with avg=
    "android-gpu.txt": dict(
        init_us=870557, first_us=130565, warmup_avg_us=122373, inference_avg_us=119375, warmup_count=4,
        model="/data/local/tmp/tflite/denoising_32bit.tflite", graph="denoising_32bit.tflite", threads=4,
        delegates={"GPU": True}, applied={"GPU": "completely"}, model_size_mb=7.07479, memory_overall_mb=None,
        steady=dict(count=50, avg_us=119375, std_us=1948, min_us=113737, max_us=124776, first_us=119212)),
    # the Android benchmark app's logcat lines; no graph or threads in the part quoted
    "android-logcat-nnapi.txt": dict(
        init_us=126059, first_us=32942, warmup_avg_us=12581.9, inference_avg_us=12167.6, warmup_count=40,
        model=None, graph=None, threads=None, delegates={}, applied={"NNAPI": "partially (44 delegate kernels)"},
        model_size_mb=0.113392, memory_overall_mb=None,
        steady=dict(count=75, avg_us=12167.6, std_us=325, min_us=11787, max_us=13649, first_us=12840)),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_model_samples_parse_to_the_numbers_in_them(name):
    path = SAMPLES / name
    assert path.read_text().startswith("# source: "), "every sample names where it came from"
    run = benchmark_model.read(path).to_json()
    expected = EXPECTED[name]
    for key, value in expected.items():
        if key == "steady":
            for field, number in value.items():
                assert run["steady"][field] == pytest.approx(number) if number is not None else \
                    run["steady"][field] is None, (name, field)
        else:
            assert run[key] == (pytest.approx(value) if isinstance(value, float) else value), (name, key)


def test_every_recorded_sample_is_tested():
    assert sorted(p.name for p in SAMPLES.glob("*.txt")) == sorted(EXPECTED)


def test_peak_memory_older_footprint_line_and_the_app_args_are_read():
    """The periodic-monitoring peak (`--report_peak_memory_footprint`), the older name of the delta
    line, and the benchmark app's `args:` line, in the wording of benchmark_model.cc."""
    text = "\n".join([
        "06-18 10:20:41.572  4669  4669 I tflite_BenchmarkModelActivity: Running TensorFlow Lite benchmark with "
        "args: --graph=/data/local/tmp/vision.tflite --signature_to_run_for=encode --num_threads=2 --use_gpu=true",
        "INFO: count=12 first=20100 curr=14800 min=14500 max=20100 avg=15216.7 std=1520",
        "INFO: Inference timings in us: Init: 5685, First inference: 18535, Warmup (avg): 14462.3, Inference (avg): "
        "14154.7",
        "Peak memory footprint (MB): init=4.92969 overall=138.809",
        "INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383"])
    run = benchmark_model.parse(text)
    assert (run.memory_init_mb, run.memory_overall_mb, run.peak_memory_mb) == (4.92969, 138.809, 93.2383)
    assert (run.graph, run.threads, run.delegates) == ("vision.tflite:encode", 2, {"GPU": True})
    assert run.inference_avg_us == 14154.7 and run.steady.count == 12 and run.warmup_count is None


@pytest.mark.parametrize(("text", "needle"), [
    ("", "(it is empty)"),
    ("STARTING!\nGraph: [m.tflite]\nERROR: Failed to allocate tensors!\n",
     "its last line: 'Failed to allocate tensors!'"),
])
def test_a_log_without_timings_is_one_line_naming_the_file(tmp_path, text, needle):
    path = tmp_path / "crashed.log"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        benchmark_model.read(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "no 'Inference timings in us' line" in message
    assert needle in message


def test_two_runs_in_one_log_are_refused():
    two = (SAMPLES / "am62x-xnnpack.txt").read_text() * 2
    with pytest.raises(DataError, match="holds 2 benchmark_model runs"):
        benchmark_model.parse(two, "both.log")


# --- the app JSON -------------------------------------------------------------------------------
def example() -> dict:
    """The example of docs/devices.md (so the documented example is a valid file)."""
    text = (ROOT / "docs" / "devices.md").read_text()
    return json.loads(re.search(r"```json\n(.*?)\n```", text, re.S)[1])


def test_the_documented_example_round_trips():
    doc = parse(example(), "example.json")
    again = loads(doc.model_dump_json(), "again.json")
    assert again == doc
    first = doc.latency_processes()[0]
    assert first["samples"]["ttft_ms"] == [103.6, 102.1, 105.2, 102.6, 102.7]
    assert first["samples"]["decode_tokens_per_s"][0] == pytest.approx(1000 / 21.4)
    assert first["iterations"] == 5 and first["new_tokens"] == 8 and first["cpu"] == "Google Tensor G3"
    assert first["measured_seconds"] == pytest.approx(sum(t + d * 8 for t, d in zip(
        [103.6, 102.1, 105.2, 102.6, 102.7], [21.4, 21.1, 21.9, 21.3, 21.2])) / 1e3)
    assert doc.identity()["app"]["runtime_version"] == "1.4.0"


def test_the_sample_keys_are_the_stages_the_harness_times():
    from harness.devices.app_format import Samples
    from harness.suites._latency_measure import STAGES

    assert set(Samples.model_fields) == {*STAGES, "decode_tokens_per_s"}
    stages = parse(example(), "e.json").latency_processes()[0]["samples"]
    assert set(stages) == set(STAGES) - {"total_ms"} | {"decode_tokens_per_s"}


def test_the_published_schema_is_current_and_validates_the_example():
    """docs/device-results.schema.json is `harness device schema` (regenerate with -o)."""
    import jsonschema

    published = json.loads((ROOT / "docs" / "device-results.schema.json").read_text())
    assert published == json_schema()
    jsonschema.validate(example(), published)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example(), "version": 2}, published)


def _edit(path: str, value: object):  # noqa: ANN202 - a function editing a document
    def change(doc: dict) -> None:
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return change


@pytest.mark.parametrize(("change", "needle"), [
    (_edit("runs.0.samples.ttft_ms", KeyError), "runs[0].samples.ttft_ms: missing: add it"),
    (_edit("runs.0.samples.vision_ms", [41.8, "slow", 42.5, 41.2, 41.0]),
     "runs[0].samples.vision_ms[1]: Input should be a valid number"),
    (_edit("runs.0.samples.prefill_ms", [58.3, 57.9]), "prefill_ms has 2 values but ttft_ms has 5"),
    (_edit("runs.1.samples.ttft_ms", [0.1048, 0.1049, 0.1032, 0.1055, 0.1043]),
     "ttft_ms[0] = 0.1048 is less than preprocess + vision + prefill = 104.4"),
    (_edit("runs.0.samples.decode_token_ms", KeyError), "give decode_token_ms or decode_tokens_per_s"),
    (_edit("runs.0.samples.decode_token_ms", [21.4, -1, 21.9, 21.3, 21.2]), "decode_token_ms[1] = -1.0"),
    (_edit("devise", {}), "devise: unknown field 'devise' — did you mean 'device'?"),
    (_edit("device.soc", KeyError), "device.soc: missing"),
    (_edit("runs.0.baseline_memory_mb", 800.0), "is above peak_memory_mb 742"),
    (_edit("runs", []), "runs: List should have at least 1 item"),
    (_edit("version", 2), "version: Input should be 1"),
    (_edit("format", "something-else"), "is not 'fastvlm-harness/device-results'"),
])
def test_invalid_app_json_is_one_line_with_file_field_and_fix(change, needle):
    doc = copy.deepcopy(example())
    change(doc)
    with pytest.raises(DataError) as err:
        parse(doc, "pixel8.json")
    message = str(err.value)
    assert "\n" not in message and message.startswith("pixel8.json: ")
    assert needle in message, message


def test_decode_speed_may_be_given_as_tokens_per_second():
    doc = copy.deepcopy(example())
    for run in doc["runs"]:
        run["samples"]["decode_tokens_per_s"] = [1000 / x for x in run["samples"].pop("decode_token_ms")]
    samples = parse(doc, "tps.json").latency_processes()[0]["samples"]
    assert samples["decode_token_ms"] == pytest.approx([21.4, 21.1, 21.9, 21.3, 21.2])


def test_malformed_json_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"x.json: not valid JSON \(line 1 column 12"):
        loads('{"format": }', "x.json")
    assert isinstance(parse(example(), "e.json"), DeviceResults)


# --- harness device import, end to end on a real run ----------------------------------------------
TARGETS = "{max_ttft_ms: 1000, max_size_mb: 100, max_peak_memory_mb: 2000, min_retention: 0.5}"
LABEL = "android-pixel8"


@pytest.fixture(scope="module")
def device_run(tmp_path_factory, nano_dir) -> Path:
    """A small real run (one variant; accuracy and size only: no latency measured here)."""
    from harness.run.runner import run

    from .runs import make_recipe

    root = tmp_path_factory.mktemp("device")
    recipe = make_recipe(root, "- name: base\n  steps: []\n", suites="[acc-small, size]", name="dev",
                         targets=TARGETS)
    return run(recipe, output=root / "reports", progress=False)


def clone(run_dir: Path, root: Path, run_id: str) -> Path:
    target = root / run_id
    shutil.copytree(run_dir, target)
    plan = json.loads((target / "run.json").read_text())
    (target / "run.json").write_text(json.dumps({**plan, "run_id": run_id}))
    return target


def app_doc(scale: float = 1.0, iterations: int = 10) -> dict:
    """One launch of `iterations` timed answers of variant base, stage times × `scale`."""
    wobble = [1 + 0.01 * (i % 5) for i in range(iterations)]
    stages = {"preprocess_ms": 3.0, "vision_ms": 40.0, "prefill_ms": 60.0}
    samples = {k: [round(v * w * scale, 3) for w in wobble] for k, v in stages.items()}
    samples["ttft_ms"] = [round(sum(samples[k][i] for k in stages) + 0.5, 3) for i in range(iterations)]
    samples["decode_token_ms"] = [round(20.0 * w, 3) for w in wobble]
    doc = {**example(), "variant": "base"}
    doc["runs"] = [{"cold_start": {"load_ms": 800.0, "first_generation_ms": 700.0}, "samples": samples,
                    "peak_memory_mb": 740.0, "baseline_memory_mb": 100.0}]
    return doc


def write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def imported(run_dir: Path, file: Path, *extra: str, label: str = LABEL):  # noqa: ANN201 - a click Result
    from harness.cli import app

    return runner.invoke(app, ["device", "import", str(run_dir), str(file), "--variant", "base", "--as", label,
                               *extra])


def summary_of(run_dir: Path) -> dict:
    return next(v for v in json.loads((run_dir / "results.json").read_text())["variants"] if v["name"] == "base")


def test_an_app_json_becomes_a_runtime_of_the_variant(device_run, tmp_path):
    import statistics

    from harness.cli import app

    run_dir = clone(device_run, tmp_path, "app")
    doc = {**example(), "variant": "base"}
    file = write(tmp_path / "pixel8.json", doc)
    out = imported(run_dir, file)
    assert out.exit_code == 0, out.output
    assert f"on runtime '{LABEL}' (suites device-latency, device-memory, marked imported)" in out.output

    base = summary_of(run_dir)
    phone = base["runtimes"][LABEL]
    medians = [statistics.median(r["samples"]["ttft_ms"]) for r in doc["runs"]]  # 102.7 and 104.8
    assert phone["latency"]["ttft_p50_ms"] == pytest.approx(statistics.median(medians)) == pytest.approx(103.75)
    assert phone["latency"]["processes"] == 2 and phone["latency"]["iterations"] == 10
    assert phone["latency"]["vision_p50_ms"] == pytest.approx(statistics.median([41.2, 42.2]))
    assert phone["latency"]["decode_tokens_per_s_p50"] == pytest.approx(
        statistics.median([1000 / 21.3, 1000 / 21.6]))
    assert phone["latency"]["cold_start_ms"] == pytest.approx(812.0 + 690.5)  # the first launch's
    assert phone["memory"]["model_delta_mb"] == pytest.approx(statistics.median([742.0 - 96.5, 745.5 - 97.0]))
    assert phone["targets"]["max_ttft_ms"]["status"] == "pass"
    assert phone["targets"]["max_ttft_ms"]["value"] == pytest.approx(103.75)
    assert phone["targets"]["max_peak_memory_mb"]["status"] == "pass"
    assert phone["targets"]["min_retention"]["status"] == "not measured"  # the phone ran no accuracy suite
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    notes = [n for n in base["notes"] if n.startswith(f"imported on {LABEL} (app JSON)")]
    assert len(notes) == 1 and f"sha256 {sha[:12]}" in notes[0]
    assert "LiteRT 1.4.0 (XNNPACK, 4 threads), Pixel 8 (Google Tensor G3, Android 14)" in notes[0]
    assert "not measured by this harness" in notes[0]

    result = json.loads((run_dir / "variants" / "base" / "result.json").read_text())
    phone_result = result["measurements"][LABEL]
    assert phone_result["info"]["imported"] is True and phone_result["info"]["source"]["sha256"] == sha
    latency = phone_result["suites"]["device-latency"]
    assert latency["imported"]["format"] == "app-json" and latency["imported"]["file"] == str(file.resolve())
    assert latency["imported"]["device"]["soc"] == "Google Tensor G3"
    assert "rounds" not in latency  # no paired ratio: not measured in rounds with the baseline
    assert latency["samples"]["ttft_ms"][:2] == [103.6, 102.1] and latency["noise"]["between_process_cv"] > 0
    assert result["measurements"]["torch-eager"]["suites"]["size"]["status"] == "ok"  # the run's own untouched
    plan = json.loads((run_dir / "run.json").read_text())
    assert [s["name"] for s in plan["suites"] if s.get("imported")] == ["device-latency", "device-memory"]

    html = (run_dir / "report.html").read_text()
    assert f"Variants on {LABEL}" in html and f"imported on {LABEL} (app JSON)" in html
    assert "TTFT p50 ms" in html  # the latency columns appear: the imported suite is in the plan

    gate = runner.invoke(app, ["gate", str(run_dir), "--json"])
    checks = {(c["runtime"], c["target"]): c for c in json.loads(gate.output)["checks"]}
    assert checks[(LABEL, "max_ttft_ms")]["mark"] == "PASS" and "103.8 ms" in checks[(LABEL, "max_ttft_ms")]["message"]
    assert checks[(LABEL, "min_retention")]["mark"] == "ERROR"  # not measured never passes
    assert gate.exit_code == 3  # ...and torch-eager has no latency suite in this recipe either

    again = imported(run_dir, write(tmp_path / "pixel8-again.json", app_doc()))
    assert again.exit_code == 0, again.output
    base = summary_of(run_dir)
    assert sum(n.startswith(f"imported on {LABEL} (app JSON)") for n in base["notes"]) == 1  # replaced
    assert base["runtimes"][LABEL]["latency"]["iterations"] == 10
    assert base["runtimes"][LABEL]["latency"]["processes"] == 1


def test_a_benchmark_model_log_is_a_note_never_ttft(device_run, tmp_path):
    from harness.cli import app

    run_dir = clone(device_run, tmp_path, "graph")
    log = SAMPLES / "am62x-xnnpack.txt"
    out = imported(run_dir, log, "--device", "TI AM62x EVM", label="am62x-evm")
    assert out.exit_code == 0, out.output
    assert "one graph's inference time: not TTFT, not gated" in out.output

    result = json.loads((run_dir / "variants" / "base" / "result.json").read_text())
    graph = result["imported"]["am62x-evm"]["graphs"]["ssd_mobilenet_v2_coco.tflite"]
    assert graph["inference_avg_us"] == 899641 and graph["inference_avg_ms"] == pytest.approx(899.641)
    assert graph["steady"]["std_us"] == 1549 and graph["threads"] == 4 and graph["memory_overall_mb"] == 150.141
    assert graph["source"] == {**graph["source"], "format": "benchmark-model", "device": "TI AM62x EVM",
                               "sha256": hashlib.sha256(log.read_bytes()).hexdigest()}
    assert "am62x-evm" not in result["measurements"]  # no runtime: nothing of it is a target's number

    base = summary_of(run_dir)
    assert "am62x-evm" not in base["runtimes"]
    note = next(n for n in base["notes"] if n.startswith("imported on am62x-evm (benchmark_model graph "
                                                         "ssd_mobilenet_v2_coco.tflite)"))
    assert "inference avg 899.6 ms over 50 runs (std 1.55 ms, min 898 ms), first inference 905.5 ms" in note
    assert "XNNPACK partially (1 delegate kernels), 4 threads" in note and "device TI AM62x EVM" in note
    assert "not TTFT" in note and "memory delta from the tool's start 150.1 MiB" in note
    assert "benchmark_model graph ssd_mobilenet_v2_coco.tflite" in (run_dir / "report.html").read_text()
    gate = runner.invoke(app, ["gate", str(run_dir), "--json"])
    assert gate.exit_code == 3 and not any(c["runtime"] == "am62x-evm" for c in json.loads(gate.output)["checks"])


def test_compare_judges_the_imported_runtime_between_two_runs(device_run, tmp_path):
    from harness.results.compare import REGRESSION, SAME, compare_runs

    old, new = clone(device_run, tmp_path, "old"), clone(device_run, tmp_path, "new")
    assert imported(old, write(tmp_path / "old.json", app_doc())).exit_code == 0
    assert imported(new, write(tmp_path / "new.json", app_doc(scale=3.0))).exit_code == 0
    changes = {(c.runtime, c.metric): c for c in compare_runs(old, new).changes if c.variant == "base"}
    ttft = changes[(LABEL, "TTFT p50 ms")]
    assert ttft.verdict == REGRESSION and ttft.new / ttft.old == pytest.approx(3.0, rel=0.01)
    assert "unpaired" in ttft.note  # no rounds: judged against the wider unpaired ratio
    assert changes[(LABEL, "decode per token p50 ms")].verdict == SAME
    assert changes[(LABEL, "peak memory delta MiB")].verdict == SAME


@pytest.fixture(scope="module")
def bad_run(device_run, tmp_path_factory) -> Path:
    return clone(device_run, tmp_path_factory.mktemp("bad"), "bad")


def _bad_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = write(tmp / "good.json", app_doc())
    other = write(tmp / "other.json", {**app_doc(), "variant": "int8-llm"})
    broken = copy.deepcopy(app_doc())
    del broken["runs"][0]["samples"]["ttft_ms"]
    keyed = write(tmp / "keyed.json", {**app_doc(), "artifact_key": "0" * 64})
    (tmp / "notes.txt").write_text("the phone said it was fast\n")
    log = str(SAMPLES / "am62x-xnnpack.txt")
    return {
        "not a run": ([str(tmp / "nowhere"), str(good), "--variant", "base"], "is not a run directory"),
        "unknown variant": (["RUN", str(good), "--variant", "bsae"], "variant 'bsae' is not in run"),
        "unreadable file": (["RUN", str(tmp / "missing.json"), "--variant", "base"], "cannot read"),
        "harness runtime": (["RUN", str(good), "--variant", "base", "--as", "torch-eager"],
                            "is a runtime this harness runs"),
        "bad label": (["RUN", str(good), "--variant", "base", "--as", "my phone"], "a runtime label is"),
        "other variant": (["RUN", str(other), "--variant", "base"], "measured variant 'int8-llm', not 'base'"),
        "invalid json": (["RUN", str(write(tmp / "broken.json", broken)), "--variant", "base"],
                         "broken.json: runs[0].samples.ttft_ms: missing"),
        "other build": (["RUN", str(keyed), "--variant", "base"], "is not variant 'base''s build key"),
        "unknown format": (["RUN", str(good), "--variant", "base", "--format", "csv"], "--format 'csv' is not one"),
        "what is it": (["RUN", str(tmp / "notes.txt"), "--variant", "base"], "cannot tell what"),
        "log as json": (["RUN", log, "--variant", "base", "--format", "app-json"], "not valid JSON"),
        "json as log": (["RUN", str(good), "--variant", "base", "--format", "benchmark-model"],
                        "no 'Inference timings in us' line"),
        "device for json": (["RUN", str(good), "--variant", "base", "--device", "Pixel 8"],
                            "--device is for benchmark_model logs"),
    }


@pytest.mark.parametrize("case", ["not a run", "unknown variant", "unreadable file", "harness runtime", "bad label",
                                  "other variant", "invalid json", "other build", "unknown format", "what is it",
                                  "log as json", "json as log", "device for json"])
def test_a_bad_import_is_one_line_exit_2_and_writes_nothing(bad_run, tmp_path, case):
    from harness.cli import app

    args, needle = _bad_cases(tmp_path)[case]
    args = [str(bad_run) if a == "RUN" else a for a in args]
    if "--as" not in args:
        args += ["--as", LABEL]
    before = {p: p.read_bytes() for p in bad_run.rglob("*") if p.is_file()}
    out = runner.invoke(app, ["device", "import", *args])
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1 and "Traceback" not in out.output, out.output
    assert needle in lines[0], lines[0]
    assert {p: p.read_bytes() for p in bad_run.rglob("*") if p.is_file()} == before
