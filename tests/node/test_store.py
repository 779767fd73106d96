"""The node's store: wagglemsg bodies in, a size bound kept."""

from __future__ import annotations

import json

import pytest

from sage_node.store import BadMessage, Record, Store, parse_message


def body(**fields):
    return json.dumps(fields).encode()


def test_a_wagglemsg_body_becomes_a_record_with_string_meta_only():
    record = parse_message(body(name="env.t", ts=123, meta={"a": "1", "n": 2}, val=1.5))
    assert record == Record(ts=123, name="env.t", value=1.5, meta={"a": "1"})


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (body(ts=1, val=1), "name must be"),
    (body(name="x", ts="1", val=1), "ts must be an integer"),
    (body(name="x", ts=1, meta=[], val=1), "meta must be an object"),
    (body(name="x", ts=1, val=[1]), "value must be a number or a string"),
    (body(name="x", ts=1, val="AAEC", enc="b64"), "value must be a number or a string"),
])
def test_bodies_that_are_not_measurements_are_refused(raw, message):
    with pytest.raises(BadMessage, match=message):
        parse_message(raw)


def test_the_store_stays_under_its_bound_dropping_the_oldest(tmp_path):
    store = Store(tmp_path / "s.sqlite", max_bytes=256 * 1024)
    for i in range(6000):
        store.add(Record(ts=i, name="env.t", value="x" * 100, meta={"i": str(i)}))
    store.trim()
    assert store.used_bytes() <= 256 * 1024
    kept = [r.ts for r in store.scan(start=0, end=None)]
    assert 0 < len(kept) < 6000 and kept[-1] == 5999 and kept[0] > 0   # the oldest went
    # an unbounded store keeps everything (the bound is what removed records above)
    free = Store(tmp_path / "free.sqlite", max_bytes=10**9)
    for i in range(6000):
        free.add(Record(ts=i, name="env.t", value="x" * 100, meta={"i": str(i)}))
    assert free.count() == 6000
