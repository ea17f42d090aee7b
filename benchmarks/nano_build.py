"""Benchmark: build the nano reference from scratch (seeded) and record time and accuracy.
Writes benchmarks/results/nano_build.json. Goal (issue 14): <= 900 s on 2 cores, exact match
overall between 0.85 and 0.95 (headroom for compression to show) and >= 0.60 on every kind.

    python benchmarks/nano_build.py                  # build in a temporary folder
    python benchmarks/nano_build.py --keep DIR       # ...and keep the checkpoint in DIR (to ship it)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from harness.training.nano import build_into, train_nano

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the checkpoint here and keep it")
    args = parser.parse_args()
    if args.keep:
        build_into(args.keep, lambda tmp: train_nano(tmp, progress=False))
        report = json.loads((args.keep / "nano_report.json").read_text())
    else:
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
