"""Benchmark: A/A check of the measurement rounds, `harness compare`, `harness gate --baseline`, the
targets and the Pareto standing, plus injected x1.5 slow-downs and an injected outlier process.
Writes benchmarks/results/aa_check.json.

1. recipes/aa-check.yaml (five quickstart variants, each with an identical twin) runs twice, A and B.
   Twin comparisons — within A, within B (each twin pair, 5 + 5) and across the runs (each variant,
   10) — must report no regression: across runs through `harness compare` and `harness gate
   --baseline`; within a run, the twin's TTFT ratio to the baseline variant must not differ from
   its original's beyond the regression policy, and neither twin may dominate the other (Pareto).
   No target decision may flip between A and B (pass <-> fail; "undecided" is not a decision).
2. `--tries` runs of [base-fp32, base-twin slowed by a sleep of half base-fp32's TTFT] (x1.5) gated
   against A: each must fail on `regression:TTFT p50 ms` of base-twin.
3. One run with a variant whose first latency process stalls (`fault` mode stall-once): the
   process is flagged, excluded and re-measured.

    python benchmarks/aa_check.py [--tries 10] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "aa-check.yaml"
HARNESS = [sys.executable, "-m", "harness.cli"]
OUT = ROOT / "benchmarks" / "results" / "aa_check.json"


def harness(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, env=env)


def run(recipe: Path, output: Path, env: dict[str, str]) -> Path:
    proc = harness("run", str(recipe), "--no-progress", "-o", str(output), env=env)
    if proc.returncode not in (0, 1):
        sys.exit(proc.stderr)
    return Path(next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("run:")))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def twins(variants: list[str], baseline: str) -> list[tuple[str, str]]:
    """Each variant and its twin; the baseline's twin is `base-twin`."""
    named = {v: "base-twin" if v == baseline else f"{v}-twin" for v in variants}
    return [(v, t) for v, t in named.items() if t in variants]


def within(run_dir: Path, policy: dict) -> list[dict]:
    """Each twin pair in one run: the TTFT ratios to the baseline variant, round by round, and Pareto."""
    import numpy as np

    from harness.report.html import objectives, points_of
    from harness.results.pareto import standings
    from harness.results.stats import median_ci
    from harness.suites._latency_compare import _verdict
    from harness.suites._latency_measure import per_round_ratios

    data = summary(run_dir)
    results = {v["name"]: json.loads((run_dir / "variants" / v["name"] / "result.json").read_text())
               for v in data["variants"]}
    baseline = data["baseline"]
    lat = {n: r["measurements"]["torch-eager"]["suites"]["latency"] for n, r in results.items()}
    standing = standings(points_of(data["variants"], "torch-eager"), objectives())
    out = []
    for original, twin in twins([v["name"] for v in data["variants"]], baseline):
        ratios_twin = per_round_ratios(lat[twin], lat[baseline], "ttft_ms")
        if original == baseline:  # base-twin: its ratio to base, round by round, as the report shows it
            low, high = median_ci(ratios_twin)  # the paired ratio's CI: a difference only if it excludes 1
            ratio = float(np.median(ratios_twin))
            verdict = "regression" if ratio > policy["latency_ratio"] and low > 1 else \
                "improvement" if ratio < 1 / policy["latency_ratio"] and high < 1 else "no significant change"
            ratios_original, p = [1.0] * len(ratios_twin), None
        else:  # both twins' ratios to base, compared as `harness compare` compares runs
            ratios_original = per_round_ratios(lat[original], lat[baseline], "ttft_ms")
            verdict, p = _verdict(ratios_original, ratios_twin, policy)
        pair = (standing[original], standing[twin])
        dominated = twin in pair[0].dominated_by or original in pair[1].dominated_by \
            or twin in pair[0].weakly_dominated_by or original in pair[1].weakly_dominated_by
        out.append({"run": run_dir.name, "original": original, "twin": twin, "ttft_verdict": verdict, "p": p,
                    "ratios_original": ratios_original, "ratios_twin": ratios_twin, "pareto_dominated": dominated})
    _corrected(out, policy)
    return out


