"""Child process of the memory suite: peak RSS of loading a variant and answering once.

`probe(payload)` runs in a fresh process from `harness.isolation` (forked from the fork server,
which imported the heavy libraries but touched no model). The baseline is this process's RSS
after every library the runtime needs is imported, with the kernel's peak counter reset there
(`/proc/self/clear_refs`, so nothing the server did counts), and the delta is what the model
itself costs. `kv_cache_bytes` is the cache's size at the end of the answer, when the runtime
reports it (None otherwise).
"""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path
from typing import Any


def rss_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set size from the OS, in MiB."""
    values: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount = line.split(":", 1)
                values[key] = int(amount.split()[0]) / 1024
    except OSError:
        pass
    if "VmHWM" not in values:  # macOS: ru_maxrss is in bytes
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        values["VmHWM"] = peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
        values.setdefault("VmRSS", values["VmHWM"])
    return {"rss_mb": values["VmRSS"], "peak_mb": values["VmHWM"]}


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0; elsewhere the peak keeps the process's history)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def probe(payload: dict[str, Any]) -> dict[str, Any]:
    """{runtime, artifact, new_tokens} → baseline, after-load and peak RSS (MiB) and the model delta."""
    runtime_name, artifact, new_tokens = payload["runtime"], Path(payload["artifact"]), int(payload["new_tokens"])
    import torch

    from harness.data.nano_vqa import IMAGE_SIZE
    from harness.registries import RUNTIMES, STEPS

    runtime = RUNTIMES.get(runtime_name)()
    # Everything a load imports or initialises belongs to the baseline, not to the model:
    # the model classes, timm's FastViT, torchao, safetensors, and torch's thread pool.
    for module in ("transformers.models.fast_vlm.modeling_fast_vlm", "transformers.models.llava.processing_llava",
                   "transformers.models.clip.image_processing_clip", "timm.models.fastvit", "torchao.quantization",
                   "safetensors.torch", "harness.build.artifact", "harness.models.fastvlm",
                   *getattr(runtime, "preload_modules", ())):
        with contextlib.suppress(ImportError):
            __import__(module)
    STEPS.names()  # imports every step module
    torch.ones(64, 64) @ torch.ones(64, 64)
    from PIL import Image

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (120, 30, 200))
    peak_reset = reset_peak()
    baseline = rss_mb()
    session = runtime.load(artifact)
    loaded = rss_mb()
    result = session.generate([image], ["what color is the circle ?"], max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens)
    peak = rss_mb()
    return {"baseline_rss_mb": baseline["rss_mb"], "baseline_peak_mb": baseline["peak_mb"],
            "after_load_rss_mb": loaded["rss_mb"], "peak_rss_mb": peak["peak_mb"],
            "model_delta_mb": peak["peak_mb"] - baseline["rss_mb"], "peak_reset": peak_reset,
            "kv_cache_bytes": getattr(getattr(result, "times", None), "kv_cache_bytes", None)}
