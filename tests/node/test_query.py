"""The data API's query language, answered from a real store (a SQLite file)."""

from __future__ import annotations

import json

import pytest

from sage_node.query import QueryError, _go_float, parse_duration, parse_query, render, rfc3339nano, run_query
from sage_node.store import Record, Store

NOW = 1_800_000_000 * 10**9
MIN = 60 * 10**9


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "store.sqlite", max_bytes=10**9)
    meta_a = {"node": "0000000000000001", "vsn": "W001", "task": "a"}
    meta_b = {"node": "0000000000000001", "vsn": "W001", "task": "b"}
    for i in range(3):
        store.add(Record(NOW - (10 - i) * MIN, "env.temperature", 20.0 + i, meta_a))
        store.add(Record(NOW - (10 - i) * MIN, "env.temperature", 30 + i, meta_b))
    store.add(Record(NOW - 5 * MIN, "env.humidity", 50.5, meta_a))
    store.add(Record(NOW - 4 * MIN, "sys.uptime", "up", meta_a))
    store.add(Record(NOW + MIN, "env.temperature", 99.0, meta_a))   # in the future
    yield store
    store.close()


def query(store, **fields):
    return run_query(store, parse_query(json.dumps(fields).encode()), now_ns=NOW)


@pytest.mark.parametrize("body, message", [
    (b"", "error: no query provided"),
    (b"x" * 5000, "error: query is too large - must be <1KB"),
    (b"{}", "error: failed to parse query: missing start field"),
    (b'{"start": "-1h", "foo": 1}', 'error: failed to parse query: json: unknown field "foo"'),
    (b'{"start": "-1h", "filter": {"a-b": "x"}}', 'invalid filter key: "a-b"'),
    (b'{"start": 5}', "cannot unmarshal number into Go struct field Query.start of type string"),
    (b'{"start": "-1h", "head": "2"}', "cannot unmarshal string into Go struct field Query.head"),
    (b"[1]", "cannot unmarshal array into Go value of type main.Query"),
    (b"{nope", "error: failed to parse query: invalid JSON"),
])
def test_bad_requests_are_400_with_the_apis_words(body, message):
    with pytest.raises(QueryError) as info:
        parse_query(body)
    assert info.value.status == 400 and message in info.value.message


def test_fields_match_case_insensitively_as_go():
    assert parse_query(b'{"START": "-1h", "Head": 1}').head == 1


@pytest.mark.parametrize("fields, message", [
    ({"start": "-1h", "head": 1, "tail": 1}, "head and tail cannot both be specified"),
    ({"start": "-1h", "experimental_window": "1m"}, "window cannot be used without aggregation function"),
    ({"start": "-1h", "experimental_func": "median"}, "unsupported function"),
    ({"start": "-1h", "bucket": "_monitoring"}, 'not authorized to access bucket "_monitoring"'),
    ({"start": "yesterday()"}, 'invalid start timestamp "yesterday()"'),
    ({"start": "-1h", "filter": {"name": "a$b"}}, 'invalid filter field pattern "a$b"'),
])
def test_refused_queries_are_500_backend_errors(store, fields, message):
    with pytest.raises(QueryError) as info:
        query(store, **fields)
    assert info.value.status == 500
    assert info.value.message == f"error: failed to query backend: {message}"


def test_range_is_start_inclusive_and_ends_now(store):
    names = [(r.name, r.meta["task"], r.value) for r in query(store, start="-10m")]
    # grouped by series (name, then meta), each oldest first; the future point is left out
    assert names == [("env.humidity", "a", 50.5), ("env.temperature", "a", 20.0),
                     ("env.temperature", "a", 21.0), ("env.temperature", "a", 22.0),
                     ("env.temperature", "b", 30), ("env.temperature", "b", 31),
                     ("env.temperature", "b", 32), ("sys.uptime", "a", "up")]
    assert len(query(store, start="-9m")) == 6
    assert len(query(store, start="-10m", end="-8m")) == 4


def test_filters_exact_wildcard_and_alternatives(store):
    assert {r.name for r in query(store, start="-1h", filter={"name": "env.*"})} == {
        "env.humidity", "env.temperature"}
    assert {r.name for r in query(store, start="-1h", filter={"name": "env"})} == set()
    assert {r.name for r in query(store, start="-1h",
                                  filter={"name": "sys.uptime|env.humidity"})} == {
        "sys.uptime", "env.humidity"}
    assert {r.meta["task"] for r in query(store, start="-1h", filter={"task": "b"})} == {"b"}
    # a meta key a record lacks never matches
    assert query(store, start="-1h", filter={"sensor": "bme280"}) == []


def test_head_and_tail_apply_per_series(store):
    head = query(store, start="-1h", filter={"name": "env.temperature"}, head=1)
    assert [(r.meta["task"], r.value) for r in head] == [("a", 20.0), ("b", 30)]
    tail = query(store, start="-1h", filter={"name": "env.temperature"}, tail=2)
    assert [(r.meta["task"], r.value) for r in tail] == [("a", 21.0), ("a", 22.0),
                                                         ("b", 31), ("b", 32)]


def test_functions_per_series_stamped_with_the_start(store):
    got = query(store, start="-1h", filter={"name": "env.temperature"},
                experimental_func="mean")
    assert [(r.meta["task"], r.value, r.ts) for r in got] == [("a", 21.0, NOW - 60 * MIN),
                                                              ("b", 31.0, NOW - 60 * MIN)]
    count = query(store, start="-1h", filter={"name": "sys.uptime"}, experimental_func="count")
    assert [r.value for r in count] == [1]
    with pytest.raises(QueryError, match="unsupported input type for mean aggregate: string"):
        query(store, start="-1h", filter={"name": "sys.uptime"}, experimental_func="mean")


def test_windows_are_aligned_clipped_and_empty_ones_kept(store):
    got = query(store, start="-10m", end="-6m", filter={"name": "env.temperature", "task": "a"},
                experimental_func="count", experimental_window="2m")
    assert [(r.ts, r.value) for r in got] == [(NOW - 8 * MIN, 2), (NOW - 6 * MIN, 1)]
    got = query(store, start="-10m", end="-6m", filter={"name": "env.humidity"},
                experimental_func="max", experimental_window="2m")
    assert [r.value for r in got] == []   # no point in range: no series


def test_a_point_of_the_same_series_and_time_replaces_the_first(store):
    store.add(Record(NOW - 5 * MIN, "env.humidity", 60.0, {"node": "0000000000000001",
                                                           "vsn": "W001", "task": "a"}))
    assert [r.value for r in query(store, start="-1h", filter={"name": "env.humidity"})] == [60.0]


def test_records_render_as_gos_encoder():
    line = next(render([Record(1_700_000_000_123_400_000, "x.y", 50.0, {"b": "<&>", "a": "é"})]))
    assert line == ('{"timestamp":"2023-11-14T22:13:20.1234Z","name":"x.y","value":50,'
                    '"meta":{"a":"é","b":"\\u003c\\u0026\\u003e"}}\n').encode()
    assert rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert [_go_float(v) for v in (21.5, 1e21, 1e-7, 1.5e-5, 1e16, -0.25)] == [
        "21.5", "1e+21", "1e-7", "0.000015", "10000000000000000", "-0.25"]
    # Go cannot encode NaN: the stream ends there
    assert list(render([Record(1, "n", float("nan"), {})])) == []


@pytest.mark.parametrize("text, ns", [("-1h", -3600 * 10**9), ("1h30m", 5400 * 10**9),
                                      ("2d", 2 * 86400 * 10**9), ("-500ms", -5 * 10**8)])
def test_flux_durations(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "1h-2m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
