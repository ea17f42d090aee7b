"""Results measured elsewhere — on a phone or a board this machine is not — imported into a run
folder (`harness device import`, docs/devices.md).

- An app's JSON (`app_format`): the TTFT stages and decode speed of the real pipeline, per launch
  and iteration, and optionally peak memory. Recorded as a measurement of the variant on a runtime
  named after the device (`android-pixel8`), in the shapes the `latency` and `memory` suite kinds
  summarise (suites `device-latency`, `device-memory`), so it reaches results.json, the report,
  the targets, `harness compare` and the gate like any runtime.
- A `benchmark_model` log (`benchmark_model`): one graph's inference on random inputs. It is not
  TTFT and not a model's memory, so it is kept apart (`result.json` → `imported`) and shown as a
  note of the variant; no target or gate reads it.

Every import is marked: the file, its format and sha256, when it was imported and who measured
(device, app, runtime), in the suite results and in the variant's notes. Nothing is written until
the run, the variant, the label and the file have all been checked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, DataError, RunDirError
from harness.results import rundir

APP_JSON, BENCHMARK_MODEL = "app-json", "benchmark-model"
FORMATS = ("auto", BENCHMARK_MODEL, APP_JSON)
LATENCY_SUITE, MEMORY_SUITE = "device-latency", "device-memory"
DEFINITIONS = {
    LATENCY_SUITE: {"name": LATENCY_SUITE, "kind": "latency", "imported": True,
                    "description": "imported (harness device import): TTFT stages and decode speed an app timed on "
                                   "a device; not measured by this harness"},
    MEMORY_SUITE: {"name": MEMORY_SUITE, "kind": "memory", "imported": True,
                   "description": "imported (harness device import): peak memory an app reported on a device "
                                  "(model delta = peak minus the app's baseline, or the peak itself without one)"},
}
GRAPH_ONLY = ("benchmark_model times this graph alone on random inputs: no image preprocessing, no tokenizer, no "
              "other graphs, no decode loop — not TTFT; kept as a note, no target or gate reads it")


@dataclass(frozen=True)
class Imported:
    """What one import recorded (for the command's summary)."""

    variant: str
    runtime: str
    format: str
    suites: tuple[str, ...]
    note: str


def import_file(run_path: Path, file: Path, variant: str, label: str, fmt: str = "auto",
                device: str | None = None) -> Imported:
    """Record `file`'s numbers in the run as `variant` measured on runtime `label`; the caller
    re-renders the run (`harness.run.runner.finish`)."""
    run = rundir.open_run(run_path)
    plan = run.read_plan()
    result = _target(run, plan, variant, label)
    data = _read(file)
    fmt = _format(file, data, fmt)
    text = data.decode("utf-8", errors="replace")
    source = {"file": str(file.resolve()), "format": fmt, "sha256": hashlib.sha256(data).hexdigest(),
              "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if fmt == APP_JSON:
        if device:
            raise ConfigError("--device is for benchmark_model logs: an app JSON names its own device ('device')")
        if run.is_search():
            raise RunDirError(f"'{run.path}' is a search run: its trials are planned from the suites of its "
                              f"{rundir.PLAN}, where an imported suite cannot go; import into a plain run")
        imported = _record_app(run, plan, result, text, file, variant, label, source)
    else:
        imported = _record_graph(result, text, file, variant, label, {**source, "device": device})
    run.write_variant_result(variant, result)
    return imported


def _target(run: rundir.RunDir, plan: dict[str, Any], variant: str, label: str) -> dict[str, Any]:
    """The variant's finished result, after checking that `label` can name an imported runtime of it."""
    from harness.registries import RUNTIMES
    from harness.registry import did_you_mean
    from harness.spec.base import NAME_PATTERN

    if variant not in plan["variants"]:
        raise ConfigError(f"variant '{variant}' is not in run '{run.run_id}'{did_you_mean(variant, plan['variants'])}")
    result = run.read_variant_result(variant)
    if result.get("status") != "ok":
        raise RunDirError(f"variant '{variant}' of '{run.path}' is {result.get('status')}: import into a variant "
                          "that was built (finish the run first: `harness run --resume`)")
    if not re.match(NAME_PATTERN, label):
        raise ConfigError(f"--as '{label}': a runtime label is letters, digits and . _ + - (e.g. android-pixel8)")
    if label in RUNTIMES.names():
        raise ConfigError(f"--as '{label}' is a runtime this harness runs; name the device instead "
                          "(e.g. android-pixel8), so imported numbers never pass for measured ones")
    measured = result.get("measurements", {}).get(label)
    if measured is not None and not (measured.get("info") or {}).get("imported"):
        raise ConfigError(f"variant '{variant}' was measured on '{label}' by the run itself; pick another label")
    return result


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read '{file}': {exc.strerror or exc}") from None


def _format(file: Path, data: bytes, fmt: str) -> str:
    """The file's format: as given, or (auto) a JSON object or a benchmark_model log."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format '{fmt}' is not one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    if data.lstrip()[:1] == b"{":
        return APP_JSON
    if b"Inference timings in us" in data:
        return BENCHMARK_MODEL
    raise DataError(f"cannot tell what '{file}' is: neither a JSON object nor a benchmark_model log (no 'Inference "
                    f"timings in us' line); give --format {APP_JSON} or {BENCHMARK_MODEL}")


# --- an app's JSON: a measured runtime ------------------------------------------------------------
def _record_app(run: rundir.RunDir, plan: dict[str, Any], result: dict[str, Any], text: str, file: Path,
                variant: str, label: str, source: dict[str, Any]) -> Imported:
    """The app's numbers as the variant's measurement on `label` (replacing an earlier import there)."""
    from harness.devices.app_format import loads

    doc = loads(text, str(file))
    if doc.variant != variant:
        raise ConfigError(f"'{file}' measured variant '{doc.variant}', not '{variant}': import it with --variant "
                          f"{doc.variant}, or fix its 'variant'")
    key = (result.get("build") or {}).get("key")
    if doc.artifact_key and key and doc.artifact_key != key:
        raise DataError(f"{file}: artifact_key {doc.artifact_key[:12]}… is not variant '{variant}''s build key in "
                        f"this run ({key[:12]}…): the app measured other files than this run built")
    _check_definitions(plan)
    source = {**source, **doc.identity()}
    suites = {LATENCY_SUITE: _latency(doc, source)}
    memory = _memory(doc, source)
    if memory is not None:
        suites[MEMORY_SUITE] = memory
    result.setdefault("measurements", {})[label] = {
        "suites": suites, "info": {"runtime": label, "imported": True, "source": source}}
    note = _app_note(doc, label, source, memory is not None)
    _set_note(result, f"imported on {label} (app JSON)", note)
    _add_definitions(run, plan, list(suites))
    return Imported(variant, label, APP_JSON, tuple(suites), note)


def _check_definitions(plan: dict[str, Any]) -> None:
    for suite in plan["suites"]:
        if suite.get("name") in DEFINITIONS and not suite.get("imported"):
            raise ConfigError(f"the run has a suite of its own named '{suite['name']}', the name imported latency "
                              "and memory go under; rename that suite in the recipe")


def _add_definitions(run: rundir.RunDir, plan: dict[str, Any], names: list[str]) -> None:
    """The imported suites' definitions in the plan: the report's columns and `harness compare` match
    suites by these (a run's recipe never defines them; a search run is refused before this)."""
    known = {s.get("name") for s in plan["suites"]}
    missing = [DEFINITIONS[n] for n in names if n not in known]
    if missing:
        run.write_plan({**plan, "suites": [*plan["suites"], *missing]})


def _latency(doc: Any, source: dict[str, Any]) -> dict[str, Any]:
    """The latency kind's result shape: launches pooled as processes by its own `merge`. Without the
    per-round records: the launches were not interleaved with the baseline variant's in rounds, so no
    paired ratio may be claimed for them."""
    from harness.suites._latency_measure import merge

    merged = merge(doc.latency_processes())
    merged.pop("rounds", None)
    return {"status": "ok", "kind": "latency", **merged, "imported": source}


def _memory(doc: Any, source: dict[str, Any]) -> dict[str, Any] | None:
    """The memory kind's result shape from the launches that report a peak (None when none does)."""
    runs = [r for r in doc.runs if r.peak_memory_mb is not None]
    if not runs:
        return None
    from harness.suites.memory import Memory, MemoryConfig

    repeats = [{"peak_rss_mb": r.peak_memory_mb, "baseline_rss_mb": r.baseline_memory_mb,
                "model_delta_mb": r.peak_memory_mb - (r.baseline_memory_mb or 0.0)} for r in runs]
    merged = Memory().merge(MemoryConfig(name="device-memory", new_tokens=doc.new_tokens), repeats)
    return {"status": "ok", "kind": "memory", **merged,
            "delta_is_absolute_peak": any(r["baseline_rss_mb"] is None for r in repeats), "imported": source}


def _app_note(doc: Any, label: str, source: dict[str, Any], memory: bool) -> str:
    app, dev = doc.app, doc.device
    how = ", ".join(x for x in (app.delegate, f"{app.threads} threads" if app.threads else None) if x)
    iterations = sum(len(r.samples.ttft_ms) for r in doc.runs)
    when = f", measured {doc.measured_at:%Y-%m-%d}" if doc.measured_at else ""
    return (f"imported on {label} (app JSON): {len(doc.runs)} launch(es), {iterations} timed iterations of "
            f"{doc.new_tokens} tokens, by {app.name} {app.version} on {app.runtime} {app.runtime_version}"
            f"{' (' + how + ')' if how else ''}, {dev.model} ({dev.soc}, {dev.os} {dev.os_version}){when}; "
            f"TTFT stages{', decode speed and peak memory' if memory else ' and decode speed'} are the app's own "
            f"numbers, not measured by this harness; {_file_part(source)}")


def _file_part(source: dict[str, Any]) -> str:
    return f"file {source['file']} (sha256 {source['sha256'][:12]}…), imported {source['imported_at']}"


def _set_note(result: dict[str, Any], prefix: str, note: str) -> None:
    """The variant's note for this import, replacing the one an earlier import of the same kind left."""
    build = result.setdefault("build", {})
    build["notes"] = [n for n in build.get("notes", []) if not n.startswith(prefix)] + [note]


# --- a benchmark_model log: one graph's time, a note ----------------------------------------------
#: What a graph of the harness's LiteRT export (`harness.exporting.litert`) times, by file and signature.
STAGES_OF_GRAPHS = {"vision.tflite": "the vision stage (encoder + projector)", "embed.tflite": "token embedding",
                    "decoder.tflite:decode": "one decode step", "decoder.tflite:prefill": "the prefill"}


def _record_graph(result: dict[str, Any], text: str, file: Path, variant: str, label: str,
                  source: dict[str, Any]) -> Imported:
    """One graph's benchmark_model numbers under `result["imported"][label]["graphs"]`, and a note."""
    from harness.runtimes.benchmark_model import parse

    parsed = parse(text, str(file))
    graph = parsed.graph or f"graph of {file.name}"
    record = {**parsed.to_json(), "inference_avg_ms": parsed.inference_avg_us / 1e3, "source": source,
              "measures": GRAPH_ONLY}
    imported = result.setdefault("imported", {}).setdefault(label, {"graphs": {}})
    imported["graphs"][graph] = record
    note = _graph_note(parsed, graph, label, source)
    _set_note(result, f"imported on {label} (benchmark_model graph {graph})", note)
    return Imported(variant, label, BENCHMARK_MODEL, (), note)


def _stage_of(graph: str) -> str | None:
    name, _, signature = graph.partition(":")
    for key, stage in STAGES_OF_GRAPHS.items():
        file, _, prefix = key.partition(":")
        if name == file and signature.startswith(prefix):
            return stage
    return None


def _delegate_text(parsed: Any) -> str:
    """Which delegates were asked for and what the tool says each took (a GPU asked for but not used shows)."""
    parts = [f"{name} {how}" for name, how in parsed.applied.items()]
    parts += [f"{name} asked for but not reported applied" for name, on in parsed.delegates.items()
              if on and name not in parsed.applied]
    return ", ".join(parts) or "no delegate reported"


def _graph_note(parsed: Any, graph: str, label: str, source: dict[str, Any]) -> str:
    steady = parsed.steady
    runs = (f" over {steady.count} runs (std {steady.std_us / 1e3:.3g} ms, min {steady.min_us / 1e3:.3g} ms)"
            if steady and steady.std_us is not None and steady.min_us is not None else "")
    memory = "; ".join(x for x in (
        f"memory delta from the tool's start {parsed.memory_overall_mb:.4g} MiB" if parsed.memory_overall_mb else None,
        f"peak {parsed.peak_memory_mb:.4g} MiB" if parsed.peak_memory_mb else None) if x)
    stage = _stage_of(graph)
    return (f"imported on {label} (benchmark_model graph {graph}): inference avg {parsed.inference_avg_us / 1e3:.4g} "
            f"ms{runs}, first inference {parsed.first_us / 1e3:.4g} ms, init {parsed.init_us / 1e3:.4g} ms; "
            f"{_delegate_text(parsed)}{f', {parsed.threads} threads' if parsed.threads else ''}"
            f"{'; ' + memory if memory else ''}{'; device ' + source['device'] if source.get('device') else ''}"
            f"{'; comparable to ' + stage + ' of a LiteRT export' if stage else ''}; {GRAPH_ONLY}; "
            f"{_file_part(source)}")
