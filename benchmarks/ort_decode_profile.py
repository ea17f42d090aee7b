"""Benchmark: where an INT4 decode step's time goes in ONNX Runtime, at FastVLM-0.5B's LLM dimensions
(random weights). Writes benchmarks/results/ort_decode_profile.json.

The peers benchmark left the harness's INT4 decoder at 1.94x the weight-bandwidth limit and
onnxruntime-genai's at 1.61x. This splits a decode step with ORT's own profiler (per node, kernel
time) for three graphs — the harness's (`export-onnx` + `ort-quant` int4, MatMulNBits block 32,
accuracy level 4) traced by TorchScript and fused (`decoder_graph: fused`: torch.export +
onnxscript's ORT fusions), and the genai model builder's INT4 (fused GroupQueryAttention, rotary
and norms, MatMulNBits) — into the quantized MatMul kernels, which no graph rewrite removes, and
everything else. The kernels' share against the limit says how close a better graph could get.

Each arm is also timed unprofiled by the peers benchmark's `llm_rounds` (rounds interleaved, each
arm loaded, warmed and released in its round; median of each round's per-token median),
since the profiler's per-node timestamps slow the small nodes down.

    python benchmarks/ort_decode_profile.py             # 0.5B dims, ~10 minutes here
    python benchmarks/ort_decode_profile.py --quick     # tiny dims: checks that it works
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_0p5b import (  # noqa: E402
    DIMS,
    build_model,
    copy_bandwidth,
    llm_entries,
    llm_rounds,
    measure_llm,
    weight_params,
)
from peers_formats import (  # noqa: E402
    LLM_ARMS,
    GenaiRunner,
    LoopRunner,
    build_ort_decoder,
    build_ortgenai,
    embed_table,
    first_error,
)
from reparam_encoder import spread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("ort-int4", "ort-int4-fused", "ortgenai-int4")
QUANTIZED_MATMUL = ("MatMulNBits",)


def build(model: Any, work: Path, threads: int) -> dict[str, Any]:
    """Each arm's artifact, built once: the harness's decoder graph and manifest, genai's model folder."""
    built: dict[str, Any] = {name: build_ort_decoder(model, LLM_ARMS[name][1], work / name)
                             for name in ARMS if LLM_ARMS[name][0] == "ort"}
    return built | {"ortgenai-int4": build_ortgenai(model, {"precision": "int4"}, work / "ortgenai-int4", threads)}


def ort_runner(built: tuple[Path, dict[str, Any]], table: Any, profile: Path | None) -> Any:
    """The harness's INT4 decoder through its own backend and session options (+ ORT's profiler)."""
    import onnxruntime as ort

    from harness.runtimes.onnxruntime import OnnxRuntime, OrtBackend

    path, manifest = built
    options = OnnxRuntime()._options()
    if profile is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile / "profile")
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    runner = LoopRunner(OrtBackend({"vision": None, "embed": None, "decoder": session}, manifest["model"]), table)
    runner.finish = lambda: session.end_profiling() if profile is not None else None
    return runner


def genai_runner(folder: Path, context: int, profile: Path | None) -> Any:
    """genai's Generator; genai hands `enable_profiling` (a file prefix) to the ORT session it creates,
    and ORT writes the trace when the model is released."""
    config_path = folder / "genai_config.json"
    config = json.loads(config_path.read_text())
    options = config["model"]["decoder"]["session_options"]
    options.pop("enable_profiling", None)
    if profile is not None:
        options["enable_profiling"] = str(profile / "profile")
    config_path.write_text(json.dumps(config, indent=1))
    runner = GenaiRunner(folder, context)

    def finish() -> None:
        runner.generator = runner.model = None
        gc.collect()

    runner.finish = finish
    return runner


def make_runner(name: str, built: dict[str, Any], table: Any, context: int, profile: Path | None) -> Any:
    if LLM_ARMS[name][0] == "ort":
        return ort_runner(built[name], table, profile)
    return genai_runner(built[name], context, profile)


