"""Benchmark: build the nano reference from scratch (seeded) and record time and accuracy.
Writes benchmarks/results/nano_build.json. Goal: <= 600 s on 2 cores, >= 0.90 exact match
overall and >= 0.75 on every question kind.

    python benchmarks/nano_build.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from harness.training.nano import train_nano

    with tempfile.TemporaryDirectory() as tmp:
        report = train_nano(Path(tmp) / "nano", progress=False)
    test = report["test"]
    out = {**report, "cpu_count": os.cpu_count(),
           "meets_goal": report["train_seconds"] <= 600 and test["exact_match"] >= 0.90
           and min(test["per_kind"].values()) >= 0.75}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "nano_build.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
