"""The run pipeline end to end on the nano reference, with small suites so it stays fast."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.data.nano_vqa import KINDS
from harness.results.gate import gate
from harness.run.runner import finish, run

from .runs import make_recipe


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_crashing_variant_is_recorded_and_the_rest_finish(first_run):
    _, run_dir = first_run
    by_name = {v["name"]: v for v in results(run_dir)["variants"]}
    assert by_name["crash"]["status"] == "failed" and "SIGABRT" in by_name["crash"]["error"]
    assert all(by_name[n]["status"] == "ok" for n in ("base", "int8-llm", "res-32"))


def test_measurements_are_complete_and_sensible(first_run):
    _, run_dir = first_run
    by_name = {v["name"]: v["runtimes"].get("torch-eager", {}) for v in results(run_dir)["variants"]}
    base, int8, low = by_name["base"], by_name["int8-llm"], by_name["res-32"]
    assert base["accuracy"]["acc-small"]["score"] >= 0.7  # 0.75 on these 60 items (0.85 on all 800)
    assert base["accuracy"]["acc-small"]["retention"] == 1.0
    assert set(base["accuracy"]["acc-small"]["groups"]) == set(KINDS)
    assert int8["size"]["total_mb"] < base["size"]["total_mb"]  # packed int8 weights are smaller on disk
    assert low["latency"]["visual_tokens"] == 4 and base["latency"]["visual_tokens"] == 16
    for summary in (base, int8, low):
        lat = summary["latency"]
        assert lat["preprocess_p50_ms"] > 0 and lat["vision_p50_ms"] > 0 and lat["prefill_p50_ms"] > 0
        assert summary["memory"]["peak_rss_mb"] > summary["memory"]["model_delta_mb"] > 0
        assert set(summary["targets"]) == {"max_size_mb", "max_peak_memory_mb", "max_ttft_ms", "min_retention"}


def test_run_folder_files_have_their_declared_shapes(first_run):
    """run.json, every result.json and results.json of a real run validate against results/schema.py,
    and the plan recorded which runtime × suites each variant got."""
    from pydantic import ValidationError

    from harness.results import schema

    _, run_dir = first_run
    plan = schema.validate(schema.RunPlan, json.loads((run_dir / "run.json").read_text()))
    assert [p["name"] for p in plan["plan"]] == plan["variants"]
    assert all(r["suites"] == [s["name"] for s in plan["suites"]] for p in plan["plan"] for r in p["runtimes"])
    for name in plan["variants"]:
        schema.validate(schema.VariantResult, json.loads((run_dir / "variants" / name / "result.json").read_text()))
    summary = schema.validate(schema.RunSummary, results(run_dir))
    assert summary["report_version"] == 1
    with pytest.raises(ValidationError):
        schema.validate(schema.RunSummary, {**summary, "variants": [{"name": "x"}]})


def test_run_dir_report_and_history(first_run):
    _, run_dir = first_run
    for name in ("run.json", "recipe.yaml", "recipe.resolved.json", "environment.json", "results.json", "report.html"):
        assert (run_dir / name).exists(), name
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["libraries"]["torch"] and env["cpu"] and env["torch_threads"] >= 1
    html = (run_dir / "report.html").read_text()
    assert "int8-llm" in html and "SIGABRT" in html and "Plotly" in html
    assert "cdn" not in html.lower().split("<body>")[1]  # no network needed to view it
    with sqlite3.connect(run_dir.parent / "history.sqlite") as conn:
        rows = conn.execute("SELECT COUNT(*) FROM measurements WHERE run_id = ?", (run_dir.name,)).fetchone()
    assert rows[0] > 10


def test_training_curves_are_drawn_once_whatever_the_runtimes(first_run, tmp_path):
    import shutil

    _, run_dir = first_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    path = copy / "variants" / "int8-llm" / "result.json"
    result = json.loads(path.read_text())
    result["build"]["training"] = [{"step": "qat", "steps": 3, "seconds": 2.0, "tokens_per_s": 50.0,
                                    "curve": [{"step": i, "loss": 2.0 - i / 2} for i in range(3)]}]
    result["measurements"]["second-runtime"] = result["measurements"]["torch-eager"]  # two report sections
    path.write_text(json.dumps(result))
    finish(copy)
    html = (copy / "report.html").read_text()
    assert html.count("Variants on second-runtime") == 1 and html.count("Variants on torch-eager") == 1
    assert html.count("training: int8-llm (qat, 3 steps") == 1


def test_same_recipe_twice_gives_identical_accuracy(first_run):
    recipe, run_dir = first_run
    again = run(recipe, output=run_dir.parent, progress=False)
    a = {v["name"]: v["runtimes"] for v in results(run_dir)["variants"] if v["status"] == "ok"}
    b = {v["name"]: v["runtimes"] for v in results(again)["variants"] if v["status"] == "ok"}
    assert a.keys() == b.keys()
    for name in a:
        assert a[name]["torch-eager"]["accuracy"] == b[name]["torch-eager"]["accuracy"]
    cached = json.loads((again / "variants" / "int8-llm" / "result.json").read_text())
    assert cached["build"]["cached"] is True


def test_gate_passes_and_fails_on_targets(first_run, tmp_path):
    _, run_dir = first_run
    code, checks, _ = gate(run_dir, tmp_path / "junit.xml")
    assert code == 3  # the crashing variant is gated: not measured, so the gate cannot pass
    assert any(c.variant == "crash" and c.error and c.mark == "ERROR" for c in checks)
    assert "<error " in (tmp_path / "junit.xml").read_text()
    assert "<testsuite" in (tmp_path / "junit.xml").read_text()
    resolved_path = run_dir / "recipe.resolved.json"
    original = resolved_path.read_text()
    try:
        resolved = json.loads(original)
        for v in resolved["variants"]:
            v["gate"] = v["name"] != "crash"
        resolved["spec"]["targets"]["min_retention"] = 0.0  # res-32 loses real accuracy; judge it leniently here
        resolved_path.write_text(json.dumps(resolved))
        finish(run_dir)
        code, checks, _ = gate(run_dir)
        assert code == 0, [c.message for c in checks if not c.ok]
        resolved["spec"]["targets"]["max_ttft_ms"] = 0.001
        resolved_path.write_text(json.dumps(resolved))
        finish(run_dir)
        code, checks, _ = gate(run_dir)
        assert code == 1 and any(c.target == "max_ttft_ms" and not c.ok for c in checks)
    finally:
        resolved_path.write_text(original)
        finish(run_dir)


def test_resume_after_kill_recomputes_nothing_finished(tmp_path, nano_dir):
    variants = "- {name: base}\n- {name: slow, steps: [{kind: fault, mode: hang}]}\n- {name: last}\n"
    recipe = make_recipe(tmp_path, variants, suites="[size]")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(recipe), "-o", str(tmp_path / "out"),
                             "--no-progress"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    done = None
    while time.time() < deadline:
        found = list((tmp_path / "out").glob("*/variants/base/result.json"))
        if found:
            done = found[0]
            break
        time.sleep(0.5)
    assert done is not None, "first variant never finished"
    time.sleep(2)  # now inside the hanging variant
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = done.parents[2]
    stamp = done.stat().st_mtime_ns
    assert not (run_dir / "variants" / "last" / "result.json").exists()
    # let the resumed hang time out quickly
    (run_dir / "recipe.yaml").write_text((run_dir / "recipe.yaml").read_text() + "variant_timeout_s: 10\n")
    run(resume=run_dir, progress=False)
    assert done.stat().st_mtime_ns == stamp  # the finished variant was not recomputed
    by_name = {v["name"]: v for v in results(run_dir)["variants"]}
    assert by_name["last"]["status"] == "ok"
    assert by_name["slow"]["status"] == "failed" and "timed out" in by_name["slow"]["error"]


def test_two_runs_at_once_are_both_recorded(tmp_path, nano_dir):
    recipe = make_recipe(tmp_path, "- {name: base}\n", suites="[size]")
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(recipe), "-o", str(out), "--no-progress"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with sqlite3.connect(out / "history.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2


def test_output_that_is_a_file_is_refused(tmp_path, nano_dir):
    recipe = make_recipe(tmp_path, "- {name: base}\n", suites="[size]")
    blocker = tmp_path / "out"
    blocker.write_text("keep me")
    result = CliRunner().invoke(app, ["run", str(recipe), "-o", str(blocker), "--no-progress"])
    assert result.exit_code == 2 and "is a file" in result.output
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("command", ["gate", "report"])
def test_a_directory_that_is_not_a_run(tmp_path, command):
    result = CliRunner().invoke(app, [command, str(tmp_path)])
    assert result.exit_code == 2 and "not" in result.output and "Traceback" not in result.output


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "is not a run directory" in result.output


def test_resume_finds_the_recipes_own_suite_files(tmp_path, nano_dir):
    """The recipe copy in the run folder is read as if it stood where the recipe did: a suite file in
    the recipe's suites/ folder is found on --resume (it once was 'unknown suite')."""
    recipe = make_recipe(tmp_path, "- {name: base}\n- {name: bf16, steps: [{kind: cast, dtype: bf16}]}\n",
                         suites="[acc-small, size]")
    run_dir = run(recipe, output=tmp_path / "out", progress=False)
    result = run_dir / "variants" / "bf16" / "result.json"
    result.unlink()
    run(resume=run_dir, progress=False)
    assert json.loads(result.read_text())["status"] == "ok"
