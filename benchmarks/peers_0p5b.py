"""Benchmark: the harness's runtimes against peers at FastVLM-0.5B's dimensions (random weights:
speed and bytes only), with the roofline of this CPU. Writes benchmarks/results/peers_0p5b.json.

LLM (Qwen2 decoder + LM head, fed token ids; the vision tower is not part of it): prefill ms for
a fixed prompt and decode ms/token, for torch eager fp32/bf16; the harness's exports run through
their own backends (ORT fp32 / dynamic INT8 / INT4 MatMulNBits, LiteRT dynamic INT8 / weight-only
INT4, MLX float / 4-bit g64, ExecuTorch 8da4w); and peers run directly on the same weights:
llama.cpp (GGUF F16 / Q8_0 / Q4_0 written by the `gguf` package, llama-cpp-python) and
onnxruntime-genai (its model builder's INT4, its Generator). Every arm also records the cosine of
its last-prompt-token logits to torch fp32's (on random weights: how much the format perturbs).

Vision encoder (tower; the ORT/LiteRT graphs include the small projector) at 256/512/1024 px:
torch eager before and after `reparameterize`, then also `cast` to bf16 (oneDNN's bf16 / AMX
kernels), and the reparameterised fp32 tower in ORT and LiteRT.

Rounds interleave the arms (order alternating). To fit in memory each LLM arm is loaded, warmed
(one full prefill + 2 decode tokens), measured and released within its round; artifacts are built
once before the rounds. Each entry: median and spread over rounds (a round's decode sample is the
median over its tokens), the ratio to the fastest arm and (LLM) to the fastest peer (llama.cpp,
onnxruntime-genai; below 1 where a harness runtime beats them), and % of the roofline (decode: nominal
weight bytes per token / measured copy bandwidth; encoder: counted FLOPs / measured GEMM peak).

    python benchmarks/peers_0p5b.py                     # the lead's run (see docs/export.md for its wall time)
    python benchmarks/peers_0p5b.py --quick             # tiny dims, seconds per arm: checks that it works
    python benchmarks/peers_0p5b.py --only ort,llamacpp-q4_0 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_formats import LLM_ARMS, PREPARE, first_error  # noqa: E402
from reparam_encoder import encode_ms, spread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICK_TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2}
#: (prompt tokens, decoded tokens per round, encoder sizes) of the real run and of --quick.
DIMS = {"real": (267, 16, (256, 512, 1024)), "quick": (24, 8, (64, 128))}
ENCODER_ARMS = ("enc-torch", "enc-torch-reparam", "enc-torch-bf16", "enc-ort", "enc-litert")
#: the peers run directly (not through the harness): `ratio_to_fastest_peer` divides by the fastest of them
PEER_FAMILIES = ("llamacpp", "ortgenai")


def build_model(quick: bool) -> Any:
    """random:fastvlm-0.5b (realistic random weights), or --quick's tiny FastVLM (2 layers, 64 wide)."""
    if quick:
        from harness.training.ddp_check import tiny_model

        return tiny_model(0, text_args=QUICK_TEXT)
    from harness.models.shapes import random_model

    return random_model("fastvlm-0.5b")


def machine() -> dict[str, Any]:
    """The CPU the numbers belong to: its model and what its kernels can use (AMX / VNNI change the
    ranking of every arm), and torch's version."""
    from harness.environment import cpu_features, cpu_model

    return {"processor": cpu_model(), "cpu_features": cpu_features(), "torch": torch.__version__}


def selected(name: str, only: list[str] | None) -> bool:
    """`--only` names an arm or a family prefix (`ort` selects ort-fp32, ort-int8, ort-int4)."""
    return only is None or any(name == o or name.startswith(o + "-") for o in only)


