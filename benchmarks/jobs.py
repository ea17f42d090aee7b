"""Benchmark: `harness run --jobs 2` against `--jobs 1` on a CPU-bound recipe (the quickstart's six
builds and its 600-item accuracy suite, no measurement rounds), cold cache each time, the two
interleaved in `--pairs` pairs so drift of the machine hits both alike. Reports the workers'
wall time (timings.json `workers_s`) per run and the median ratio jobs 2 / jobs 1, and checks
that both give the same accuracy numbers. Writes benchmarks/results/jobs.json.

    python benchmarks/jobs.py [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(jobs: int, folder: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASTVLM_HARNESS_CACHE": str(folder / "cache")}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(ROOT / "recipes" / "quickstart.yaml"),
                           "-o", str(folder / "runs"), "--no-progress", "--jobs", str(jobs),
                           "--set", "suites=[nano-vqa, size]"], capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 1):
        sys.exit(proc.stderr)
    run_dir = Path(next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("run:")))
    summary = json.loads((run_dir / "results.json").read_text())
    scores = {v["name"]: next(iter(v["runtimes"]["torch-eager"]["accuracy"].values()))["score"]
              for v in summary["variants"]}
    return {"jobs": jobs, "workers_s": json.loads((run_dir / "timings.json").read_text())["workers_s"],
            "scores": scores, "load_before": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for pair in range(args.pairs):
        order = (1, 2) if pair % 2 == 0 else (2, 1)
        runs += [one_run(jobs, Path(tempfile.mkdtemp(prefix=f"jobs{jobs}-"))) for jobs in order]
    one = [r for r in runs if r["jobs"] == 1]
    two = [r for r in runs if r["jobs"] == 2]
    ratios = [b["workers_s"] / a["workers_s"] for a, b in zip(one, two, strict=True)]
    out = {"cpu_count": os.cpu_count(), "pairs": args.pairs, "runs": runs,
           "median_workers_s": {"jobs_1": statistics.median(r["workers_s"] for r in one),
                                "jobs_2": statistics.median(r["workers_s"] for r in two)},
           "ratio_jobs2_over_jobs1": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
           "same_scores": all(r["scores"] == runs[0]["scores"] for r in runs)}
    (ROOT / "benchmarks" / "results" / "jobs.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
