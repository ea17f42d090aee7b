"""Compare two runs variant by variant: what changed, and whether it is more than noise.

Latency: ratio of medians plus a one-sided Mann-Whitney U test on the raw samples (a regression
needs ratio > policy AND p < alpha). Accuracy: the same items in both runs, exact McNemar test
on the discordant pairs (graded scores such as VQA accuracy or ANLS: Wilcoxon signed-rank test and a
paired bootstrap CI of the mean change). Memory: repeats' ranges must not overlap. Size: deterministic ratio.
Anything that cannot be compared (a suite defined differently, a variant missing or failed, an
older report format) is reported as *not comparable* with the reason — never as "no change".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.aggregate import SCORED_KINDS
from harness.errors import RunDirError

REPORT_VERSION = 1
LATENCY_METRICS = {"ttft_ms": "TTFT", "vision_ms": "vision encode", "prefill_ms": "prefill",
                   "decode_token_ms": "decode per token"}
REGRESSION, IMPROVEMENT, SAME, NOT_COMPARABLE, NEW = (
    "regression", "improvement", "no significant change", "not comparable", "new")


@dataclass
class Change:
    variant: str
    runtime: str
    metric: str
    verdict: str
    old: float | None = None
    new: float | None = None
    change: str = ""
    p_value: float | None = None
    note: str = ""


@dataclass
class RunComparison:
    old_run: str
    new_run: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == REGRESSION]

    def to_json(self) -> dict[str, Any]:
        return {"old_run": self.old_run, "new_run": self.new_run, "warnings": self.warnings,
                "changes": [asdict(c) for c in self.changes]}


@dataclass
class LoadedRun:
    path: Path
    manifest: dict[str, Any]
    spec: dict[str, Any]
    results: dict[str, dict[str, Any]]
    environment: dict[str, Any]


def load_run(path: Path) -> LoadedRun:
    """A finished run directory, checked to be in a format this version can compare."""
    from harness.aggregate import load_results
    from harness.runner import open_run_dir

    manifest = open_run_dir(path)
    version = manifest.get("report_version", 0)
    if version != REPORT_VERSION:
        raise RunDirError(f"run '{path}' was written by report format {version}, this harness reads "
                          f"{REPORT_VERSION}; re-run its recipe to compare it")
    resolved = path / "recipe.resolved.json"
    spec = json.loads(resolved.read_text())["spec"] if resolved.exists() else {}
    env_file = path / "environment.json"
    environment = json.loads(env_file.read_text()) if env_file.exists() else {}
    return LoadedRun(path, manifest, spec, load_results(path, manifest["variants"]), environment)


def _suites(run: LoadedRun, variant: str, runtime: str) -> dict[str, Any]:
    return run.results.get(variant, {}).get("measurements", {}).get(runtime, {}).get("suites", {})


def _suite_definitions(run: LoadedRun) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run.manifest.get("suites", [])}


def _latency(old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str, policy: Any) -> list[Change]:
    out = []
    for metric, label in LATENCY_METRICS.items():
        a, b = old["samples"].get(metric, []), new["samples"].get(metric, [])
        if len(a) < 3 or len(b) < 3:
            out.append(Change(variant, runtime, label, NOT_COMPARABLE, note="fewer than 3 samples"))
            continue
        units_a, units_b, note = _replicates(old, new, metric)
        med_a, med_b = _median(units_a), _median(units_b)
        ratio = med_b / med_a if med_a else float("inf")
        slower, faster = _one_sided(units_b, units_a)
        if ratio > policy["latency_ratio"] and slower < policy["alpha"]:
            verdict, p = REGRESSION, slower
        elif ratio < 1 / policy["latency_ratio"] and faster < policy["alpha"]:
            verdict, p = IMPROVEMENT, faster
        else:
            verdict, p = SAME, min(slower, faster)
        out.append(Change(variant, runtime, f"{label} p50 ms", verdict, med_a, med_b, f"x{ratio:.3f}", p, note))
    return out


def _replicates(old: dict[str, Any], new: dict[str, Any], metric: str) -> tuple[list[float], list[float], str]:
    """What to test: per-process medians when both runs measured in several processes, else iterations.

    Iterations within one process share its memory layout and thread placement and move together
    (seen here: 15 vs 21 ms TTFT for the same model in two processes), so they are not independent
    samples; the process is the unit of replication. Testing iterations of single-process runs is
    kept as a fallback and the note says that process-to-process noise was not sampled.
    """
    a = (old.get("process_medians") or {}).get(metric) or []
    b = (new.get("process_medians") or {}).get(metric) or []
    if len(a) >= 2 and len(b) >= 2:
        return a, b, f"Mann-Whitney U on process medians, {len(a)}/{len(b)} processes"
    return (old["samples"][metric], new["samples"][metric],
            f"Mann-Whitney U on iterations, n={len(old['samples'][metric])}/{len(new['samples'][metric])}; "
            "one process per run: process-to-process noise not sampled")


def _one_sided(new: list[float], old: list[float]) -> tuple[float, float]:
    """p-values that `new` is slower / faster than `old` (exact for small samples)."""
    from scipy.stats import mannwhitneyu

    return (float(mannwhitneyu(new, old, alternative="greater").pvalue),
            float(mannwhitneyu(new, old, alternative="less").pvalue))


def _median(values: list[float]) -> float:
    import numpy as np

    return float(np.median(values))


def _accuracy(name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
              policy: Any) -> Change:
    from harness.aggregate import is_binary
    from harness.stats import mcnemar_exact

    old_items = {it["id"]: it for it in old["items"]}
    pairs = [(old_items[it["id"]], it) for it in new["items"] if it["id"] in old_items]
    if len(pairs) < len(old_items) or len(pairs) < len(new["items"]):
        return Change(variant, runtime, f"{name} score", NOT_COMPARABLE, old["score"], new["score"],
                      note=f"only {len(pairs)} of {len(old_items)}/{len(new['items'])} items are shared")
    if not (is_binary(old) and is_binary(new)):
        return _accuracy_graded(name, pairs, variant, runtime, policy)
    a = [o["score"] >= 1.0 for o, _ in pairs]
    b = [n["score"] >= 1.0 for _, n in pairs]
    test = mcnemar_exact(a, b)
    old_score, new_score = sum(a) / len(pairs), sum(b) / len(pairs)  # from the paired items themselves
    drop = old_score - new_score
    if drop > policy["accuracy_drop"] and test["lost"] > test["gained"] and test["p_value"] < policy["alpha"]:
        verdict = REGRESSION
    elif drop < 0 and test["gained"] > test["lost"] and test["p_value"] < policy["alpha"]:
        verdict = IMPROVEMENT
    else:
        verdict = SAME
    return Change(variant, runtime, f"{name} score", verdict, old_score, new_score, f"{new_score - old_score:+.4f}",
                  test["p_value"], f"McNemar exact, lost {test['lost']} / gained {test['gained']} of {len(pairs)}")


def _accuracy_graded(name: str, pairs: list[tuple[dict, dict]], variant: str, runtime: str, policy: Any) -> Change:
    """Graded scores item by item: Wilcoxon signed-rank p-value, paired bootstrap CI of the mean change."""
    from harness.stats import paired_scores

    a, b = [float(o["score"]) for o, _ in pairs], [float(n["score"]) for _, n in pairs]
    stats = paired_scores(a, b)
    old_score, new_score = sum(a) / len(a), sum(b) / len(b)
    low, high = stats["mean_diff_ci"]
    p = stats["wilcoxon"]["p_value"]
    if old_score - new_score > policy["accuracy_drop"] and high < 0 and p < policy["alpha"]:
        verdict = REGRESSION
    elif new_score > old_score and low > 0 and p < policy["alpha"]:
        verdict = IMPROVEMENT
    else:
        verdict = SAME
    w = stats["wilcoxon"]
    return Change(variant, runtime, f"{name} score", verdict, old_score, new_score, f"{new_score - old_score:+.4f}",
                  p, f"Wilcoxon signed-rank, {w['lower']} lower / {w['higher']} higher of {len(pairs)}; "
                     f"paired bootstrap 95 % CI of the change [{low:+.4f}, {high:+.4f}]")


def _memory(old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str, policy: Any) -> Change:
    a_low, a_high = old["model_delta_range_mb"]
    b_low, b_high = new["model_delta_range_mb"]
    ratio = new["model_delta_mb"] / old["model_delta_mb"] if old["model_delta_mb"] else float("inf")
    if ratio > policy["memory_ratio"] and b_low > a_high:
        verdict = REGRESSION
    elif ratio < 1 / policy["memory_ratio"] and b_high < a_low:
        verdict = IMPROVEMENT
    else:
        verdict = SAME
    return Change(variant, runtime, "peak memory delta MiB", verdict, old["model_delta_mb"], new["model_delta_mb"],
                  f"x{ratio:.3f}", None, "ranges over repeats must not overlap")


def _size(old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str, policy: Any) -> Change:
    ratio = new["total_mb"] / old["total_mb"] if old["total_mb"] else float("inf")
    verdict = REGRESSION if ratio > policy["size_ratio"] else IMPROVEMENT if ratio < 1 / policy["size_ratio"] else SAME
    return Change(variant, runtime, "size MB", verdict, old["total_mb"], new["total_mb"], f"x{ratio:.4f}", None,
                  "bytes on disk (exact)")


def _suite_changes(name: str, old: dict[str, Any], new: dict[str, Any], variant: str, runtime: str,
                   policy: Any) -> list[Change]:
    kind = new.get("kind")
    if kind == "latency":
        return _latency(old, new, variant, runtime, policy)
    if kind in SCORED_KINDS:
        return [_accuracy(name, old, new, variant, runtime, policy)]
    if kind == "memory":
        return [_memory(old, new, variant, runtime, policy)]
    if kind == "size":
        return [_size(old, new, variant, runtime, policy)]
    return [Change(variant, runtime, name, NOT_COMPARABLE, note=f"suite kind '{kind}' has no comparison")]


def _without_none(value: Any) -> Any:
    """A definition with unset (None) fields dropped: fields added later with a None default must not
    make runs recorded before them look differently defined."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _definition_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    a, b = _without_none(a), _without_none(b)
    fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k != "description")
    return ", ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in fields[:3]) if fields else None


