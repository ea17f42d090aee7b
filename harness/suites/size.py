"""Size suite: bytes on disk of every file of the artifact, in its real storage format,
grouped into weights, tokenizer/processor assets and configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from harness.registries import SUITE_KINDS
from harness.suites._context import SuiteContext
from harness.suites._spec import SuiteConfig

WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".data", ".onnx_data", ".tflite", ".bin", ".mlmodel", ".weight")
ASSET_HINTS = ("tokenizer", "processor", "chat_template", "vocab", "merges", "special_tokens")


def categorize(path: Path) -> str:
    name = path.name
    if name.endswith(WEIGHT_SUFFIXES) or "weights" in path.parts:
        return "weights"
    if any(h in name for h in ASSET_HINTS):
        return "tokenizer_assets"
    return "config"


class SizeConfig(SuiteConfig):
    kind: Literal["size"] = "size"


@SUITE_KINDS.register("size", "bytes on disk per file of the saved artifact: weights, assets, config")
class Size:
    Config = SizeConfig

    def run(self, config: SizeConfig, ctx: SuiteContext) -> dict[str, Any]:
        files = sorted(p for p in ctx.artifact.rglob("*") if p.is_file())
        listing = [{"file": str(p.relative_to(ctx.artifact)), "bytes": p.stat().st_size,
                    "category": categorize(p)} for p in files]
        totals: dict[str, int] = {}
        for row in listing:
            totals[row["category"]] = totals.get(row["category"], 0) + row["bytes"]
        total = sum(totals.values())
        return {"total_bytes": total, "total_mb": total / 1e6,
                "weights_mb": totals.get("weights", 0) / 1e6, "by_category_bytes": totals,
                "files": listing}
