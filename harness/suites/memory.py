"""Memory suite: each repeat in a fresh child process; peak RSS from the OS (VmHWM / ru_maxrss),
absolute and as the model-attributable delta over the child's post-import baseline."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any, Literal

from pydantic import Field

from harness.errors import RuntimeBackendError
from harness.registries import SUITE_KINDS
from harness.suites._context import SuiteContext
from harness.suites._spec import SuiteConfig


class MemoryConfig(SuiteConfig):
    kind: Literal["memory"] = "memory"
    repeats: int = Field(3, gt=0)
    new_tokens: int = Field(8, gt=0)
    timeout_s: float = Field(600, gt=0)


@SUITE_KINDS.register("memory", "peak RSS of load + one answer in a fresh process; absolute and model delta")
class Memory:
    Config = MemoryConfig

    def run(self, config: MemoryConfig, ctx: SuiteContext) -> dict[str, Any]:
        runs = []
        for _ in range(config.repeats):
            proc = subprocess.run(
                [sys.executable, "-m", "harness.memprobe", ctx.runtime_name, str(ctx.artifact),
                 str(config.new_tokens)],
                capture_output=True, text=True, timeout=config.timeout_s, env={**os.environ})
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
                raise RuntimeBackendError(f"memory probe failed (exit {proc.returncode}): {tail[0]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        peak = [r["peak_rss_mb"] for r in runs]
        delta = [r["model_delta_mb"] for r in runs]
        return {"peak_rss_mb": statistics.median(peak), "model_delta_mb": statistics.median(delta),
                "peak_rss_range_mb": [min(peak), max(peak)], "model_delta_range_mb": [min(delta), max(delta)],
                "baseline_rss_mb": statistics.median(r["baseline_rss_mb"] for r in runs),
                "kv_cache_bytes": runs[-1].get("kv_cache_bytes"), "new_tokens": config.new_tokens,
                "repeats": runs}
