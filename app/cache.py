"""Per-item result cache: an in-memory LRU, optionally backed by SQLite so it survives restarts.

Only good results are stored (successful and within budget): a line that came back too long must get a
fresh try next time. The key covers everything that changes the answer (see `cache_key`). A corrupt or
unwritable SQLite file is reported once and then ignored: the cache is an optimisation, never a reason to
fail a request or the startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cachetools import LRUCache

log = logging.getLogger(__name__)

CachedValue = dict[str, Any]


def cache_key(**parts: Any) -> str:
    """A stable digest of everything that can change an answer."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResultCache:
    """`max_rows` bounds the SQLite file: beyond it the oldest rows are deleted as new ones are written.
    Every SQLite call runs on one dedicated thread (in order, never on the event loop)."""

    def __init__(self, size: int, path: Path | None, max_rows: int = 100_000) -> None:
        self._memory: LRUCache[str, CachedValue] = LRUCache(maxsize=max(1, size))
        self._enabled = size > 0
        self._path = path
        self._max_rows = max(1, max_rows)
        self._db: sqlite3.Connection | None = None
        # One thread owns the connection: writes and deletes keep their order, and none blocks the loop.
        self._sqlite = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-sqlite")
        self._pending: set[asyncio.Future[None]] = set()

    @property
    def persistent(self) -> bool:
        return self._db is not None

    def __len__(self) -> int:
        return len(self._memory)

    async def _on_sqlite_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._sqlite, work, *args)

    async def open(self) -> None:
        """Open the SQLite file (if configured) and warm the memory cache from it."""
        if self._path is None or not self._enabled:
            return
        await self._on_sqlite_thread(self._open_db)

    def _open_db(self) -> None:
        assert self._path is not None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, check_same_thread=False, timeout=2.0)
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._prune(db)  # a file written under a larger bound
            rows = db.execute(
                "SELECT key, value FROM results ORDER BY rowid DESC LIMIT ?", (self._memory.maxsize,)
            ).fetchall()
            db.commit()
        except (sqlite3.Error, OSError) as exc:
            log.warning("cache file %s is unusable (%s): carrying on with the in-memory cache only", self._path, exc)
            return
        unreadable = []
        for key, value in reversed(rows):
            try:
                loaded = json.loads(value)
            except (TypeError, ValueError):
                loaded = None
            if isinstance(loaded, dict):
                self._memory[key] = loaded
            else:  # bad JSON, or JSON that is no result (a list, a string): never served, so dropped
                unreadable.append((key,))
        if unreadable:
            log.warning("cache file %s: dropping %d unreadable row(s)", self._path, len(unreadable))
            with contextlib.suppress(sqlite3.Error):
                db.executemany("DELETE FROM results WHERE key = ?", unreadable)
                db.commit()
        self._db = db
        log.info("cache: %s (%d results loaded)", self._path, len(rows))

    def _prune(self, db: sqlite3.Connection) -> None:
        """Keep the newest `max_rows` rows. A written row always gets the highest rowid (INSERT OR REPLACE
        deletes the old row), so the oldest are those more than `max_rows` below the highest."""
        db.execute("DELETE FROM results WHERE rowid <= (SELECT MAX(rowid) FROM results) - ?", (self._max_rows,))

    def get(self, key: str) -> CachedValue | None:
        if not self._enabled:
            return None
        return self._memory.get(key)

    async def put(self, key: str, value: CachedValue) -> None:
        """Store a result. Never raises: what cannot be serialised (or written) is not stored."""
        if not self._enabled:
            return
        try:
            text = json.dumps(value, ensure_ascii=False)
            text.encode("utf-8")
        except (TypeError, ValueError) as exc:
            log.warning("not caching a result that cannot be serialised: %s", exc)
            return
        self._memory[key] = value
        if self._db is not None:
            try:
                await self._on_sqlite_thread(self._write, key, text)
            except Exception:  # a write task's failure must never be left unobserved
                log.exception("cache write failed")

    def discard(self, key: str) -> None:
        """Forget a result (called from the loop: the SQLite delete runs on its thread, in order)."""
        self._memory.pop(key, None)
        if self._db is not None:
            delete = asyncio.ensure_future(self._on_sqlite_thread(self._delete, key))
            self._pending.add(delete)
            delete.add_done_callback(self._pending.discard)

    def _delete(self, key: str) -> None:
        db = self._db
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("DELETE FROM results WHERE key = ?", (key,))
                db.commit()

    def _write(self, key: str, value: str) -> None:
        db = self._db
        if db is None:
            return
        try:
            db.execute("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", (key, value))
            self._prune(db)
            db.commit()
        except sqlite3.Error as exc:
            log.warning("cache file %s cannot be written (%s): no longer using it", self._path, exc)
            self._db = None

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending))
        if self._db is not None:
            await self._on_sqlite_thread(self._close_db)
        self._sqlite.shutdown(wait=False)

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
