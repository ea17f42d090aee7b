"""Parameter counts and storage estimates of `random:<shape>` models without allocating them, and
whether building one fits this machine.

The model is built from its config on PyTorch's meta device (shapes only, no storage), so the
counts are those of the real module tree. Byte estimates per storage format:

- fp32 / fp16 (bf16 is the same): every parameter at 4 / 2 bytes;
- INT8 / INT4 g32, g64, g128: as `weight-quant` stores its default target (every Linear of the LLM
  component, decoder and LM head; symmetric): codes at 1 or 0.5 byte per weight plus one fp16 scale
  per output row (INT8, per-channel) or per group of g input weights (INT4); biases, embeddings,
  norms, the projector and the vision tower stay fp16.

A build holds the fp32 weights twice at its peak (the model, then the tensors `save_variant`
clones; loading an artifact likewise holds the skeleton and the read tensors), so it needs
`2 x 4 bytes x parameters` plus a margin. When that exceeds the memory available here the build
is *size-only* (see harness/build/variant.py): the estimate is recorded and every suite that needs
a session is recorded unavailable with the reason.
"""

from __future__ import annotations

import math
import os
from typing import Any

INT4_GROUPS = (32, 64, 128)
#: Added to 2 x fp32 bytes: the interpreter, torch, transformers and the activations of a build.
BUILD_MARGIN_BYTES = 2 * 1024**3


def meta_model(config: Any) -> Any:
    """The model of `config` (any model family) on the meta device: every parameter has its shape, none has
    storage."""
    import torch

    from harness.models.families import family_of_model_type

    model_class = family_of_model_type(config.model_type).model_class()
    with torch.device("meta"):
        return model_class(config)


def estimate(shape: str) -> dict[str, Any]:
    """Parameter counts per component and bytes per storage format of `random:<shape>` (no allocation)."""
    from harness.models.families import random_config

    config, _ = random_config(shape)
    return estimate_model(meta_model(config))


def estimate_model(model: Any) -> dict[str, Any]:
    import torch

    from harness.models.families import family_of_model_type

    component_paths = family_of_model_type(model.config.model_type).component_paths
    params = {name: sum(p.numel() for path in paths for p in model.get_submodule(path).parameters())
              for name, paths in component_paths.items()}
    params["total"] = sum(p.numel() for p in model.parameters())
    linears = [m for path in component_paths["llm"] for m in model.get_submodule(path).modules()
               if isinstance(m, torch.nn.Linear)]
    quantized = sum(m.weight.numel() for m in linears)
    rows = sum(m.out_features for m in linears)
    rest_fp16 = 2 * (params["total"] - quantized)
    sizes = {"fp32": 4 * params["total"], "fp16": 2 * params["total"], "int8": quantized + 2 * rows + rest_fp16}
    for group in INT4_GROUPS:
        groups = sum(m.out_features * math.ceil(m.in_features / group) for m in linears)
        sizes[f"int4_g{group}"] = quantized // 2 + 2 * groups + rest_fp16
    return {"params": params, "quantized_linear_params": quantized, "bytes": sizes,
            "method": "meta-device model from the config (no allocation); INT8/INT4: the LLM's Linear weights "
                      "(decoder + LM head) symmetric with fp16 scales, the rest fp16"}


def build_bytes(params: int) -> int:
    """Memory a float32 build (or a load) of a model with `params` parameters needs at its peak."""
    return 2 * 4 * params + BUILD_MARGIN_BYTES


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages; the environment variable
    FASTVLM_HARNESS_AVAILABLE_MEMORY (bytes) overrides both, for tests and for a shared machine."""
    override = os.environ.get("FASTVLM_HARNESS_AVAILABLE_MEMORY")
    if override:
        return int(override)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def does_not_fit(shape: str, params: int) -> str | None:
    """The one-line reason `random:<shape>` cannot be built here, or None when it fits."""
    needed, available = build_bytes(params), available_memory_bytes()
    if needed <= available:
        return None
    return (f"random:{shape} ({params / 1e9:.2f} B parameters) needs ~{needed / 1e9:.1f} GB to build or load in "
            f"float32 and {available / 1e9:.1f} GB is available here: size estimated on the meta device only")
