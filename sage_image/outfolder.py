"""The build output folder: the files the stages hand each other (contract: docs/manifest.md).

`sage-image build` writes manifest.json, `test` writes test-results.json and the test-logs
folder, `publish` writes published.json; later stages and the release report read them. The
contract lives here, outside the stages, because the flow is one-way (catalog -> builder ->
boottest -> publish -> release) and each stage may know only the ones before it - yet every
stage names these files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import UsageError

MANIFEST = "manifest.json"
TEST_RESULTS = "test-results.json"
TEST_LOGS = "test-logs"
PUBLISHED = "published.json"


# -- where the files are -------------------------------------------------------------------------
def manifest_path(root: Path) -> Path:
    return Path(root) / MANIFEST


def results_path(root: Path) -> Path:
    return Path(root) / TEST_RESULTS


def published_path(root: Path) -> Path:
    return Path(root) / PUBLISHED


def results_beside(image_file: Path) -> Path:
    """Where a test of a bare image file (no output folder) writes its results: IMAGE.test-results.json."""
    image_file = Path(image_file)
    return image_file.with_name(f"{image_file.name}.{TEST_RESULTS}")


def logs_folder(results: Path) -> Path:
    """The folder a test run keeps its logs in, next to its results: OUT/test-logs, or
    IMAGE.test-logs beside IMAGE.test-results.json."""
    results = Path(results)
    return results.with_name(results.name.removesuffix(TEST_RESULTS) + TEST_LOGS)


# -- reading and writing JSON --------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any]:
    """A JSON object; a missing, unreadable or malformed file is a one-line UsageError naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: not found",
                         hint=f"give the folder 'sage-image build' wrote (it has {MANIFEST})"
                         ) from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: Any, *, sort_keys: bool = True) -> Path:
    """Write atomically: a reader (publish while a test finishes, a release report while a build
    runs) sees the old file or the new one, never half of one.

    The temporary file is in the same folder so that the rename cannot cross file systems (where
    it would not be atomic); the process id keeps two writers from sharing one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# -- typed parts every stage shares --------------------------------------------------------------
@dataclass(frozen=True)
class ImageIdentity:
    """Which image a build is: the manifest keys that name it (catalog keys, Glance os_*)."""

    name: str
    release: str
    variant: str
    arch: str
    family: str
    os_version: str


IDENTITY_KEYS = tuple(f.name for f in fields(ImageIdentity))


def read_manifest(root: Path) -> dict[str, Any]:
    return read_json(manifest_path(root))


def read_identity(manifest: Mapping[str, Any], *, path: Path) -> ImageIdentity:
    """The identity of a manifest read from `path` (named in the error when a key is missing)."""
    missing = [key for key in IDENTITY_KEYS if key not in manifest]
    if missing:
        raise UsageError(f"{path}: missing key {missing[0]!r}", hint="see docs/manifest.md")
    return ImageIdentity(**{key: str(manifest[key]) for key in IDENTITY_KEYS})


def read_results(root: Path) -> dict[str, Any] | None:
    """OUT/test-results.json, or None when the image has not been tested."""
    path = results_path(root)
    return read_json(path) if path.exists() else None


def read_published(root: Path) -> dict[str, Any]:
    """Per site, where this build is production (published.json's `sites`); {} before publishing."""
    path = published_path(root)
    if not path.exists():
        return {}
    return dict(read_json(path).get("sites") or {})
