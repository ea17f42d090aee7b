"""Benchmark: what `token-merge` and `kv-cache` change at FastVLM-0.5B dimensions (random weights:
speed and bytes only). Writes benchmarks/results/tokens_kv_0p5b.json.

- prefill: the Qwen2 decoder's prefill on a prompt as long as the real processor makes it for a
  1024 px image, before and after 2x2 token pooling (interleaved repeats, medians and ratio);
  the vision encoder is left out (46 s per 1024 px image on this CPU; pooling runs after it);
- KV cache: bytes held after the prompt plus 32 decoded tokens, and decode ms/token, for the
  float, int8 and int4 caches (interleaved repeats, medians).

    python benchmarks/tokens_kv_0p5b.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import DynamicCache

from harness.models.fastvlm import cache_nbytes
from harness.models.shapes import random_model
from harness.steps._base import StepContext, apply_step
from harness.steps.kv_cache import build_cache

ROOT = Path(__file__).resolve().parents[1]
REPEATS, DECODE_TOKENS = 5, 32


def prefill(llm, head, length: int, hidden: int, cache):  # noqa: ANN001, ANN201
    embeds = torch.randn(1, length, hidden) * 0.02
    start = time.perf_counter()
    with torch.inference_mode():
        out = llm(inputs_embeds=embeds, cache=cache, use_cache=True)
        head(out.last_hidden_state[:, -1])
    return (time.perf_counter() - start) * 1e3, out.cache


def decode(llm, head, length: int, hidden: int, cache) -> tuple[float, int | None]:  # noqa: ANN001
    _, cache = prefill(llm, head, length, hidden, cache)
    times = []
    with torch.inference_mode():
        for step in range(DECODE_TOKENS):
            start = time.perf_counter()
            out = llm(inputs_embeds=torch.randn(1, 1, hidden) * 0.02, cache=cache, use_cache=True,
                      position_ids=torch.tensor([[length + step]]))
            head(out.last_hidden_state[:, -1])
            cache = out.cache
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), cache_nbytes(cache)


def main() -> None:
    torch.manual_seed(0)
    model = random_model("fastvlm-0.5b")
    image, question = [Image.new("RGB", (1024, 1024), (120, 30, 200))], ["what color is the circle ?"]
    full = {"visual_tokens": model.visual_tokens, "prompt": model.prepare(image, question)["input_ids"].shape[1]}
    apply_step({"kind": "token-merge", "method": "avg-pool", "factor": 2}, model, StepContext())
    pooled = {"visual_tokens": model.visual_tokens, "prompt": model.prepare(image, question)["input_ids"].shape[1]}
    llm, head = model.llm, model.lm_head
    config = model.model.config.text_config
    hidden = config.hidden_size
    prefill_ms: dict[str, list[float]] = {"full": [], "pooled": []}
    for repeat in range(REPEATS):
        order = ("full", "pooled") if repeat % 2 == 0 else ("pooled", "full")
        for name in order:
            length = full["prompt"] if name == "full" else pooled["prompt"]
            prefill_ms[name].append(prefill(llm, head, length, hidden, DynamicCache(config=config))[0])
    makers = {"fp32": lambda: DynamicCache(config=config), "int8": lambda: build_cache(config, 8, 32),
              "int4": lambda: build_cache(config, 4, 32)}
    decode_runs: dict[str, list[tuple[float, int | None]]] = {k: [] for k in makers}
    for _ in range(3):
        for name, make in makers.items():
            decode_runs[name].append(decode(llm, head, full["prompt"], hidden, make()))
    result = {
        "model": "random:fastvlm-0.5b", "threads": torch.get_num_threads(),
        "tokens": {"full": full, "pooled_2x2": pooled},
        "prefill_ms_p50": {k: statistics.median(v) for k, v in prefill_ms.items()},
        "prefill_ms_samples": prefill_ms,
        "prefill_ratio_pooled_to_full": statistics.median(prefill_ms["pooled"]) / statistics.median(prefill_ms["full"]),
        "kv_cache_bytes_after": {k: v[0][1] for k, v in decode_runs.items()},
        "kv_tokens": full["prompt"] + DECODE_TOKENS,
        "decode_ms_per_token_p50": {k: statistics.median(x[0] for x in v) for k, v in decode_runs.items()}}
    fp32 = result["kv_cache_bytes_after"]["fp32"]
    result["kv_ratio_to_fp32"] = {k: v / fp32 for k, v in result["kv_cache_bytes_after"].items() if v and fp32}
    out = ROOT / "benchmarks" / "results" / "tokens_kv_0p5b.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "prefill_ms_samples"}, indent=1))


if __name__ == "__main__":
    main()
