"""The build output folder as publish reads it: the build, and whether it may be published.

The files, their types and the publish gate are sage_image/outfolder.py's (docs/manifest.md);
the gate is asked about the variant's checks as the catalog and the check definitions say
today. Everything here validates before any site is contacted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..boottest.checks.identity import variant_expectation
from ..boottest.checks.model import CheckDef
from ..catalog.model import Catalog
from ..outfolder import (
    ImageIdentity,
    Manifest,
    TestStatus,
    gate_status,
    manifest_path,
    read_manifest,
)


@dataclass(frozen=True)
class ImageFile:
    """One image file of the build, where publish finds it on disk."""

    disk_format: str
    path: Path
    size: int
    virtual_size: int
    sha512: str
    md5: str
    sha256: str


@dataclass(frozen=True)
class BuildOutput:
    root: Path
    manifest: Manifest
    files: Mapping[str, ImageFile]
    test: TestStatus
    manifest_sha256: str  # of manifest.json's bytes (recorded on the Glance image)

    @property
    def identity(self) -> ImageIdentity:
        return self.manifest.identity

    @property
    def properties(self) -> Mapping[str, str]:
        return MappingProxyType(self.manifest.properties)

    @property
    def build_tag(self) -> str:
        return self.manifest.build_tag


def load_output(root: Path, *, catalog: Catalog, definitions: Mapping[str, CheckDef]
                ) -> BuildOutput:
    """OUT's build and the gate's answer for its test, with the variant's checks of today."""
    root = Path(root)
    manifest = read_manifest(root)
    expected = variant_expectation(catalog, definitions, variant=manifest.variant)
    files = {fmt: ImageFile(disk_format=f.disk_format, path=root / f.path, size=f.size,
                            virtual_size=f.virtual_size, sha512=f.sha512, md5=f.md5,
                            sha256=f.sha256)
             for fmt, f in manifest.files.items()}
    return BuildOutput(root=root, manifest=manifest, files=MappingProxyType(files),
                       test=gate_status(root, manifest, expected),
                       manifest_sha256=hashlib.sha256(manifest_path(root).read_bytes()).hexdigest())

