"""Benchmark: build the nano reference from scratch (seeded) and record time and accuracy.
Writes benchmarks/results/nano_build.json. Goal (issue 14): <= 900 s on 2 cores, exact match
overall between 0.85 and 0.95 (headroom for compression to show) and >= 0.60 on every kind.

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
           "meets_goal": report["train_seconds"] <= 900 and 0.85 <= test["exact_match"] <= 0.95
           and min(test["per_kind"].values()) >= 0.60}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "nano_build.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
