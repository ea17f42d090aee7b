"""Turn per-variant results into comparable summaries: accuracy with CIs, paired retention and
agreement against the baseline variant, latency medians, memory, size, and target verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.stats import mcnemar_exact, paired_scores, retention_ci

TARGET_UNITS = {"max_size_mb": "MB", "max_peak_memory_mb": "MiB", "max_ttft_ms": "ms", "min_retention": "×"}


#: Suite kinds whose results are per-item scores (score, ci, n, items): retention and paired tests apply.
SCORED_KINDS: tuple[str, ...] = ("accuracy", "lm-eval")


def load_results(run_dir: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in names:
        path = run_dir / "variants" / name / "result.json"
        out[name] = json.loads(path.read_text()) if path.exists() else {"variant": name, "status": "pending"}
    return out


def _suites_of(result: dict[str, Any], runtime: str) -> dict[str, Any]:
    return result.get("measurements", {}).get(runtime, {}).get("suites", {})


def is_binary(data: dict[str, Any]) -> bool:
    """Whether a suite's per-item scores are 0/1 (its metric says so; older results: every score is)."""
    if "binary" in data:
        return bool(data["binary"])
    return all(it.get("score") in (0, 1, 0.0, 1.0) for it in data.get("items", []))


def paired(base_items: list[dict], items: list[dict], binary: bool = True) -> dict[str, Any]:
    """Retention, a paired test and answer agreement on the items both runs answered, overall and per group.

    0/1 scores get a bootstrap retention CI and an exact McNemar test. Graded scores (binary False)
    get a paired bootstrap of the ratio and mean difference and a Wilcoxon signed-rank test instead:
    thresholding them at 1 would call 0.9 VQA accuracy wrong."""
    base_by_id = {it["id"]: it for it in base_items}
    pairs = [(base_by_id[it["id"]], it) for it in items if it["id"] in base_by_id]
    if not pairs:
        return {"n_paired": 0}
    agreement = sum((b.get("prediction") or "").strip().lower() == (v.get("prediction") or "").strip().lower()
                    for b, v in pairs)
    by_group: dict[str, Any] = {}
    for group in sorted({str(v.get("group")) for _, v in pairs if v.get("group") is not None}):
        chosen = [(b, v) for b, v in pairs if str(v.get("group")) == group]
        compared = _compare(chosen, binary)
        by_group[group] = {"retention": compared["retention"], "retention_ci": compared["retention_ci"],
                           "n": len(chosen)}
    return {"n_paired": len(pairs), **_compare(pairs, binary), "agreement": agreement / len(pairs),
            "group_retention": by_group}


def _compare(pairs: list[tuple[dict, dict]], binary: bool) -> dict[str, Any]:
    """Retention with its CI plus the test that suits the scores (see `paired`)."""
    if not binary:
        return paired_scores([float(b["score"]) for b, _ in pairs], [float(v["score"]) for _, v in pairs])
    base_ok = [b["score"] >= 1.0 for b, _ in pairs]
    ok = [v["score"] >= 1.0 for _, v in pairs]
    point, low, high = retention_ci(base_ok, ok)
    return {"retention": point, "retention_ci": [low, high], "mcnemar": mcnemar_exact(base_ok, ok)}


def _noise_interval(data: dict[str, Any], metric: str) -> list[float]:
    """The p50's CI widened to the spread of per-process medians (iterations of one process are
    not independent; see docs/measurement.md) — what the Pareto and target checks treat as noise."""
    low, high = data["stats"][metric]["p50_ci"]
    medians = (data.get("process_medians") or {}).get(metric) or []
    if len(medians) >= 2:
        low, high = min(low, *medians), max(high, *medians)
    return [low, high]


