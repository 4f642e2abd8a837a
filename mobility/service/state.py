"""Persistent state: SQLite in WAL mode, one transaction per change, committed before the caller
acknowledges anything (so what was acknowledged survives kill -9)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class StateStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT, key TEXT, value TEXT NOT NULL, updated REAL,"
            " PRIMARY KEY (kind, key))"
        )
        self._depth = 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth == 0:
            self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("COMMIT")

    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)",
                (kind, key, json.dumps(value), time.time()),
            )

    def delete(self, kind: str, key: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def all(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT key, value FROM records WHERE kind = ?", (kind,)).fetchall()
        return {k: dict(json.loads(v)) for k, v in rows}

    def close(self) -> None:
        self._db.close()
