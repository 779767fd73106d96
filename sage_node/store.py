"""The node's data: every message that reaches data.topic, in one SQLite file, bounded in size.

On a Waggle node, node-influxdb-loader writes data.topic into InfluxDB (retention 2 days) and
the data API reads it back. Here a SQLite file plays InfluxDB's part, with InfluxDB's rules
where a user can see them: a record is a point of a series (name + meta), a second point of the
same series at the same timestamp replaces the first, meta keeps string values only.

Bound: when the pages in use pass ``max_bytes``, the oldest tenth of the records is deleted
(checked every TRIM_EVERY inserts); freed pages are reused, so the file stays near the bound.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRIM_EVERY = 200
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,          -- nanoseconds since the epoch, UTC
    name TEXT NOT NULL,
    value TEXT NOT NULL,          -- JSON: a number or a string
    meta TEXT NOT NULL,           -- JSON object of strings, keys sorted
    UNIQUE (name, meta, ts) ON CONFLICT REPLACE
);
CREATE INDEX IF NOT EXISTS records_ts ON records (ts);
CREATE INDEX IF NOT EXISTS records_name_ts ON records (name, ts);
"""


@dataclass(frozen=True)
class Record:
    ts: int
    name: str
    value: Any
    meta: dict[str, str]

    @property
    def series(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.name, tuple(sorted(self.meta.items()))


class BadMessage(ValueError):
    """A data.topic body that is not a wagglemsg message."""


def parse_message(body: bytes) -> Record:
    """A wagglemsg body ({"name","ts","meta","val"}) as a record; bytes values are not kept
    (InfluxDB has no bytes field type)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadMessage("not a JSON object")
    name, ts, meta, value = data.get("name"), data.get("ts"), data.get("meta", {}), data.get("val")
    if not isinstance(name, str) or not name:
        raise BadMessage("name must be a non-empty string")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise BadMessage("ts must be an integer (nanoseconds)")
    if not isinstance(meta, dict):
        raise BadMessage("meta must be an object")
    if data.get("enc") is not None or isinstance(value, bool) \
            or not isinstance(value, (int, float, str)):
        raise BadMessage("value must be a number or a string")
    return Record(ts=ts, name=name, value=value,
                  meta={k: v for k, v in meta.items() if isinstance(v, str)})


class Store:
    """One connection per thread: open a Store where it is used."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._inserts = 0

    def close(self) -> None:
        self.db.close()

    def add(self, record: Record) -> None:
        self.db.execute("INSERT INTO records (ts, name, value, meta) VALUES (?, ?, ?, ?)",
                        (record.ts, record.name, json.dumps(record.value),
                         json.dumps(record.meta, sort_keys=True, separators=(",", ":"))))
        self._inserts += 1
        if self._inserts % TRIM_EVERY == 0:
            self.trim()

    def used_bytes(self) -> int:
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def trim(self) -> int:
        """Delete the oldest tenth of the records while the store is over its bound."""
        deleted = 0
        while self.used_bytes() > self.max_bytes:
            count = self.db.execute("SELECT count(*) FROM records").fetchone()[0]
            if count == 0:
                break
            cut = max(1, count // 10)
            self.db.execute("DELETE FROM records WHERE id IN "
                            "(SELECT id FROM records ORDER BY ts, id LIMIT ?)", (cut,))
            deleted += cut
        return deleted

    def scan(self, *, start: int, end: int | None, name: str | None = None) -> Iterator[Record]:
        """Records with start <= ts < end (and this exact name), oldest first."""
        sql = "SELECT ts, name, value, meta FROM records WHERE ts >= ?"
        args: list[object] = [start]
        if end is not None:
            sql += " AND ts < ?"
            args.append(end)
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        for ts, rname, value, meta in self.db.execute(sql + " ORDER BY ts, id", args):
            yield Record(ts=ts, name=rname, value=json.loads(value), meta=json.loads(meta))

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])
