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
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "libraries": library_versions(), "git_sha": git_sha(Path(__file__).resolve().parent),
            "hostname": platform.node()}
