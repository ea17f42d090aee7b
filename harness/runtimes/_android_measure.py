"""One measuring process of the `android-litert` runtime: push the variant's LiteRT graphs to the
phone, run `benchmark_model` there once per graph signature, and shape what it printed as a
process result of the `latency` or `memory` suite kind (their own `merge` pools the rounds).

What the numbers are (recorded with them, in `estimate`):
- each signature's time is benchmark_model's steady-state average over `--num_runs` `Invoke()`s of
  that graph alone, on random inputs;
- TTFT (estimate) = vision `encode` + the prefill chunks (embedder `prefill_embedder_<T>` +
  decoder `prefill_<T>`, once per T image tokens, at least once) + one decode step (embedder
  `decode_embedder` + decoder `decode`, which yields the first token's logits in this export's
  split); decode ms/token = that decode step;
- NOT included: image decoding/resizing/normalising and tokenization on the host (`preprocess_ms`
  is absent, not zero), copying inputs into the interpreter, the prefill chunks the prompt's text
  tokens add past the image tokens', sampling, an app's own overhead;
- memory: the tool's footprint growth over its start (`overall=`), summed over the three graph
  files (the largest of each file's signatures: an app holds the three files at once, each loaded
  once); the peak adds the tool's own start footprint when `--report_peak_memory_footprint` printed
  a peak, else the peak is the model's sum alone (`peak_is_model_only`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.errors import DataError, RuntimeBackendError
from harness.runtimes._adb import Adb, failure_line
from harness.runtimes._android_settings import AndroidOptions, settings
from harness.runtimes.benchmark_model import BenchmarkModelRun, parse

#: What each timed signature is: (graph of export.json, key of its `model.signatures`).
SIGNATURES = {"vision": ("vision", "vision"), "embed_prefill": ("embed", "embed_prefill"),
              "prefill": ("decoder", "prefill"), "embed_decode": ("embed", "embed_decode"),
              "decode": ("decoder", "decode")}
INCLUDED = ["vision encode (vision.tflite:encode)", "prefill chunks of T tokens covering the image tokens "
            "(embed.tflite:prefill_embedder_T + decoder.tflite:prefill_T, each chunk)",
            "the first decode step (embed.tflite:decode_embedder + decoder.tflite:decode)"]
NOT_INCLUDED = ["host-side image preprocessing (decode, resize, normalise)", "tokenization and the chat template",
                "copying real inputs into the interpreter (benchmark_model feeds random ones)",
                "prefill chunks for the prompt's text tokens beyond the image tokens' chunks", "sampling",
                "an app's own overhead"]


def graph_plan(artifact: Path) -> tuple[Path, dict[str, Any], dict[str, tuple[str, str]]]:
    """The tflite export folder, its model facts, and per timed key (file, signature); one line when
    the export lacks a graph or signature the estimate needs."""
    from harness.exporting import read_export

    folder, manifest = read_export(artifact, "tflite")
    graphs, facts = manifest.get("graphs", {}), manifest.get("model", {})
    signatures = facts.get("signatures", {})
    plan = {}
    for key, (graph, sig) in SIGNATURES.items():
        if graph not in graphs or sig not in signatures:
            raise RuntimeBackendError(f"android-litert: the tflite export of '{artifact.name}' lacks the {graph} "
                                      f"graph's {sig} signature; export vision, embed and decoder (export-tflite "
                                      "components)")
        if not (folder / graphs[graph]).is_file():
            raise RuntimeBackendError(f"android-litert: tflite graph '{folder / graphs[graph]}' is missing; rebuild "
                                      "the variant")
        plan[key] = (graphs[graph], signatures[sig])
    return folder, facts, plan


def push(adb: Adb, options: AndroidOptions, folder: Path, files: set[str], key: str) -> str:
    """The graphs on the device under `device_dir/<build key>/` (`adb push --sync`: unchanged files
    are not sent again); returns that folder."""
    remote = f"{options.device_dir.rstrip('/')}/{key}"
    done = adb.shell("mkdir", "-p", remote)
    if done.returncode != 0:
        raise RuntimeBackendError(f"android-litert: cannot create '{remote}' on the device: "
                                  f"{(done.stderr or done.stdout).strip()[:200]}")
    for name in sorted(files):
        adb.push(str(folder / name), f"{remote}/{name}")
    return remote


def benchmark(adb: Adb, options: AndroidOptions, graph: str, signature: str, runs: int, warmup: int,
              memory: bool = False) -> BenchmarkModelRun:
    """One benchmark_model run on the device, parsed; a run that could not start or printed no
    finished run is one line naming the graph and what was expected."""
    args = [options.benchmark_model, f"--graph={graph}", f"--signature_to_run_for={signature}", *options.flags(),
            f"--num_runs={runs}", f"--warmup_runs={warmup}"]
    if memory and options.report_peak_memory:
        args.append("--report_peak_memory_footprint=true")
    done = adb.shell(*args, what=f"shell benchmark_model ({graph}:{signature})")
    failed = failure_line(options.benchmark_model, done)
    if failed:
        raise RuntimeBackendError(failed)
    source = f"benchmark_model output for {graph.rsplit('/', 1)[-1]}:{signature}"
    try:
        return parse(f"{done.stdout}\n{done.stderr}", source)
    except DataError as exc:
        raise DataError(f"android-litert: {exc} (exit code {done.returncode})") from None


def run_all(payload: dict[str, Any], runs: int, warmup: int, memory: bool) -> tuple[dict[str, Any], ...]:
    """Device ready, identity read, graphs pushed, every signature timed: (runs by key, facts, identity, options)."""
    options = settings(payload.get("options"))
    artifact = Path(payload["artifact"])
    folder, facts, plan = graph_plan(artifact)
    adb = Adb(options.adb, options.serial, options.timeout_s).ready()
    identity = adb.identity()
    remote = push(adb, options, folder, {file for file, _ in plan.values()}, artifact.name)
    timed = {key: benchmark(adb, options, f"{remote}/{file}", sig, runs, warmup, memory)
             for key, (file, sig) in plan.items()}
    return timed, facts, identity, {**options.model_dump(), "serial": adb.serial}


def _ms(run: BenchmarkModelRun) -> float:
    return run.inference_avg_us / 1e3


def _first_ms(run: BenchmarkModelRun) -> float:
    return run.first_us / 1e3


def chunks(facts: dict[str, Any]) -> int:
    """Prefill chunks of T tokens the image tokens alone take (at least one)."""
    length = int(facts.get("prefill_length") or 1)
    return max(1, math.ceil(int(facts.get("visual_tokens") or 0) / length))


def _graphs(timed: dict[str, BenchmarkModelRun]) -> dict[str, Any]:
    return {key: {**run.to_json(), "inference_avg_ms": _ms(run)} for key, run in timed.items()}


def measure_latency(payload: dict[str, Any]) -> dict[str, Any]:
    """A latency process result ({artifact, options, config}) from one benchmark_model run per signature."""
    config = payload["config"]
    options = settings(payload.get("options"))
    runs = options.runs or int(config["min_iterations"])
    warmup = options.warmup_runs if options.warmup_runs is not None else int(config["warmup"])
    timed, facts, identity, used = run_all(payload, runs, warmup, memory=False)
    n, new_tokens = chunks(facts), int(config["new_tokens"])
    vision, step = _ms(timed["vision"]), _ms(timed["embed_decode"]) + _ms(timed["decode"])
    prefill = n * (_ms(timed["embed_prefill"]) + _ms(timed["prefill"]))
    ttft = vision + prefill + step
    first_ttft = (_first_ms(timed["vision"]) + n * (_first_ms(timed["embed_prefill"]) + _first_ms(timed["prefill"]))
                  + _first_ms(timed["embed_decode"]) + _first_ms(timed["decode"]))
    samples = {"vision_ms": [vision], "prefill_ms": [prefill], "ttft_ms": [ttft], "decode_token_ms": [step],
               "decode_tokens_per_s": [1e3 / step], "total_ms": [ttft + (new_tokens - 1) * step]}
    init = {}
    for key, run in timed.items():  # a file is loaded once by an app: its largest init counts once
        file = SIGNATURES[key][0]
        init[file] = max(init.get(file, 0.0), run.init_us / 1e3)
    steady = [run.steady.count for run in timed.values() if run.steady is not None]
    return {"cold_start": {"load_ms": sum(init.values()), "first_ttft_ms": first_ttft,
                           "first_generation_ms": first_ttft + (new_tokens - 1) * step},
            "samples": samples, "iterations": 1, "measured_seconds": sum(
                _ms(r) * (r.steady.count if r.steady else runs) for r in timed.values()) / 1e3,
            "new_tokens": new_tokens, "batch_size": 1, "threads": options.threads,
            "cpu": identity.get("soc"), "visual_tokens": facts.get("visual_tokens"), "kv_cache_bytes": None,
            "processes": 1, "device": identity, "settings": used, "graphs": _graphs(timed),
            "benchmark_runs": min(steady) if steady else runs,
            "estimate": {"what": "benchmark_model graph times on the device; each sample is one process's "
                                 "steady-state averages", "prefill_chunks": n,
                         "prefill_length": facts.get("prefill_length"), "included": INCLUDED,
                         "not_included": NOT_INCLUDED}}


def measure_memory(payload: dict[str, Any]) -> dict[str, Any]:
    """A memory process result ({artifact, options, config}): the graphs' footprint growth, summed."""
    config = payload["config"]
    options = settings(payload.get("options"))
    timed, facts, identity, used = run_all(payload, options.runs or 1, 0 if options.warmup_runs is None
                                           else options.warmup_runs, memory=True)
    per_file: dict[str, float] = {}
    baselines = []
    for key, run in timed.items():
        if run.memory_overall_mb is None:
            raise DataError(f"android-litert: benchmark_model output for {key} has no 'Memory footprint delta from "
                            "the start of the tool (MB): init=… overall=…' line, which the memory suite reads")
        file = SIGNATURES[key][0]
        per_file[file] = max(per_file.get(file, 0.0), run.memory_overall_mb)
        if run.peak_memory_mb is not None:
            baselines.append(max(0.0, run.peak_memory_mb - run.memory_overall_mb))
    delta = sum(per_file.values())
    baseline = min(baselines) if len(baselines) == len(timed) else None
    return {"peak_rss_mb": delta + (baseline or 0.0), "baseline_rss_mb": baseline, "model_delta_mb": delta,
            "peak_is_model_only": baseline is None, "kv_cache_bytes": None, "new_tokens": config.get("new_tokens"),
            "by_graph_mb": per_file, "device": identity, "settings": used, "graphs": _graphs(timed),
            "measures": "benchmark_model's footprint growth over its start per graph file (the largest of its "
                        "signatures), summed over vision, embed and decoder: separate runs on random inputs, "
                        "not an app's process"}
