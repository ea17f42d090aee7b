"""Benchmark: wall time of `harness run recipes/quickstart.yaml` (nano already built) and the
headline numbers of its variants. Writes benchmarks/results/quickstart.json.

    python benchmarks/quickstart.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from harness.training.nano import ensure_nano

    ensure_nano(progress=False)  # the goal is stated for an already-built nano
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(ROOT / "recipes" / "quickstart.yaml"),
                           "--no-progress"], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    run_dir = Path(next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("run:")))
    summary = json.loads((run_dir / "results.json").read_text())
    rows = {}
    for variant in summary["variants"]:
        data = variant["runtimes"].get("torch-eager", {})
        acc = next(iter(data.get("accuracy", {}).values()), {})
        rows[variant["name"]] = {
            "status": variant["status"], "size_mb": data.get("size", {}).get("total_mb"),
            "peak_delta_mib": data.get("memory", {}).get("model_delta_mb"),
            "ttft_p50_ms": data.get("latency", {}).get("ttft_p50_ms"),
            "decode_tok_s_p50": data.get("latency", {}).get("decode_tokens_per_s_p50"),
            "accuracy": acc.get("score"), "accuracy_ci": acc.get("ci"),
            "retention": acc.get("retention"), "retention_ci": acc.get("retention_ci")}
    out = {"wall_seconds": seconds, "goal_seconds": 300, "meets_goal": seconds <= 300, "run_dir": str(run_dir),
           "cpu_count": os.cpu_count(), "variants": rows}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "quickstart.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
