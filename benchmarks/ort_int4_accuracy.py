"""Benchmark: is the ORT INT4 decoder's low logits cosine (0.676 to fp32 at FastVLM-0.5B dims) the
random weights or the quantizer settings? Writes benchmarks/results/ort_int4_accuracy.json.

The decoder (Qwen2 + LM head, random:fastvlm-0.5b's realistic random weights) is exported once
(`export-onnx`), then `ort-quant int4-weight-only` is applied per setting: block size 32/128,
symmetric or not, accuracy_level 0 (float compute) or 4 (int8 compute). Each graph's last-prompt-
token logits (the peers benchmark's prompt, token ids) are compared with torch fp32 by cosine,
beside two references that separate the weights from the quantizer:

- torch RTN: the same weights rounded to 4-bit blocks of the same size and symmetry in torch
  (round-to-nearest, absmax or min/max scales), decoded by torch: what any 4-bit RTN does to them;
- ORT dynamic INT8 (the 8-bit baseline).

If ORT matches torch RTN, the loss is the weights' (4-bit RTN on them), not ORT's quantizer.

    python benchmarks/ort_int4_accuracy.py            # real dims, ~15 min here
    python benchmarks/ort_int4_accuracy.py --quick    # tiny dims, under a minute
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_0p5b import DIMS, build_model, cosine  # noqa: E402
from peers_formats import TorchRunner, first_error, prepare_ort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: block sizes of the sweep: the real run's, and --quick's (its 64-wide layers have no 128-wide blocks)
BLOCKS = {"real": (32, 128), "quick": (16, 32)}


def settings(blocks: tuple[int, ...]) -> list[dict[str, Any]]:
    return [{"block_size": b, "symmetric": s, "accuracy_level": a}
            for b in blocks for s in (True, False) for a in (0, 4)]


def rtn_int4(weight: torch.Tensor, block: int, symmetric: bool) -> torch.Tensor:
    """Round-to-nearest 4-bit blocks along the input dimension, dequantized (torch's reference)."""
    out_features, in_features = weight.shape
    blocks = weight.reshape(out_features, in_features // block, block)
    if symmetric:
        scale = blocks.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 7
        return (blocks / scale).round().clamp(-8, 7).mul(scale).reshape_as(weight)
    low, high = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
    scale = ((high - low) / 15).clamp(min=1e-12)
    zero = (-low / scale).round()
    return ((blocks / scale + zero).round().clamp(0, 15) - zero).mul(scale).reshape_as(weight)


def torch_rtn_logits(model: Any, ids: list[int], block: int, symmetric: bool) -> Any:
    """Last-prompt-token logits of the torch decoder with every matmul weight (layers + head) RTN-rounded."""
    llm, head = copy.deepcopy(model.llm), copy.deepcopy(model.lm_head)
    with torch.no_grad():
        for module in [*llm.layers.modules(), head]:
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(rtn_int4(module.weight, block, symmetric))
    return TorchRunner(llm, head).prefill(ids)


def ort_logits(model: Any, options: dict[str, Any], folder: Path, ids: list[int]) -> Any:
    return prepare_ort(model, options, folder, len(ids) + 4, torch.get_num_threads())().prefill(ids)


def sweep(model: Any, ids: list[int], work: Path, blocks: tuple[int, ...]) -> dict[str, Any]:
    reference = TorchRunner(model.llm, model.lm_head).prefill(ids)
    rows: dict[str, Any] = {}
    for options in [{"mode": None}, {"mode": "dynamic-int8"}]:
        name = f"ort-{options['mode'] or 'fp32'}"
        rows[name] = {"cosine_to_torch_fp32": cosine(ort_logits(model, options, work / name, ids), reference)}
    for setting in settings(blocks):
        name = "ort-int4-b{block_size}-{sym}-acc{accuracy_level}".format(
            **setting, sym="sym" if setting["symmetric"] else "asym")
        start = time.perf_counter()
        try:
            logits = ort_logits(model, {"mode": "int4-weight-only", **setting}, work / name, ids)
            rows[name] = {**setting, "cosine_to_torch_fp32": cosine(logits, reference),
                          "top1_matches_fp32": int(np.argmax(logits)) == int(np.argmax(reference))}
        except Exception as exc:  # noqa: BLE001 - a setting ORT rejects is recorded
            rows[name] = {**setting, "skipped": first_error(exc)}
        rows[name]["seconds"] = time.perf_counter() - start
    for block in blocks:
        for symmetric in (True, False):
            logits = torch_rtn_logits(model, ids, block, symmetric)
            rows[f"torch-rtn-b{block}-{'sym' if symmetric else 'asym'}"] = {
                "block_size": block, "symmetric": symmetric, "cosine_to_torch_fp32": cosine(logits, reference)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny dims (2-layer 64-wide Qwen2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    model = build_model(args.quick)
    prompt = DIMS["quick" if args.quick else "real"][0]
    ids = np.random.default_rng(0).integers(0, model.model.config.text_config.vocab_size, prompt).tolist()
    with tempfile.TemporaryDirectory(prefix="int4-") as work:
        rows = sweep(model, ids, Path(work), BLOCKS["quick" if args.quick else "real"])
    result = {"quick": args.quick, "dims": "quick: tiny" if args.quick else "random:fastvlm-0.5b",
              "prompt_tokens": prompt, "compared": "last-prompt-token logits, cosine to torch fp32",
              "rows": rows, "seconds": time.perf_counter() - began}
    out = args.out or ROOT / "benchmarks" / "results" / ("ort_int4_accuracy_quick.json" if args.quick
                                                         else "ort_int4_accuracy.json")
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