def _latency_summary(data: dict[str, Any]) -> dict[str, Any]:
    stats = data["stats"]
    return {"ttft_p50_ms": stats["ttft_ms"]["p50"], "ttft_p50_ci": stats["ttft_ms"]["p50_ci"],
            "ttft_p50_interval": _noise_interval(data, "ttft_ms"),
            "decode_tokens_per_s_interval": _noise_interval(data, "decode_tokens_per_s"),
            "processes": data.get("processes", 1),
            "ttft_p90_ms": stats["ttft_ms"]["p90"], "ttft_cv": stats["ttft_ms"]["cv"],
            "preprocess_p50_ms": stats["preprocess_ms"]["p50"], "vision_p50_ms": stats["vision_ms"]["p50"],
            "prefill_p50_ms": stats["prefill_ms"]["p50"],
            "decode_tokens_per_s_p50": stats["decode_tokens_per_s"]["p50"],
            "decode_tokens_per_s_ci": stats["decode_tokens_per_s"]["p50_ci"],
            "iterations": data["iterations"], "new_tokens": data.get("new_tokens"),
            "cold_start_ms": data["cold_start"]["load_ms"] + data["cold_start"]["first_generation_ms"],
            "visual_tokens": data.get("visual_tokens"), "kv_cache_bytes": data.get("kv_cache_bytes")}


def summarize_variant(result: dict[str, Any], runtime: str, baseline: dict[str, Any]) -> dict[str, Any]:
    suites = _suites_of(result, runtime)
    base_suites = _suites_of(baseline, runtime) or _suites_of(baseline, "torch-eager")
    summary: dict[str, Any] = {"accuracy": {}, "errors": {}}
    for name, data in suites.items():
        if data.get("status") == "unavailable":  # the runtime cannot measure here (e.g. needs macOS)
            summary.setdefault("unavailable", {})[name] = data.get("error")
            if data.get("kind") == "parity":
                summary["parity"] = {"status": "unavailable", "error": data.get("error")}
            continue
        if data.get("status") != "ok":
            summary["errors"][name] = data.get("error")
            if data.get("kind") == "parity":
                summary["parity"] = {"status": "error", "error": data.get("error")}
            continue
        kind = data["kind"]
        if kind == "parity":
            summary["parity"] = {"status": "ok", **{k: data.get(k) for k in (
                "encoder", "logits", "agreement", "token_agreement", "n", "numeric_items", "disagreements")}}
        if kind in SCORED_KINDS:
            entry = {"score": data["score"], "ci": data["ci"], "n": data["n"], "metric": data["metric"],
                     "groups": data.get("groups", {}), "meaningful": data.get("meaningful", True),
                     **{k: data[k] for k in ("corpus", "failed_items", "binary") if k in data}}
            base = base_suites.get(name, {})
            if base.get("status") == "ok":
                entry.update(paired(base["items"], data["items"], is_binary(data) and is_binary(base)))
            summary["accuracy"][name] = entry
        elif kind == "latency":
            entry = _latency_summary(data)
            summary.setdefault("latency_by_suite", {})[name] = entry
            summary.setdefault("latency", entry)  # the recipe's first latency suite is the headline
        elif kind == "memory":
            entry = {"peak_rss_mb": data["peak_rss_mb"], "model_delta_mb": data["model_delta_mb"],
                     "model_delta_range_mb": data["model_delta_range_mb"],
                     "kv_cache_bytes": data.get("kv_cache_bytes"), "new_tokens": data.get("new_tokens")}
            summary.setdefault("memory_by_suite", {})[name] = entry
            summary.setdefault("memory", entry)
        elif kind == "size":
            summary["size"] = {"total_mb": data["total_mb"], "weights_mb": data["weights_mb"],
                               "files": data.get("files", []),
                               **{k: data[k] for k in ("storage_format", "llm_weight_bytes", "llm_ratio_to_fp16",
                                                     "packed_ratio_to_fp16") if k in data}}
    return summary


