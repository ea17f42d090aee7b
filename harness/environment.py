"""The environment a measurement was taken in: library versions, CPU, threads, git sha."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

LIBRARIES = ("fastvlm-harness", "torch", "torchvision", "transformers", "timm", "torchao", "datasets",
             "numpy", "onnx", "onnxruntime", "coremltools", "litert-torch", "ai-edge-litert",
             "neural-compressor", "lm-eval")
# Libraries whose version changes what a built variant contains (part of its cache key).
BUILD_LIBRARIES = ("torch", "transformers", "timm", "torchao", "safetensors")


def package_version(name: str) -> str | None:
    """Installed version of a distribution (e.g. "coremltools", "ai-edge-litert"), None if absent."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    return {name: package_version(name) for name in names}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> dict[str, Any]:
    """What this CPU's kernels can use (torch's dispatch level; native bf16 / int8 dot products), since
    the same step can be a speed-up on one CPU and a slow-down on another: bf16 without AVX512-BF16
    or AMX is emulated (measured on an AVX2 EPYC: a 1024^3 GEMM at 0.9 GFLOP/s in bf16, 104 in fp32)."""
    import torch

    def probe(name: str) -> bool | None:
        check = getattr(torch.cpu, name, None)  # private torch probes: None where this torch lacks them
        return bool(check()) if callable(check) else None

    return {"capability": torch.backends.cpu.get_cpu_capability(), "avx512_bf16": probe("_is_avx512_bf16_supported"),
            "amx": probe("_is_amx_tile_supported"), "vnni": probe("_is_vnni_supported")}


def native_bf16() -> bool | None:
    """Whether bf16 matmuls and convolutions run natively here (None: torch cannot tell)."""
    features = cpu_features()
    if features["avx512_bf16"] is None and features["amx"] is None:
        return None
    return bool(features["avx512_bf16"] or features["amx"])


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def describe() -> dict[str, Any]:
    import os

    import torch

    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_features": cpu_features(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "libraries": library_versions(), "git_sha": git_sha(Path(__file__).resolve().parent),
            "hostname": platform.node()}
