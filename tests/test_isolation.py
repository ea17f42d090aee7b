"""Isolation: an exception, a hard crash and a hang are each recorded; the caller survives."""

from __future__ import annotations

import os
import time

from harness.isolation import run_isolated
from harness.results.rundir import worker_files


def ok_job(payload):
    return {"double": payload["x"] * 2, "pid": os.getpid()}


def raising_job(payload):
    raise ValueError("bad on purpose")


def aborting_job(payload):
    os.abort()


def hanging_job(payload):
    time.sleep(60)


def test_result_comes_back_from_another_process(tmp_path):
    outcome = run_isolated("tests.test_isolation:ok_job", {"x": 21}, worker_files(tmp_path), 120)
    assert outcome.ok and outcome.result["double"] == 42
    assert outcome.result["pid"] != os.getpid()


def test_exception_is_recorded_with_traceback(tmp_path):
    outcome = run_isolated("tests.test_isolation:raising_job", {}, worker_files(tmp_path), 120)
    assert not outcome.ok
    assert outcome.error == "ValueError: bad on purpose"
    assert "raising_job" in outcome.traceback


def test_hard_crash_is_recorded(tmp_path):
    outcome = run_isolated("tests.test_isolation:aborting_job", {}, worker_files(tmp_path), 120)
    assert not outcome.ok and "SIGABRT" in outcome.error


def test_hang_is_killed_at_the_timeout(tmp_path):
    start = time.perf_counter()
    outcome = run_isolated("tests.test_isolation:hanging_job", {}, worker_files(tmp_path), 8)
    assert not outcome.ok and "timed out after 8 s" in outcome.error
    assert time.perf_counter() - start < 40
