"""Executors: the same recipe through `local` one at a time, `local --jobs 2` and `ray` gives the
same accuracy numbers and statuses — a crashing and a hanging variant included; bad executor
flags are one line and exit 2 with nothing written."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.executors._base import Executor
from harness.executors.local import thread_share
from harness.registries import EXECUTORS
from harness.run.runner import RunOptions, run

from .runs import make_recipe

VARIANTS = """\
- name: base
- name: int8-llm
  steps: [{kind: quantize, method: dynamic-int8, targets: [llm]}]
- name: crash
  steps: [{kind: fault, mode: abort}]
- name: hang
  steps: [{kind: fault, mode: hang}]
"""


def _recipe(root: Path) -> Path:
    path = make_recipe(root, VARIANTS, suites="[acc-small, size]",
                       targets="{max_size_mb: 100, max_ttft_ms: null, max_peak_memory_mb: null, min_retention: 0.5}")
    path.write_text(path.read_text() + "variant_timeout_s: 8\n")
    return path


def _outcomes(run_dir: Path) -> dict[str, tuple]:
    """Per variant: status, the error's first words, accuracy score and item count, size in bytes."""
    summary = json.loads((run_dir / "results.json").read_text())
    out = {}
    for v in summary["variants"]:
        data = v["runtimes"].get("torch-eager", {})
        acc = data.get("accuracy", {}).get("acc-small", {})
        error = (v.get("error") or "").split(" ")[:3]
        out[v["name"]] = (v["status"], error, acc.get("score"), acc.get("n"), data.get("size", {}).get("total_bytes"))
    return out


@pytest.mark.parametrize("name", EXECUTORS.names())
def test_executor_contract(name):
    cls = EXECUTORS.get(name)
    assert issubclass(cls, Executor) and cls.name == name
    assert "executor" in cls(RunOptions().make_executor().options).describe()


def test_parallel_jobs_share_the_cores_unless_the_user_pinned_threads(monkeypatch):
    monkeypatch.delenv("HARNESS_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert thread_share(1) == {} and thread_share(2) == {"HARNESS_THREADS": "2"} and thread_share(8) == {
        "HARNESS_THREADS": "1"}
    monkeypatch.setenv("HARNESS_THREADS", "3")
    assert thread_share(2) == {}


def test_two_jobs_give_what_one_job_gives_crash_and_hang_included(tmp_path, nano_dir):
    recipe = _recipe(tmp_path)
    one = run(recipe, options=RunOptions(output=tmp_path / "one", progress=False))
    two = run(recipe, options=RunOptions(output=tmp_path / "two", progress=False, jobs=2))
    assert _outcomes(one) == _outcomes(two)
    outcomes = _outcomes(two)
    assert outcomes["crash"][0] == outcomes["hang"][0] == "failed" and outcomes["hang"][1] == ["timed", "out", "after"]
    assert outcomes["base"][0] == "ok" and outcomes["base"][3] == 60
    plan = json.loads((two / "run.json").read_text())
    assert plan["executor"] == {"executor": "local", "jobs": 2, "address": None}


@pytest.mark.slow
def test_ray_gives_what_local_gives_crash_and_hang_included(tmp_path, nano_dir):
    recipe = _recipe(tmp_path)
    local = run(recipe, options=RunOptions(output=tmp_path / "local", progress=False))
    on_ray = run(recipe, options=RunOptions(output=tmp_path / "ray", progress=False, executor="ray", jobs=2))
    assert _outcomes(local) == _outcomes(on_ray)
    result = json.loads((on_ray / "variants" / "base" / "result.json").read_text())
    assert result["worker_node"]["host"] == socket.gethostname() and result["worker_node"]["ray_node_id"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket goes


@pytest.mark.parametrize(("flags", "says"), [
    (["--executor", "ray", "--ray-address", "127.0.0.1:{port}"], "nothing answers at 127.0.0.1:{port}"),
    (["--executor", "ray", "--ray-address", "no-port"], "is not host:port"),
    (["--ray-address", "127.0.0.1:6379"], "--ray-address goes with --executor ray"),
    (["--executor", "rayy"], "unknown executor 'rayy' — did you mean 'ray'?"),
])
def test_bad_executor_flags_are_one_line_and_nothing_is_written(tmp_path, flags, says):
    pytest.importorskip("ray")
    port = _closed_port()
    recipe = _recipe(tmp_path)
    out = CliRunner().invoke(app, ["run", str(recipe), "-o", str(tmp_path / "out"),
                                   *[f.format(port=port) for f in flags]])
    assert out.exit_code == 2, out.output
    assert says.format(port=port) in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
