"""Benchmark: does the nano reference separate compression methods? Reads one recorded run of
`recipes/method-pairs.yaml` and tests each method pair on the same accuracy items with the
harness's own paired statistics (`harness.results.paired`: exact McNemar on the discordant items,
retention with a paired bootstrap CI) — pair = (first variant as the reference, second). Writes
benchmarks/results/method_pairs.json. Goal (issue 14): at least two pairs with p < 0.05, and the
INT8 variant's retention against the fp32 baseline >= 0.98.

    harness run recipes/method-pairs.yaml
    python benchmarks/method_pairs.py reports/<that run folder>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.results.paired import pair_items, paired_test
from harness.results.rundir import open_run

ROOT = Path(__file__).resolve().parents[1]
SUITE = "nano-vqa"
RUNTIME = "torch-eager"
#: (reference, challenger): the pairs issue 14 names, in the recipe's variant names.
PAIRS = [("rtn-int4-g32", "gptq-int4-g32"), ("rtn-int4-g32", "awq-int4-g32"),
         ("rtn-int4-per-channel", "rtn-int4-g32"), ("magnitude-50", "2of4"),
         ("base-fp32", "drop-1-layer"), ("pool-2x2", "tome-to-4")]
INT8 = ("base-fp32", "int8-weight-only")


def suite_items(run: object, variant: str) -> tuple[float, list[dict]]:
    result = run.read_variant_result(variant)  # type: ignore[attr-defined]
    entry = result["measurements"][RUNTIME]["suites"][SUITE]
    return entry["score"], entry["items"]


def compare(run: object, first: str, second: str) -> dict:
    score_a, items_a = suite_items(run, first)
    score_b, items_b = suite_items(run, second)
    pairs = pair_items(items_a, items_b)
    tested = paired_test(pairs, binary=True)
    return {"reference": first, "challenger": second, "n": len(pairs), "reference_score": score_a,
            "challenger_score": score_b, "ratio": tested["retention"], "ratio_ci": tested["retention_ci"],
            **tested["mcnemar"], "separated": tested["mcnemar"]["p_value"] < 0.05}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    run = open_run(args.run_dir)
    pairs = [compare(run, a, b) for a, b in PAIRS]
    int8 = compare(run, *INT8)
    out = {"run": str(args.run_dir), "run_id": run.run_id, "suite": SUITE, "pairs": pairs, "int8": int8,
           "separated_pairs": sum(p["separated"] for p in pairs),
           "meets_goal": sum(p["separated"] for p in pairs) >= 2 and int8["ratio"] >= 0.98}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "method_pairs.json").write_text(json.dumps(out, indent=2))
    for p in pairs + [int8]:
        print(f"{p['reference']:>22} vs {p['challenger']:<18} {p['reference_score']:.3f} -> "
              f"{p['challenger_score']:.3f}  lost {p['lost']:3d} gained {p['gained']:3d}  p={p['p_value']:.2g}")
    print("separated pairs:", out["separated_pairs"], "meets goal:", out["meets_goal"])


if __name__ == "__main__":
    main()