# --- machine peaks ------------------------------------------------------------------------
def gemm_peak(dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n torch matmul in `dtype` on this CPU at torch's threads."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def copy_bandwidth(megabytes: int, repeats: int = 5) -> float:
    """Best GB/s of a large numpy copy (bytes read + written): what decode's weight streaming sees."""
    src = np.ones(megabytes * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def machine_peaks(quick: bool) -> dict[str, float]:
    """GEMM peaks and copy bandwidth; on a CPU that emulates bf16 (no AVX512-BF16 / AMX: ~1 GFLOP/s,
    a minute per 2048^3 product) the bf16 peak is measured at n = 512."""
    from harness.environment import native_bf16

    n, mb = (512, 64) if quick else (2048, 512)
    bf16_n = n if native_bf16() is not False else min(n, 512)
    return {"gemm_fp32_gflops": gemm_peak(torch.float32, n), "gemm_bf16_gflops": gemm_peak(torch.bfloat16, bf16_n),
            "copy_bandwidth_gbs": copy_bandwidth(mb), "gemm_n": n, "gemm_bf16_n": bf16_n, "copy_mb": mb}


# --- LLM measurement ----------------------------------------------------------------------
def measure_llm(runner: Any, ids: list[int], tokens: int) -> dict[str, Any]:
    """One prefill of `ids` and `tokens` decode steps: ms, and the last-prompt-token logits."""
    start = time.perf_counter()
    logits = runner.prefill(ids)
    prefill = (time.perf_counter() - start) * 1e3
    times = []
    token = int(np.argmax(logits))
    for _ in range(tokens):
        start = time.perf_counter()
        token = int(np.argmax(runner.decode(token)))
        times.append((time.perf_counter() - start) * 1e3)
    return {"prefill_ms": prefill, "decode_ms": statistics.median(times), "logits": np.asarray(logits, np.float32)}


def cosine(a: Any, b: Any) -> float:
    """Cosine of two logits vectors, as the parity suite computes it (one item)."""
    from harness.suites.parity import compare_arrays

    return compare_arrays(np.ravel(b)[None], np.ravel(a)[None])["cosine_mean"]


def llm_rounds(makers: dict[str, Callable[[], Any]], ids: list[int], tokens: int,
               rounds: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Interleaved rounds; each arm loaded, warmed, measured and released inside its round. An arm
    that fails in a round is dropped (its samples with it) and its error returned."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in makers}
    failed: dict[str, str] = {}
    for index in range(rounds):
        for name in list(makers) if index % 2 == 0 else reversed(list(makers)):
            if name in failed:
                continue
            try:
                runner = makers[name]()
                measure_llm(runner, ids, 2)  # warm-up: same shapes as the measurement
                samples[name].append(measure_llm(runner, ids, tokens))
            except Exception as exc:  # noqa: BLE001 - one arm's failure must not end the run
                failed[name] = f"round {index + 1}: {first_error(exc)}"
                samples.pop(name)
            runner = None
            gc.collect()
    return samples, failed


def weight_params(model: Any) -> dict[str, int]:
    """Parameters a decode step reads: the decoder layers' matmul weights + LM head (2-D), and the
    rest of the layers (norms, biases); the embedding table contributes one row, left out."""
    matmul = sum(p.numel() for p in model.llm.layers.parameters() if p.dim() == 2)
    matmul += sum(p.numel() for p in model.lm_head.parameters() if p.dim() == 2)
    other = sum(p.numel() for p in model.llm.layers.parameters() if p.dim() != 2)
    return {"matmul": matmul, "other": other}


def llm_entries(samples: dict[str, list[dict[str, Any]]], bits: dict[str, float], params: dict[str, int],
                bandwidth: float) -> dict[str, Any]:
    """Per arm: prefill and decode spread, ratio to the fastest arm, decode roofline, logits cosine."""
    reference = samples.get("torch-fp32", [{}])[0].get("logits")
    medians = {name: {key: statistics.median(s[key] for s in per) for key in ("prefill_ms", "decode_ms")}
               for name, per in samples.items()}
    fastest = {key: min(m[key] for m in medians.values()) for key in ("prefill_ms", "decode_ms")}
    peers = [m for name, m in medians.items() if LLM_ARMS[name][0] in PEER_FAMILIES]
    fastest_peer = {key: min((m[key] for m in peers), default=None) for key in ("prefill_ms", "decode_ms")}
    out = {}
    for name, per in samples.items():
        weight_bytes = params["matmul"] * bits[name] / 8 + params["other"] * 4
        limit_ms = weight_bytes / (bandwidth * 1e9) * 1e3
        entry = {key: {**spread([s[key] for s in per]), "ratio_to_fastest": medians[name][key] / fastest[key],
                       "ratio_to_fastest_peer": medians[name][key] / fastest_peer[key] if fastest_peer[key] else None}
                 for key in ("prefill_ms", "decode_ms")}
        entry["decode_roofline"] = {"weight_bytes_per_token": weight_bytes, "nominal_bits_per_weight": bits[name],
                                    "bandwidth_limit_ms": limit_ms,
                                    "pct_of_roofline": 100 * limit_ms / medians[name]["decode_ms"],
                                    "x_over_limit": medians[name]["decode_ms"] / limit_ms}
        if reference is not None:
            entry["logits_cosine_to_torch_fp32"] = cosine(per[0]["logits"], reference)
        out[name] = entry
    return out


def run_llm(model: Any, args: argparse.Namespace, work: Path, bandwidth: float) -> dict[str, Any]:
    prompt, tokens, _ = DIMS["quick" if args.quick else "real"]
    vocab = model.model.config.text_config.vocab_size
    ids = np.random.default_rng(0).integers(0, vocab, prompt).tolist()
    makers, skipped, settings = {}, {}, {}
    for name, (family, options, _bits) in LLM_ARMS.items():
        if not selected(name, args.only):
            continue
        options = dict(options)  # a prepare may record what it chose (llama.cpp: its buffer types)
        try:
            makers[name] = PREPARE[family](model, options, work / name, prompt + tokens + 4, args.threads)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot build or load is recorded, not fatal
            skipped[name] = {"skipped": first_error(exc), "family": family, **options}
        settings[name] = {"family": family, **options}
    # a maker that fails at load time is skipped too
    for name in list(makers):
        try:
            measure_llm(makers[name](), ids[:4], 1)
        except Exception as exc:  # noqa: BLE001 - as above
            skipped[name] = {"skipped": first_error(exc), **settings[name]}
            del makers[name]
    samples, failed = llm_rounds(makers, ids, tokens, args.rounds)
    skipped |= {name: {"skipped": why, **settings[name]} for name, why in failed.items()}
    entries = llm_entries(samples, {n: LLM_ARMS[n][2] for n in samples}, weight_params(model), bandwidth) \
        if samples else {}
    return {"prompt_tokens": prompt, "decode_tokens_per_round": tokens,
            "arms": {name: {**settings[name], **entries[name]} for name in entries} | skipped,
            "samples": {name: [{k: s[k] for k in ("prefill_ms", "decode_ms")} for s in per]
                        for name, per in samples.items()}}


# --- encoder ------------------------------------------------------------------------------
def encoder_flops(tower: Any, size: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        tower(pixel_values=torch.rand(1, 3, size, size))
    return int(counter.get_total_flops())


def encoder_makers(model: Any, args: argparse.Namespace, work: Path,
                   sizes: tuple[int, ...]) -> tuple[dict, dict, Any]:
    """{(arm, size): callable(pixel_values=tensor)} for the selected encoder arms, the skipped ones,
    and the reparameterised fp32 tower (what the FLOPs are counted on). The exports are made from
    the fp32 tower before `cast` turns the model's tower to bf16 for the last arm."""
    from peers_formats import export_encoder

    from harness.steps._base import StepContext, apply_step

    makers: dict[tuple[str, int], Callable[..., Any]] = {}
    skipped: dict[str, Any] = {}
    if selected("enc-torch", args.only):
        before = copy.deepcopy(model.vision).eval()
        makers |= {("enc-torch", s): before for s in sizes}
    apply_step({"kind": "reparameterize"}, model, StepContext())
    for fmt in ("ort", "litert"):
        if not selected(f"enc-{fmt}", args.only):
            continue
        try:
            makers |= {(f"enc-{fmt}", s): export_encoder(model, fmt, s, work / f"enc-{fmt}-{s}", args.threads)
                       for s in sizes}
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            skipped[f"enc-{fmt}"] = {"skipped": first_error(exc)}
    reparam = copy.deepcopy(model.vision).eval() if selected("enc-torch-bf16", args.only) else model.vision.eval()
    if selected("enc-torch-reparam", args.only):
        makers |= {("enc-torch-reparam", s): reparam for s in sizes}
    if selected("enc-torch-bf16", args.only):  # the harness's cast step: bf16 weights and compute (AMX here)
        apply_step({"kind": "cast", "dtype": "bf16", "targets": ["vision"]}, model, StepContext())
        makers |= {("enc-torch-bf16", s): model.vision.eval() for s in sizes}
    return makers, skipped, reparam


def run_encoder(model: Any, args: argparse.Namespace, work: Path, peaks: dict[str, float]) -> dict[str, Any]:
    _, _, sizes = DIMS["quick" if args.quick else "real"]
    sizes = tuple(args.sizes or sizes)
    makers, skipped, fp32_tower = encoder_makers(model, args, work, sizes)
    for key in list(makers):  # warm-up, one call per arm and size; an arm failing here is skipped
        try:
            encode_ms(makers[key], key[1])
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            skipped[key[0]] = {"skipped": f"{key[1]} px: {first_error(exc)}"}
    makers = {key: call for key, call in makers.items() if key[0] not in skipped}
    samples: dict[tuple[str, int], list[float]] = {key: [] for key in makers}
    keys = list(makers)
    for index in range(args.rounds):
        for key in keys if index % 2 == 0 else reversed(keys):
            samples[key].append(encode_ms(makers[key], key[1]))
    best_peak = max(peaks["gemm_fp32_gflops"], peaks["gemm_bf16_gflops"])
    out: dict[str, Any] = {}
    for size in sizes:
        flops = encoder_flops(fp32_tower, size)
        per = {arm: samples[(arm, s)] for arm, s in samples if s == size}
        fastest = min((statistics.median(v) for v in per.values()), default=None)
        out[str(size)] = {"tower_flops": flops, "arms": {arm: {
            **spread(v), "ratio_to_fastest": statistics.median(v) / fastest,
            "gflops": flops / statistics.median(v) / 1e6,
            "pct_of_fp32_gemm_peak": 100 * flops / statistics.median(v) / 1e6 / peaks["gemm_fp32_gflops"],
            "pct_of_best_gemm_peak": 100 * flops / statistics.median(v) / 1e6 / best_peak}
            for arm, v in per.items()} | skipped}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny dims (2-layer 64-wide Qwen2, tiny tower)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=None,
                        help=f"arms or family prefixes, comma-separated: {', '.join([*LLM_ARMS, *ENCODER_ARMS])}")
    parser.add_argument("--rounds", type=int, default=None, help="default 5 (--quick: 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="encoder sizes (default 256 512 1024)")
    parser.add_argument("--work", type=Path, default=None, help="where artifacts are built (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/results/peers_0p5b.json (--quick: peers_0p5b_quick.json)")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    out = args.out or ROOT / "benchmarks" / "results" / ("peers_0p5b_quick.json" if args.quick else "peers_0p5b.json")
    result = measure_all(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "llm_samples"}, indent=1))


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the JSON holds: machine peaks, LLM arms, encoder arms (what --only selects)."""
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="peers-"))
    peaks = machine_peaks(args.quick)
    model = build_model(args.quick)
    result: dict[str, Any] = {
        "quick": args.quick, "dims": "quick: tiny, NOT FastVLM-0.5B" if args.quick else "random:fastvlm-0.5b",
        "threads": args.threads, "rounds": args.rounds, "machine": machine(),
        "peaks": peaks, "memory": "each LLM arm loaded, warmed, measured and released within its round"}
    try:
        if any(selected(n, args.only) for n in LLM_ARMS):
            llm = run_llm(model, args, work, peaks["copy_bandwidth_gbs"])
            result["llm"], result["llm_samples"] = {k: v for k, v in llm.items() if k != "samples"}, llm["samples"]
        if any(selected(n, args.only) for n in ENCODER_ARMS):
            result["encoder"] = run_encoder(model, args, work, peaks)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = time.perf_counter() - began
    return result


if __name__ == "__main__":
    main()
