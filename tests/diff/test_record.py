"""The summary publish stores in Glance properties: round trip, limits, damage (no Glance)."""

from __future__ import annotations

import os

import pytest

from sage_image.diff.diff import FileSize, Snapshot, SourcePin
from sage_image.outfolder import SbomEntry, SourceEntry
from sage_image.publish import record
from sage_image.publish.record import (
    CHUNK_CHARS,
    PROP_CHUNKS,
    RecordError,
    record_properties,
    summary_from_properties,
)
from tests import contract

MANIFEST = contract.manifest(
    "X", elements=("a",), checks=("c",),
    sources={"s": SourceEntry(url="u", commit="1" * 40, pinned="1" * 40, stand_in=True,
                              path="/opt/s")},
    packages={f"pkg{i}": f"1.{i}-1" for i in range(700)}, python_packages={"numpy": "1.26.4"},
    files={"qcow2": contract.fake_file("X.qcow2", "qcow2", size=5)}, phases={"dib": 1.0},
    sbom=SbomEntry(path="X.cdx.json", sha256="f" * 64, spec="1.6"))


def test_round_trip_keeps_what_diff_needs():
    props = record_properties(MANIFEST, "e" * 64)
    assert all(len(v) <= CHUNK_CHARS for v in props.values())
    assert props["sage-sbom-sha256"] == "f" * 64 and props["sage-manifest-sha256"] == "e" * 64
    summary = summary_from_properties(props, where="here")
    assert summary == Snapshot.of(MANIFEST)
    assert summary.packages == MANIFEST.packages
    assert summary.sources == {"s": SourcePin(url="u", commit="1" * 40, stand_in=True)}
    assert summary.kernel == "6.1.0-28-amd64" and summary.files == {"qcow2": FileSize(size=5)}


def test_too_large_a_summary_is_left_out_not_fatal(monkeypatch):
    noisy = contract.replace(MANIFEST, packages={os.urandom(8).hex(): os.urandom(8).hex()
                                                 for _ in range(3000)})
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
