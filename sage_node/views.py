"""`sage-node data` and `sage-node uploads`: the node's data, read from its store and its
upload folders (both work while the node is down, too)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .parts import Layout
from .query import Query, QueryError, matches, parse_duration, plan_query, render, run_query
from .store import Record, Store


def since_bound(since: str | None) -> str:
    """--since 10m / -10m / 2d as the query's start; none means everything kept."""
    if since is None:
        return "1970-01-01T00:00:00Z"
    text = since if since.startswith("-") else f"-{since}"
    try:
        parse_duration(text)
    except ValueError:
        raise UsageError(f"--since {since!r}: expected a duration such as 30s, 10m, 2h or 1d") from None
    return text


def select(store: Store, *, name: str | None, since: str | None) -> list[Record]:
    query = Query(start=since_bound(since), filter=(("name", name),) if name else ())
    try:
        records = run_query(store, query)
    except QueryError as exc:
        raise UsageError(exc.message.removeprefix("error: failed to query backend: ")) from None
    return sorted(records, key=lambda r: (r.ts, r.name))


def format_record(record: Record, *, as_json: bool) -> str:
    if as_json:
        return next(render([record])).decode().rstrip("\n")
    line = next(render([record])).decode()
    data = json.loads(line)
    meta = " ".join(f"{k}={v}" for k, v in sorted(record.meta.items()))
    return f"{data['timestamp']}  {record.name}  {json.dumps(record.value)}  {meta}"


def follow(store: Store, *, name: str | None, after_id: int, emit: Callable[[Record], None],
           poll: float = 0.5) -> None:
    """New records as they arrive (in insertion order), with the data API's filter rules,
    until interrupted."""
    query = Query(start="1970-01-01T00:00:00Z", filter=(("name", name),) if name else ())
    _, _, filters = plan_query(query, time.time_ns())
    while True:
        rows = store.db.execute("SELECT id, ts, name, value, meta FROM records WHERE id > ? "
                                "ORDER BY id", (after_id,)).fetchall()
        for row_id, ts, rname, value, meta in rows:
            after_id = row_id
            record = Record(ts=ts, name=rname, value=json.loads(value), meta=json.loads(meta))
            if matches(record, filters):
                emit(record)
        time.sleep(poll)


def last_id(store: Store) -> int:
    return int(store.db.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0])


@dataclass(frozen=True)
class Upload:
    job: str
    task: str
    tag: str
    directory: Path
    filename: str
    timestamp: int
    shasum: str
    size: int
    labels: dict[str, str]
    url: str | None            # the data-sharing service's URL for it, from the data store

    def as_json(self) -> dict[str, Any]:
        return {"job": self.job, "task": self.task, "tag": self.tag, "path": str(self.directory),
                "filename": self.filename, "timestamp": self.timestamp, "shasum": self.shasum,
                "size": self.size, "labels": self.labels, "url": self.url}


def uploads(layout: Layout, store: Store | None) -> list[Upload]:
    """<uploads>/<job>/<task>/<tag>/<ts>-<sha1>/{data,meta}, pywaggle's layout, oldest first."""
    urls: dict[tuple[str, str], str] = {}
    if store is not None:
        for record in store.scan(start=0, end=None, name="upload"):
            urls[(record.meta.get("task", ""), str(record.value).rsplit("/", 1)[-1])] = str(record.value)
    found = []
    for meta_path in sorted(layout.uploads.glob("*/*/*/*/meta")):
        directory = meta_path.parent
        job, task, tag = directory.parts[-4:-1]
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        labels = {k: str(v) for k, v in (meta.get("labels") or {}).items()}
        filename = labels.get("filename", "")
        timestamp = int(meta.get("timestamp", 0))
        data = directory / "data"
        found.append(Upload(job=job, task=task, tag=tag, directory=directory, filename=filename,
                            timestamp=timestamp, shasum=str(meta.get("shasum", "")),
                            size=data.stat().st_size if data.exists() else 0, labels=labels,
                            url=urls.get((task, f"{timestamp}-{filename}"))))
    return sorted(found, key=lambda u: u.timestamp)
