"""The `android-litert` runtime against a fake `adb` (tests/fake_adb.py: a test double of adb and the
phone, printing the recorded real benchmark_model outputs of tests/data/benchmark_model/): the
numbers it parsed reach the latency and memory results exactly, the device's identity is recorded,
accuracy suites are not applicable with the reason, and every failure (no device, unauthorized,
wrong serial, benchmark_model missing or not executable, output that does not parse) is one line
in the recorded result (a whole run: tests/test_android_run.py). The runtime's own code runs for
real: the real adb command lines, the real parser, the plan; only the device is a double."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.errors import ConfigError, DataError, HarnessError, RuntimeBackendError, RuntimeUnavailable

from . import fake_adb

SAMPLES = Path(__file__).resolve().parent / "data" / "benchmark_model"
SERIAL = "R5CT32FAKE"
BINARY = "/data/local/tmp/benchmark_model"
PROPS = {"ro.product.model": "Pixel 8", "ro.product.manufacturer": "Google", "ro.soc.model": "Tensor G3",
         "ro.board.platform": "zuma", "ro.build.version.release": "14", "ro.build.version.sdk": "34",
         "ro.product.cpu.abi": "arm64-v8a"}
#: The recorded output printed for each signature (latency runs), and the numbers read off each file
#: by hand (µs): inference avg, first inference, init.
LATENCY_OUT = {"encode": "am62x-xnnpack.txt", "prefill_embedder_8": "android-logcat-nnapi.txt",
               "prefill_8": "android-gpu.txt", "decode_embedder": "android-logcat-nnapi.txt",
               "decode": "riscv-qemu-cpu-op-profiling.txt"}
#: Memory runs need the footprint line: the two samples that have it (overall= MiB read off the files).
MEMORY_OUT = {"encode": "am62x-xnnpack.txt", "prefill_embedder_8": "riscv-qemu-cpu-op-profiling.txt",
              "prefill_8": "riscv-qemu-cpu-op-profiling.txt", "decode_embedder": "riscv-qemu-cpu-op-profiling.txt",
              "decode": "riscv-qemu-cpu-op-profiling.txt"}
US = {"am62x-xnnpack.txt": (899641, 905463, 614333), "android-logcat-nnapi.txt": (12167.6, 32942, 126059),
      "android-gpu.txt": (119375, 130565, 870557), "riscv-qemu-cpu-op-profiling.txt": (2.95034e6, 3512391, 17187)}
OVERALL_MB = {"am62x-xnnpack.txt": 150.141, "riscv-qemu-cpu-op-profiling.txt": 46.0859}


def ms(file: str, which: int = 0) -> float:
    return US[file][which] / 1e3


def expected_latency(chunks: int) -> dict[str, float]:
    """What the result must hold, from the recorded files' numbers."""
    vision = ms(LATENCY_OUT["encode"])
    prefill = chunks * (ms(LATENCY_OUT["prefill_embedder_8"]) + ms(LATENCY_OUT["prefill_8"]))
    step = ms(LATENCY_OUT["decode_embedder"]) + ms(LATENCY_OUT["decode"])
    return {"vision": vision, "prefill": prefill, "step": step, "ttft": vision + prefill + step}


def state(**changes: object) -> dict:
    base = {"devices": {SERIAL: "device"}, "props": PROPS, "governor": "schedutil", "benchmark_model": BINARY,
            "binary": "ok", "outputs": {k: str(SAMPLES / v) for k, v in LATENCY_OUT.items()},
            "memory_outputs": {k: str(SAMPLES / v) for k, v in MEMORY_OUT.items()}}
    return {**base, **changes}


