"""Benchmark: A/A check of `harness compare`, `harness gate --baseline` and the Pareto standing,
plus an injected regression. Writes benchmarks/results/aa_check.json.

Runs recipes/aa-check.yaml twice (A, B), then once more with a 20 ms sleep injected into
int8-llm-twin's vision encoder (C). Expected: B vs A has no significant regression and no
twin is dominated (or weakly dominated) by its twin; C vs A fails the gate on that variant only.

    python benchmarks/aa_check.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "aa-check.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=ENV)


def run(recipe: Path, output: Path) -> Path:
    proc = harness("run", str(recipe), "--no-progress", "-o", str(output))
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    return Path(next(line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.startswith("run:")))


def standings(run_dir: Path) -> dict[str, str]:
    from harness.report.html import objectives, points_of, standing_text
    from harness.results.gate import load_summary
    from harness.results.pareto import standings as compute

    points = points_of(load_summary(run_dir)["variants"], "torch-eager")
    return {name: standing_text(s) for name, s in compute(points, objectives()).items()}


def main() -> None:
    output = Path(tempfile.mkdtemp(prefix="aa-check-"))
    a, b = run(RECIPE, output), run(RECIPE, output)
    spec = yaml.safe_load(RECIPE.read_text())
    twin = next(v for v in spec["variants"] if v["name"] == "int8-llm-twin")
    twin["steps"].append({"kind": "fault", "mode": "slow", "milliseconds": 20})
    slowed = output / "aa-check-slowed.yaml"
    slowed.write_text(yaml.safe_dump(spec))
    c = run(slowed, output)
    result = {"runs": {"A": str(a), "B": str(b), "C_injected": str(c)}}
    for label, new in (("B_vs_A", b), ("C_vs_A", c)):
        compared = json.loads(harness("compare", str(a), str(new), "--json").stdout)
        gate = harness("gate", str(new), "--baseline", str(a))
        result[label] = {
            "regressions": [c for c in compared["changes"] if c["verdict"] == "regression"],
            "ttft_ratios": {c["variant"]: c["change"] for c in compared["changes"] if c["metric"] == "TTFT p50 ms"},
            "ttft_p_values": {c["variant"]: c["p_value"] for c in compared["changes"] if c["metric"] == "TTFT p50 ms"},
            "gate_exit_code": gate.returncode,
            "gate_failures": [line for line in gate.stdout.splitlines() if line.startswith("FAIL")]}
    result["pareto_A"], result["pareto_B"] = standings(a), standings(b)
    out = ROOT / "benchmarks" / "results" / "aa_check.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("pareto")}, indent=1)[:3000])
    print("pareto A:", result["pareto_A"])
    print("pareto B:", result["pareto_B"])


if __name__ == "__main__":
    main()
