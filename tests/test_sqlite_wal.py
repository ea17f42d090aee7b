"""Both SQLite files (run history, response cache) open in WAL mode even when several processes
create the same file at once, and a real error is not retried."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from harness.results import history as store
from harness.sqlite_wal import connect_wal


def _open_history(path: str, start: Any, errors: Any) -> None:
    start.wait()  # all processes open the fresh file at the same moment
    try:
        store.connect(Path(path)).close()
        errors.put(None)
    except sqlite3.Error as exc:
        errors.put(str(exc))


def test_history_database_survives_processes_creating_it_together(tmp_path):
    ctx = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(25):  # before the WAL retry about 1 round in 10 lost a process to "locked"
        path = tmp_path / f"h{round_}.sqlite"
        start, errors = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_history, args=(str(path), start, errors)) for _ in range(4)]
        for p in procs:
            p.start()
        failures += [e for e in (errors.get(timeout=120) for _ in procs) if e]
        for p in procs:
            p.join(60)
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert failures == []


def test_a_real_error_is_raised_at_once(tmp_path):
    began = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        connect_wal(tmp_path / "missing-dir" / "x.sqlite", timeout_s=30)
    assert time.monotonic() - began < 5
