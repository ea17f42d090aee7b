"""Benchmark: wall time of `harness run recipes/quickstart.yaml` on a cold harness cache (the nano
reference shipped), the split by stage (timings.json) and the headline numbers of its variants.
Median of `--runs` cold runs; the load average before and after says how idle the machine was.
Writes benchmarks/results/quickstart.json.

    python benchmarks/quickstart.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 180


def one_run(folder: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASTVLM_HARNESS_CACHE": str(folder / "cache")}
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(ROOT / "recipes" / "quickstart.yaml"),
                           "-o", str(folder / "runs"), "--no-progress"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(proc.stderr)
    run_dir = Path(next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("run:")))
    return {"wall_seconds": seconds, "exit_code": proc.returncode, "run_dir": str(run_dir),
            "stages": json.loads((run_dir / "timings.json").read_text()), "load_before": load_before,
            "load_after": os.getloadavg(), "summary": json.loads((run_dir / "results.json").read_text())}


def headline(summary: dict) -> dict:
    rows = {}
    for variant in summary["variants"]:
        data = variant["runtimes"].get("torch-eager", {})
        acc = next(iter(data.get("accuracy", {}).values()), {})
        latency = data.get("latency", {})
        rows[variant["name"]] = {
            "status": variant["status"], "size_mb": data.get("size", {}).get("total_mb"),
            "peak_delta_mib": data.get("memory", {}).get("model_delta_mb"),
            "ttft_p50_ms": latency.get("ttft_p50_ms"), "ttft_p50_ci": latency.get("ttft_p50_ci"),
            "ttft_ratio_to_baseline": latency.get("ttft_ratio_to_baseline"), "noisy": latency.get("noisy"),
            "decode_tok_s_p50": latency.get("decode_tokens_per_s_p50"),
            "accuracy": acc.get("score"), "retention": acc.get("retention"),
            "targets": {k: v["status"] for k, v in data.get("targets", {}).items()}}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(Path(tempfile.mkdtemp(prefix="quickstart-"))) for _ in range(args.runs)]
    walls = [r["wall_seconds"] for r in runs]
    out = {"goal_seconds": GOAL_SECONDS, "median_wall_seconds": statistics.median(walls), "wall_seconds": walls,
           "meets_goal": statistics.median(walls) <= GOAL_SECONDS, "cpu_count": os.cpu_count(),
           "cold_cache": True, "stages": [r["stages"] for r in runs],
           "load_average": [{"before": r["load_before"], "after": r["load_after"]} for r in runs],
           "variants": headline(runs[-1]["summary"]), "run_dirs": [r["run_dir"] for r in runs]}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "quickstart.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "variants"}, indent=2))


if __name__ == "__main__":
    main()