@pytest.fixture
def phone(tmp_path, monkeypatch):
    """A fake adb first on PATH with a healthy phone; returns its state file (edit with fake_adb.update)."""
    folder = tmp_path / "bin"
    path = fake_adb.install(folder, state())
    monkeypatch.setenv("PATH", f"{folder}:{Path(shutil.which('python3') or '/usr/bin').parent}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_ADB_STATE", str(path))
    for var in ("HARNESS_ANDROID_SERIAL", "HARNESS_ANDROID_THREADS", "HARNESS_ANDROID_DELEGATE",
                "HARNESS_ANDROID_BENCHMARK_MODEL", "HARNESS_ANDROID_RUNS", "HARNESS_ANDROID_ADB"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def artifact(tmp_path) -> Path:
    """A variant folder with a tflite export's manifest (as harness.exporting.litert writes it for
    prefill_length 8) and graph files; the fake device never reads the graphs' bytes."""
    folder = tmp_path / "0123abcd" / "exports" / "tflite"
    folder.mkdir(parents=True)
    for graph in ("vision", "embed", "decoder"):
        (folder / f"{graph}.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    signatures = {"vision": "encode", "embed_prefill": "prefill_embedder_8", "embed_decode": "decode_embedder",
                  "prefill": "prefill_8", "decode": "decode"}
    manifest = {"format": "tflite", "settings": {"prefill_length": 8, "cache_length": 64},
                "graphs": {g: f"{g}.tflite" for g in ("vision", "embed", "decoder")},
                "model": {"visual_tokens": 9, "prefill_length": 8, "signatures": signatures}, "steps": [], "files": []}
    (folder / "export.json").write_text(json.dumps(manifest))
    return tmp_path / "0123abcd"


LATENCY = {"min_iterations": 20, "warmup": 3, "new_tokens": 8}


def payload(artifact: Path, **options: object) -> dict:
    return {"artifact": str(artifact), "options": {"serial": SERIAL, **options}, "config": LATENCY}


# --- what one measuring process records -----------------------------------------------------------
def test_latency_is_the_recorded_graph_times_with_the_estimate_spelled_out(phone, artifact):
    from harness.runtimes._android_measure import measure_latency

    result = measure_latency(payload(artifact, threads=2, delegate="gpu", runs=7))
    want = expected_latency(chunks=2)  # 9 image tokens in chunks of 8
    samples = result["samples"]
    assert samples["vision_ms"] == [pytest.approx(want["vision"])]
    assert samples["prefill_ms"] == [pytest.approx(want["prefill"])]
    assert samples["ttft_ms"] == [pytest.approx(want["ttft"])]
    assert samples["decode_token_ms"] == [pytest.approx(want["step"])]
    assert samples["decode_tokens_per_s"] == [pytest.approx(1e3 / want["step"])]
    assert "preprocess_ms" not in samples  # not timed: absent, never zero
    assert result["estimate"]["prefill_chunks"] == 2
    assert any("preprocessing" in x for x in result["estimate"]["not_included"])
    assert any("tokenization" in x for x in result["estimate"]["not_included"])
    init = ms("am62x-xnnpack.txt", 2) + ms("android-logcat-nnapi.txt", 2) + ms("android-gpu.txt", 2)
    assert result["cold_start"]["load_ms"] == pytest.approx(init)  # each file's largest init, once
    assert result["graphs"]["decode"]["inference_avg_ms"] == pytest.approx(2950.34)
    assert result["device"] == {"serial": SERIAL, "model": "Pixel 8", "manufacturer": "Google", "soc": "Tensor G3",
                                "android": "14", "sdk": "34", "abi": "arm64-v8a", "cpufreq_governor": "schedutil"}
    assert result["cpu"] == "Tensor G3" and result["threads"] == 2
    shells = [c for c in fake_adb.commands(phone) if c[:3] == ["-s", SERIAL, "shell"] and BINARY in c[3]]
    assert len(shells) == 5
    assert shells[0][3].split() == [BINARY, f"--graph=/data/local/tmp/fastvlm-harness/{artifact.name}/vision.tflite",
                                    "--signature_to_run_for=encode", "--num_threads=2", "--use_xnnpack=false",
                                    "--use_gpu=true", "--num_runs=7", "--warmup_runs=3"]
    pushed = [c for c in fake_adb.commands(phone) if "push" in c]
    assert sorted(Path(c[-1]).name for c in pushed) == ["decoder.tflite", "embed.tflite", "vision.tflite"]


def test_runs_default_to_the_latency_suite_and_the_soc_falls_back_to_the_board(phone, artifact):
    from harness.runtimes._android_measure import measure_latency

    props = {k: v for k, v in PROPS.items() if k != "ro.soc.model"}
    fake_adb.update(phone, props=props, governor=None)
    result = measure_latency(payload(artifact))
    assert result["device"]["soc"] == "zuma" and result["device"]["cpufreq_governor"] is None
    line = next(c[3] for c in fake_adb.commands(phone) if c[2:3] == ["shell"] and BINARY in c[3])
    assert "--num_runs=20" in line and "--warmup_runs=3" in line and "--use_xnnpack=true" in line


def test_memory_is_the_graph_files_footprints_summed(phone, artifact):
    from harness.runtimes._android_measure import measure_memory

    result = measure_memory({**payload(artifact), "config": {"new_tokens": 4}})
    by_file = {"vision": OVERALL_MB["am62x-xnnpack.txt"], "embed": OVERALL_MB["riscv-qemu-cpu-op-profiling.txt"],
               "decoder": OVERALL_MB["riscv-qemu-cpu-op-profiling.txt"]}
    assert result["by_graph_mb"] == pytest.approx(by_file)
    assert result["model_delta_mb"] == pytest.approx(sum(by_file.values()))
    assert result["baseline_rss_mb"] is None and result["peak_is_model_only"]  # no peak line in these samples
    assert all("--report_peak_memory_footprint=true" in c[3] for c in fake_adb.commands(phone)
               if c[2:3] == ["shell"] and BINARY in c[3])


def test_memory_without_the_footprint_line_names_it(phone, artifact):
    from harness.runtimes._android_measure import measure_memory

    fake_adb.update(phone, memory_outputs=None)  # android-gpu.txt etc.: timings but no footprint line
    with pytest.raises(DataError, match="has no 'Memory footprint delta from the start of the tool"):
        measure_memory({**payload(artifact), "config": {"new_tokens": 4}})


# --- every failure is one line ------------------------------------------------------------------
@pytest.mark.parametrize(("changes", "serial", "error", "needle"), [
    ({"devices": {}}, None, RuntimeUnavailable, "no device connected (`adb devices` lists none)"),
    ({"devices": {SERIAL: "unauthorized"}}, SERIAL, RuntimeUnavailable,
     f"device '{SERIAL}' is unauthorized: accept the 'Allow USB debugging?' prompt"),
    ({"devices": {SERIAL: "unauthorized"}}, None, RuntimeUnavailable, "is unauthorized"),
    ({"devices": {SERIAL: "offline"}}, SERIAL, RuntimeUnavailable, "is offline"),
    ({"devices": {SERIAL: "no permissions (user in plugdev group; are your udev rules wrong?)"}}, SERIAL,
     RuntimeUnavailable, "the host user may not open the USB device"),
    ({}, "WRONG1", RuntimeUnavailable, f"serial 'WRONG1' is not among the devices adb lists ({SERIAL} (device))"),
    ({"devices": {SERIAL: "device", "emulator-5554": "device"}}, None, RuntimeUnavailable,
     "2 devices are connected"),
    ({"binary": "missing"}, SERIAL, RuntimeUnavailable, f"benchmark_model is not at '{BINARY}' on the device"),
    ({"binary": "noexec"}, SERIAL, RuntimeUnavailable, f"'{BINARY}' on the device is not executable (-rw-rw-rw-)"),
])
def test_load_refuses_an_unusable_phone_in_one_line(phone, artifact, changes, serial, error, needle):
    from harness.runtimes.android_litert import AndroidLiteRT

    fake_adb.update(phone, **changes)
    with pytest.raises(error) as err:
        AndroidLiteRT({"serial": serial} if serial else {}).load(artifact)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_load_checks_the_device_and_binary(phone, artifact):
    from harness.runtimes.android_litert import AndroidLiteRT

    session = AndroidLiteRT({}).load(artifact)  # the one device, found without a serial
    assert session.serial == SERIAL
    with pytest.raises(RuntimeBackendError, match="does not generate"):
        session.generate([], [], 4, 4)


@pytest.mark.parametrize(("changes", "error", "needle"), [
    ({"binary": "missing"}, RuntimeBackendError, "benchmark_model is not at"),
    ({"binary": "noexec"}, RuntimeBackendError, "is not executable (Permission denied)"),
    ({"garbage": "Segmentation fault\nERROR: Failed to allocate tensors!"}, DataError,
     "has no 'Inference timings in us' line, so it is not the output of a finished benchmark_model run (its last "
     "line: 'Failed to allocate tensors!') (exit code 1)"),
])
def test_a_benchmark_run_that_fails_on_the_device_is_one_line(phone, artifact, changes, error, needle):
    from harness.runtimes._android_measure import measure_latency

    fake_adb.update(phone, **changes)
    with pytest.raises(error) as err:
        measure_latency(payload(artifact))
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert "vision.tflite:encode" in str(err.value) or error is RuntimeBackendError


def test_no_adb_on_path(tmp_path, monkeypatch, artifact):
    from harness.runtimes.android_litert import AndroidLiteRT

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeUnavailable, match="'adb' is not on PATH"):
        AndroidLiteRT({}).load(artifact)
    problems, notes = AndroidLiteRT.preflight({})
    assert problems == ["runtime 'android-litert' needs 'adb' on PATH (the Android platform tools); install them "
                        "or set runtime_options.android-litert.adb"] and notes == []


