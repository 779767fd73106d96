"""What publish keeps about a build, so that a later build can be compared with the image users
run (`sage-image diff OUT --site S`, "what's new" in published.json).

Documents do not go in Glance properties: a property is a short value (255 characters), and
users see every one of them in `openstack image show`. As Chameleon's own pipeline does
(container `chameleon-supported-images`: one folder per version, a `current` pointer), each
site's object store (Swift) keeps the record, in the catalog's `publish.container`:

    versions/<build-tag>/<name>.manifest.json   the build's manifest.json, byte for byte
    versions/<build-tag>/<name>.packages        its Debian packages: `name=version` lines, sorted
    versions/<build-tag>/<name>.cdx.json        its CycloneDX SBOM, when the build wrote one
    current/<name>                              the build-tag in production under <name>

and the Glance image carries short pointers to it: `sage-image-record` (the objects' common
prefix, `<container>/versions/<build-tag>/<name>`) and the sha256 of the manifest, the package
list and the SBOM. A record read back is checked against the image's sha256: a record changed or
replaced in the store is reported, never trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import UsageError
from ..outfolder import ContractError, Manifest, decode_manifest, manifest_path
from .output import BuildOutput

PROP_RECORD = "sage-image-record"
PROP_MANIFEST_SHA = "sage-manifest-sha256"
PROP_PACKAGES_SHA = "sage-packages-sha256"
PROP_SBOM_SHA = "sage-sbom-sha256"
MANIFEST_SUFFIX, PACKAGES_SUFFIX, SBOM_SUFFIX = ".manifest.json", ".packages", ".cdx.json"


class RecordError(UsageError):
    """A stored record is missing or does not match the image that points at it."""


@dataclass(frozen=True)
class Record:
    """One build's record: the objects to write and the properties that point at them."""

    container: str
    prefix: str  # versions/<build-tag>/<name>: every object of the record starts with it
    objects: Mapping[str, bytes]  # object name -> content
    pointer: str  # current/<name>
    version: str  # the build-tag: what `pointer` says once this build is production
    properties: Mapping[str, str]


def packages_text(packages: Mapping[str, str]) -> str:
    return "".join(f"{n}={v}\n" for n, v in sorted(packages.items()))


def packages_digest(packages: Mapping[str, str]) -> str:
    return hashlib.sha256(packages_text(packages).encode()).hexdigest()


def pointer_name(name: str) -> str:
    return f"current/{name}"


def read_record(output: BuildOutput, container: str) -> Record:
    """The record of `output`, its files read once (bad input is a UsageError, before any site
    is contacted): the manifest must still be the one loaded, the SBOM the one it names."""
    manifest = manifest_path(output.root).read_bytes()
    if hashlib.sha256(manifest).hexdigest() != output.manifest_sha256:
        raise UsageError(f"{manifest_path(output.root)} changed while publishing read it")
    name, version = output.identity.name, output.build_tag
    prefix = f"versions/{version}/{name}"
    packages = packages_text(output.manifest.packages).encode()
    objects = {prefix + MANIFEST_SUFFIX: manifest, prefix + PACKAGES_SUFFIX: packages}
    props = {PROP_RECORD: f"{container}/{prefix}", PROP_MANIFEST_SHA: output.manifest_sha256,
             PROP_PACKAGES_SHA: hashlib.sha256(packages).hexdigest()}
    sbom = output.manifest.sbom
    if sbom:
        objects[prefix + SBOM_SUFFIX] = _sbom_bytes(output, sbom.path, sbom.sha256)
        props[PROP_SBOM_SHA] = sbom.sha256
    return Record(container=container, prefix=prefix, objects=MappingProxyType(objects),
                  pointer=pointer_name(name), version=version, properties=MappingProxyType(props))


def _sbom_bytes(output: BuildOutput, relative: str, sha256: str) -> bytes:
    path = output.root / relative
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the SBOM manifest.json names: {exc.strerror}"
                         ) from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UsageError(f"{path} does not match manifest.json's sbom.sha256",
                         hint="rebuild, or restore the SBOM the build wrote")
    return data


def record_location(props: Mapping[str, str], *, where: str) -> tuple[str, str]:
    """(container, the manifest object's name) of the record an image points at."""
    pointer = props.get(PROP_RECORD, "")
    container, _, prefix = pointer.partition("/")
    if not container or not prefix or PROP_MANIFEST_SHA not in props:
        raise RecordError(f"{where} points at no record (published by an older sage-image)",
                          hint="images published by this sage-image carry one; compare two "
                               "build folders meanwhile: sage-image diff A B")
    return container, prefix + MANIFEST_SUFFIX


def manifest_from_record(data: bytes | None, props: Mapping[str, str], *,
                         where: str) -> Manifest:
    """The manifest an image's record holds; RecordError if the store lacks it or it is not the
    one the image names."""
    container, name = record_location(props, where=where)
    if data is None:
        raise RecordError(f"{where}: its record {container}/{name} is not in the site's object "
                          "store (deleted, or the store was replaced)",
                          hint="publish the build again to write its record")
    if hashlib.sha256(data).hexdigest() != props[PROP_MANIFEST_SHA]:
        raise RecordError(f"{where}: its record {container}/{name} is not the manifest the image "
                          f"was published with (its sha256 differs from {PROP_MANIFEST_SHA})")
    # the bytes publish loaded and wrote: read as every manifest is
    try:
        return decode_manifest(data, where=f"{container}/{name}")
    except ContractError as exc:
        raise RecordError(f"{where}: {exc.message}") from exc
