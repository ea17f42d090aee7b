"""What runs inside a variant's isolated worker: build (or reuse) the variant, then measure it
on every runtime × suite. Returns a JSON-able result; exceptions are recorded by `executors`."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, RuntimeUnavailable
from harness.recipe import runtime_plan


def base_identity(reference: str) -> dict[str, Any]:
    """What makes a base model the same model: a cache key ingredient."""
    if reference == "nano":
        from harness.models.nano import fingerprint

        return {"kind": "nano", "fingerprint": fingerprint()}
    if reference.startswith("random:"):
        return {"kind": "random", "shape": reference.split(":", 1)[1]}
    path = Path(reference).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".safetensors"))
        stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
        return {"kind": "path", "path": str(path.resolve()), "files": stamp}
    return {"kind": "hub", "id": reference}


def variant_key(base: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    from harness.artifacts import FORMAT
    from harness.environment import BUILD_LIBRARIES, library_versions

    blob = json.dumps({"base": base_identity(base["model"]), "revision": base.get("revision"),
                       "steps": steps, "libraries": library_versions(BUILD_LIBRARIES), "format": FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build(payload: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Build the variant into the shared cache (atomic), or reuse the cached copy."""
    from harness.artifacts import read_manifest, save_variant
    from harness.models.loading import load_model
    from harness.steps._base import StepContext, apply_step

    key = variant_key(payload["base"], payload["steps"])
    target = Path(payload["cache_dir"]) / "variants" / key
    if (target / "harness_variant.json").exists():
        manifest = read_manifest(target)
        return target, {"cached": True, "key": key, "notes": manifest.get("notes", []),
                        "build_seconds": manifest.get("build_seconds"),
                        "training": training_curves(manifest.get("step_records", []))}
    start = time.perf_counter()
    base = payload["base"]
    loaded = load_model(base["model"], base.get("revision"), base.get("trust_remote_code", False))
    base_config = loaded.model.config.to_dict()
    tmp = target.with_name(f"{key}.tmp-{time.time_ns()}")
    # Export steps stage their files in <tmp>/exports/<fmt>/; the rename below moves them with
    # the torch weights into <artifact>/exports/<fmt>/.
    ctx = StepContext(replay=False, data_dir=Path(payload["recipe_dir"]) if payload.get("recipe_dir") else None,
                      staging=tmp / "exports", work_dir=Path(payload["cache_dir"]) / "training" / key,
                      base_model={k: base.get(k) for k in ("model", "revision", "trust_remote_code")})
    try:
        for raw in payload["steps"]:
            apply_step(raw, loaded, ctx)
        seconds = time.perf_counter() - start
        manifest = {"base": {"model": base["model"], "source": loaded.source,
                             "random_weights": loaded.random_weights},
                    "base_config": base_config, "steps": payload["steps"], "notes": ctx.notes,
                    "step_records": ctx.records,
                    "build_seconds": seconds, "key": key}
        save_variant(loaded, tmp, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(target)
    except OSError:  # built concurrently by another run: identical content, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target, {"cached": False, "key": key, "notes": ctx.notes, "build_seconds": seconds,
                    "training": training_curves(ctx.records)}


def training_curves(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training steps' curves (loss per step, evaluations, seconds, tokens/s) for result.json."""
    return [r["training"] for r in records if isinstance(r, dict) and "training" in r]


def run_variant(payload: dict[str, Any]) -> dict[str, Any]:
    import torch

    from harness.registries import RUNTIMES, SUITE_KINDS
    from harness.suites._context import SuiteContext

    if payload.get("threads"):
        torch.set_num_threads(int(payload["threads"]))
    torch.manual_seed(payload.get("seed", 0))
    artifact, build_info = build(payload)
    random_weights = payload["base"]["model"].startswith("random:")
    measurements: dict[str, dict[str, Any]] = {}
    plan = runtime_plan(payload["formats"], payload["runtimes"], payload.get("variant_runtimes"))
    for runtime_name in payload["runtimes"]:
        if plan[runtime_name] is not None:  # recorded, shown in the report: never a silent skip
            measurements[runtime_name] = {"status": "not applicable", "reason": plan[runtime_name], "suites": {}}
            continue
        runtime = RUNTIMES.get(runtime_name)()
        ctx = SuiteContext(runtime_name=runtime_name, runtime=runtime, artifact=artifact,
                           work_dir=Path(payload["work_dir"]),
                           recipe_dir=Path(payload["recipe_dir"]) if payload.get("recipe_dir") else None,
                           random_weights=random_weights, variant_key=build_info["key"],
                           cache_dir=Path(payload["cache_dir"]), use_cache=payload.get("use_cache", True))
        per_suite: dict[str, Any] = {}
        blocked = _probe(runtime, ctx)
        for suite in _suites_for(runtime, payload["suites"], ctx.recipe_dir):
            kind = SUITE_KINDS.get(suite["kind"])
            start = time.perf_counter()
            if blocked is not None and getattr(kind, "needs_session", True):
                per_suite[suite["name"]] = {"kind": suite["kind"], **blocked, "wall_seconds": 0.0}
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
        measurements[runtime_name] = {"info": runtime.info(), "suites": per_suite}
    reused = [f"{rt}/{name} {s['cache']['hits']}/{s['cache']['hits'] + s['cache']['misses']}"
              for rt, m in measurements.items() for name, s in m["suites"].items() if s.get("cache", {}).get("hits")]
    if reused:  # a note in the report: these answers were read from the response cache, not generated now
        build_info["notes"] = [*build_info.get("notes", []), f"answers from the response cache: {', '.join(reused)}"]
    return {"artifact": str(artifact), "build": build_info, "measurements": measurements}


def _probe(runtime: Any, ctx: Any) -> dict[str, Any] | None:
    """Load a non-torch runtime's session once, up front: a runtime that cannot measure here
    (RuntimeUnavailable) or cannot load the artifact at all blocks every session suite with one
    recorded line, while file-only suites (size) still run. torch-eager always loads here."""
    if "torch" in getattr(runtime, "accepts", ("torch",)):
        return None
    try:
        ctx.session()
    except RuntimeUnavailable as exc:
        return {"status": "unavailable", "error": str(exc)}
    except HarnessError as exc:
        return {"status": "error", "error": str(exc)}
    return None


def _suites_for(runtime: Any, suites: list[dict[str, Any]], recipe_dir: Path | None) -> list[dict[str, Any]]:
    """The recipe's suites, plus the shipped `parity` suite for every non-torch runtime (unless
    the recipe already names a parity suite): every exported artifact is checked automatically."""
    if "torch" in getattr(runtime, "accepts", ("torch",)) or any(s["kind"] == "parity" for s in suites):
        return suites
    from harness.suites._spec import load_suite

    return [*suites, load_suite("parity", recipe_dir).model_dump(mode="json")]
