"""Calibration of the noise rules on A/A data: how far healthy processes of one variant spread,
and what the outlier rule (OUTLIER_MADS, OUTLIER_FLOOR) and the noisy threshold (NOISY_CV) flag
on them. Reads the A/A runs that benchmarks/aa_check.py recorded (or run folders given), writes
benchmarks/results/noise_calibration.json.

    python benchmarks/calibrate_noise.py [RUN_DIR ...] [--out FILE]

Calibrated here on the 3 cold quickstart runs of benchmarks/quickstart.py
(results/noise_calibration_quickstart.json), validated on the A/A runs (results/noise_calibration.json).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def processes(run_dir: Path) -> dict[str, list[float]]:
    """Variant → every latency process's TTFT median (excluded ones too), per run."""
    out = {}
    for folder in sorted((run_dir / "variants").iterdir()):
        result = json.loads((folder / "result.json").read_text())
        for suite in result.get("measurements", {}).get("torch-eager", {}).get("suites", {}).values():
            if suite.get("kind") == "latency" and suite.get("status") == "ok":
                out[folder.name] = [r["ttft_median_ms"] for r in suite["rounds"]]
    return out


def main() -> None:
    from harness.suites._latency_measure import NOISY_CV, OUTLIER_FLOOR, OUTLIER_MADS

    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="*", type=Path, help="run folders (default: the recorded A/A runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "noise_calibration.json")
    args = parser.parse_args()
    runs = list(args.runs)
    if not runs:
        recorded = json.loads((ROOT / "benchmarks" / "results" / "aa_check.json").read_text())
        runs = [Path(recorded["runs"]["A"]), Path(recorded["runs"]["B"])]
    cvs, zs, deviations, flagged, noisy, names = [], [], [], [], [], []
    for run_dir in runs:
        for variant, medians in processes(run_dir).items():
            m = np.array(medians)
            centre = float(np.median(m))
            spread = 1.4826 * float(np.median(np.abs(m - centre))) or 1e-9
            cv = float(np.std(m, ddof=1) / np.mean(m))
            cvs.append(cv)
            names.append(f"{run_dir.name}/{variant}")
            zs += [float(abs(x - centre) / spread) for x in m]
            deviations += [float(abs(x - centre) / centre) for x in m]
            flagged += [f"{run_dir.name}/{variant}" for x in m
                        if abs(x - centre) > max(OUTLIER_MADS * spread, OUTLIER_FLOOR * centre)]
            if cv > NOISY_CV:
                noisy.append(f"{run_dir.name}/{variant}")
    result = {"runs": [str(r) for r in runs], "variants": len(cvs), "processes": len(zs),
              "between_process_cv": {"median": float(np.median(cvs)), "p90": float(np.percentile(cvs, 90)),
                                     "max": float(max(cvs))},
              "robust_z": {"median": float(np.median(zs)), "p99": float(np.percentile(zs, 99)), "max": float(max(zs))},
              "relative_deviation": {"median": float(np.median(deviations)),
                                     "p99": float(np.percentile(deviations, 99)), "max": float(max(deviations))},
              "thresholds": {"NOISY_CV": NOISY_CV, "OUTLIER_MADS": OUTLIER_MADS, "OUTLIER_FLOOR": OUTLIER_FLOOR},
              "false_flags": {"outlier_processes": flagged, "noisy_variants": noisy},
              "per_variant_cv": {name: round(cv, 4) for name, cv in zip(names, cvs, strict=True)},
              "suggested": {"NOISY_CV": round(math.ceil(max(cvs) * 1.1 / 0.05) * 0.05, 2)},
              "rule": "healthy A/A processes must flag nothing: NOISY_CV above the largest A/A CV (suggested: 10 % "
                      "above it, rounded up to 0.05); the outlier rule (5 MADs and the floor) must flag no healthy "
                      "process"}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