def evaluate_targets(summary: dict[str, Any], targets: dict[str, Any]) -> dict[str, Any]:
    """pass / fail / not measured per target; `within_noise` when the CI straddles the limit."""
    verdicts: dict[str, Any] = {}

    def judge(name: str, value: float | None, ci: list[float] | None, upper: bool, why: str = "") -> None:
        limit = targets.get(name)
        if limit is None:
            return
        if value is None:
            verdicts[name] = {"status": "not measured", "limit": limit, "why": why}
            return
        ok = value <= limit if upper else value >= limit
        noise = bool(ci and min(ci) <= limit <= max(ci))
        verdicts[name] = {"status": "pass" if ok else "fail", "value": value, "limit": limit,
                          "ci": ci, "within_noise": noise, "unit": TARGET_UNITS[name]}

    size = summary.get("size", {})
    judge("max_size_mb", size.get("total_mb"), None, True, "no size suite")
    memory = summary.get("memory", {})
    judge("max_peak_memory_mb", memory.get("model_delta_mb"), memory.get("model_delta_range_mb"), True,
          "no memory suite")
    latency = summary.get("latency", {})
    judge("max_ttft_ms", latency.get("ttft_p50_ms"), latency.get("ttft_p50_interval") or latency.get("ttft_p50_ci"),
          True, "no latency suite")
    retentions = [(a.get("retention"), a.get("retention_ci")) for a in summary.get("accuracy", {}).values()
                  if a.get("meaningful", True) and a.get("retention") is not None]
    worst = min(retentions, key=lambda r: r[0]) if retentions else (None, None)
    meaningful = all(a.get("meaningful", True) for a in summary.get("accuracy", {}).values())
    judge("min_retention", worst[0], worst[1], False,
          "random weights: accuracy is meaningless" if not meaningful else "no accuracy suite")
    return verdicts


def evaluate_parity(parity: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """The recipe's `parity:` thresholds against one artifact's parity numbers: pass / fail /
    unavailable / not measured, with every failing threshold named (harness gate reads it)."""
    limits = {k: v for k, v in policy.items() if v is not None}
    if not limits:
        return {"status": "report only", "failures": []}
    if parity.get("status") == "unavailable":
        return {"status": "unavailable", "why": parity.get("error"), "failures": []}
    if parity.get("status") != "ok":
        return {"status": "not measured", "why": parity.get("error"), "failures": []}
    failures = []
    if "min_agreement" in limits and parity["agreement"] < limits["min_agreement"]:
        failures.append(f"agreement {parity['agreement']:.3f} < {limits['min_agreement']}")
    if "min_cosine" in limits:
        for part in ("encoder", "logits"):
            cosine = parity[part]["cosine_min"]
            if cosine < limits["min_cosine"]:
                failures.append(f"{part} cosine {cosine:.4f} < {limits['min_cosine']}")
    if "max_logit_abs" in limits and parity["logits"]["max_abs"] > limits["max_logit_abs"]:
        failures.append(f"logit max-abs {parity['logits']['max_abs']:.3g} > {limits['max_logit_abs']}")
    return {"status": "fail" if failures else "pass", "failures": failures, "limits": limits}


def aggregate(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    resolved = json.loads((run_dir / "recipe.resolved.json").read_text())
    targets = resolved["spec"]["targets"]
    gates = {v["name"]: v["gate"] for v in resolved["variants"]}
    results = load_results(run_dir, manifest["variants"])
    baseline = results.get(manifest["baseline"], {})
    variants = []
    for name, result in results.items():
        entry: dict[str, Any] = {"name": name, "status": result.get("status"), "gate": gates.get(name, True),
                                 "steps": result.get("steps", []), "error": result.get("error"),
                                 "traceback": result.get("traceback"),
                                 "notes": result.get("build", {}).get("notes", []),
                                 "key": result.get("build", {}).get("key"),
                                 "training": result.get("build", {}).get("training", []), "runtimes": {}}
        for runtime, measured in result.get("measurements", {}).items():
            if measured.get("status") == "not applicable":
                entry.setdefault("not_applicable", {})[runtime] = measured.get("reason")
                continue
            summary = summarize_variant(result, runtime, baseline)
            summary["targets"] = evaluate_targets(summary, targets)
            if "parity" in summary:
                summary["parity"]["verdict"] = evaluate_parity(summary["parity"], resolved["spec"].get("parity") or {})
            entry["runtimes"][runtime] = summary
        variants.append(entry)
    return {"run_id": manifest["run_id"], "recipe": manifest["recipe"], "baseline": manifest["baseline"],
            "targets": targets, "variants": variants, "report_version": manifest.get("report_version", 1)}
