"""The history database: one SQLite file per output directory, shared by every run.

SQLite (WAL mode, busy timeout) lets two runs that finish at the same time both be recorded.
Rows are flat (run, variant, runtime, metric, value, CI) so trends are one query away.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from harness.results.kinds import headlines, sections
from harness.results.rundir import RunDir
from harness.sqlite_wal import connect_wal

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, recipe TEXT, started REAL, finished REAL, git_sha TEXT,
  host TEXT, path TEXT, n_variants INTEGER, n_failed INTEGER);
CREATE TABLE IF NOT EXISTS measurements (
  run_id TEXT, variant TEXT, runtime TEXT, metric TEXT, value REAL, ci_low REAL, ci_high REAL,
  PRIMARY KEY (run_id, variant, runtime, metric));
CREATE TABLE IF NOT EXISTS baselines (
  name TEXT PRIMARY KEY, run_id TEXT, path TEXT, created REAL);
"""


def connect(path: Path) -> sqlite3.Connection:
    conn = connect_wal(path, timeout_s=60)
    conn.executescript(SCHEMA)
    return conn


def _metrics(data: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(metric, value, ci) for one variant on one runtime, from every kind's section and headline."""
    out: list[tuple[str, Any, Any]] = []
    for section, kind in sections().items():
        for suite, entry in data.get(section, {}).items():
            out += kind.history_rows(suite, entry)
    for key, kind in headlines().items():
        if data.get(key):
            out += kind.headline_rows(data[key])
    return out


def flatten(summary: dict[str, Any]) -> list[tuple[str, str, str, float, float | None, float | None]]:
    rows = []
    for variant in summary["variants"]:
        for runtime, data in variant["runtimes"].items():
            for metric, value, ci in _metrics(data):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    low, high = (ci or [None, None])[:2]
                    rows.append((variant["name"], runtime, metric, float(value), low, high))
    return rows


def record_run(run: RunDir, plan: dict[str, Any], summary: dict[str, Any]) -> str | None:
    """Insert (or refresh) this run; return a warning instead of failing the run if the DB is unusable."""
    from harness.environment import git_sha

    path = run.history_file
    try:
        with connect(path) as conn:
            failed = sum(v["status"] != "ok" for v in summary["variants"])
            conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
                         (plan["run_id"], plan["recipe"], plan.get("started"), time.time(),
                          git_sha(Path(__file__).resolve().parent), os.uname().nodename,
                          str(run.path.resolve()), len(summary["variants"]), failed))
            conn.execute("DELETE FROM measurements WHERE run_id = ?", (plan["run_id"],))
            conn.executemany("INSERT INTO measurements VALUES (?,?,?,?,?,?,?)",
                             [(plan["run_id"], *row) for row in flatten(summary)])
        return None
    except sqlite3.DatabaseError as exc:
        return f"history database '{path}' is unusable ({exc}); this run is kept in its run directory only"


def list_runs(path: Path) -> list[dict[str, Any]]:
    with connect(path) as conn:
        cur = conn.execute("SELECT run_id, recipe, started, finished, n_variants, n_failed, path "
                           "FROM runs ORDER BY started")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def trend(path: Path, recipe: str, metrics: list[str]) -> list[dict[str, Any]]:
    """Every recorded value of `metrics` (SQL LIKE patterns) for one recipe, oldest run first."""
    where = " OR ".join(["m.metric LIKE ?"] * len(metrics))
    with connect(path) as conn:
        cur = conn.execute(
            "SELECT r.run_id, r.started, m.variant, m.runtime, m.metric, m.value, m.ci_low, m.ci_high "
            f"FROM measurements m JOIN runs r USING (run_id) WHERE r.recipe = ? AND ({where}) "
            "ORDER BY r.started, m.variant", (recipe, *metrics))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def set_baseline(path: Path, name: str, run_id: str, run_dir: Path) -> None:
    with connect(path) as conn:
        conn.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?,?)",
                     (name, run_id, str(run_dir.resolve()), time.time()))


def get_baseline(path: Path, name: str) -> dict[str, Any] | None:
    with connect(path) as conn:
        row = conn.execute("SELECT name, run_id, path, created FROM baselines WHERE name = ?", (name,)).fetchone()
    return dict(zip(("name", "run_id", "path", "created"), row)) if row else None


def list_baselines(path: Path) -> list[dict[str, Any]]:
    with connect(path) as conn:
        rows = conn.execute("SELECT name, run_id, path, created FROM baselines ORDER BY name").fetchall()
    return [dict(zip(("name", "run_id", "path", "created"), row)) for row in rows]
