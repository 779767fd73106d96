"""The data API's query language (waggle-sensor/beehive-data-api service.go + influx_backend.go),
answered from the node's store.

Request: a JSON object with start (required), end, head, tail, filter, bucket,
experimental_func, experimental_window - no other field (DisallowUnknownFields), keys matched
case-insensitively as Go's encoding/json does. Errors read as the real API's: a bad request is a
400 "error: failed to parse query: ...", a query its backend refuses is a 500
"error: failed to query backend: ...". Results come as InfluxDB returns them: grouped by series
(name + meta), each series oldest first; head/tail/functions apply per series; a filter value
with "|" is the anchored regex ^(v)$, one with "*" the anchored regex ^v$, anything else an exact
match; "name" filters the measurement name, every other key a meta key.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .store import Record, Store

MAX_BODY = 4096
BUCKET = "waggle"          # the node's InfluxDB bucket (WES: org and bucket "waggle")
FUNCS = ("mean", "min", "max", "sum", "count")
MAX_WINDOWS = 100_000      # a guard the real API does not have: windows are made in memory
FIELDS = {"bucket": "string", "start": "string", "end": "string", "head": "int",
          "tail": "int", "experimental_func": "string", "experimental_window": "string",
          "filter": "filter"}
META_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
QUERY_STRING = re.compile(r"^[A-Za-z0-9+-_.*:| ]*$")   # "+-_" is a range, as upstream's
DURATION_PART = re.compile(r"(\d+)(ns|us|µs|ms|mo|s|m|h|d|w|y)")
UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
           "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9,
           "mo": 30 * 86400 * 10**9, "y": 365 * 86400 * 10**9}


class QueryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bad_request(message: str) -> QueryError:
    return QueryError(400, f"error: failed to parse query: {message}")


def _backend(message: str) -> QueryError:
    return QueryError(500, f"error: failed to query backend: {message}")


@dataclass(frozen=True)
class Query:
    start: str
    end: str = ""
    head: int | None = None
    tail: int | None = None
    filter: tuple[tuple[str, str], ...] = ()
    bucket: str | None = None
    func: str | None = None
    window: str | None = None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "value")


def _field(name: str, kind: str, value: Any) -> Any:
    where = f"Go struct field Query.{name} of type"
    if value is None:
        return None
    if kind == "string":
        if not isinstance(value, str):
            raise _bad_request(f"json: cannot unmarshal {_json_kind(value)} into {where} string")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad_request(f"json: cannot unmarshal {_json_kind(value)} into {where} int")
        if isinstance(value, float) and not value.is_integer():
            raise _bad_request(f"json: cannot unmarshal number {value} into {where} int")
        return int(value)
    if not isinstance(value, dict):
        raise _bad_request(f"json: cannot unmarshal {_json_kind(value)} into {where} "
                           "map[string]string")
    for v in value.values():
        if not isinstance(v, str):
            raise _bad_request(f"json: cannot unmarshal {_json_kind(v)} into {where} string")
    return value


def parse_query(body: bytes) -> Query:
    """The request body as a Query, or a 400 QueryError worded as the real API's."""
    if not body:
        raise QueryError(400, "error: no query provided")
    if len(body) > MAX_BODY:
        raise QueryError(400, "error: query is too large - must be <1KB")
    try:
        data, _ = json.JSONDecoder().raw_decode(body.decode("utf-8").lstrip())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad_request(f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise _bad_request(f"json: cannot unmarshal {_json_kind(data)} into Go value of type "
                           "main.Query")
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in FIELDS else next((f for f in FIELDS if f.lower() == key.lower()), None)
        if name is None:
            raise _bad_request(f'json: unknown field "{key}"')
        values[name] = _field(name, FIELDS[name], value)
    if not values.get("start"):
        raise _bad_request("missing start field")
    for key in values.get("filter") or {}:
        if not META_KEY.match(key):
            raise _bad_request(f"invalid filter key: {json.dumps(key)}")
    return Query(start=values["start"], end=values.get("end") or "", head=values.get("head"),
                 tail=values.get("tail"),
                 filter=tuple(sorted((values.get("filter") or {}).items())),
                 bucket=values.get("bucket"), func=values.get("experimental_func"),
                 window=values.get("experimental_window"))


def parse_duration(text: str) -> int:
    """A Flux duration literal ("-1h", "1h30m", "2d") in nanoseconds; ValueError if it is not."""
    sign = -1 if text.startswith("-") else 1
    body = text[1:] if text[:1] in "+-" else text
    parts = DURATION_PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"invalid duration {text!r}")
    return sign * sum(int(n) * UNIT_NS[u] for n, u in parts)


def parse_time(text: str, now_ns: int) -> int:
    """A Flux time bound: an RFC 3339 time, a date, or a duration relative to now."""
    try:
        return now_ns + parse_duration(text)
    except ValueError:
        pass
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?"
                         r"(Z|[+-]\d{2}:\d{2}))?", text)
    if not match:
        raise ValueError(f"invalid time {text!r}")
    day, clock, frac, zone = match.groups()
    if clock is None:
        stamp = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    else:
        stamp = datetime.fromisoformat(f"{day}T{clock}{'+00:00' if zone == 'Z' else zone}")
    seconds = int(stamp.timestamp())
    return seconds * 10**9 + int((frac or "0").ljust(9, "0"))


