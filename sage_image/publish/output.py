"""The build output folder as publish reads it: manifest.json, test-results.json, published.json.

Contract: docs/manifest.md. Everything here validates before any site is contacted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import UsageError

MANIFEST = "manifest.json"
TEST_RESULTS = "test-results.json"
PUBLISHED = "published.json"


@dataclass(frozen=True)
class ImageFile:
    disk_format: str
    path: Path
    size: int
    sha512: str
    md5: str
    sha256: str


@dataclass(frozen=True)
class TestStatus:
    """Whether `sage-image test` passed for exactly these bytes."""

    passed: bool
    reason: str  # why publish refuses, or "" when it may go ahead


@dataclass(frozen=True)
class BuildOutput:
    root: Path
    name: str
    release: str
    variant: str
    arch: str
    family: str
    os_version: str
    properties: Mapping[str, str]
    files: Mapping[str, ImageFile]
    test: TestStatus
    raw: Mapping[str, Any]  # the whole manifest, for `describe`
    manifest_sha256: str = ""  # of manifest.json's bytes (recorded on the Glance image)

    @property
    def build_tag(self) -> str:
        return self.properties.get("build-tag", "")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: not found",
                         hint="give the folder 'sage-image build' wrote (it has manifest.json)"
                         ) from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def load_output(root: Path) -> BuildOutput:
    root = Path(root)
    path = root / MANIFEST
    m = _read_json(path)
    try:
        if m.get("schema") != 1:
            raise UsageError(f"{path}: unsupported schema {m.get('schema')!r} (this tool reads 1)")
        files = {fmt: _image_file(root, fmt, f) for fmt, f in m["files"].items()}
        return BuildOutput(
            root=root, name=m["name"], release=m["release"], variant=m["variant"],
            arch=m["arch"], family=m["family"], os_version=str(m["os_version"]),
            properties=MappingProxyType({str(k): str(v) for k, v in m["properties"].items()}),
            files=MappingProxyType(files), test=read_test_status(root, m["name"], files),
            raw=MappingProxyType(m),
            manifest_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    except KeyError as exc:
        raise UsageError(f"{path}: missing key {exc}", hint="see docs/manifest.md") from exc


def _image_file(root: Path, fmt: str, f: Mapping[str, Any]) -> ImageFile:
    return ImageFile(disk_format=f.get("disk_format", fmt), path=root / f["path"],
                     size=int(f["size"]), sha512=f["sha512"], md5=f.get("md5", ""),
                     sha256=f.get("sha256", ""))


def read_test_status(root: Path, name: str, files: Mapping[str, ImageFile]) -> TestStatus:
    path = root / TEST_RESULTS
    if not path.exists():
        return TestStatus(False, f"no {TEST_RESULTS} in {root} (run 'sage-image test {root}')")
    r = _read_json(path)
    if r.get("name") != name:
        return TestStatus(False, f"{path} is for {r.get('name')!r}, not {name!r}")
    if r.get("tested_sha512") not in {f.sha512 for f in files.values()}:
        return TestStatus(False, f"{path} tested other bytes than this build (re-run the test)")
    if r.get("passed") is not True:
        failed = [c.get("name", "?") for c in r.get("checks", []) if not c.get("passed")]
        return TestStatus(False, f"the boot test failed ({', '.join(failed) or 'no checks'})")
    return TestStatus(True, "")


def write_published(root: Path, results: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge per-site publish results into OUT/published.json (read by `describe`)."""
    path = root / PUBLISHED
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text()).get("sites", {})
        except (OSError, ValueError, AttributeError):
            data = {}
    data.update({k: dict(v) for k, v in results.items()})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"schema": 1, "sites": data}, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def read_published(root: Path) -> dict[str, Any]:
    path = root / PUBLISHED
    if not path.exists():
        return {}
    return dict(_read_json(path).get("sites", {}))