def test_preflight_notes_a_missing_phone_and_stops_on_a_bad_environment_value(phone, monkeypatch):
    from harness.runtimes.android_litert import AndroidLiteRT

    assert AndroidLiteRT.preflight({"serial": SERIAL}) == ([], [])
    fake_adb.update(phone, devices={})
    problems, notes = AndroidLiteRT.preflight({})
    assert problems == [] and len(notes) == 1 and "no device connected" in notes[0]
    monkeypatch.setenv("HARNESS_ANDROID_DELEGATE", "nnapi")
    problems, _ = AndroidLiteRT.preflight({})
    assert problems == ["runtime 'android-litert': HARNESS_ANDROID_DELEGATE='nnapi': Input should be 'xnnpack', "
                        "'gpu' or 'none'"]


def test_environment_overrides_the_recipe(monkeypatch):
    from harness.runtimes._android_settings import settings

    monkeypatch.setenv("HARNESS_ANDROID_SERIAL", "CI-PHONE")
    monkeypatch.setenv("HARNESS_ANDROID_THREADS", "1")
    resolved = settings({"serial": "desk-phone", "threads": 4, "delegate": "none"})
    assert (resolved.serial, resolved.threads, resolved.delegate) == ("CI-PHONE", 1, "none")
    assert resolved.flags() == ["--num_threads=1", "--use_xnnpack=false", "--use_gpu=false"]
    monkeypatch.setenv("HARNESS_ANDROID_THREADS", "many")
    with pytest.raises(ConfigError, match="^HARNESS_ANDROID_THREADS='many': Input should be a valid integer"):
        settings({})


