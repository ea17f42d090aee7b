"""What runs inside a variant's isolated worker: build (or reuse) the variant, then measure it
on every runtime × suite. Returns a JSON-able result; exceptions are recorded by `executors`."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


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
                        "build_seconds": manifest.get("build_seconds")}
    start = time.perf_counter()
    base = payload["base"]
    loaded = load_model(base["model"], base.get("revision"), base.get("trust_remote_code", False))
    base_config = loaded.model.config.to_dict()
    ctx = StepContext(replay=False, data_dir=Path(payload["recipe_dir"]) if payload.get("recipe_dir") else None)
    for raw in payload["steps"]:
        apply_step(raw, loaded, ctx)
    seconds = time.perf_counter() - start
    tmp = target.with_name(f"{key}.tmp-{time.time_ns()}")
    manifest = {"base": {"model": base["model"], "source": loaded.source,
                         "random_weights": loaded.random_weights},
                "base_config": base_config, "steps": payload["steps"], "notes": ctx.notes,
                "step_records": ctx.records,
                "build_seconds": seconds, "key": key}
    save_variant(loaded, tmp, manifest)
    try:
        tmp.rename(target)
    except OSError:  # built concurrently by another run: identical content, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target, {"cached": False, "key": key, "notes": ctx.notes, "build_seconds": seconds}


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
    for runtime_name in payload["runtimes"]:
        runtime = RUNTIMES.get(runtime_name)()
        ctx = SuiteContext(runtime_name=runtime_name, runtime=runtime, artifact=artifact,
                           work_dir=Path(payload["work_dir"]),
                           recipe_dir=Path(payload["recipe_dir"]) if payload.get("recipe_dir") else None,
                           random_weights=random_weights)
        per_suite: dict[str, Any] = {}
        for suite in payload["suites"]:
            kind = SUITE_KINDS.get(suite["kind"])
            start = time.perf_counter()
            try:
                result = kind().run(kind.Config.model_validate(suite), ctx)
                per_suite[suite["name"]] = {"status": "ok", "kind": suite["kind"], **result}
            except HarnessError as exc:
                per_suite[suite["name"]] = {"status": "error", "kind": suite["kind"], "error": str(exc)}
            per_suite[suite["name"]]["wall_seconds"] = time.perf_counter() - start
        measurements[runtime_name] = {"info": runtime.info(), "suites": per_suite}
    return {"artifact": str(artifact), "build": build_info, "measurements": measurements}
