"""The summary publish stores in Glance properties: round trip, limits, damage (no Glance)."""

from __future__ import annotations

import os

import pytest

from sage_image.publish import record
from sage_image.publish.record import (
    CHUNK_CHARS,
    PROP_CHUNKS,
    RecordError,
    record_properties,
    summary_from_properties,
)

MANIFEST = {"schema": 1, "name": "X", "variant": "sage", "elements": ["a"], "checks": ["c"],
            "sources": {"s": {"url": "u", "commit": "1" * 40, "stand_in": True, "path": "/opt/s"}},
            "packages": {f"pkg{i}": f"1.{i}-1" for i in range(700)},
            "python_packages": {"numpy": "1.26.4"}, "boot": {"kernel_version": "6.1.0-28-amd64"},
            "files": {"qcow2": {"size": 5, "sha512": "x"}}, "phases": {"dib": 1.0},
            "sbom": {"path": "X.cdx.json", "sha256": "f" * 64}}


def test_round_trip_keeps_what_diff_needs():
    props = record_properties(MANIFEST, "e" * 64)
    assert all(len(v) <= CHUNK_CHARS for v in props.values())
    assert props["sage-sbom-sha256"] == "f" * 64 and props["sage-manifest-sha256"] == "e" * 64
    summary = summary_from_properties(props, where="here")
    assert summary["packages"] == MANIFEST["packages"]
    assert summary["python_packages"] == MANIFEST["python_packages"]
    assert summary["sources"] == {"s": {"url": "u", "commit": "1" * 40, "stand_in": True}}
    assert summary["kernel"] == "6.1.0-28-amd64" and summary["files"] == {"qcow2": {"size": 5}}
    assert "phases" not in summary


def test_too_large_a_summary_is_left_out_not_fatal(monkeypatch):
    noisy = dict(MANIFEST, packages={os.urandom(8).hex(): os.urandom(8).hex() for _ in range(3000)})
    props = record_properties(noisy, "e" * 64)
    assert PROP_CHUNKS not in props and "sage-packages-sha256" in props
    with pytest.raises(RecordError, match="no recorded manifest summary"):
        summary_from_properties(props, where="CHI@UC image 1")
    monkeypatch.setattr(record, "MAX_CHUNKS", 10_000)
    assert PROP_CHUNKS in record_properties(noisy, "e" * 64)


@pytest.mark.parametrize("damage", [
    lambda p: p.pop("sage-summary-01"),                                 # a chunk lost
    lambda p: p.update({"sage-summary-00": "!!" + p["sage-summary-00"][2:]}),  # not base64
    lambda p: p.update({"sage-summary-chunks": "many"}),
    lambda p: p.update({"sage-packages-sha256": "0" * 64}),             # another package list
])
def test_damage_is_detected(damage):
    props = record_properties(MANIFEST, "e" * 64)
    damage(props)
    with pytest.raises(RecordError):
        summary_from_properties(props, where="here")
