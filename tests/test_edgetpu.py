"""The Edge TPU op-mapping report: the parser on recorded real `edgetpu_compiler` outputs, and the
compiler call through a stand-in `edgetpu_compiler` on PATH (the real one is not installable here)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness.exporting import edgetpu

SAMPLES = Path(__file__).parent / "data" / "edgetpu_compiler"


def _sample(name: str) -> str:
    return "\n".join(line for line in (SAMPLES / name).read_text().splitlines() if not line.startswith("# source:"))


def test_a_partly_mapped_graph_reports_the_split_and_each_ops_status():
    report = edgetpu.parse(_sample("coral-issue-60.txt"))
    assert (report["version"], report["compile_ms"], report["total_ops"]) == ("2.1.302470888", 12264, 93)
    assert (report["tpu_ops"], report["cpu_ops"], report["subgraphs"]) == (83, 10, 1)
    assert (report["on_chip_memory"], report["off_chip_memory"]) == ("6.86MiB", "1.22MiB")
    assert report["ops"] == [
        {"op": "LOGISTIC", "count": 1, "status": "More than one subgraph is not supported"},
        {"op": "ADD", "count": 10, "status": "Mapped to Edge TPU"},
        {"op": "CONCATENATION", "count": 1, "status": "More than one subgraph is not supported"},
        {"op": "CONCATENATION", "count": 3, "status": "Mapped to Edge TPU"}]
    line = edgetpu.summary_line("vision", report)
    assert "83/93 ops on the TPU, 10 on the CPU (CONCATENATION, LOGISTIC)" in line


def test_a_fully_mapped_graph_has_every_op_on_the_tpu():
    report = edgetpu.parse(_sample("yolov7-pr-1672.txt"))
    assert (report["total_ops"], report["tpu_ops"], report["cpu_ops"]) == (246, 246, 0)
    assert len(report["ops"]) == 9 and {r["status"] for r in report["ops"]} == {edgetpu.MAPPED}


def test_text_that_is_no_compiler_report_is_refused():
    with pytest.raises(ValueError, match="Total number of operations"):
        edgetpu.parse("ERROR: Didn't find op for builtin opcode 'COS'\n")


def _fake_compiler(folder: Path, body: str) -> Path:
    script = folder / edgetpu.COMPILER
    script.write_text(f"#!/bin/sh\necho \"$@\" > {folder}/args\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_the_compiler_runs_into_a_temporary_folder_and_its_report_is_kept(tmp_path, monkeypatch):
    graph = tmp_path / "vision.tflite"
    graph.write_bytes(b"TFL3")
    _fake_compiler(tmp_path, f"cat {SAMPLES / 'coral-issue-60.txt'}")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert edgetpu.installed()
    report = edgetpu.compile_report(graph)
    assert report["total_ops"] == 93 and report["cpu_ops"] == 10
    args = (tmp_path / "args").read_text().split()
    assert args[0] == "-s" and args[1] == "-o" and args[3] == str(graph) and not Path(args[2]).exists()


def test_a_failing_or_missing_compiler_is_recorded_not_raised(tmp_path, monkeypatch):
    graph = tmp_path / "decoder.tflite"
    graph.write_bytes(b"TFL3")
    _fake_compiler(tmp_path, "echo \"ERROR: Didn't find op for builtin opcode 'COS' version '1'\" >&2; exit 1")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    failed = edgetpu.compile_report(graph)
    assert failed == {"error": "edgetpu_compiler failed on decoder.tflite (exit 1): ERROR: Didn't find op for "
                               "builtin opcode 'COS' version '1'"}
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert edgetpu.compile_report(graph) == {"not_run": edgetpu.NOT_INSTALLED}
    assert edgetpu.summary_line("decoder", failed).startswith("Edge TPU decoder: edgetpu_compiler failed")
