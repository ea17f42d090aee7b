"""Child process for the memory suite: peak RSS of loading a variant and answering once.

Run as ``python -m harness.suites._memprobe RUNTIME ARTIFACT NEW_TOKENS``; prints one JSON line. The
baseline is this process's RSS after every library the runtime needs is imported, so the delta
is what the model itself costs. `kv_cache_bytes` is the cache's size at the end of the answer,
when the runtime reports it (None otherwise).
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
from pathlib import Path


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


def main(argv: list[str]) -> None:
    runtime_name, artifact, new_tokens = argv[0], Path(argv[1]), int(argv[2])
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
    baseline = rss_mb()
    session = runtime.load(artifact)
    loaded = rss_mb()
    result = session.generate([image], ["what color is the circle ?"], max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens)
    peak = rss_mb()
    print(json.dumps({"baseline_rss_mb": baseline["rss_mb"], "baseline_peak_mb": baseline["peak_mb"],
                      "after_load_rss_mb": loaded["rss_mb"], "peak_rss_mb": peak["peak_mb"],
                      "model_delta_mb": peak["peak_mb"] - baseline["rss_mb"],
                      "kv_cache_bytes": getattr(getattr(result, "times", None), "kv_cache_bytes", None)}))


if __name__ == "__main__":
    main(sys.argv[1:])
