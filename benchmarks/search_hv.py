"""Benchmark: `harness search recipes/search.yaml` with Optuna's TPE (the recipe's sampler) and
NSGA-II against random search at the same trial budget and the same seeds, interleaved (tpe s0,
nsga2 s0, random s0, tpe s1, ...), sharing one build cache so a point two samplers visit is built
once.

Per search: the trials, the first trial that meets every target, and the hypervolume of the
feasible trials. Objectives are normalised by the run's own baseline variant (measured in the same
run): retention loss 1 - accuracy / baseline accuracy, TTFT / baseline TTFT, size / baseline size,
all minimised; the reference point is (1 - min_retention, max_ttft_ms / baseline TTFT, 1.0), i.e.
the retention and TTFT targets and "no larger than the baseline" — a trial outside it adds nothing.
The volume is Optuna's own (`optuna._hypervolume.compute_hypervolume`, WFG). Writes
benchmarks/results/search_hv.json.

    python benchmarks/search_hv.py [--seeds 0 1] [--trials 16] [--samplers tpe nsga2 random]
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


def one_search(sampler: str, seed: int, trials: int, folder: Path, cache: Path) -> Path:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASTVLM_HARNESS_CACHE": str(cache)}
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "search", str(ROOT / "recipes" / "search.yaml"),
                           "-o", str(folder), "--no-progress", "--n-trials", str(trials),
                           "--set", f"search.sampler={sampler}", "--set", f"search.seed={seed}"],
                          capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 1):
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    print(f"{sampler} seed {seed}: {time.perf_counter() - began:.0f} s", flush=True)
    return Path(next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("run:")))


def _baseline(run_dir: Path) -> dict[str, float]:
    summary = json.loads((run_dir / "results.json").read_text())
    base = next(v for v in summary["variants"] if v["name"] == summary["baseline"])["runtimes"]["torch-eager"]
    return {"accuracy": next(iter(base["accuracy"].values()))["score"], "ttft_ms": base["latency"]["ttft_p50_ms"],
            "size_mb": base["size"]["total_mb"]}


def measure(run_dir: Path) -> dict:
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    record = json.loads((run_dir / "search.json").read_text())
    spec = json.loads((run_dir / "recipe.resolved.json").read_text())["spec"]["targets"]
    base = _baseline(run_dir)
    reference = np.array([1 - spec["min_retention"], spec["max_ttft_ms"] / base["ttft_ms"], 1.0])
    feasible = [t for t in record["trials"] if t["feasible"] and t.get("repeat_of") is None]
    points = np.array([[1 - t["values"]["accuracy"] / base["accuracy"], t["values"]["ttft_ms"] / base["ttft_ms"],
                        t["values"]["size_mb"] / base["size_mb"]] for t in feasible]).reshape(-1, 3)
    inside = points[(points < reference).all(axis=1)]
    volume = float(compute_hypervolume(inside, reference)) if len(inside) else 0.0
    states: dict[str, int] = {}
    for t in record["trials"]:
        state = "REPEAT" if t.get("repeat_of") is not None else t["state"]
        states[state] = states.get(state, 0) + 1
    return {"run": run_dir.name, "sampler": record["sampler"], "seed": record["seed"], "trials": len(record["trials"]),
            "stopped": record.get("stopped"),
            "states": states, "feasible": len(feasible), "hypervolume": volume, "reference_point": reference.tolist(),
            "baseline": base, "first_feasible_trial": min((t["number"] for t in feasible), default=None),
            "frontier": record["frontier"], "importances": record["importances"],
            "seconds": sum(t["seconds"] or 0 for t in record["trials"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "random"])
    parser.add_argument("--work", type=Path, default=None, help="folder for runs and the shared build cache")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="search-hv-"))
    results: list[dict] = []
    for seed in args.seeds:
        for sampler in args.samplers:
            results.append(measure(one_search(sampler, seed, args.trials, work / "runs", work / "cache")))
            write(args, results)


def write(args: argparse.Namespace, results: list[dict]) -> None:
    """The JSON after every search (a partial file when the benchmark is stopped early)."""
    by = {s: [r["hypervolume"] for r in results if r["sampler"] == s] for s in args.samplers}
    random = by.get("random", [])
    out = {"recipe": "recipes/search.yaml", "trials_per_search": args.trials, "seeds": args.seeds,
           "cpu_count": os.cpu_count(), "searches": results,
           "hypervolume": {s: {"per_seed": v, "median": statistics.median(v) if v else None} for s, v in by.items()},
           "minus_random_per_seed": {s: [a - b for a, b in zip(v, random)] for s, v in by.items() if s != "random"}}
    (ROOT / "benchmarks" / "results" / "search_hv.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "searches"}, indent=1))


if __name__ == "__main__":
    main()
