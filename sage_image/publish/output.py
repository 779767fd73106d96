"""The build output folder as publish reads it: the build, and whether it may be published.

The files and their readers are sage_image/outfolder.py's; contract: docs/manifest.md.
Everything here validates before any site is contacted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import UsageError
from ..outfolder import (
    TEST_RESULTS,
    ImageIdentity,
    manifest_path,
    published_path,
    read_identity,
    read_json,
    read_published,
    read_results,
    results_path,
    write_json,
)


@dataclass(frozen=True)
class ImageFile:
    disk_format: str
    path: Path
    size: int
    sha512: str
    md5: str
    sha256: str
    # sha512 of another file of this build that `qemu-img compare` found to hold the same disk
    # (a qcow2 converted from the raw), so a test of either is a test of both.
    same_disk_as: str | None = None
    virtual_size: int | None = None  # bytes: the disk the image needs (publish's min_disk)


@dataclass(frozen=True)
class TestStatus:
    """Whether `sage-image test` passed, in full, for these bytes - and which files they are."""

    passed: bool
    reason: str  # why publish refuses, or "" when it may go ahead
    # The formats whose file is the tested disk: the tested file itself, and any file the
    # build proved identical to it. Publishing another format is publishing untested bytes.
    formats: frozenset[str] = frozenset()

    def refusal(self, disk_format: str) -> str:
        """Why a site that takes `disk_format` must not get this build ('' if it may)."""
        if not self.passed:
            return self.reason
        if disk_format not in self.formats:
            return (f"the {disk_format} file is not the tested one, and the manifest does not "
                    f"record it as the same disk (tested: {', '.join(sorted(self.formats))})")
        return ""


@dataclass(frozen=True)
class BuildOutput:
    root: Path
    identity: ImageIdentity
    properties: Mapping[str, str]
    files: Mapping[str, ImageFile]
    test: TestStatus
    raw: Mapping[str, Any]  # the whole manifest, for `describe`
    manifest_sha256: str = ""  # of manifest.json's bytes (recorded on the Glance image)

    @property
    def build_tag(self) -> str:
        return self.properties.get("build-tag", "")


def load_output(root: Path) -> BuildOutput:
    root = Path(root)
    path = manifest_path(root)
    m = read_json(path)
    if m.get("schema") != 1:
        raise UsageError(f"{path}: unsupported schema {m.get('schema')!r} (this tool reads 1)")
    identity = read_identity(m, path=path)
    try:
        files = {fmt: _image_file(root, fmt, f) for fmt, f in m["files"].items()}
        return BuildOutput(
            root=root, identity=identity,
            properties=MappingProxyType({str(k): str(v) for k, v in m["properties"].items()}),
            files=MappingProxyType(files),
            test=read_test_status(root, identity.name, files,
                                  required=tuple(m.get("checks") or ())),
            raw=MappingProxyType(m),
            manifest_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    except KeyError as exc:
        raise UsageError(f"{path}: missing key {exc}", hint="see docs/manifest.md") from exc


def _image_file(root: Path, fmt: str, f: Mapping[str, Any]) -> ImageFile:
    return ImageFile(disk_format=f.get("disk_format", fmt), path=root / f["path"],
                     size=int(f["size"]), sha512=f["sha512"], md5=f.get("md5", ""),
                     sha256=f.get("sha256", ""), same_disk_as=f.get("same_disk_as"),
                     virtual_size=int(f["virtual_size"]) if f.get("virtual_size") else None)


def read_test_status(root: Path, name: str, files: Mapping[str, ImageFile], *,
                     required: tuple[str, ...]) -> TestStatus:
    results = read_results(root)
    if results is None:
        return TestStatus(False, f"no {TEST_RESULTS} in {root} (run 'sage-image test {root}')")
    return publish_gate(results, where=str(results_path(root)), name=name, files=files,
                       required=required, rerun=f"sage-image test {root}")


def publish_gate(r: Mapping[str, Any], *, where: str, name: str, files: Mapping[str, ImageFile],
                required: tuple[str, ...], rerun: str) -> TestStatus:
    """The publish gate: a full, passing run (every check in `required`, the variant's checks
    the manifest records) of bytes that are this build's."""
    if r.get("name") != name:
        return TestStatus(False, f"{where} is for {r.get('name')!r}, not {name!r}")
    if r.get("tested_sha512") not in {f.sha512 for f in files.values()}:
        return TestStatus(False, f"{where} tested other bytes than this build (re-run the test)")
    if r.get("passed") is not True:
        failed = [c.get("name", "?") for c in r.get("checks", []) if not c.get("passed")]
        return TestStatus(False, f"the boot test failed ({', '.join(failed) or 'no checks'})")
    if r.get("qualifies_for_publish") is not True:
        why = ", ".join(r.get("restricted_by") or ()) or "written by an older sage-image"
        return TestStatus(False, f"the passing test run does not qualify for publishing ({why});"
                                 f" run '{rerun}'")
    passed = {c.get("name") for c in r.get("checks", []) if c.get("passed") is True}
    missing = [c for c in required if c not in passed]
    if missing:
        return TestStatus(False, f"the test run did not pass every check of the variant "
                                 f"(missing: {', '.join(missing)}); run '{rerun}'")
    return TestStatus(True, "", frozenset(tested_formats(str(r["tested_sha512"]), files)))


def tested_formats(tested_sha512: str, files: Mapping[str, ImageFile]) -> set[str]:
    """The formats whose file is the tested disk: the tested file, and files recorded (in
    either direction) as the same disk as it."""
    shas = {tested_sha512}
    for f in files.values():
        if f.sha512 == tested_sha512 and f.same_disk_as:
            shas.add(f.same_disk_as)
    return {fmt for fmt, f in files.items() if f.sha512 in shas or f.same_disk_as in shas}


def write_published(root: Path, results: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge per-site publish results into OUT/published.json (read by `describe` and the
    release report): a re-run after a partial failure adds the sites it published."""
    try:
        sites = read_published(root)
    except UsageError:  # a damaged record says nothing true: the sites published now replace it
        sites = {}
    sites.update({site: dict(entry) for site, entry in results.items()})
    return write_json(published_path(root), {"schema": 1, "sites": sites})