def decode_breakdown(trace: list[dict[str, Any]], decode_steps: int) -> dict[str, Any]:
    """Per decode step (the last `decode_steps` session runs of the trace): wall of the run, nodes run,
    kernel ms by op type, and the quantized MatMul kernels' total against everything else."""
    runs = sorted((e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[-decode_steps:]
    nodes = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_step = []
    for run in runs:
        begin, end = run["ts"], run["ts"] + run["dur"]
        inside = [e for e in nodes if begin <= e["ts"] <= end]
        by_op: dict[str, float] = defaultdict(float)
        for event in inside:
            by_op[event.get("args", {}).get("op_name", "?")] += event["dur"] / 1e3
        per_step.append({"run_ms": run["dur"] / 1e3, "nodes": len(inside), "by_op": dict(by_op)})
    ops = sorted({op for step in per_step for op in step["by_op"]})
    by_op_median = {op: statistics.median(s["by_op"].get(op, 0.0) for s in per_step) for op in ops}
    quantized = sum(v for op, v in by_op_median.items() if op in QUANTIZED_MATMUL)
    kernels = sum(by_op_median.values())
    run_ms = statistics.median(s["run_ms"] for s in per_step)
    return {"steps": len(per_step), "run_ms_profiled": run_ms, "nodes_per_step": statistics.median(
                s["nodes"] for s in per_step),
            "kernel_ms": kernels, "quantized_matmul_ms": quantized, "other_kernels_ms": kernels - quantized,
            "between_kernels_ms": run_ms - kernels,
            "top_ops_ms": dict(sorted(by_op_median.items(), key=lambda kv: -kv[1])[:12])}


def read_trace(folder: Path) -> list[dict[str, Any]]:
    files = sorted(folder.glob("profile*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise RuntimeError(f"no ORT profile was written under {folder}")
    return json.loads(files[-1].read_text())


def profile_arm(name: str, built: dict[str, Any], table: Any, ids: list[int], tokens: int,
                folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    runner = make_runner(name, built, table, len(ids) + tokens + 4, folder)
    measure_llm(runner, ids, 2)
    measure_llm(runner, ids, tokens)
    runner.finish()
    return decode_breakdown(read_trace(folder), tokens)


def paired_ratio(arm: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, Any]:
    """Per round, the arm's decode over the reference's in the same round (the machine's drift
    between rounds cancels): median and spread of those ratios."""
    return spread([a["decode_ms"] / r["decode_ms"] for a, r in zip(arm, reference, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny dims: checks that it works")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or ROOT / "benchmarks" / "results" / (
        "ort_decode_profile_quick.json" if args.quick else "ort_decode_profile.json")
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    prompt, tokens, _ = DIMS["quick" if args.quick else "real"]
    model = build_model(args.quick)
    ids = np.random.default_rng(0).integers(0, model.model.config.text_config.vocab_size, prompt).tolist()
    bandwidth = copy_bandwidth(64 if args.quick else 512)
    work = Path(tempfile.mkdtemp(prefix="ort-profile-"))
    from harness.environment import cpu_features, cpu_model

    result: dict[str, Any] = {"quick": args.quick, "cpu": cpu_model(), "cpu_features": cpu_features(),
                              "threads": args.threads, "rounds": args.rounds,
                              "prompt_tokens": prompt, "decode_tokens": tokens, "copy_bandwidth_gbs": bandwidth}
    try:
        built, table = build(model, work, args.threads), embed_table(model)
        makers = {name: (lambda name=name: make_runner(name, built, table, prompt + tokens + 4, None)) for name in ARMS}
        samples, failed = llm_rounds(makers, ids, tokens, args.rounds)  # unprofiled, interleaved, as the peers'
        if failed:
            raise RuntimeError(f"arms failed in the timed rounds: {failed}")
        entries = llm_entries(samples, {n: LLM_ARMS[n][2] for n in ARMS}, weight_params(model), bandwidth)
        result["arms"] = {}
        for name in ARMS:
            limit = entries[name]["decode_roofline"]["bandwidth_limit_ms"]
            try:
                breakdown = profile_arm(name, built, table, ids, tokens, work / f"profile-{name}")
            except Exception as exc:  # noqa: BLE001 - a missing profile is recorded, the timings stay
                breakdown = {"error": first_error(exc)}
            if "quantized_matmul_ms" in breakdown:
                breakdown["quantized_matmul_x_over_limit"] = breakdown["quantized_matmul_ms"] / limit
            result["arms"][name] = {"decode_ms": spread([s["decode_ms"] for s in samples[name]]),
                                    "decode_ms_per_round": [s["decode_ms"] for s in samples[name]],
                                    "decode_ratio_to_ort_int4": paired_ratio(samples[name], samples["ort-int4"]),
                                    "bandwidth_limit_ms": limit,
                                    "x_over_limit": entries[name]["decode_roofline"]["x_over_limit"],
                                    "profile": breakdown}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = time.perf_counter() - began
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