def _variant_changes(old: LoadedRun, new: LoadedRun, variant: str, policy: dict[str, Any]) -> list[Change]:
    """Suite by suite on every runtime, for a variant that ran in both runs."""
    old_defs, new_defs = _suite_definitions(old), _suite_definitions(new)
    out: list[Change] = []
    for runtime in new.results[variant].get("measurements", {}):
        old_suites, new_suites = _suites(old, variant, runtime), _suites(new, variant, runtime)
        for name, data in new_suites.items():
            if name not in old_defs:
                continue  # reported once as a run-level warning
            differs = _definition_difference(old_defs[name], new_defs.get(name, {}))
            if differs:
                reason = f"suite '{name}' is defined differently ({differs})"
            elif name not in old_suites:
                reason = f"runtime '{runtime}' did not run in the baseline"
            elif data.get("status") != "ok" or old_suites[name].get("status") != "ok":
                reason = f"suite failed ({data.get('error') or old_suites[name].get('error')})"
            else:
                out.extend(_suite_changes(name, old_suites[name], data, variant, runtime, policy))
                continue
            out.append(Change(variant, runtime, name, NOT_COMPARABLE, note=reason))
    return out


def compare_runs(old_dir: Path, new_dir: Path, policy: dict[str, Any] | None = None) -> RunComparison:
    """Every variant × runtime × metric of `new_dir` against `old_dir` (the baseline)."""
    from harness.recipe import RegressionPolicy

    old, new = load_run(old_dir), load_run(new_dir)
    policy = policy or new.spec.get("regression") or RegressionPolicy().model_dump()
    result = RunComparison(old.manifest["run_id"], new.manifest["run_id"])
    if old.manifest.get("recipe") != new.manifest.get("recipe"):
        result.warnings.append(f"different recipes ('{old.manifest.get('recipe')}' vs "
                               f"'{new.manifest.get('recipe')}'): variants are matched by name")
    old_host = (old.environment.get("cpu"), old.environment.get("hostname"))
    new_host = (new.environment.get("cpu"), new.environment.get("hostname"))
    if old_host != new_host:
        result.warnings.append(f"runs come from different machines ({old_host} vs {new_host}): "
                               "latency and memory differences include the machine")
    old_defs, new_defs = _suite_definitions(old), _suite_definitions(new)
    if not set(old_defs) & set(new_defs):
        raise RunDirError(f"runs '{old_dir}' and '{new_dir}' share no suite (baseline: {sorted(old_defs)}, "
                          f"new: {sorted(new_defs)}); nothing can be compared")
    for name in sorted(set(old_defs) ^ set(new_defs)):
        where = "baseline" if name in old_defs else "new run"
        result.warnings.append(f"suite '{name}' ran only in the {where}: not compared")
    for variant in new.manifest["variants"]:
        if variant not in old.results or old.results[variant].get("status") == "pending":
            result.changes.append(Change(variant, "-", "all", NEW, note="not in the baseline run: nothing to compare"))
            continue
        states = (old.results[variant].get("status"), new.results[variant].get("status"))
        if states != ("ok", "ok"):
            result.changes.append(Change(variant, "-", "all", REGRESSION if states[0] == "ok" else NOT_COMPARABLE,
                                         note=f"status {states[0]} in baseline, {states[1]} now"))
            continue
        if old.results[variant].get("steps") != new.results[variant].get("steps"):
            result.warnings.append(f"variant '{variant}' has different steps in the two runs")
        result.changes.extend(_variant_changes(old, new, variant, policy))
    for variant in old.manifest["variants"]:
        if variant not in new.manifest["variants"]:
            result.changes.append(Change(variant, "-", "all", NOT_COMPARABLE, note="missing from the new run"))
    return result
