"""`harness run --dry-run`: the plan a run would carry out — variants × runtimes × suites, the pairs
that do not apply and why, which variants are already built (cache hits), and an estimate of the
time from earlier runs of the same recipe in the history database — after the same preflight,
without building, measuring or writing anything."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from harness.run.runner import RunOptions, prepare


def _cached(recipe: Any, variant: Any) -> bool:
    from harness.build.artifact import has_build_record
    from harness.build.variant import artifact_dir, variant_key
    from harness.paths import cache_dir

    return has_build_record(artifact_dir(cache_dir(), variant_key(recipe.base_of(variant).model_dump(),
                                                                  variant.steps_as_data())))


def _eta(history: Path, recipe: str, variants: int) -> dict[str, Any]:
    """Median seconds per variant over the recipe's recorded runs, times the variants to run."""
    import sqlite3

    from harness.results.history import list_runs

    if not history.exists():
        return {"seconds": None, "why": f"no history database at {history}"}
    try:
        runs = [r for r in list_runs(history) if r["recipe"] == recipe and r["finished"] and r["started"]
                and r["n_variants"]]
    except sqlite3.DatabaseError as exc:
        return {"seconds": None, "why": f"history database unusable ({exc})"}
    if not runs:
        return {"seconds": None, "why": f"no earlier run of '{recipe}' in {history}"}
    per_variant = statistics.median((r["finished"] - r["started"]) / r["n_variants"] for r in runs)
    return {"seconds": per_variant * variants, "from_runs": len(runs), "seconds_per_variant": per_variant}


def dry_run(recipe_path: Path, options: RunOptions) -> dict[str, Any]:
    from harness.results.rundir import history_in

    recipe, plan, output = prepare(recipe_path, options)
    variants = []
    for variant, planned in zip(recipe.variants, plan["plan"], strict=True):
        variants.append({"name": variant.name, "formats": planned["formats"], "cached": _cached(recipe, variant),
                         "runtimes": planned["runtimes"],
                         **{key: planned[key] for key in ("model", "family", "baseline") if key in planned}})
    return {"recipe": plan["recipe"], "output": str(output), "baseline": plan["baseline"], "limit": plan["limit"],
            "variants": variants, "eta": _eta(history_in(output), plan["recipe"], len(variants)),
            "notices": plan.get("notices", [])}


def lines(described: dict[str, Any]) -> list[str]:
    """The dry run for a terminal."""
    cross = any("model" in v for v in described["variants"])
    baseline = "each model's own baseline" if cross else f"baseline {described['baseline']}"
    out = [f"plan of {described['recipe']} ({len(described['variants'])} variants, {baseline}; runs go to "
           f"{described['output']})"]
    if described["limit"]:
        out.append(f"--limit {described['limit']}: scored suites read at most {described['limit']} items")
    for variant in described["variants"]:
        cached = "built earlier (cache hit)" if variant["cached"] else "to build"
        of = (f"model {variant['model']} ({variant.get('family') or 'unknown family'}), baseline "
              f"{variant['baseline']}; " if "model" in variant else "")
        out.append(f"  {variant['name']}  [{of}{'+'.join(variant['formats'])}; {cached}]")
        for runtime in variant["runtimes"]:
            if runtime["reason"] is None:
                out.append(f"    {runtime['runtime']}: {', '.join(runtime['suites'])}")
                out += [f"    {runtime['runtime']}: {suite} not applicable — {why}"
                        for suite, why in runtime.get("not_applicable", {}).items()]
            else:
                out.append(f"    {runtime['runtime']}: not applicable — {runtime['reason']}")
    out += [f"preflight: {note}" for note in described.get("notices", [])]
    eta = described["eta"]
    out.append(f"ETA ~{eta['seconds'] / 60:.1f} min (median of {eta['from_runs']} earlier run(s))"
               if eta["seconds"] is not None else f"ETA: unknown ({eta['why']})")
    return out
