"""One way to open the project's SQLite files (history, response cache) for several writers at once.

Why: both databases are written by processes that start together (variant workers, two runs that
finish at the same time). WAL mode plus a busy timeout covers ordinary contention, but SQLite answers
`PRAGMA journal_mode=WAL` with "database is locked" at once, without calling the busy handler, while
another connection is opening the same fresh file. That switch is retried here until the timeout.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path


def connect_wal(path: Path, timeout_s: float) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout; the WAL switch is retried until `timeout_s`."""
    conn = sqlite3.connect(str(path), timeout=timeout_s)  # sqlite3 sets SQLite's busy timeout from this
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except sqlite3.OperationalError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            if not transient or time.monotonic() >= deadline:
                conn.close()
                raise
            time.sleep(pause * (1 + random.random()))  # jitter: workers that collided do not collide again
            pause = min(pause * 2, 0.2)
