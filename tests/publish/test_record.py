"""The record publish keeps of a build in each site's object store (publish/record.py, pure):
what it holds, the pointers on the image, and every way a record read back can be wrong."""

from __future__ import annotations

import hashlib

import pytest

from sage_image.errors import UsageError
from sage_image.outfolder import SbomEntry, read_manifest
from sage_image.publish.record import (
    PROP_MANIFEST_SHA,
    PROP_PACKAGES_SHA,
    PROP_RECORD,
    PROP_SBOM_SHA,
    RecordError,
    manifest_from_record,
    packages_digest,
    read_record,
)
from tests import contract
from tests.publish.conftest import build_output


def add_sbom(out, data: bytes = b'{"bomFormat": "CycloneDX"}', sha256: str | None = None) -> None:
    (out / "X.cdx.json").write_bytes(data)
    sbom = SbomEntry(path="X.cdx.json", spec="1.6",
                     sha256=sha256 or hashlib.sha256(data).hexdigest())
    contract.write_build(out, contract.replace(read_manifest(out), sbom=sbom))


def test_the_record_holds_the_manifest_packages_and_sbom(make_build):
    out = make_build("Sage-X", timestamp=1_700_000_000)
    add_sbom(out)
    output = build_output(out)
    record = read_record(output, "sage-images")
    prefix = "versions/sage-image-12-1700000000/Sage-X"
    assert record.prefix == prefix and record.pointer == "current/Sage-X"
    assert record.version == "sage-image-12-1700000000"
    assert record.objects[prefix + ".manifest.json"] == (out / "manifest.json").read_bytes()
    assert record.objects[prefix + ".packages"] == b"docker-compose=1.29.2-3\ndocker.io=20.10.24+dfsg1-1\n"
    assert record.objects[prefix + ".cdx.json"] == (out / "X.cdx.json").read_bytes()
    props = record.properties
    assert props[PROP_RECORD] == f"sage-images/{prefix}"
    assert props[PROP_MANIFEST_SHA] == output.manifest_sha256
    assert props[PROP_PACKAGES_SHA] == packages_digest(output.manifest.packages)
    assert props[PROP_SBOM_SHA] == read_manifest(out).sbom.sha256
    assert all(len(v) <= 255 for v in props.values())
    # read back: the manifest, checked against the image's sha256
    data = record.objects[prefix + ".manifest.json"]
    assert manifest_from_record(data, props, where="S image 1") == read_manifest(out)


def test_a_build_without_sbom_records_no_sbom(make_build):
    record = read_record(build_output(make_build("Sage-X")), "c")
    assert len(record.objects) == 2 and PROP_SBOM_SHA not in record.properties


def test_an_sbom_that_is_not_the_builds_is_refused(make_build):
    out = make_build("Sage-X")
    add_sbom(out, sha256="0" * 64)
    with pytest.raises(UsageError, match="does not match manifest.json's sbom.sha256"):
        read_record(build_output(out), "c")
    (out / "X.cdx.json").unlink()
    with pytest.raises(UsageError, match="cannot read the SBOM"):
        read_record(build_output(out), "c")


def test_a_manifest_changed_after_loading_is_refused(make_build):
    out = make_build("Sage-X")
    output = build_output(out)
    (out / "manifest.json").write_text((out / "manifest.json").read_text() + " ")
    with pytest.raises(UsageError, match="changed while publishing read it"):
        read_record(output, "c")


def test_a_record_read_back_is_checked(make_build):
    record = read_record(build_output(make_build("Sage-X")), "c")
    props = dict(record.properties)
    data = record.objects[f"{record.prefix}.manifest.json"]
    with pytest.raises(RecordError, match=r"its record c/versions/.*manifest.json is not in the "
                                          "site's object store"):
        manifest_from_record(None, props, where="S image 1")
    with pytest.raises(RecordError, match="is not the manifest the image was published with"):
        manifest_from_record(data + b" ", props, where="S image 1")
    for key in (PROP_RECORD, PROP_MANIFEST_SHA):
        older = {k: v for k, v in props.items() if k != key}
        with pytest.raises(RecordError, match="points at no record .published by an older"):
            manifest_from_record(data, older, where="S image 1")


def test_packages_digest_is_order_free():
    a = {"b": "1", "a": "2"}
    assert packages_digest(a) == packages_digest({"a": "2", "b": "1"})
    assert packages_digest(a) != packages_digest({"a": "2", "b": "1.1"})
