"""The image's CycloneDX SBOM (`NAME.cdx.json`), made from the manifest by cyclonedx-python-lib.

`sbom_from_manifest` is pure (manifest -> Bom): the same manifest gives the same document, byte
for byte (the serial number is derived from the build, the timestamp is the build's), so its
sha256 in the manifest and on the Glance image identifies it.

What it lists: the image (metadata.component, with the image files' hashes as its hashes and as
file components), every Debian package (purl pkg:deb/<family>/NAME@VERSION?arch=A&distro=R),
every Python package (pkg:pypi/...), every pinned source (a component whose version is the
commit, with its URL as a VCS reference and `sage-image:*` properties saying where it is and
whether it is a stand-in), and the builder (metadata.tools: sage-image with its repository
commit, and diskimage-builder).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from ..outfolder import ImageFile, Manifest, SbomEntry

SPEC = "1.6"
PROP = "sage-image:"  # namespace of our own properties (CycloneDX property taxonomy advice)
_HASHES = {"sha256": HashAlgorithm.SHA_256, "sha512": HashAlgorithm.SHA_512,
           "md5": HashAlgorithm.MD5}


def sbom_name(manifest: Manifest) -> str:
    return f"{manifest.name}.cdx.json"


def sbom_from_manifest(manifest: Manifest) -> Bom:
    bom = Bom(serial_number=_serial(manifest),
              metadata=BomMetaData(timestamp=_created(manifest), component=_image(manifest),
                                   properties=_build_properties(manifest)))
    bom.metadata.tools.components.update(_tools(manifest))
    parts = [*_file_components(manifest), *_deb_components(manifest),
             *_pypi_components(manifest), *_source_components(manifest)]
    bom.components.update(parts)
    bom.register_dependency(bom.metadata.component, parts)
    return bom


def sbom_json(manifest: Manifest) -> str:
    return JsonV1Dot6(sbom_from_manifest(manifest)).output_as_string(indent=2) + "\n"


def write_sbom(manifest: Manifest, out_dir: Path) -> SbomEntry:
    """Write OUT/NAME.cdx.json; return the manifest's `sbom` entry (path and sha256)."""
    text = sbom_json(manifest).encode()
    path = out_dir / sbom_name(manifest)
    part = path.with_name(path.name + ".part")
    part.write_bytes(text)
    part.replace(path)
    return SbomEntry(path=path.name, sha256=hashlib.sha256(text).hexdigest(), spec=SPEC)


# -- pieces ----------------------------------------------------------------------------------------
def _serial(manifest: Manifest) -> uuid.UUID:
    key = f"{manifest.name}/{manifest.build_tag}/{manifest.created}"
    return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:sage-image:{key}")


def _created(manifest: Manifest) -> datetime:
    return datetime.fromisoformat(manifest.created.replace("Z", "+00:00")).astimezone(timezone.utc)


def _hashes(entry: ImageFile) -> list[HashType]:
    return [HashType(alg=alg, content=getattr(entry, key)) for key, alg in _HASHES.items()]


def _image(manifest: Manifest) -> Component:
    first = next(iter(manifest.files.values()), None)
    return Component(type=ComponentType.OPERATING_SYSTEM, name=manifest.name,
                     version=manifest.build_tag,
                     bom_ref=f"image:{manifest.name}",
                     description=(f"{manifest.family} {manifest.os_version} {manifest.variant} "
                                  f"image ({manifest.arch})"),
                     hashes=_hashes(first) if first else [])


def _build_properties(manifest: Manifest) -> list[Property]:
    values = {"release": manifest.release, "variant": manifest.variant, "arch": manifest.arch,
              "elements": " ".join(manifest.elements), "kernel": manifest.boot.kernel_version,
              "stand-ins": ",".join(manifest.stand_ins),
              "layer-only": str(manifest.layer.only).lower()}
    return [Property(name=PROP + k, value=str(v)) for k, v in values.items() if v not in (None, "")]


def _tools(manifest: Manifest) -> list[Component]:
    repo = manifest.properties["build-repo"]
    commit = manifest.properties["build-repo-commit"]
    builder = Component(
        type=ComponentType.APPLICATION, name="sage-image", group="sage-image-builder",
        version=manifest.builder_version or None, bom_ref="tool:sage-image",
        external_references=[ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(repo))]
        if repo else [],
        properties=[Property(name=PROP + "repo-commit", value=commit)] if commit else [])
    dib = Component(type=ComponentType.APPLICATION, name="diskimage-builder",
                    version=manifest.dib_version or None, bom_ref="tool:diskimage-builder",
                    purl=PackageURL("pypi", name="diskimage-builder",
                                    version=manifest.dib_version or None))
    return [builder, dib]


def _file_components(manifest: Manifest) -> list[Component]:
    return [Component(type=ComponentType.FILE, name=f.path, bom_ref=f"file:{fmt}",
                      hashes=_hashes(f),
                      properties=[Property(name=PROP + "disk-format", value=fmt),
                                  Property(name=PROP + "size", value=str(f.size))])
            for fmt, f in manifest.files.items()]


def _deb_components(manifest: Manifest) -> list[Component]:
    out = []
    for name, version in manifest.packages.items():
        # a package the status database names without an architecture is the image's own
        arch = manifest.package_arch.get(name) or manifest.arch
        qualifiers = {"arch": arch, "distro": manifest.release}
        purl = PackageURL("deb", namespace=manifest.family, name=name, version=version or None,
                          qualifiers=qualifiers)
        out.append(Component(type=ComponentType.LIBRARY, name=name, version=version or None,
                             purl=purl, bom_ref=purl.to_string(),
                             properties=[Property(name=PROP + "arch", value=arch)]))
    return out


def _pypi_components(manifest: Manifest) -> list[Component]:
    """The Sage tools venv's packages, then sage-node's venv's (a package in both, at the same
    version, is one component; at another version, two)."""
    out, seen = [], set()
    for packages in (manifest.python_packages, manifest.node_python_packages):
        for name, version in packages.items():
            purl = PackageURL("pypi", name=re.sub(r"[-_.]+", "-", name).lower(),
                              version=version or None)
            if purl.to_string() in seen:
                continue
            seen.add(purl.to_string())
            out.append(Component(type=ComponentType.LIBRARY, name=name, version=version or None,
                                 purl=purl, bom_ref=purl.to_string()))
    return out


def _source_components(manifest: Manifest) -> list[Component]:
    out = []
    for name, s in manifest.sources.items():
        qualifiers = {"vcs_url": f"git+{s.url}@{s.commit}"} if "://" in s.url else {}
        purl = PackageURL("generic", name=name, version=s.commit or None, qualifiers=qualifiers)
        properties = {"path": s.path, "pinned": s.pinned, "stand-in": str(s.stand_in).lower(),
                      "url": s.url}
        out.append(Component(
            type=ComponentType.APPLICATION, name=name, version=s.commit or None, purl=purl,
            bom_ref=f"source:{name}",
            description="a generated STAND-IN: the upstream was unreachable at build time"
            if s.stand_in else None,
            external_references=[ExternalReference(type=ExternalReferenceType.VCS,
                                                    url=XsUri(s.url))] if s.url else [],
            properties=[Property(name=PROP + k, value=str(v)) for k, v in properties.items() if v]))
    return out