def _corrected(pairs: list[dict], policy: dict) -> None:
    """The twin tests of one run corrected together, as `harness compare` corrects its tests."""
    from scipy.stats import false_discovery_control

    tested = [w for w in pairs if w["p"] is not None]
    for w, q in zip(tested, false_discovery_control([w["p"] for w in tested], method="bh"), strict=True):
        w["p_adjusted"] = float(q)
        if w["ttft_verdict"] != "no significant change" and q >= policy["alpha"]:
            w["ttft_verdict_uncorrected"], w["ttft_verdict"] = w["ttft_verdict"], "no significant change"
    for w in pairs:
        w["false_regression"] = w["ttft_verdict"] != "no significant change" or w["pareto_dominated"]


def across(a: Path, b: Path, env: dict[str, str]) -> dict:
    compared = json.loads(harness("compare", str(a), str(b), "--json", env=env).stdout)
    gate = json.loads(harness("gate", str(b), "--baseline", str(a), "--json", env=env).stdout)
    regressions = [c for c in compared["changes"] if c["verdict"] == "regression"]
    gate_regressions = [c for c in gate["checks"] if c["target"].startswith("regression:") and c["mark"] == "FAIL"]
    ttft = {c["variant"]: {"change": c["change"], "p": c["p_value"], "verdict": c["verdict"], "note": c["note"]}
            for c in compared["changes"] if c["metric"] == "TTFT p50 ms"}
    undecided = [c for c in compared["changes"] if c["verdict"] == "undecided"]
    gate_errors = [c for c in gate["checks"] if c["mark"] == "ERROR"]
    return {"comparisons": len({c["variant"] for c in compared["changes"]}), "regressions": regressions,
            "gate_regression_failures": gate_regressions, "undecided_changes": undecided,
            "gate_errors": gate_errors, "gate_exit": gate.get("exit_code"), "ttft": ttft}


def flips(a: Path, b: Path) -> dict:
    decided = ("pass", "fail")
    out = {"flips": [], "undecided": []}
    for va, vb in zip(summary(a)["variants"], summary(b)["variants"], strict=True):
        for target, verdict in va["runtimes"].get("torch-eager", {}).get("targets", {}).items():
            other = vb["runtimes"].get("torch-eager", {}).get("targets", {}).get(target, {})
            pair = (verdict["status"], other.get("status"))
            if pair[0] in decided and pair[1] in decided and pair[0] != pair[1]:
                out["flips"].append({"variant": va["name"], "target": target, "A": pair[0], "B": pair[1]})
            if "undecided" in pair:
                out["undecided"].append({"variant": va["name"], "target": target, "A": pair[0], "B": pair[1]})
    return out


def slowdown_tries(a: Path, output: Path, tries: int, env: dict[str, str]) -> dict:
    spec = yaml.safe_load(RECIPE.read_text())
    base_ttft = next(v for v in summary(a)["variants"] if v["name"] == "base-fp32")["runtimes"]["torch-eager"][
        "latency"]["ttft_p50_ms"]
    spec["variants"] = [{"name": "base-fp32", "steps": [], "gate": False},
                        {"name": "base-twin", "steps": [{"kind": "fault", "mode": "slow",
                                                         "milliseconds": round(base_ttft / 2, 2)}]}]
    spec["suites"] = ["latency", "size"]
    recipe = output / "aa-slowed.yaml"
    recipe.write_text(yaml.safe_dump(spec))
    caught = []
    for index in range(tries):
        new = run(recipe, output, env)
        gate = json.loads(harness("gate", str(new), "--baseline", str(a), "--json", env=env).stdout)
        hit = [c for c in gate["checks"] if c["variant"] == "base-twin" and c["target"] == "regression:TTFT p50 ms"]
        caught.append({"try": index, "detected": bool(hit and hit[0]["mark"] == "FAIL"),
                       "message": hit[0]["message"] if hit else None})
    return {"sleep_ms": round(base_ttft / 2, 2), "base_ttft_ms_in_A": base_ttft, "tries": caught,
            "detected": sum(t["detected"] for t in caught)}


