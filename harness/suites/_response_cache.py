"""Deterministic response cache: greedy answers keyed by everything that determines them.

Why: re-scoring a run, re-running a recipe, or measuring the same base again should not regenerate
answers that cannot change. Greedy decoding of a fixed variant on a fixed runtime is a function of
(variant content hash, runtime, suite name/version, item id, exact prompt, image bytes, generation
settings); the sha256 of those is the key. The store is one SQLite file (`<cache dir>/responses.sqlite`)
in WAL mode with a busy timeout, because several variant workers write to it at the same time.

A cache that cannot be used (corrupt file, locked past the timeout, read-only disk) never fails a
suite: it is switched off for that suite with one warning line, recorded in the result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.sqlite_wal import connect_wal

FILE_NAME = "responses.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000


def image_hash(image: Any) -> str | None:
    """Content hash of an image: PIL image, raw bytes, a datasets {'bytes', 'path'} dict or a file path
    (a relative path that does not resolve here is hashed as its name)."""
    if image is None:
        return None
    digest = hashlib.sha256()
    if isinstance(image, (bytes, bytearray)):
        digest.update(image)
    elif isinstance(image, dict) and image.get("bytes") is not None:
        digest.update(image["bytes"])
    elif isinstance(image, (dict, str, Path)):  # an image file by path: its content when reachable
        path = Path(image.get("path") or "" if isinstance(image, dict) else image)
        digest.update(path.read_bytes() if path.is_file() else str(path).encode())
    elif hasattr(image, "tobytes"):
        digest.update(f"{getattr(image, 'mode', '')}:{getattr(image, 'size', '')}".encode())
        digest.update(image.tobytes())
    else:
        digest.update(repr(image).encode())
    return digest.hexdigest()


def response_key(*, variant: str, runtime: str, suite: str, version: int, item_id: str, prompt: str,
                 images: Sequence[str | None] = (), settings: dict[str, Any] | None = None) -> str:
    """sha256 over every input that determines a greedy answer (JSON, sorted keys)."""
    blob = json.dumps({"v": SCHEMA_VERSION, "variant": variant, "runtime": runtime, "suite": suite,
                       "version": version, "item": item_id, "prompt": prompt, "images": list(images),
                       "settings": settings or {}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Lookup and store of answers for one suite on one variant × runtime; counts hits and misses."""

    def __init__(self, path: Path | None, *, variant: str = "", runtime: str = "", suite: str = "",
                 version: int = 1, enabled: bool = True) -> None:
        self.path = path
        self.variant, self.runtime, self.suite, self.version = variant, runtime, suite, version
        self.enabled = bool(enabled and path is not None and variant)
        self.hits = 0
        self.misses = 0
        self.error: str | None = None
        self._conn: sqlite3.Connection | None = None

    # --- keys ---------------------------------------------------------------------------
    def key(self, item_id: Any, prompt: str, images: Sequence[Any] = (),
            settings: dict[str, Any] | None = None) -> str:
        if not self.enabled:  # nothing will be looked up: skip hashing the images
            return ""
        return self.key_from_digests(item_id, prompt, [image_hash(i) for i in images], settings)

    def key_from_digests(self, item_id: Any, prompt: str, digests: Sequence[str | None],
                         settings: dict[str, Any] | None = None) -> str:
        """`key` for images already hashed with `image_hash` (the accuracy suite hashes each image
        once, when it checks it decodes)."""
        if not self.enabled:
            return ""
        return response_key(variant=self.variant, runtime=self.runtime, suite=self.suite,
                            version=self.version, item_id=str(item_id), prompt=prompt,
                            images=list(digests), settings=settings)

    # --- storage ------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect_wal(self.path, BUSY_TIMEOUT_MS / 1000)
            conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
                         "token_ids TEXT, variant TEXT, suite TEXT, created REAL DEFAULT (julianday('now')))")
            conn.commit()
            self._conn = conn
        return self._conn

    def _disable(self, exc: Exception) -> None:
        self.error = (f"response cache {self.path} unusable ({exc}); answers computed without it "
                      f"(delete the file to reset it, or run with --no-cache)")
        print(f"warning: {self.error}", file=sys.stderr)
        self.enabled = False
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """Cached texts for the keys that have one (empty when disabled)."""
        if not self.enabled or not keys:
            return {}
        found: dict[str, str] = {}
        try:
            conn = self._connect()
            unique = list(dict.fromkeys(keys))
            for begin in range(0, len(unique), 500):  # stay under SQLite's host-parameter limit
                chunk = unique[begin: begin + 500]
                rows = conn.execute(f"SELECT key, text FROM responses WHERE key IN ({','.join('?' * len(chunk))})",
                                    chunk).fetchall()
                found.update(rows)
        except sqlite3.Error as exc:
            self._disable(exc)
            return {}
        return found

    def put_many(self, entries: dict[str, str], token_ids: dict[str, list[int]] | None = None) -> None:
        if not self.enabled or not entries:
            return
        token_ids = token_ids or {}
        rows = [(k, v, json.dumps(token_ids[k]) if k in token_ids else None, self.variant, self.suite)
                for k, v in entries.items()]
        try:
            conn = self._connect()
            with conn:  # one transaction per batch
                conn.executemany("INSERT OR REPLACE INTO responses (key, text, token_ids, variant, suite) "
                                 "VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            self._disable(exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- the one pattern every caller uses -----------------------------------------------
    def answers(self, keys: Sequence[str], compute: Callable[[list[int]], Any], batch_size: int) -> list[str]:
        """Answers for every key: cached ones read, the misses computed in batches (`compute(indices)`
        returns texts, or (texts, token_ids)) and stored. Order follows `keys`."""
        found = self.get_many(keys)
        out: list[str | None] = [found.get(k) for k in keys]
        missing = [i for i, text in enumerate(out) if text is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        for begin in range(0, len(missing), max(1, batch_size)):
            indices = missing[begin: begin + batch_size]
            produced = compute(indices)
            texts, ids = produced if isinstance(produced, tuple) else (produced, None)
            for j, index in enumerate(indices):
                out[index] = texts[j]
            self.put_many({keys[i]: texts[j] for j, i in enumerate(indices)},
                          {keys[i]: list(ids[j]) for j, i in enumerate(indices)} if ids is not None else None)
        return [text if text is not None else "" for text in out]

    def summary(self) -> dict[str, Any]:
        """What a suite result records: {"hits", "misses"} (+ "disabled"/"error" when relevant)."""
        out: dict[str, Any] = {"hits": self.hits, "misses": self.misses}
        if self.error:
            out["error"] = self.error
        elif not self.enabled:
            out["disabled"] = True
        return out


def for_suite(ctx: Any, suite_name: str, version: int = 1) -> ResponseCache:
    """The cache a suite uses in a worker context (disabled by --no-cache or without a variant key)."""
    cache_dir = getattr(ctx, "cache_dir", None)
    return ResponseCache(Path(cache_dir) / FILE_NAME if cache_dir else None,
                         variant=getattr(ctx, "variant_key", None) or "", runtime=ctx.runtime_name,
                         suite=suite_name, version=version, enabled=getattr(ctx, "use_cache", False))
