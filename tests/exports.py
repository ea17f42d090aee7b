"""Shared helpers for the export tests: build a tiny variant the way the worker does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .conftest import build_tiny


def build_artifact(path: Path, steps: list[dict], export: dict, loaded: Any = None,
                   staging_from: Path | None = None) -> tuple[Any, Any]:
    """Exports staged inside the artifact, as in a worker build. With `staging_from`, start from
    that artifact's export (its `export` step counted as already applied) instead of converting
    again: conversion is the slow part of these tests."""
    from harness.build.artifact import save_variant
    from harness.steps._base import StepContext, apply_step

    loaded = loaded or build_tiny()
    base_config = loaded.model.config.to_dict()
    ctx = StepContext(staging=path / "exports")
    all_steps = steps
    if staging_from is not None:
        shutil.copytree(staging_from / "exports", path / "exports")
        all_steps = [export, *steps]
        ctx.records.append({})
        ctx.applied = 1
    for raw in steps:
        apply_step(raw, loaded, ctx)
    save_variant(loaded, path, {"base": {"model": "tiny", "source": "tiny"}, "base_config": base_config,
                                "steps": all_steps, "notes": ctx.notes, "step_records": ctx.records})
    return loaded, ctx


def export_manifest(path: Path, fmt: str) -> dict:
    return json.loads((path / "exports" / fmt / "export.json").read_text())


def check_corrupt_graph_is_recorded(source: Path, tmp_path: Path, export: dict, fmt: str, graph: str,
                                    runtime: Any, runtime_name: str, garbage: bytes) -> None:
    """A corrupt graph file: the runtime's load is one line naming the file, and a worker records
    the parity suite as an error while the size suite still measures."""
    import pytest

    from harness.build.variant import variant_key
    from harness.errors import RuntimeBackendError
    from harness.run.plan import job_for
    from harness.run.worker import run_variant

    base = {"model": "random:tiny"}
    cache = tmp_path / "cache"
    artifact = cache / "variants" / variant_key(base, [export])
    shutil.copytree(source, artifact)
    (artifact / "exports" / fmt / graph).write_bytes(garbage)
    with pytest.raises(RuntimeBackendError) as err:
        runtime.load(artifact)
    assert graph in str(err.value) and "corrupt" in str(err.value) and "\n" not in str(err.value)
    job = job_for(base, [export], ["torch", fmt], [runtime_name], [
        {"name": "size", "kind": "size"}, {"name": "par", "kind": "parity", "limit": 2, "numeric_items": 1}],
        cache, tmp_path / "work")
    measured = run_variant(job)["measurements"][runtime_name]["suites"]
    assert measured["size"]["status"] == "ok"
    assert measured["par"]["status"] == "error" and graph in measured["par"]["error"]