def outlier_demo(output: Path, env: dict[str, str]) -> dict:
    spec = yaml.safe_load(RECIPE.read_text())
    spec["name"] = "aa-outlier"
    stall = {"kind": "fault", "mode": "stall-once", "milliseconds": 400}
    spec["variants"] = [{"name": "base-fp32", "steps": [], "gate": False}, {"name": "stalls-once", "steps": [stall]}]
    spec["suites"] = ["latency", "size"]
    recipe = output / "aa-outlier.yaml"
    recipe.write_text(yaml.safe_dump(spec))
    run_dir = run(recipe, output, env)
    rounds = json.loads((run_dir / "variants" / "stalls-once" / "result.json").read_text())["measurements"][
        "torch-eager"]["suites"]["latency"]["rounds"]
    html = (run_dir / "report.html").read_text()
    return {"run": str(run_dir), "rounds": rounds, "excluded": [r for r in rounds if r["excluded"]],
            "report_mentions_exclusion": "excluded" in html}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--reuse", action="store_true", help="recompute the twin checks on the recorded A/B runs")
    args = parser.parse_args()
    output = Path(tempfile.mkdtemp(prefix="aa-check-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FASTVLM_HARNESS_CACHE": str(output / "cache")}
    from harness.spec.recipe import RegressionPolicy

    policy = RegressionPolicy().model_dump()
    began = time.perf_counter()
    if args.reuse:  # recompute the twin checks on the recorded runs; the slow-down and outlier parts are kept
        result = json.loads(OUT.read_text())
        a, b = Path(result["runs"]["A"]), Path(result["runs"]["B"])
        result.update(within=within(a, policy) + within(b, policy), across=across(a, b, env), targets=flips(a, b))
        _totals(result)
        OUT.write_text(json.dumps(result, indent=1))
        _print(result, len(result["slowdown"]["tries"]))
        return
    a, b = run(RECIPE, output, env), run(RECIPE, output, env)
    result = {"runs": {"A": str(a), "B": str(b)}, "within": within(a, policy) + within(b, policy),
              "across": across(a, b, env), "targets": flips(a, b)}
    _totals(result)
    result["slowdown"] = slowdown_tries(a, output, args.tries, env)
    result["outlier"] = outlier_demo(output, env)
    result["seconds"] = time.perf_counter() - began
    result["cpu_count"] = os.cpu_count()
    OUT.write_text(json.dumps(result, indent=1))
    _print(result, args.tries)


def _totals(result: dict) -> None:
    result["twin_comparisons"] = len(result["within"]) + result["across"]["comparisons"]
    result["false_regressions"] = (sum(w["false_regression"] for w in result["within"])
                                   + len(result["across"]["regressions"]))


def _print(result: dict, tries: int) -> None:
    print(json.dumps({"twin_comparisons": result["twin_comparisons"], "false_regressions": result["false_regressions"],
                      "gate_regression_failures": len(result["across"]["gate_regression_failures"]),
                      "undecided_changes": len(result["across"]["undecided_changes"]),
                      "gate_errors": len(result["across"]["gate_errors"]),
                      "target_flips": len(result["targets"]["flips"]),
                      "undecided": len(result["targets"]["undecided"]),
                      "slowdowns_detected": f"{result['slowdown']['detected']}/{tries}",
                      "outlier_excluded": len(result["outlier"]["excluded"]), "seconds": round(result["seconds"])},
                     indent=1))


if __name__ == "__main__":
    main()
