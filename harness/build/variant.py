"""Build a variant into the shared cache, or reuse the cached copy: the content key (base model
identity, resolved steps, build-library versions, artifact format), the steps applied to the
loaded base model, and the atomic save.

Cache layout (`harness.paths.cache_dir()`): `variants/<key>/` holds each built artifact,
`training/<key>/` the checkpoints of its training steps (kept when a step fails, for resume).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

VARIANTS = "variants"
TRAINING = "training"
#: A size-only artifact sits beside the full one's folder, so a machine that can build the full one still does.
SIZE_ONLY_SUFFIX = "-size-only"


def base_identity(reference: str) -> dict[str, Any]:
    """What makes a base model the same model: a cache key ingredient."""
    if reference == "nano":
        from harness.models.nano import fingerprint

        return {"kind": "nano", "fingerprint": fingerprint()}
    if reference.startswith("nano-"):
        from harness.models import siblings

        if reference in siblings.siblings():
            return {"kind": "nano-sibling", "name": reference, "fingerprint": siblings.fingerprint(reference)}
    if reference.startswith("random:"):
        return {"kind": "random", "shape": reference.split(":", 1)[1]}
    path = Path(reference).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".safetensors"))
        stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
        return {"kind": "path", "path": str(path.resolve()), "files": stamp}
    return {"kind": "hub", "id": reference}


def variant_key(base: dict[str, Any], steps: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> str:
    from harness.build.artifact import FORMAT
    from harness.environment import BUILD_LIBRARIES, library_versions

    blob = json.dumps({"base": base_identity(base["model"]), "revision": base.get("revision"),
                       "steps": list(steps), "libraries": library_versions(BUILD_LIBRARIES), "format": FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def artifact_dir(cache: Path, key: str) -> Path:
    return cache / VARIANTS / key


def build(base: dict[str, Any], steps: list[dict[str, Any]], cache: Path,
          recipe_dir: Path | None) -> tuple[Path, dict[str, Any]]:
    """Build the variant into the shared cache (atomic), or reuse the cached copy; returns the
    artifact's folder and the `BuildInfo` of result.json."""
    from harness.build.artifact import has_build_record, read_build_record

    key = variant_key(base, steps)
    target = artifact_dir(cache, key)
    cached = has_build_record(target)
    if not cached and (reason := _too_large_here(base)):
        target = target.with_name(f"{key}{SIZE_ONLY_SUFFIX}")
        cached = has_build_record(target)
        if not cached:
            _size_only_into(base, steps, key, target, reason)
    if has_build_record(target):
        record = read_build_record(target)
        info = {"cached": cached, "key": key, "notes": record.get("notes", []),
                "build_seconds": record.get("build_seconds"),
                "training": training_curves(record.get("step_records", []))}
        if record.get("size_only"):
            info["size_only"] = record["size_only"]["reason"]
        return target, info
    notes, records, seconds = _build_into(base, steps, key, target, cache, recipe_dir)
    return target, {"cached": False, "key": key, "notes": notes, "build_seconds": seconds,
                    "training": training_curves(records)}


def _build_into(base: dict[str, Any], steps: list[dict[str, Any]], key: str, target: Path, cache: Path,
                recipe_dir: Path | None) -> tuple[list[str], list[dict[str, Any]], float]:
    """Load the base, apply the steps, save into a temporary folder and rename it into place."""
    from harness.build.artifact import save_variant
    from harness.exporting import EXPORTS
    from harness.models.loading import load_model
    from harness.steps._base import StepContext, apply_step

    start = time.perf_counter()
    loaded = load_model(base["model"], base.get("revision"), base.get("trust_remote_code", False))
    base_config = loaded.model.config.to_dict()
    tmp = target.with_name(f"{key}.tmp-{time.time_ns()}")
    # Export steps stage their files in <tmp>/exports/<fmt>/; the rename below moves them with
    # the torch weights into <artifact>/exports/<fmt>/.
    ctx = StepContext(replay=False, data_dir=recipe_dir, staging=tmp / EXPORTS, work_dir=cache / TRAINING / key,
                      base_model={k: base.get(k) for k in ("model", "revision", "trust_remote_code")})
    ctx.notes.extend(loaded.meta.get("notes", []))  # what loading found (a random model's activation stats)
    try:
        for raw in steps:
            apply_step(raw, loaded, ctx)
        seconds = time.perf_counter() - start
        record = {"base": {"model": base["model"], "source": loaded.source, "random_weights": loaded.random_weights,
                           **({"activation_stats": loaded.meta["activation_stats"]}
                              if "activation_stats" in loaded.meta else {})},
                  "base_config": base_config, "steps": list(steps), "notes": ctx.notes, "step_records": ctx.records,
                  "build_seconds": seconds, "key": key}
        save_variant(loaded, tmp, record)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(target)
    except OSError:  # built concurrently by another run: identical content, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return ctx.notes, ctx.records, seconds


def _too_large_here(base: dict[str, Any]) -> str | None:
    """Why a `random:<shape>` base cannot be built on this machine (see harness/models/sizing.py), or None."""
    if not base["model"].startswith("random:"):
        return None
    from harness.models.sizing import does_not_fit, estimate

    shape = base["model"].split(":", 1)[1]
    return does_not_fit(shape, estimate(shape)["params"]["total"])


def _size_only_into(base: dict[str, Any], steps: list[dict[str, Any]], key: str, target: Path, reason: str) -> None:
    """Config, processor and a build record holding the meta-device estimate: no weights."""
    from harness.build.artifact import save_size_only
    from harness.errors import ModelLoadError
    from harness.models.families import random_config
    from harness.models.sizing import estimate

    if steps:
        raise ModelLoadError(f"{reason}; a variant with steps needs the built model: leave its steps out (the size "
                             "suite reports fp16/INT8/INT4 estimates) or run it where the memory is")
    shape = base["model"].split(":", 1)[1]
    config, processor = random_config(shape)
    record = {"base": {"model": base["model"], "source": base["model"], "random_weights": True},
              "base_config": config.to_dict(), "steps": [], "notes": [reason], "step_records": [],
              "build_seconds": None, "key": key, "size_only": {"reason": reason, "estimate": estimate(shape)}}
    tmp = target.with_name(f"{target.name}.tmp-{time.time_ns()}")
    try:
        save_size_only(config, processor, tmp, record)
        tmp.rename(target)
    except OSError:  # written concurrently by another run: identical content, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def training_curves(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training steps' curves (loss per step, evaluations, seconds, tokens/s) for result.json."""
    return [r["training"] for r in records if isinstance(r, dict) and "training" in r]