# --- the recipe and the plan --------------------------------------------------------------------
RECIPE = """\
name: phone
base: nano
runtimes: [torch-eager, litert, android-litert]
suites: [nano-vqa, latency, memory, size]
runtime_options:
  android-litert: {options}
variants:
  - name: tfl
    steps: [{{kind: export-tflite, prefill_length: 8, cache_length: 64}}]
"""


def test_runtime_options_are_validated_by_the_runtimes_config(tmp_path):
    from harness.spec.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(options="{serial: X, threads: 0, delegat: gpu, runs: many}"))
    with pytest.raises(HarnessError) as err:
        load_recipe(path)
    lines = str(err.value).splitlines()
    assert f"{path}:6: runtime_options.android-litert.threads: Input should be greater than or equal to 1" in lines
    assert f"{path}:6: runtime_options.android-litert.delegat: unknown field 'delegat' for runtime " \
           "'android-litert' — did you mean 'delegate'?" in lines
    assert any("runtime_options.android-litert.runs: Input should be a valid integer" in x for x in lines)
    path.write_text(RECIPE.format(options="{}").replace("runtime_options:", "runtime_options:\n  litert: {a: 1}"))
    with pytest.raises(HarnessError, match="runtime_options.litert: runtime 'litert' takes no options"):
        load_recipe(path)


def test_the_plan_records_accuracy_and_parity_not_applicable_from_the_runtimes_declaration(tmp_path):
    from harness.run.plan import added_suites, plan_run, resolve_suites, variant_job
    from harness.runtimes.android_litert import AndroidLiteRT
    from harness.spec.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(options=f"{{serial: {SERIAL}, threads: 2}}"))
    recipe = load_recipe(path)
    suites = resolve_suites(recipe)
    added = added_suites(recipe, suites)
    planned = {p["name"]: p for p in plan_run(recipe, suites, added)}["tfl"]
    phone_plan = next(r for r in planned["runtimes"] if r["runtime"] == "android-litert")
    assert phone_plan["reason"] is None and phone_plan["suites"] == ["latency", "memory", "size"]
    why = f"android-litert measures latency/memory/size suites only: {AndroidLiteRT.not_measured}"
    assert phone_plan["not_applicable"] == {"nano-vqa": why, "parity": why}
    litert = next(r for r in planned["runtimes"] if r["runtime"] == "litert")
    assert litert["suites"] == ["nano-vqa", "latency", "memory", "size", "parity"] and "not_applicable" not in litert
    job = variant_job(recipe, recipe.variant("tfl"), planned, [*suites, *added], tmp_path)
    phone_job = next(r for r in job.runtimes if r.runtime == "android-litert")
    assert phone_job.options == {"serial": SERIAL, "threads": 2}
    assert [(s["name"], w) for s, w in phone_job.not_applicable] == [("nano-vqa", why), ("parity", why)]