def _matcher(pattern: str) -> re.Pattern[str] | str:
    if "|" in pattern:
        return re.compile(f"^({pattern})$")
    if "*" in pattern:
        return re.compile(f"^{pattern}$")
    return pattern


def plan_query(query: Query, now_ns: int) -> tuple[int, int, list[tuple[str, re.Pattern[str] | str]]]:
    """Validate as buildFluxQuery does, in its order; return the range and the filters."""
    bucket = query.bucket if query.bucket is not None else BUCKET
    if bucket.startswith("_"):
        raise _backend(f"not authorized to access bucket {json.dumps(bucket)}")
    if bucket != BUCKET:
        raise _backend(f"bucket {json.dumps(bucket)} not found")
    for what, text in (("start", query.start), ("end", query.end)):
        if not QUERY_STRING.match(text):
            raise _backend(f"invalid {what} timestamp {json.dumps(text)}")
    try:
        start = parse_time(query.start, now_ns)
        stop = parse_time(query.end, now_ns) if query.end else now_ns
    except ValueError as exc:
        raise _backend(str(exc)) from None
    filters = []
    for field, pattern in query.filter:
        if not QUERY_STRING.match(field):
            raise _backend(f"invalid filter field name {json.dumps(field)}")
        if not QUERY_STRING.match(pattern):
            raise _backend(f"invalid filter field pattern {json.dumps(pattern)}")
        try:
            filters.append((field, _matcher(pattern)))
        except re.error as exc:
            raise _backend(f"invalid regular expression {pattern!r}: {exc}") from None
    if query.head is not None and query.tail is not None:
        raise _backend("head and tail cannot both be specified")
    if query.window is not None and query.func is None:
        raise _backend("window cannot be used without aggregation function")
    if query.func is not None and query.func not in FUNCS:
        raise _backend("unsupported function")
    return start, stop, filters


def matches(record: Record, filters: list[tuple[str, re.Pattern[str] | str]]) -> bool:
    for field, matcher in filters:
        value = record.name if field == "name" else record.meta.get(field)
        if value is None:
            return False
        if isinstance(matcher, str):
            if value != matcher:
                return False
        elif not matcher.match(value):
            return False
    return True


def run_query(store: Store, query: Query, *, now_ns: int | None = None) -> list[Record]:
    """The records the real API would return for ``query``, in its order."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    start, stop, filters = plan_query(query, now_ns)
    exact = next((m for f, m in filters if f == "name" and isinstance(m, str)), None)
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[Record]] = {}
    for record in store.scan(start=start, end=stop, name=exact):
        if matches(record, filters):
            series.setdefault(record.series, []).append(record)
    results: list[Record] = []
    for key in sorted(series):
        points = series[key]
        if query.head is not None:
            points = points[:max(query.head, 0)]
        if query.tail is not None:
            points = points[-query.tail:] if query.tail > 0 else []
        if query.func is not None:
            points = _aggregate(points, query, start, stop)
        results.extend(points)
    return results


def _apply(func: str, values: list[Any]) -> Any:
    if func == "count":
        return len(values)
    if not values:
        return None
    if any(isinstance(v, str) for v in values):
        raise _backend(f"unsupported input type for {func} aggregate: string")
    if func == "mean":
        return sum(values) / len(values)
    return {"min": min, "max": max, "sum": sum}[func](values)


def _aggregate(points: list[Record], query: Query, start: int, stop: int) -> list[Record]:
    if not points:
        return []
    first = points[0]
    assert query.func is not None
    if query.window is None:   # one record per series, at the range's start (as upstream)
        return [Record(ts=start, name=first.name, value=_apply(query.func, [p.value for p in points]),
                       meta=first.meta)]
    try:
        every = parse_duration(query.window)
    except ValueError as exc:
        raise _backend(str(exc)) from None
    if every <= 0:
        raise _backend("duration must be positive")
    if (stop - start) // every > MAX_WINDOWS:
        raise _backend(f"more than {MAX_WINDOWS} windows; use a longer window or a shorter range")
    # aggregateWindow: windows aligned to the epoch, clipped to the range, empty ones kept,
    # each record stamped with its window's stop.
    out, index = [], 0
    edge = start - start % every
    while edge < stop:
        w_start, w_stop = max(edge, start), min(edge + every, stop)
        values = []
        while index < len(points) and points[index].ts < w_stop:
            if points[index].ts >= w_start:
                values.append(points[index].value)
            index += 1
        out.append(Record(ts=w_stop, name=first.name, value=_apply(query.func, values),
                          meta=first.meta))
        edge += every
    return out


def rfc3339nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    seconds, frac = divmod(ns, 10**9)
    text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def _go_float(value: float) -> str:
    """encoding/json's float64: plain notation in [1e-6, 1e21), else exponent without padding."""
    if value == 0:
        return "0"
    if 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = repr(value).split("e")
    return f"{mantissa}e{exponent[0]}{exponent[1:].lstrip('0') or '0'}"


def _go_json(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("json: unsupported value")
        return _go_float(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render(records: Iterable[Record]) -> Iterator[bytes]:
    """NDJSON lines as the real API writes them (Go's encoder); stops at a value Go cannot encode."""
    for record in records:
        try:
            value = _go_json(record.value)
        except ValueError:
            return
        yield (f'{{"timestamp":"{rfc3339nano(record.ts)}","name":{_go_json(record.name)},'
               f'"value":{value},"meta":{_go_json(record.meta)}}}\n').encode()
