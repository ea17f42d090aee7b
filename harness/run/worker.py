"""What runs inside a variant's isolated worker: build (or reuse) the variant, then carry out its
planned measurements, runtime by runtime and suite by suite. Returns the JSON-able part of
result.json; exceptions are recorded by `harness.isolation`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.build.variant import build
from harness.errors import HarnessError, RuntimeUnavailable
from harness.run.plan import RuntimeJob, VariantJob

PENDING = "pending"
NOT_APPLICABLE = "not applicable"
PENDING_WHY = ("measured in the run's interleaved rounds after every variant is built; the run stopped before "
               "them — `harness run --resume RUN_DIR` measures it")


def run_variant(job: VariantJob) -> dict[str, Any]:
    import torch

    if job.threads:
        torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    recipe_dir = Path(job.recipe_dir) if job.recipe_dir else None
    artifact, build_info = build(job.base, list(job.steps), Path(job.cache_dir), recipe_dir)
    measurements: dict[str, dict[str, Any]] = {}
    for planned in job.runtimes:
        if planned.reason is not None:  # recorded, shown in the report: never a silent skip
            measurements[planned.runtime] = {"status": "not applicable", "reason": planned.reason, "suites": {}}
            continue
        measurements[planned.runtime] = _measure(job, planned, artifact, build_info, recipe_dir)
    reused = [f"{rt}/{name} {s['cache']['hits']}/{s['cache']['hits'] + s['cache']['misses']}"
              for rt, m in measurements.items() for name, s in m["suites"].items() if s.get("cache", {}).get("hits")]
    if reused:  # a note in the report: these answers were read from the response cache, not generated now
        build_info["notes"] = [*build_info.get("notes", []), f"answers from the response cache: {', '.join(reused)}"]
    said = [f"{rt}: {m['info']['note']}" for rt, m in measurements.items() if (m.get("info") or {}).get("note")]
    if said:  # what a runtime's numbers are, in its own words (e.g. a device runtime's estimate), in the report
        build_info["notes"] = [*build_info.get("notes", []), *said]
    return {"artifact": str(artifact), "build": build_info, "measurements": measurements}


def _measure(job: VariantJob, planned: RuntimeJob, artifact: Path, build_info: dict[str, Any],
             recipe_dir: Path | None) -> dict[str, Any]:
    """Every planned suite on one runtime; a failing suite is recorded and the others still run. A
    size-only variant (too large to build here) blocks every session suite, deferred ones included."""
    from harness.registries import SUITE_KINDS
    from harness.run.plan import make_runtime
    from harness.suites._context import SuiteContext

    runtime = make_runtime(planned.runtime, planned.options)
    ctx = SuiteContext(runtime_name=planned.runtime, runtime=runtime, artifact=artifact, work_dir=Path(job.work_dir),
                       recipe_dir=recipe_dir, random_weights=job.base["model"].startswith("random:"),
                       variant_key=build_info["key"], cache_dir=Path(job.cache_dir), use_cache=job.use_cache)
    per_suite: dict[str, Any] = {suite["name"]: {"status": NOT_APPLICABLE, "kind": suite["kind"], "reason": why}
                                 for suite, why in planned.not_applicable}  # recorded with why, never run
    blocked = _probe(runtime, ctx) if planned.suites else None
    if blocked is None and build_info.get("size_only"):
        blocked = {"status": "unavailable", "error": build_info["size_only"]}
    for suite in planned.suites:
        kind = SUITE_KINDS.get(suite["kind"])
        start = time.perf_counter()
        if blocked is not None and kind.needs_session:
            per_suite[suite["name"]] = {"kind": suite["kind"], **blocked, "wall_seconds": 0.0}
            continue
        if kind.deferred:  # measured by the runner in interleaved rounds once every variant is built
            per_suite[suite["name"]] = {"status": PENDING, "kind": suite["kind"], "error": PENDING_WHY}
            continue
        try:
            result = kind().run(kind.Config.model_validate(suite), ctx)
            per_suite[suite["name"]] = {"status": "ok", "kind": suite["kind"], **result}
        except RuntimeUnavailable as exc:
            blocked = {"status": "unavailable", "error": str(exc)}
            per_suite[suite["name"]] = {"kind": suite["kind"], **blocked}
        except HarnessError as exc:
            per_suite[suite["name"]] = {"status": "error", "kind": suite["kind"], "error": str(exc)}
        per_suite[suite["name"]]["wall_seconds"] = time.perf_counter() - start
    return {"info": runtime.info(), "suites": per_suite}


def _probe(runtime: Any, ctx: Any) -> dict[str, Any] | None:
    """Load a non-torch runtime's session once, up front: a runtime that cannot measure here
    (RuntimeUnavailable) or cannot load the artifact at all blocks every session suite with one
    recorded line, while file-only suites (size) still run. torch-eager always loads here."""
    if "torch" in runtime.accepts:
        return None
    try:
        ctx.session()
    except RuntimeUnavailable as exc:
        return {"status": "unavailable", "error": str(exc)}
    except HarnessError as exc:
        return {"status": "error", "error": str(exc)}
    return None
